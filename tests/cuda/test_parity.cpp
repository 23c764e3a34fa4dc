// Parity harness: every CUDA op against the CPU reference op on the same inputs, forward
// and backward, over shape lists given as data (odd and size-1 extents, batch-strided
// channel-slice views, and 96^3 — the training patch — for the cheap ops).
//
// Tolerances (where each comes from):
// - Exact (0): conv3d forward/backward, ReLU, add, bias+ReLU, max pooling, upsample x2,
//   crop/pad, argmax, label histogram, grid aggregation in crop/average mode, min/max.
//   Inputs are small integers (|x| <= 3, |w| <= 2) or exact binary fractions, so every
//   product and partial sum is an integer (or a multiple of 1/64) far below 2^24: fp32
//   arithmetic is exact in any order, FMA or not, and cuDNN runs with CUDNN_FMA_MATH (no
//   TF32; TF32 would also be exact on such inputs).
// - Cross-entropy (random logits): expf / logf differ between glibc and CUDA by <= 2 ulp and
//   the in-chunk double sums are associated differently, so the loss agrees to rel 1e-6 and
//   each gradient element to 4 ulp of its magnitude scale (atol 1e-6 * max|g|, rtol 1e-5).
// - Adam (random floats, 3 steps): nvcc contracts into FMAs where the CPU rounds twice;
//   a few ulp per step: rtol 1e-5, atol 1e-7.
// - Grid aggregation in hann mode: the float hann weight comes from a double cos() on both
//   sides (CUDA's is within 2 ulp in double): rtol 1e-6.
// - Rescale intensity: (v - a) / r * s + b; nvcc may fuse the last multiply-add: 1 ulp of the
//   output range, atol 2.5e-7.
// On failure the inputs and both outputs are dumped to parity_<op>_<shape>.bin in the working
// directory (format in dump() below) and the file name is printed.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "cuseg/core/check.h"
#include "cuseg/engine/context.h"
#include "cuseg/engine/ops.h"
#include "cuseg/engine/optim.h"
#include "cuseg/engine/tensor.h"
#include "cuseg/kernels/adam.h"
#include "cuseg/kernels/crop_or_pad.h"
#include "cuseg/kernels/cross_entropy.h"
#include "cuseg/kernels/elementwise.h"
#include "cuseg/kernels/grid_aggregate.h"
#include "cuseg/kernels/rescale_intensity.h"

using namespace cuseg;

#define REQUIRE_CUDA() \
  if (!cuseg::cuda_available()) GTEST_SKIP() << "no CUDA device"

