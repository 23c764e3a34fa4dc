// The case lists (see op_cases.h). Every tolerance states where it comes from.
#include "opcases/op_cases.h"

#include <algorithm>
#include <sstream>

#include "cuseg/kernels/affine_patch.h"
#include "cuseg/model/unet3d.h"

namespace cuseg {
namespace opcases {

namespace {

// Shared reasons.
constexpr const char* kExactSmallIntegers =
    "exact: inputs are small integers (|x| <= 3, |w| <= 2) or multiples of 1/64, so every "
    "product and partial sum is an integer (or a multiple of 1/64) far below 2^24; fp32 "
    "arithmetic is exact in any order, with FMA or without, and cuDNN runs with "
    "CUDNN_FMA_MATH (no TF32; TF32 would also be exact on such inputs)";

// Convolutions: the same, for the algorithms that can run (engine/conv_algo.h).
constexpr const char* kExactConv =
    "exact: inputs are small integers (|x| <= 3, |w| <= 2), so every product and partial sum "
    "is an integer far below 2^24; fp32 arithmetic is exact in any order, with FMA or without. "
    "That covers every algorithm that sums products (GEMM-like, direct); FFT and Winograd "
    "algorithms, which transform the operands, are not candidates in fp32 (engine/conv_algo.h; "
    "the tests assert it from the context's record); CUDNN_FMA_MATH (no TF32)";

// Central differences of ops linear in the probed variable (conv in x or w, upsample, ReLU
// away from its kink, max-pool away from ties): float32 forward passes give L an absolute
// rounding error delta ~ sqrt(#terms) * 2^-24 * max|out * r|, so the difference quotient is
// off by ~2 delta / (2 eps) < 1e-3 with eps = 1e-2 at these sizes.
constexpr const char* kFdLinear =
    "finite differences of an op linear in the probed variable: float32 rounding of the "
    "probed sum L (~sqrt(#terms) 2^-24 max|out r|) over 2 eps = 2e-2 stays < 1e-3: atol 2e-3, "
    "rtol 1e-2";

std::string dims_of(const Shape& s) {
  std::string r;
  for (size_t i = 0; i < s.size(); ++i) r += (i ? "x" : "") + std::to_string(s[i]);
  return r;
}

}  // namespace

std::string Dims::str() const {
  return dims_of(shape());
}

// ---------------------------------------------------------------- conv3d

double ConvCase::macs() const {
  return double(x.n) * cout * x.c * k * k * k * double(x.d) * x.h * x.w;
}
double ConvCase::bytes_fwd() const {
  return 4 * (double(x.numel()) + double(shape_numel(w_shape())) + double(shape_numel(y_shape())) +
              cout);
}
double ConvCase::bytes_bwd() const {
  return 4 * (2 * double(x.numel()) + 2 * double(shape_numel(w_shape())) +
              double(shape_numel(y_shape())) + cout);
}
std::string ConvCase::name() const {
  std::string s = label + "_n" + std::to_string(x.n) + "_" + std::to_string(x.c) + "x" +
                  std::to_string(cout) + "_k" + std::to_string(k) + "_s";
  if (x.d == x.h && x.h == x.w) return s + std::to_string(x.d);
  return s + std::to_string(x.d) + "x" + std::to_string(x.h) + "x" + std::to_string(x.w);
}

const ConvSpec& conv3d() {
  static const ConvSpec spec = [] {
    ConvSpec s;
    auto add = [&](const char* label, Dims x, int cout, int k, unsigned use) {
      s.cases.push_back(ConvCase{label, x, cout, k, use});
    };
    // Size-1 and odd extents, k = 1 and k = 3, channel counts around the U-Net's.
    add("one_voxel", {1, 1, 1, 1, 1}, 2, 3, kParity);
    add("one_voxel", {1, 1, 1, 1, 1}, 1, 1, kParity);
    add("odd", {2, 3, 5, 7, 4}, 4, 3, kParity | kFusedUnread);
    add("flat", {1, 2, 1, 6, 9}, 3, 3, kParity);
    add("thin", {1, 1, 17, 1, 3}, 2, 3, kParity);
    add("cube", {2, 4, 8, 8, 8}, 8, 3, kParity | kFusedUnread);
    add("k1", {1, 5, 3, 3, 3}, 1, 1, kParity);
    add("k1_odd", {2, 8, 6, 5, 7}, 3, 1, kParity | kFusedUnread);
    add("wide", {1, 16, 12, 12, 12}, 16, 3, kParity | kFusedUnread);
    // A real CT's first convolution: 33 slices of 64 x 64 (tests/data lits64).
    add("ct33", {1, 1, 33, 64, 64}, 4, 3, kParity);
    // Gradient checks (and parity): k = 3 and the 1x1x1 final conv.
    add("grad", {2, 3, 5, 7, 6}, 4, 3, kGradcheck | kParity);
    add("grad_k1", {2, 3, 5, 7, 6}, 4, 1, kGradcheck | kParity);
    // The device's algorithm cache: the same problem twice, same bits.
    add("repeat", {2, 8, 12, 10, 9}, 8, 3, kRepeat);
    // Every U-Net convolution at batch 2, 96^3 (decoder second convs have the encoder's
    // shapes): benchmarks only; seconds per call on a small CPU.
    const unsigned ref = kBench | kCpuHeavy;
    add("ref_enc1a", {2, 1, 96, 96, 96}, 32, 3, ref);
    add("ref_enc1b", {2, 32, 96, 96, 96}, 32, 3, ref);
    add("ref_enc2a", {2, 32, 48, 48, 48}, 64, 3, ref);
    add("ref_enc2b", {2, 64, 48, 48, 48}, 64, 3, ref);
    add("ref_enc3a", {2, 64, 24, 24, 24}, 128, 3, ref);
    add("ref_enc3b", {2, 128, 24, 24, 24}, 128, 3, ref);
    add("ref_enc4a", {2, 128, 12, 12, 12}, 256, 3, ref);
    add("ref_enc4b", {2, 256, 12, 12, 12}, 256, 3, ref);
    add("ref_dec3a", {2, 384, 24, 24, 24}, 128, 3, ref);
    add("ref_dec2a", {2, 192, 48, 48, 48}, 64, 3, ref);
    add("ref_dec1a", {2, 96, 96, 96, 96}, 32, 3, ref);
    add("ref_final", {2, 32, 96, 96, 96}, 3, 1, ref);
    add("small", {1, 4, 16, 16, 16}, 8, 3, kBench);
    add("small", {2, 8, 32, 32, 32}, 8, 3, kBench);
    add("small_odd", {1, 3, 17, 17, 17}, 5, 3, kBench);
    s.parity = {0, 0, false, kExactConv};
    s.gradcheck = {1e-2f, {2e-3, 1e-2, false, kFdLinear}};
    return s;
  }();
  return spec;
}

// ---------------------------------------------------------------- element-wise

const ElementwiseSpec& elementwise() {
  static const ElementwiseSpec spec = [] {
    ElementwiseSpec s;
    s.cases = {
        {"one_voxel", {1, 1, 1, 1, 1}, kParity},
        {"row", {1, 1, 1, 1, 7}, kParity},
        {"odd", {2, 3, 5, 1, 3}, kParity},
        {"odd", {1, 2, 7, 9, 11}, kParity},
        {"cube", {2, 4, 8, 8, 8}, kParity},
        {"thin", {1, 1, 17, 13, 1}, kParity},
        // The training patch.
        {"patch", {2, 1, 96, 96, 96}, kParity},
        {"grad", {2, 3, 5, 7, 6}, kGradcheck | kParity},
        // The first level of the U-Net at batch 2, 96^3.
        {"ref_l1", {2, 32, 96, 96, 96}, kBench},
        {"small", {1, 8, 32, 32, 32}, kBench | kParity},
    };
    s.parity = {0, 0, false,
                "exact: max(v, 0), a select and one addition of small integers are exact in "
                "fp32 on every device"};
    s.gradcheck = {1e-2f,
                   {2e-3, 1e-2, false,
                    "ReLU with inputs kept >= 0.05 from the kink: linear per probe, as conv "
                    "(float32 rounding of L over 2 eps < 1e-3): atol 2e-3, rtol 1e-2"}};
    return s;
  }();
  return spec;
}

// ---------------------------------------------------------------- max pooling

double PoolSpec::fwd_bytes(const Dims& x) {
  return 4 * (double(x.numel()) + double(shape_numel(y_shape(x))));
}
double PoolSpec::bwd_bytes(const Dims& x) {
  return 4 * (2 * double(x.numel()) + double(shape_numel(y_shape(x))));
}

const PoolSpec& maxpool3d() {
  static const PoolSpec spec = [] {
    PoolSpec s;
    s.cases = {
        {"one_window", {1, 1, 2, 2, 2}, kParity},
        {"odd", {1, 1, 3, 5, 7}, kParity},
        {"mixed", {2, 3, 4, 6, 2}, kParity},
        {"odd", {1, 2, 9, 9, 9}, kParity},
        {"thin", {2, 4, 16, 8, 2}, kParity},
        {"patch", {2, 2, 96, 96, 96}, kParity},
        {"ties", {2, 3, 6, 6, 6}, kTies},
        {"nan", {2, 3, 6, 8, 5}, kNaN},
        {"grad", {2, 3, 5, 7, 6}, kGradcheck | kParity},
        // The U-Net's three pools at batch 2, 96^3.
        {"ref", {2, 32, 96, 96, 96}, kBench},
        {"ref", {2, 64, 48, 48, 48}, kBench},
        {"ref", {2, 128, 24, 24, 24}, kBench},
        {"small", {1, 8, 32, 32, 32}, kBench | kParity},
    };
    s.parity = {0, 0, false,
                "exact: a maximum is one of its inputs and the gradient is routed, never "
                "summed; inputs are distinct multiples of 1/64 (no ties) except in the ties "
                "case, which pins the tie rule (first maximum in scan order, as PyTorch); a NaN "
                "in a window gives NaN on both sides (NaN compared equal to NaN)"};
    s.gradcheck = {1e-2f,
                   {2e-3, 1e-2, false,
                    "inputs 0.05 apart in random order, so no probe (eps 1e-2) changes an "
                    "argmax: linear per probe, atol 2e-3, rtol 1e-2 as conv"}};
    return s;
  }();
  return spec;
}

// ---------------------------------------------------------------- upsampling

double UpsampleSpec::bytes(const Dims& x) {
  return 4 * (double(x.numel()) + double(shape_numel(y_shape(x))));
}

const UpsampleSpec& upsample2x() {
  static const UpsampleSpec spec = [] {
    UpsampleSpec s;
    s.cases = {
        {"one_voxel", {1, 1, 1, 1, 1}, kParity},
        {"flat", {1, 1, 1, 3, 2}, kParity},
        {"odd", {2, 3, 5, 4, 3}, kParity},
        {"thin", {1, 2, 7, 1, 9}, kParity},
        {"cube", {2, 4, 8, 8, 8}, kParity},
        {"level2", {1, 2, 48, 48, 48}, kParity},
        {"grad", {2, 3, 5, 7, 6}, kGradcheck | kParity},
        {"grad_flat", {1, 2, 1, 3, 2}, kGradcheck | kParity},
        // The decoder's three upsamplings at batch 2 (input extents).
        {"ref", {2, 256, 12, 12, 12}, kBench},
        {"ref", {2, 128, 24, 24, 24}, kBench},
        {"ref", {2, 64, 48, 48, 48}, kBench},
        {"small", {1, 8, 16, 16, 16}, kBench | kParity},
    };
    s.parity = {0, 0, false,
                "exact: the interpolation weights are 0.25, 0.75 and 1 (binary fractions) "
                "and inputs small integers, so every product and sum is exact in fp32"};
    s.gradcheck = {1e-2f, {2e-3, 1e-2, false, kFdLinear}};
    return s;
  }();
  return spec;
}

// ---------------------------------------------------------------- loss head

double LogitsSpec::ce_bytes(const Dims& x) {
  return 8 * double(x.numel()) + double(x.numel() / x.c);
}
double LogitsSpec::argmax_bytes(const Dims& x) {
  return 4 * double(x.numel()) + double(x.numel() / x.c);
}
std::vector<float> LogitsSpec::parity_weights(int k) {
  std::vector<float> w(static_cast<size_t>(k));
  for (int i = 0; i < k; ++i) w[size_t(i)] = 1.f + float(i % 3);
  return w;
}

const LogitsSpec& logits() {
  static const LogitsSpec spec = [] {
    LogitsSpec s;
    s.cases = {
        {"one_voxel", {1, 3, 1, 1, 1}, kParity},
        {"odd", {2, 3, 5, 7, 3}, kParity},
        {"two_classes", {1, 2, 17, 1, 9}, kParity},
        {"five_classes", {2, 5, 16, 16, 17}, kParity},
        // One voxel more than a reduction chunk (kCeChunk = 4096) and a histogram block.
        {"chunk_plus_one", {1, 3, 1, 1, 4097}, kParity},
        {"grad", {2, 3, 5, 7, 6}, kGradcheck | kParity},
        // The training batch: 2 patches of 96^3, 3 classes.
        {"ref", {2, 3, 96, 96, 96}, kParity | kBench},
        {"small", {1, 3, 32, 32, 32}, kBench},
        // The inference volume (argmax of the aggregated logits).
        {"ref_volume", {1, 3, 200, 256, 256}, kBench},
    };
    s.parity_loss = {0, 1e-6, false,
                     "expf / logf differ between glibc and CUDA by <= 2 ulp and the in-chunk "
                     "double sums are associated differently: rel 1e-6 on the loss"};
    s.parity_grad = {1e-6, 1e-5, true,
                     "the same <= 2 ulp of expf per element, ~4 ulp of the gradient's scale: "
                     "atol 1e-6 x max|grad|, rtol 1e-5"};
    s.parity_argmax = {0, 0, false,
                       "exact: both sides compare the same floats with the same first-maximum "
                       "rule"};
    s.gradcheck = {1e-2f,
                   {2e-5, 2e-2, false,
                    "softmax CE is smooth: truncation O(eps^2 L''') is negligible; the mean "
                    "divides by sum w ~ 700, so per-logit gradients are ~1e-3 and the "
                    "rounding of L (~1e-7) over 2 eps gives atol 2e-5; rtol 2e-2"}};
    return s;
  }();
  return spec;
}

// ---------------------------------------------------------------- Adam

int64_t AdamCase::parameters() const {
  if (!filters.empty()) {
    UNetConfig cfg;
    cfg.filters = filters;
    return unet_parameter_count(cfg);
  }
  int64_t n = 0;
  for (int64_t v : sizes) n += v;
  return n;
}
double AdamCase::bytes() const {
  return 28 * double(parameters());
}

const AdamSpec& adam() {
  static const AdamSpec spec = [] {
    AdamSpec s;
    // 60 tensors (more than one launch's worth of the multi-tensor kernel), sizes 1 to ~50k.
    AdamCase many{"many", {}, {}, kParity};
    for (size_t i = 0; i < 60; ++i)
      many.sizes.push_back(i % 7 == 0 ? 1 : int64_t(1 + (i * 7919) % 50000));
    s.cases = {
        many, {"ref", {}, {32, 64, 128, 256}, kBench}, {"small", {}, {8, 16, 32, 64}, kBench}};
    s.parity_steps = 3;
    const char* fma =
        "random floats, 3 steps: nvcc contracts into FMAs where the CPU rounds twice, a few "
        "ulp per step";
    s.parity_p = {1e-7, 1e-5, false, fma};
    s.parity_m = {1e-9, 1e-5, false, fma};
    s.parity_v = {1e-12, 1e-5, false, fma};
    return s;
  }();
  return spec;
}

// ---------------------------------------------------------------- CropOrPad

double CropCase::bytes() const {
  return 8 * double(shape_numel(out_shape()));
}

const CropSpec& crop_or_pad() {
  static const CropSpec spec = [] {
    CropSpec s;
    s.cases = {
        {"pad_one_voxel", {1, 1, 1, 1, 1}, 3, 1, 2, kParity},
        {"same", {1, 1, 5, 6, 7}, 5, 6, 7, kParity},
        {"mixed", {2, 3, 7, 4, 9}, 4, 8, 9, kParity},
        {"mixed", {1, 2, 10, 11, 1}, 3, 16, 2, kParity},
        {"patch", {1, 1, 96, 96, 96}, 80, 101, 96, kParity},
        // Odd differences: ceil before, floor after.
        {"odd", {1, 1, 37, 40, 20}, 36, 41, 21, kParity},
        // The recipe's CropOrPad to 256 x 256 x 200 (D = 200) of a short and a long scan.
        {"ref_pad", {1, 1, 150, 256, 256}, 200, 256, 256, kBench},
        {"ref_crop", {1, 1, 300, 256, 256}, 200, 256, 256, kBench},
        {"small", {1, 1, 30, 40, 50}, 32, 32, 32, kBench | kParity},
    };
    s.parity = {0, 0, false, "exact: a copy or the pad value"};
    return s;
  }();
  return spec;
}

// ---------------------------------------------------------------- grid aggregation

std::vector<int> GridCase::grid_starts() const {
  // torchio / data::grid_locations: range(0, size - patch + 1, patch - overlap), plus
  // size - patch when the range missed it.
  auto starts_1d = [&](int size, int patch) {
    std::vector<int> v;
    for (int s = 0; s <= size - patch; s += std::max(1, patch - overlap)) v.push_back(s);
    if (v.back() != size - patch) v.push_back(size - patch);
    return v;
  };
  std::vector<int> out;
  for (int z : starts_1d(d, pd))
    for (int y : starts_1d(h, ph))
      for (int x : starts_1d(w, pw)) out.insert(out.end(), {z, y, x});
  return out;
}
double GridCase::bytes(int patches) const {
  return 4 * double(patches) * double(pd) * ph * pw * (3.0 * c + 2);
}
double GridCase::finalize_bytes() const {
  return 4 * (2 * double(shape_numel(sum_shape())) + double(shape_numel(weight_shape())));
}
std::string GridCase::str() const {
  return std::to_string(c) + "x" + std::to_string(d) + "x" + std::to_string(h) + "x" +
         std::to_string(w) + "_p" + std::to_string(pd) + "x" + std::to_string(ph) + "x" +
         std::to_string(pw) + "_o" + std::to_string(overlap);
}
const char* GridSpec::mode_name(AggregateMode m) {
  switch (m) {
    case AggregateMode::Crop:
      return "crop";
    case AggregateMode::Average:
      return "average";
    case AggregateMode::Hann:
      return "hann";
    case AggregateMode::Gaussian:
      return "gaussian";
  }
  return "?";
}

const GridSpec& grid_aggregate() {
  static const GridSpec spec = [] {
    GridSpec s;
    //         label    C   D    H    W   pd  ph  pw  overlap  bench patches
    s.cases = {
        {"odd", 3, 20, 17, 9, 8, 8, 5, 2, 0, kParity},
        {"one_patch", 2, 11, 11, 11, 11, 11, 11, 0, 0, kParity},
        {"thin", 1, 30, 7, 1, 12, 7, 1, 4, 0, kParity},
        {"cube", 3, 40, 36, 36, 16, 16, 16, 4, 0, kParity},
        // The recipe's inference: 96^3 patches, overlap 8, batches of 4, 3 classes, into the
        // 256 x 256 x 200 volume.
        {"ref", 3, 200, 256, 256, 96, 96, 96, 8, 4, kBench},
        {"small", 3, 16, 16, 28, 16, 16, 16, 4, 2, kBench | kParity},
    };
    s.modes = {AggregateMode::Crop, AggregateMode::Average, AggregateMode::Hann,
               AggregateMode::Gaussian};
    s.parity_exact = {0, 0, false,
                      "exact: crop assigns; average adds integers (exact below 2^24) and "
                      "divides once, the same IEEE division on both sides"};
    s.parity_gaussian = {0, 0, false,
                         "exact: the float16-valued weight is the same double formula on both "
                         "sides (the test checks on the host that no weight of the case moves "
                         "when exp() is off by 2 ulp; CUDA's exp is within 1 ulp), then the "
                         "same correctly rounded multiplies and adds in patch order, no FMA"};
    s.parity_hann = {0, 1e-6, false,
                     "the float hann weight comes from a double cos() on both sides (CUDA's is "
                     "within 2 ulp in double): rel 1e-6"};
    s.parity_hann_out = {0, 2e-6, false, "sum / weight, each within rel 1e-6 (hann): rel 2e-6"};
    return s;
  }();
  return spec;
}

// ---------------------------------------------------------------- rescale

const RescaleSpec& rescale_intensity() {
  static const RescaleSpec spec = [] {
    RescaleSpec s;
    s.cases = {
        {"one", {1}, kParity},
        {"small", {1000}, kParity},
        {"patch", {96 * 96 * 96}, kParity},
        // The recipe's volume plus 3: not a multiple of any block size.
        {"volume_plus_3", {int64_t(256) * 256 * 200 + 3}, kParity},
        {"ref", {1, 1, 200, 256, 256}, kBench},
        {"small", {1, 1, 32, 32, 32}, kBench},
    };
    // (in_min, in_max, out_min, out_max): the [-1, 1] normalisation, a soft-tissue CT window
    // kept in HU (Clamp: out range = in range), a liver window onto [0, 255] and onto [0, 1].
    // Ranges in the hundreds are where a fused last multiply-add would differ by an ulp.
    s.ranges = {{-200.f, 300.f, -1.f, 1.f},
                {-160.f, 240.f, -160.f, 240.f},
                {-100.f, 200.f, 0.f, 255.f},
                {-1024.f, 3071.f, 0.f, 1.f}};
    s.parity = {0, 0, false,
                "exact: (v - a) / r * s + b with each step rounded on its own on both sides "
                "(kernels/common.h mul_rn / add_rn keep nvcc from fusing the last multiply-add); "
                "division and subtraction are IEEE round-to-nearest on both"};
    s.parity_minmax = {0, 0, false, "exact: min and max select one of their inputs"};
    return s;
  }();
  return spec;
}

// ---------------------------------------------------------------- test-time mirroring

const MirrorSpec& mirror() {
  static const MirrorSpec spec = [] {
    MirrorSpec s;
    s.cases = {
        {"odd", {2, 3, 5, 7, 9}, kParity},
        {"single_slice", {1, 3, 1, 4, 3}, kParity},
        // The recipe's patch and classes (--tta mirrors every 96^3 patch 8 ways).
        {"patch", {1, 3, 96, 96, 96}, kParity},
    };
    s.parity_mirror = {0, 0, false, "exact: values are moved, not computed"};
    s.parity_softmax = {1e-6, 0, false,
                        "expf differs by <= 2 ulp between CUDA and glibc and nvcc may contract "
                        "the scale multiply into an FMA: a few ulp of 1 per probability; atol "
                        "1e-6 on the accumulated value"};
    return s;
  }();
  return spec;
}

// ---------------------------------------------------------------- fused training patch

double AffinePatchCase::bytes() const {
  const double voxels = double(pw) * ph * pd;
  const double in = storage == kStoreF32 ? 4 : 2, o = out == kOutF32 ? 4 : 2;
  return voxels * (o + 1) + voxels * (in + 1);
}

std::string AffinePatchCase::str() const {
  static const char* st[] = {"f32", "bf16", "i16"};
  static const char* ot[] = {"f32", "bf16"};
  std::ostringstream os;
  os << w << "x" << h << "x" << d << "_p" << pw << "x" << ph << "x" << pd << "_" << st[storage]
     << "_" << ot[out];
  return os.str();
}

const AffinePatchSpec& affine_patch() {
  static const AffinePatchSpec spec = [] {
    AffinePatchSpec s;
    s.cases = {
        {"odd", 27, 23, 19, 12, 10, 8, kStoreF32, kOutF32, kParity},
        {"odd", 27, 23, 19, 12, 10, 8, kStoreF32, kOutBF16, kParity},
        {"odd", 27, 23, 19, 12, 10, 8, kStoreBF16, kOutF32, kParity},
        {"odd", 27, 23, 19, 12, 10, 8, kStoreI16, kOutF32, kParity},
        {"odd", 27, 23, 19, 12, 10, 8, kStoreI16, kOutBF16, kParity},
        // A patch larger than the volume on one axis: pad_to_patch's border.
        {"padded", 27, 23, 19, 14, 30, 8, kStoreI16, kOutF32, kParity},
        // The recipe: 256 x 256 x 200 volumes, 96^3 patches.
        {"ref", 256, 256, 200, 96, 96, 96, kStoreI16, kOutF32, kBench},
        {"ref", 256, 256, 200, 96, 96, 96, kStoreI16, kOutBF16, kBench},
        {"ref", 256, 256, 200, 96, 96, 96, kStoreF32, kOutF32, kBench},
    };
    s.parity = {0, 0, false,
                "exact: fixed-point coordinates (integers) and the same round-to-nearest "
                "double operations in the same order on both sides (kernels/affine_patch.h)"};
    return s;
  }();
  return spec;
}

}  // namespace opcases
}  // namespace cuseg