namespace {

struct Dims {
  int n, c, d, h, w;
};

std::string dims_str(const Dims& s) {
  std::ostringstream os;
  os << s.n << "x" << s.c << "x" << s.d << "x" << s.h << "x" << s.w;
  return os.str();
}

Shape shape_of(const Dims& s) {
  return {s.n, s.c, s.d, s.h, s.w};
}

// Small integers in [lo, hi].
Tensor int_tensor(const Shape& s, std::mt19937& rng, int lo = -3, int hi = 3) {
  Tensor t = Tensor::empty(s);
  std::uniform_int_distribution<int> u(lo, hi);
  for (int64_t i = 0; i < t.numel(); ++i) t.f32()[i] = float(u(rng));
  return t;
}

Tensor float_tensor(const Shape& s, std::mt19937& rng, float lo = -1.f, float hi = 1.f) {
  Tensor t = Tensor::empty(s);
  std::uniform_real_distribution<float> u(lo, hi);
  for (int64_t i = 0; i < t.numel(); ++i) t.f32()[i] = u(rng);
  return t;
}

// Distinct values (a shuffled ramp, scaled by 1/64: exact) — no ties for max pooling.
Tensor distinct_tensor(const Shape& s, std::mt19937& rng) {
  Tensor t = Tensor::empty(s);
  std::vector<float> v(size_t(t.numel()));
  for (size_t i = 0; i < v.size(); ++i) v[i] = float(int64_t(i) - int64_t(v.size() / 2)) / 64.f;
  std::shuffle(v.begin(), v.end(), rng);
  std::copy(v.begin(), v.end(), t.f32());
  return t;
}

Tensor to_cpu(const Tensor& t) {
  return t.to(Device::CPU);
}  // contiguous copy

// A tensor on `dev` holding `src`, optionally as channel slice [1, 1 + c) of a wider
// (c + 2)-channel buffer: a batch-strided view like the U-Net's concat slices.
Tensor place(const Tensor& src, Device dev, bool strided) {
  if (!strided || src.ndim() != 5) return src.to(dev);
  Shape wide = src.shape();
  wide[1] += 2;
  Tensor buf = Tensor::zeros(wide, DType::F32, dev);
  Tensor view = buf.channel_slice(1, 1 + src.dim(1));
  view.copy_from(src);
  return view;
}

// Writes a dump: for each tensor "name ndim d0 .. dn-1\n" then the raw float32 data.
std::string dump(const std::string& op, const std::string& shape,
                 const std::vector<std::pair<std::string, Tensor>>& ts) {
  const std::string path = "parity_" + op + "_" + shape + ".bin";
  std::ofstream f(path, std::ios::binary);
  f << "CUSEG_PARITY_DUMP v1\n";
  for (const auto& [name, t0] : ts) {
    Tensor t = to_cpu(t0);
    f << name << " " << dtype_name(t.dtype()) << " " << t.ndim();
    for (int i = 0; i < t.ndim(); ++i) f << " " << t.dim(i);
    f << "\n";
    f.write(static_cast<const char*>(t.raw()), std::streamsize(t.nbytes()));
    f << "\n";
  }
  return path;
}

// |got - ref| <= atol + rtol * |ref| everywhere; on failure dumps `inputs` + both outputs.
::testing::AssertionResult close(const std::string& op, const std::string& shape,
                                 const Tensor& ref0, const Tensor& got0, double atol, double rtol,
                                 const std::vector<std::pair<std::string, Tensor>>& inputs = {}) {
  const Tensor ref = to_cpu(ref0), got = to_cpu(got0);
  if (ref.shape() != got.shape())
    return ::testing::AssertionFailure()
           << op << " " << shape << ": shapes " << shape_str(ref.shape()) << " vs "
           << shape_str(got.shape());
  int64_t bad = 0, first = -1;
  double worst = 0;
  for (int64_t i = 0; i < ref.numel(); ++i) {
    const double r = ref.f32()[i], g = got.f32()[i];
    const double err = std::fabs(r - g), budget = atol + rtol * std::fabs(r);
    if (!(err <= budget)) {  // NaN fails
      if (first < 0) first = i;
      ++bad;
    }
    if (budget > 0) worst = std::max(worst, err / budget);
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  std::vector<std::pair<std::string, Tensor>> all = inputs;
  all.emplace_back("cpu", ref);
  all.emplace_back("cuda", got);
  const std::string path = dump(op, shape, all);
  return ::testing::AssertionFailure()
         << op << " " << shape << ": " << bad << " of " << ref.numel()
         << " elements differ; first at " << first << ": cpu " << ref.f32()[first] << " cuda "
         << got.f32()[first] << " (atol " << atol << ", rtol " << rtol << "); dumped to " << path;
}

struct Devices {
  Context cpu{Device::CPU};
  Context gpu{Device::CUDA};
};

// --------------------------------------------------------------------------- shape lists

// Conv problems: input dims, output channels, kernel.
struct ConvCase {
  Dims x;
  int cout, k;
};
const std::vector<ConvCase> kConvCases = {
    {{1, 1, 1, 1, 1}, 2, 3}, {{1, 1, 1, 1, 1}, 1, 1},  {{2, 3, 5, 7, 4}, 4, 3},
    {{1, 2, 1, 6, 9}, 3, 3}, {{1, 1, 17, 1, 3}, 2, 3}, {{2, 4, 8, 8, 8}, 8, 3},
    {{1, 5, 3, 3, 3}, 1, 1}, {{2, 8, 6, 5, 7}, 3, 1},  {{1, 16, 12, 12, 12}, 16, 3},
};

// Element-wise / resampling problems, including the training patch.
const std::vector<Dims> kCheapShapes = {
    {1, 1, 1, 1, 1}, {1, 1, 1, 1, 7},   {2, 3, 5, 1, 3},    {1, 2, 7, 9, 11},
    {2, 4, 8, 8, 8}, {1, 1, 17, 13, 1}, {2, 1, 96, 96, 96},
};

// Max pooling needs extents >= 2 (floor(1 / 2) = 0 is an empty output).
const std::vector<Dims> kPoolShapes = {
    {1, 1, 2, 2, 2}, {1, 1, 3, 5, 7},  {2, 3, 4, 6, 2},
    {1, 2, 9, 9, 9}, {2, 4, 16, 8, 2}, {2, 2, 96, 96, 96},
};

const std::vector<Dims> kUpShapes = {
    {1, 1, 1, 1, 1}, {1, 1, 1, 3, 2}, {2, 3, 5, 4, 3},
    {1, 2, 7, 1, 9}, {2, 4, 8, 8, 8}, {1, 2, 48, 48, 48},
};

// --------------------------------------------------------------------------- conv3d

TEST(Parity, Conv3dForward) {
  REQUIRE_CUDA();
  Devices dv;
  std::mt19937 rng(1);
  for (const ConvCase& cc : kConvCases)
    for (int variant = 0; variant < 4; ++variant) {
      const bool relu = variant & 1, strided = variant & 2;
      const Dims& s = cc.x;
      const std::string tag = dims_str(s) + "_co" + std::to_string(cc.cout) + "_k" +
                              std::to_string(cc.k) + (relu ? "_relu" : "") +
                              (strided ? "_strided" : "");
      Tensor x = int_tensor(shape_of(s), rng);
      Tensor w = int_tensor({cc.cout, s.c, cc.k, cc.k, cc.k}, rng, -2, 2);
      Tensor b = int_tensor({cc.cout}, rng);
      Tensor y = Tensor::empty({s.n, cc.cout, s.d, s.h, s.w});
      conv3d_forward(dv.cpu, x, w, b, y, relu);
      Tensor xg = place(x, Device::CUDA, strided), wg = w.to(Device::CUDA), bg = b.to(Device::CUDA);
      // y starts as NaN: with beta = 0 (and alpha2 = 0 for the fused z = y) cuDNN must not
      // read the output, as fresh pool memory may hold anything.
      Tensor yg = place(Tensor::empty(y.shape()), Device::CUDA, strided);
      yg.fill(std::nanf(""));
      conv3d_forward(dv.gpu, xg, wg, bg, yg, relu);
      EXPECT_TRUE(close("conv3d_fwd", tag, y, yg, 0, 0, {{"x", x}, {"w", w}, {"b", b}}));
    }
}

TEST(Parity, Conv3dBackward) {
  REQUIRE_CUDA();
  Devices dv;
  std::mt19937 rng(2);
  for (const ConvCase& cc : kConvCases)
    for (int strided = 0; strided < 2; ++strided) {
      const Dims& s = cc.x;
      const std::string tag = dims_str(s) + "_co" + std::to_string(cc.cout) + "_k" +
                              std::to_string(cc.k) + (strided ? "_strided" : "");
      Tensor x = int_tensor(shape_of(s), rng);
      Tensor w = int_tensor({cc.cout, s.c, cc.k, cc.k, cc.k}, rng, -2, 2);
      Tensor gy = int_tensor({s.n, cc.cout, s.d, s.h, s.w}, rng);
      // Parameter gradients start non-zero: the convention is +=.
      Tensor gw0 = int_tensor(w.shape(), rng), gb0 = int_tensor({cc.cout}, rng);
      Tensor gx = Tensor::empty(x.shape()), gw = gw0.clone(), gb = gb0.clone();
      conv3d_backward(dv.cpu, x, w, gy, gx, gw, gb);
      Tensor xg = place(x, Device::CUDA, strided), gyg = place(gy, Device::CUDA, strided);
      Tensor gxg =
          place(int_tensor(x.shape(), rng), Device::CUDA, strided);  // garbage: must be overwritten
      gxg.fill(std::nanf(""));  // beta = 0: cuDNN must not read it
      Tensor gwg = gw0.to(Device::CUDA), gbg = gb0.to(Device::CUDA);
      conv3d_backward(dv.gpu, xg, w.to(Device::CUDA), gyg, gxg, gwg, gbg);
      const std::vector<std::pair<std::string, Tensor>> in = {{"x", x}, {"w", w}, {"gy", gy}};
      EXPECT_TRUE(close("conv3d_bwd_gx", tag, gx, gxg, 0, 0, in));
      EXPECT_TRUE(close("conv3d_bwd_gw", tag, gw, gwg, 0, 0, in));
      EXPECT_TRUE(close("conv3d_bwd_gb", tag, gb, gbg, 0, 0, in));
    }
}

// The algorithm cache: a second call with the same problem reuses the choice and gives the
// same bits (deterministic algorithms).
TEST(Parity, Conv3dBackwardDeterministic) {
  REQUIRE_CUDA();
  Devices dv;
  std::mt19937 rng(3);
  Tensor x = float_tensor({2, 8, 12, 10, 9}, rng), w = float_tensor({8, 8, 3, 3, 3}, rng);
  Tensor gy = float_tensor({2, 8, 12, 10, 9}, rng);
  Tensor xg = x.to(Device::CUDA), wg = w.to(Device::CUDA), gyg = gy.to(Device::CUDA);
  Tensor gx[2], gw[2], gb[2];
  for (int r = 0; r < 2; ++r) {
    gx[r] = Tensor::empty(x.shape(), DType::F32, Device::CUDA);
    gw[r] = Tensor::zeros(w.shape(), DType::F32, Device::CUDA);
    gb[r] = Tensor::zeros({8}, DType::F32, Device::CUDA);
    conv3d_backward(dv.gpu, xg, wg, gyg, gx[r], gw[r], gb[r]);
  }
  EXPECT_TRUE(close("conv3d_bwd_repeat_gx", "2x8x12x10x9", gx[0], gx[1], 0, 0));
  EXPECT_TRUE(close("conv3d_bwd_repeat_gw", "2x8x12x10x9", gw[0], gw[1], 0, 0));
  EXPECT_TRUE(close("conv3d_bwd_repeat_gb", "2x8x12x10x9", gb[0], gb[1], 0, 0));
}

// --------------------------------------------------------------------------- element-wise

TEST(Parity, ReluAdd) {
  REQUIRE_CUDA();
  Devices dv;
  std::mt19937 rng(4);
  for (const Dims& s : kCheapShapes)
    for (int strided = 0; strided < 2; ++strided) {
      const std::string tag = dims_str(s) + (strided ? "_strided" : "");
      Tensor a = int_tensor(shape_of(s), rng), g = int_tensor(shape_of(s), rng);
      Tensor ag = place(a, Device::CUDA, strided), gg = place(g, Device::CUDA, strided);
      Tensor ac = a.clone(), gc = g.clone();
      relu_forward(dv.cpu, ac);
      relu_forward(dv.gpu, ag);
      EXPECT_TRUE(close("relu_fwd", tag, ac, ag, 0, 0, {{"x", a}}));
      relu_backward(dv.cpu, ac, gc);
      relu_backward(dv.gpu, ag, gg);
      EXPECT_TRUE(close("relu_bwd", tag, gc, gg, 0, 0, {{"y", ac}, {"g", g}}));
      add_inplace(dv.cpu, ac, gc);
      add_inplace(dv.gpu, ag, gg);
      EXPECT_TRUE(close("add", tag, ac, ag, 0, 0));
    }
}

TEST(Parity, BiasRelu) {
  // The conv epilogue the CUDA path uses when cuDNN refuses the fused conv + bias + ReLU.
  REQUIRE_CUDA();
  Devices dv;
  std::mt19937 rng(14);
  for (const Dims& s : kCheapShapes)
    for (int variant = 0; variant < 3; ++variant) {  // bias + ReLU, bias only, ReLU only
      const bool relu = variant != 1, with_bias = variant != 2;
      const std::string tag = dims_str(s) + "_v" + std::to_string(variant);
      Tensor y = int_tensor(shape_of(s), rng), b = int_tensor({s.c}, rng);
      Tensor yg = place(y, Device::CUDA, true), bg = b.to(Device::CUDA);
      Tensor yc = y.clone();
      bias_relu_forward_cpu(yc.vol(), with_bias ? b.f32() : nullptr, relu);
      bias_relu_forward_cuda(yg.vol(), with_bias ? bg.f32() : nullptr, relu, nullptr);
      EXPECT_TRUE(close("bias_relu", tag, yc, yg, 0, 0, {{"y", y}, {"b", b}}));
    }
}

// --------------------------------------------------------------------------- max pooling

TEST(Parity, MaxPool) {
  REQUIRE_CUDA();
  Devices dv;
  std::mt19937 rng(5);
  for (const Dims& s : kPoolShapes)
    for (int variant = 0; variant < 3; ++variant) {
      // 0: all packed; 1: all strided; 2: the U-Net's layout, x and y strided (x a concat
      // slice) but gy / gx packed (cudnnPoolingBackward needs equal x / dx strides).
      const bool strided = variant != 0, grads_strided = variant == 1;
      const std::string tag = dims_str(s) + (variant == 1   ? "_strided"
                                             : variant == 2 ? "_mixed"
                                                            : "");
      const Shape ys = {s.n, s.c, s.d / 2, s.h / 2, s.w / 2};
      Tensor x = distinct_tensor(shape_of(s), rng), gy = int_tensor(ys, rng);
      Tensor y = Tensor::empty(ys), gx = Tensor::empty(x.shape());
      maxpool3d_forward(dv.cpu, x, y);
      maxpool3d_backward(dv.cpu, x, y, gy, gx);
      Tensor xg = place(x, Device::CUDA, strided),
             yg = place(Tensor::empty(ys), Device::CUDA, strided);
      Tensor gyg = place(gy, Device::CUDA, grads_strided);
      Tensor gxg =
          place(int_tensor(x.shape(), rng), Device::CUDA, grads_strided);  // garbage: overwritten
      maxpool3d_forward(dv.gpu, xg, yg);
      maxpool3d_backward(dv.gpu, xg, yg, gyg, gxg);
      EXPECT_TRUE(close("maxpool_fwd", tag, y, yg, 0, 0, {{"x", x}}));
      EXPECT_TRUE(close("maxpool_bwd", tag, gx, gxg, 0, 0, {{"x", x}, {"gy", gy}}));
    }
}

// Ties: the CPU (and PyTorch) route a window's gradient to its FIRST maximum in scan order.
// cuDNN does not document its rule; this records whether it agrees.
TEST(Parity, MaxPoolTies) {
  REQUIRE_CUDA();
  Devices dv;
  std::mt19937 rng(6);
  const Dims s = {2, 3, 6, 6, 6};
  Tensor x = int_tensor(shape_of(s), rng, 0, 1);  // many ties
  const Shape ys = {2, 3, 3, 3, 3};
  Tensor gy = int_tensor(ys, rng, 1, 3);
  Tensor y = Tensor::empty(ys), gx = Tensor::empty(x.shape());
  maxpool3d_forward(dv.cpu, x, y);
  maxpool3d_backward(dv.cpu, x, y, gy, gx);
  Tensor xg = x.to(Device::CUDA), yg = Tensor::empty(ys, DType::F32, Device::CUDA);
  Tensor gxg = Tensor::empty(x.shape(), DType::F32, Device::CUDA);
  maxpool3d_forward(dv.gpu, xg, yg);
  maxpool3d_backward(dv.gpu, xg, yg, gy.to(Device::CUDA), gxg);
  EXPECT_TRUE(close("maxpool_ties_fwd", dims_str(s), y, yg, 0, 0, {{"x", x}}));
  EXPECT_TRUE(close("maxpool_ties_bwd", dims_str(s), gx, gxg, 0, 0, {{"x", x}, {"gy", gy}}))
      << "cuDNN's max-pool tie rule differs from the first-maximum rule";
}

// --------------------------------------------------------------------------- upsample

TEST(Parity, Upsample2x) {
  REQUIRE_CUDA();
  Devices dv;
  std::mt19937 rng(7);
  for (const Dims& s : kUpShapes)
    for (int strided = 0; strided < 2; ++strided) {
      const std::string tag = dims_str(s) + (strided ? "_strided" : "");
      const Shape ys = {s.n, s.c, 2 * s.d, 2 * s.h, 2 * s.w};
      Tensor x = int_tensor(shape_of(s), rng), gy = int_tensor(ys, rng);
      Tensor y = Tensor::empty(ys), gx = Tensor::empty(x.shape());
      upsample2x_forward(dv.cpu, x, y);
      upsample2x_backward(dv.cpu, gy, gx);
      Tensor yg = place(Tensor::empty(ys), Device::CUDA, strided);
      Tensor gxg = place(Tensor::empty(x.shape()), Device::CUDA, strided);
      upsample2x_forward(dv.gpu, place(x, Device::CUDA, strided), yg);
      upsample2x_backward(dv.gpu, place(gy, Device::CUDA, strided), gxg);
      EXPECT_TRUE(close("upsample_fwd", tag, y, yg, 0, 0, {{"x", x}}));
      EXPECT_TRUE(close("upsample_bwd", tag, gx, gxg, 0, 0, {{"gy", gy}}));
    }
}

// --------------------------------------------------------------------------- cross-entropy

TEST(Parity, WeightedCrossEntropy) {
  REQUIRE_CUDA();
  Devices dv;
  std::mt19937 rng(8);
  const std::vector<Dims> shapes = {
      {1, 3, 1, 1, 1}, {2, 3, 5, 7, 3}, {1, 2, 17, 1, 9}, {2, 5, 16, 16, 17}, {2, 3, 96, 96, 96}};
  for (const Dims& s : shapes) {
    const std::string tag = dims_str(s);
    Tensor logits = float_tensor(shape_of(s), rng, -4.f, 4.f);
    Tensor labels = Tensor::empty({s.n, s.d, s.h, s.w}, DType::U8);
    std::uniform_int_distribution<int> lab(0, s.c - 1);
    for (int64_t i = 0; i < labels.numel(); ++i) labels.data<uint8_t>()[i] = uint8_t(lab(rng));
    std::vector<float> wts(size_t(s.c));
    for (int k = 0; k < s.c; ++k) wts[size_t(k)] = 1.f + float(k % 3);  // (1, 2, 3, ...)
    Tensor g = Tensor::empty(logits.shape());
    const double l = weighted_cross_entropy(dv.cpu, logits, labels, wts, g);
    Tensor gg = Tensor::empty(logits.shape(), DType::F32, Device::CUDA);
    const double lg =
        weighted_cross_entropy(dv.gpu, logits.to(Device::CUDA), labels.to(Device::CUDA), wts, gg);
    EXPECT_NEAR(lg, l, 1e-6 * std::fabs(l)) << "loss " << tag;
    float gmax = 0;
    for (int64_t i = 0; i < g.numel(); ++i) gmax = std::max(gmax, std::fabs(g.f32()[i]));
    EXPECT_TRUE(close("ce_grad", tag, g, gg, 1e-6 * gmax, 1e-5, {{"logits", logits}}));
    // Loss only (no gradient) gives the same value.
    const double lg2 = weighted_cross_entropy(dv.gpu, logits.to(Device::CUDA),
                                              labels.to(Device::CUDA), wts, Tensor());
    EXPECT_EQ(lg2, lg) << "loss-only pass differs " << tag;
    // argmax: exact.
    Tensor am = Tensor::empty(labels.shape(), DType::U8);
    Tensor amg = Tensor::empty(labels.shape(), DType::U8, Device::CUDA);
    argmax_channels(dv.cpu, logits, am);
    argmax_channels(dv.gpu, logits.to(Device::CUDA), amg);
    Tensor amh = amg.to(Device::CPU);
    int64_t diff = 0;
    for (int64_t i = 0; i < am.numel(); ++i)
      diff += am.data<uint8_t>()[i] != amh.data<uint8_t>()[i];
    EXPECT_EQ(diff, 0) << "argmax " << tag;
  }
}

TEST(Parity, CrossEntropyRejectsBadLabel) {
  REQUIRE_CUDA();
  Devices dv;
  Tensor logits = Tensor::zeros({1, 3, 2, 2, 2}, DType::F32, Device::CUDA);
  Tensor labels = Tensor::zeros({1, 2, 2, 2}, DType::U8);
  labels.data<uint8_t>()[5] = 7;
  EXPECT_THROW(weighted_cross_entropy(dv.gpu, logits, labels.to(Device::CUDA), {1, 1, 3}, Tensor()),
               Error);
}

// --------------------------------------------------------------------------- Adam

TEST(Parity, AdamMultiTensor) {
  REQUIRE_CUDA();
  Devices dv;
  std::mt19937 rng(9);
  // 60 tensors (more than one launch's worth), sizes from 1 to ~50k.
  std::vector<Param> pc(60), pg(60);
  for (size_t i = 0; i < pc.size(); ++i) {
    const int64_t n = i % 7 == 0 ? 1 : int64_t(1 + (i * 7919) % 50000);
    pc[i].name = pg[i].name = "p" + std::to_string(i);
    pc[i].value = float_tensor({n}, rng);
    pc[i].grad = float_tensor({n}, rng, -1e-2f, 1e-2f);
    pg[i].value = pc[i].value.to(Device::CUDA);
    pg[i].grad = pc[i].grad.to(Device::CUDA);
  }
  std::vector<Param*> qc, qg;
  for (size_t i = 0; i < pc.size(); ++i) {
    qc.push_back(&pc[i]);
    qg.push_back(&pg[i]);
  }
  AdamConfig cfg;
  cfg.lr = 1e-2f;
  Adam oc(qc, cfg), og(qg, cfg);
  for (int step = 0; step < 3; ++step) {
    oc.step(dv.cpu);
    og.step(dv.gpu);
  }
  for (size_t i = 0; i < pc.size(); ++i) {
    const std::string tag = pc[i].name + "_n" + std::to_string(pc[i].value.numel());
    EXPECT_TRUE(close("adam_p", tag, pc[i].value, pg[i].value, 1e-7, 1e-5));
    EXPECT_TRUE(close("adam_m", tag, oc.exp_avg()[i], og.exp_avg()[i], 1e-9, 1e-5));
    EXPECT_TRUE(close("adam_v", tag, oc.exp_avg_sq()[i], og.exp_avg_sq()[i], 1e-12, 1e-5));
  }
}

// --------------------------------------------------------------------------- data kernels
// These call the launchers directly on the legacy default stream (nullptr), which is
// ordered with the synchronous copies that bring results back.

#if CUSEG_HAVE_CUDA
TEST(Parity, CropOrPad) {
  REQUIRE_CUDA();
  std::mt19937 rng(10);
  struct Case {
    Dims in;
    int d, h, w;
  };
  const std::vector<Case> cases = {
      {{1, 1, 1, 1, 1}, 3, 1, 2},        {{1, 1, 5, 6, 7}, 5, 6, 7},
      {{2, 3, 7, 4, 9}, 4, 8, 9},        {{1, 2, 10, 11, 1}, 3, 16, 2},
      {{1, 1, 96, 96, 96}, 80, 101, 96}, {{1, 1, 37, 40, 20}, 36, 41, 21},
  };
  for (const Case& cs : cases) {
    const std::string tag = dims_str(cs.in) + "_to_" + std::to_string(cs.d) + "x" +
                            std::to_string(cs.h) + "x" + std::to_string(cs.w);
    Tensor in = int_tensor(shape_of(cs.in), rng);
    const Shape os = {cs.in.n, cs.in.c, cs.d, cs.h, cs.w};
    Tensor out = Tensor::empty(os);
    const CropOrPadParams p = crop_or_pad_params(in.vol(), out.vol(), -5.f);
    crop_or_pad_cpu(in.vol(), out.vol(), p);
    Tensor ing = in.to(Device::CUDA), outg = Tensor::empty(os, DType::F32, Device::CUDA);
    crop_or_pad_cuda(ing.vol(), outg.vol(), p, nullptr);
    EXPECT_TRUE(close("crop_or_pad", tag, out, outg, 0, 0, {{"in", in}}));
  }
}

TEST(Parity, GridAggregate) {
  REQUIRE_CUDA();
  std::mt19937 rng(11);
  struct Case {
    int C, D, H, W, pd, ph, pw, overlap;
  };
  const std::vector<Case> cases = {
      {3, 20, 17, 9, 8, 8, 5, 2},
      {2, 11, 11, 11, 11, 11, 11, 0},
      {1, 30, 7, 1, 12, 7, 1, 4},
      {3, 40, 36, 36, 16, 16, 16, 4},
  };
  for (const Case& cs : cases)
    for (AggregateMode mode : {AggregateMode::Crop, AggregateMode::Average, AggregateMode::Hann}) {
      // Grid starts as torchio: range(0, size - patch + 1, patch - overlap) + (size - patch).
      auto starts_1d = [&](int size, int patch) {
        std::vector<int> v;
        for (int s = 0; s <= size - patch; s += std::max(1, patch - cs.overlap)) v.push_back(s);
        if (v.back() != size - patch) v.push_back(size - patch);
        return v;
      };
      std::vector<int> starts;
      for (int z : starts_1d(cs.D, cs.pd))
        for (int y : starts_1d(cs.H, cs.ph))
          for (int x : starts_1d(cs.W, cs.pw)) starts.insert(starts.end(), {z, y, x});
      const int np = int(starts.size() / 3);
      Tensor patches = int_tensor({np, cs.C, cs.pd, cs.ph, cs.pw}, rng);
      GridAggregateParams p;
      p.mode = mode;
      p.overlap_d = p.overlap_h = p.overlap_w = cs.overlap;
      Tensor sum = Tensor::zeros({1, cs.C, cs.D, cs.H, cs.W}),
             wt = Tensor::zeros({1, 1, cs.D, cs.H, cs.W});
      // Two calls (batches) as inference does: first half, then the rest.
      const int half = np / 2;
      auto sub = [&](const Tensor& t, int a, int b) {  // patches [a, b) as a contiguous tensor
        Shape s = t.shape();
        s[0] = b - a;
        Tensor o = Tensor::empty(s);
        const int64_t per = t.numel() / t.dim(0);
        std::copy(t.f32() + a * per, t.f32() + b * per, o.f32());
        return o;
      };
      Tensor pa = sub(patches, 0, half), pb = sub(patches, half, np);
      if (half > 0) grid_aggregate_cpu(pa.vol(), starts.data(), sum.vol(), wt.vol(), p);
      grid_aggregate_cpu(pb.vol(), starts.data() + 3 * half, sum.vol(), wt.vol(), p);
      Tensor out = Tensor::empty(sum.shape());
      grid_aggregate_finalize_cpu(sum.vol(), wt.vol(), out.vol());

      Tensor st = Tensor::empty({int64_t(starts.size())}, DType::I32);
      std::copy(starts.begin(), starts.end(), st.data<int32_t>());
      Tensor stg = st.to(Device::CUDA);
      Tensor sumg = Tensor::zeros(sum.shape(), DType::F32, Device::CUDA);
      Tensor wtg = Tensor::zeros(wt.shape(), DType::F32, Device::CUDA);
      // Device copies kept alive until the results are read back (launches are async).
      Tensor pag = half > 0 ? pa.to(Device::CUDA) : Tensor(), pbg = pb.to(Device::CUDA);
      if (half > 0)
        grid_aggregate_cuda(pag.vol(), stg.data<int32_t>(), sumg.vol(), wtg.vol(), p, nullptr);
      grid_aggregate_cuda(pbg.vol(), stg.data<int32_t>() + 3 * half, sumg.vol(), wtg.vol(), p,
                          nullptr);
      Tensor outg = Tensor::empty(sum.shape(), DType::F32, Device::CUDA);
      grid_aggregate_finalize_cuda(sumg.vol(), wtg.vol(), outg.vol(), nullptr);
      const char* mname = mode == AggregateMode::Crop      ? "crop"
                          : mode == AggregateMode::Average ? "average"
                                                           : "hann";
      const std::string tag =
          std::string(mname) + "_" + std::to_string(cs.C) + "x" + std::to_string(cs.D) + "x" +
          std::to_string(cs.H) + "x" + std::to_string(cs.W) + "_p" + std::to_string(cs.pd) + "x" +
          std::to_string(cs.ph) + "x" + std::to_string(cs.pw) + "_o" + std::to_string(cs.overlap);
      const double rtol = mode == AggregateMode::Hann ? 1e-6 : 0;
      EXPECT_TRUE(close("grid_sum", tag, sum, sumg, 0, rtol, {{"patches", patches}}));
      EXPECT_TRUE(close("grid_weight", tag, wt, wtg, 0, rtol));
      EXPECT_TRUE(close("grid_out", tag, out, outg, 0, 2 * rtol));
    }
}

TEST(Parity, RescaleIntensity) {
  REQUIRE_CUDA();
  std::mt19937 rng(12);
  for (int64_t n :
       {int64_t(1), int64_t(1000), int64_t(96) * 96 * 96, int64_t(256) * 256 * 200 + 3}) {
    Tensor in = float_tensor({n}, rng, -1024.f, 3071.f);
    const float* h = in.f32();
    const auto mm = std::minmax_element(h, h + n);
    Tensor ing = in.to(Device::CUDA);
    float mn = 0, mx = 0;
    Tensor ws = Tensor::empty({int64_t(minmax_workspace_bytes())}, DType::U8, Device::CUDA);
    minmax_cuda(ing.f32(), n, &mn, &mx, ws.raw(), ws.nbytes(), nullptr);
    EXPECT_EQ(mn, *mm.first) << "min n=" << n;
    EXPECT_EQ(mx, *mm.second) << "max n=" << n;
    RescaleParams p;
    p.in_min = -200.f;
    p.in_max = 300.f;  // clips part of the range
    Tensor out = Tensor::empty({n}), outg = Tensor::empty({n}, DType::F32, Device::CUDA);
    rescale_intensity_cpu(in.f32(), out.f32(), n, p);
    rescale_intensity_cuda(ing.f32(), outg.f32(), n, p, nullptr);
    EXPECT_TRUE(close("rescale", "n" + std::to_string(n), out, outg, 2.5e-7, 0, {{"in", in}}));
  }
}

TEST(Parity, LabelHistogram) {
  REQUIRE_CUDA();
  std::mt19937 rng(13);
  for (int64_t n : {int64_t(1), int64_t(4097), int64_t(2) * 96 * 96 * 96}) {
    Tensor lab = Tensor::empty({n}, DType::U8);
    std::uniform_int_distribution<int> u(0, 2);
    for (int64_t i = 0; i < n; ++i) lab.data<uint8_t>()[i] = uint8_t(u(rng));
    int64_t c0[3], c1[3];
    int bad0 = -1, bad1 = -1;
    ASSERT_TRUE(label_histogram_cpu(lab.data<uint8_t>(), n, 3, c0, &bad0));
    Tensor ws = Tensor::empty({int64_t(kLabelHistogramWorkspaceBytes)}, DType::U8, Device::CUDA);
    ASSERT_TRUE(label_histogram_cuda(lab.to(Device::CUDA).data<uint8_t>(), n, 3, c1, &bad1,
                                     ws.raw(), ws.nbytes(), nullptr));
    for (int k = 0; k < 3; ++k) EXPECT_EQ(c0[k], c1[k]) << "class " << k << " n=" << n;
  }
}
#endif  // CUSEG_HAVE_CUDA

}  // namespace
