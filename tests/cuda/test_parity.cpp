// Parity harness: every CUDA op of the backend table against the CPU backend on the same
// inputs, forward and backward. The problems and tolerances are the op case lists of
// tests/opcases/op_cases.h (every case marked kParity; odd and size-1 extents, awkward medical
// sizes, the 96^3 training patch for the cheap ops); each tolerance's reason is stated there
// and printed with a failure. Each op runs packed and, where the U-Net uses views, as a
// batch-strided channel slice of a wider tensor.
//
// Inputs: small integers (|x| <= 3, |w| <= 2) or distinct multiples of 1/64 wherever the
// tolerance is exact; random floats for cross-entropy, Adam and rescale.
// The exact conv tolerance holds for algorithms that sum products in any order; FFT and
// Winograd algorithms are not candidates in fp32 (engine/conv_algo.h), and the conv tests
// assert from the context's record that every algorithm that ran sums products (and print
// which ran, for the GPU kit's record).
// On failure the inputs and both outputs are dumped to parity_<op>_<shape>.bin in the working
// directory (format in dump() below; at most kDumpMaxBytes, a window around the first
// mismatch for larger tensors) and the file name is printed.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "cuseg/core/check.h"
#include "cuseg/engine/backend_ops.h"
#include "cuseg/engine/context.h"
#include "cuseg/engine/conv_algo.h"
#include "cuseg/engine/memory.h"
#include "cuseg/engine/ops.h"
#include "cuseg/engine/optim.h"
#include "cuseg/engine/tensor.h"
#include "opcases/op_cases.h"
#include "test_util.h"

using namespace cuseg;
using namespace cuseg::opcases;

namespace {

// Small integers in [lo, hi].
Tensor int_tensor(const Shape& s, std::mt19937& rng, int lo = -3, int hi = 3) {
  Tensor t = Tensor::empty(s);
  std::uniform_int_distribution<int> u(lo, hi);
  for (int64_t i = 0; i < t.numel(); ++i) t.f32()[i] = float(u(rng));
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

Tensor labels_tensor(const Dims& s, std::mt19937& rng) {
  Tensor labels = Tensor::empty({s.n, s.d, s.h, s.w}, DType::U8);
  std::uniform_int_distribution<int> lab(0, s.c - 1);
  for (int64_t i = 0; i < labels.numel(); ++i) labels.data<uint8_t>()[i] = uint8_t(lab(rng));
  return labels;
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

// A dump holds at most this many bytes of tensor data (the GPU kit brings dumps back
// through a size-limited channel; a 2x3x96^3 cross-entropy case would otherwise write 63 MB).
constexpr size_t kDumpMaxBytes = size_t(2) << 20;

// Writes a dump: "CUSEG_PARITY_DUMP v2", then for each tensor a line
// "name dtype ndim d0 .. dn-1 range lo hi" and the raw data of flat elements [lo, hi).
// Small dumps hold whole tensors (lo 0, hi numel); larger ones a window of elements around
// `around` (the first mismatch) in tensors with `around_numel` elements, a prefix of others.
std::string dump(const std::string& op, const std::string& shape,
                 const std::vector<std::pair<std::string, Tensor>>& ts, int64_t around,
                 int64_t around_numel) {
  const std::string path = "parity_" + op + "_" + shape + ".bin";
  std::ofstream f(path, std::ios::binary);
  f << "CUSEG_PARITY_DUMP v2\n";
  size_t total = 0;
  for (const auto& kv : ts) total += kv.second.nbytes();
  const size_t per = ts.empty() ? 0 : kDumpMaxBytes / ts.size();
  for (const auto& [name, t0] : ts) {
    Tensor t = to_cpu(t0);
    const int64_t n = t.numel(), es = int64_t(dtype_size(t.dtype()));
    int64_t lo = 0, hi = n;
    if (total > kDumpMaxBytes && size_t(n * es) > per) {
      const int64_t keep = int64_t(per) / es;
      lo = n == around_numel ? std::clamp<int64_t>(around - keep / 2, 0, n - keep) : 0;
      hi = lo + keep;
    }
    f << name << " " << dtype_name(t.dtype()) << " " << t.ndim();
    for (int i = 0; i < t.ndim(); ++i) f << " " << t.dim(i);
    f << " range " << lo << " " << hi << "\n";
    f.write(static_cast<const char*>(t.raw()) + lo * es, std::streamsize((hi - lo) * es));
    f << "\n";
  }
  return path;
}

// |got - ref| <= atol + rtol * |ref| everywhere (tol.atol_for(max |ref|) when the atol is
// relative to the tensor's largest value; NaN fails, unless nan_equal and both are NaN); on
// failure dumps `inputs` + both outputs.
::testing::AssertionResult close(const std::string& op, const std::string& shape,
                                 const Tensor& ref0, const Tensor& got0, const Tolerance& tol,
                                 const std::vector<std::pair<std::string, Tensor>>& inputs = {},
                                 bool nan_equal = false) {
  const Tensor ref = to_cpu(ref0), got = to_cpu(got0);
  if (ref.shape() != got.shape())
    return ::testing::AssertionFailure()
           << op << " " << shape << ": shapes " << shape_str(ref.shape()) << " vs "
           << shape_str(got.shape());
  double max_ref = 0;
  for (int64_t i = 0; i < ref.numel(); ++i)
    if (!std::isnan(ref.f32()[i])) max_ref = std::max(max_ref, double(std::fabs(ref.f32()[i])));
  const double atol = tol.atol_for(max_ref), rtol = tol.rtol;
  int64_t bad = 0, first = -1;
  for (int64_t i = 0; i < ref.numel(); ++i) {
    const double r = ref.f32()[i], g = got.f32()[i];
    if (nan_equal && std::isnan(r) && std::isnan(g)) continue;
    const double err = std::fabs(r - g), budget = atol + rtol * std::fabs(r);
    if (!(err <= budget)) {  // NaN fails
      if (first < 0) first = i;
      ++bad;
    }
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  std::vector<std::pair<std::string, Tensor>> all = inputs;
  all.emplace_back("cpu", ref);
  all.emplace_back("cuda", got);
  const std::string path = dump(op, shape, all, first, ref.numel());
  return ::testing::AssertionFailure()
         << op << " " << shape << ": " << bad << " of " << ref.numel()
         << " elements differ; first at " << first << ": cpu " << ref.f32()[first] << " cuda "
         << got.f32()[first] << " (atol " << atol << ", rtol " << rtol << ": " << tol.why
         << "); dumped to " << path;
}

int64_t count_differences_u8(const Tensor& a0, const Tensor& b0) {
  const Tensor a = to_cpu(a0), b = to_cpu(b0);
  int64_t diff = 0;
  for (int64_t i = 0; i < a.numel(); ++i) diff += a.data<uint8_t>()[i] != b.data<uint8_t>()[i];
  return diff;
}

struct Devices {
  Context cpu{Device::CPU};
  Context gpu{Device::CUDA};
};

// Every convolution algorithm the context ran sums products (the exact conv tolerance
// depends on it); the list is printed for the GPU kit's record.
void expect_exact_conv_algorithms(Context& gpu) {
  for (const ConvAlgoUse& u : conv_algorithms_used(gpu)) {
    std::printf("cuseg-conv-algo: %s %s: plain %s%s, fused %s\n", conv_dir_name(u.dir),
                u.problem.c_str(), u.plain.empty() ? "-" : u.plain.c_str(),
                u.plain_deterministic ? "" : " (non-deterministic)",
                u.fused.empty() ? "-" : u.fused.c_str());
    EXPECT_TRUE(u.sums_products) << conv_dir_name(u.dir) << " " << u.problem << " ran " << u.plain
                                 << " / " << u.fused;
  }
}

std::string tag_of(const VolCase& c) {
  return c.label + "_" + c.x.str();
}

}  // namespace

// --------------------------------------------------------------------------- conv3d

TEST(Parity, Conv3dForward) {
  CUSEG_REQUIRE_CUDA();
  Devices dv;
  std::mt19937 rng(1);
  const ConvSpec& spec = conv3d();
  for (const ConvCase& cc : with_use(spec.cases, kParity))
    for (int variant = 0; variant < 4; ++variant) {
      const bool relu = variant & 1, strided = variant & 2;
      const std::string tag = cc.name() + (relu ? "_relu" : "") + (strided ? "_strided" : "");
      Tensor x = int_tensor(cc.x.shape(), rng);
      Tensor w = int_tensor(cc.w_shape(), rng, -2, 2);
      Tensor b = int_tensor({cc.cout}, rng);
      Tensor y = Tensor::empty(cc.y_shape());
      conv3d_forward(dv.cpu, x, w, b, y, relu);
      Tensor xg = place(x, Device::CUDA, strided), wg = w.to(Device::CUDA), bg = b.to(Device::CUDA);
      // y starts as NaN: with beta = 0 (and alpha2 = 0 for the fused z = y) cuDNN must not
      // read the output, as fresh pool memory may hold anything.
      Tensor yg = place(Tensor::empty(y.shape()), Device::CUDA, strided);
      yg.fill(std::nanf(""));
      conv3d_forward(dv.gpu, xg, wg, bg, yg, relu);
      EXPECT_TRUE(close("conv3d_fwd", tag, y, yg, spec.parity, {{"x", x}, {"w", w}, {"b", b}}));
    }
  expect_exact_conv_algorithms(dv.gpu);
}

// Does the fused conv + bias + ReLU (z aliased to y, alpha2 = 0) read y? Its output here is
// fresh device memory that nothing has written (the pool's cache is emptied first, so the
// buffer comes from a new cudaMalloc): compute-sanitizer's initcheck (scripts/device) reports
// any read of it. The cuDNN workspace is zeroed when it grows (engine/cuda/cudnn_cache.h), so
// cuDNN's own scratch raises no report. Without a sanitizer this is a plain parity check.
TEST(Parity, Conv3dFusedOutputUnread) {
  CUSEG_REQUIRE_CUDA();
  Devices dv;
  std::mt19937 rng(15);
  const ConvSpec& spec = conv3d();
  const std::vector<ConvCase> cases = with_use(spec.cases, kFusedUnread);
  ASSERT_FALSE(cases.empty());
  for (const ConvCase& cc : cases) {
    const std::string tag = cc.name();
    Tensor x = int_tensor(cc.x.shape(), rng);
    Tensor w = int_tensor(cc.w_shape(), rng, -2, 2);
    Tensor b = int_tensor({cc.cout}, rng);
    Tensor y = Tensor::empty(cc.y_shape());
    conv3d_forward(dv.cpu, x, w, b, y, true);
    Tensor xg = x.to(Device::CUDA), wg = w.to(Device::CUDA), bg = b.to(Device::CUDA);
    dv.gpu.synchronize();
    memory_pool(Device::CUDA).release_cached();
    Tensor yg = Tensor::empty(y.shape(), DType::F32, Device::CUDA);
    conv3d_forward(dv.gpu, xg, wg, bg, yg, true);
    EXPECT_TRUE(close("conv3d_fused", tag, y, yg, spec.parity, {{"x", x}, {"w", w}, {"b", b}}));
  }
  int fused = 0;
  for (const ConvAlgoUse& u : conv_algorithms_used(dv.gpu))
    if (!u.fused.empty() && u.fused != "refused") ++fused;
  expect_exact_conv_algorithms(dv.gpu);
  if (fused == 0)
    GTEST_SKIP() << "cuDNN refused the fused conv on every shape: initcheck has nothing to check";
  std::printf("cuseg-fused-conv: %d of %zu problems ran fused\n", fused, cases.size());
}

TEST(Parity, Conv3dBackward) {
  CUSEG_REQUIRE_CUDA();
  Devices dv;
  std::mt19937 rng(2);
  const ConvSpec& spec = conv3d();
  for (const ConvCase& cc : with_use(spec.cases, kParity))
    for (int strided = 0; strided < 2; ++strided) {
      const std::string tag = cc.name() + (strided ? "_strided" : "");
      Tensor x = int_tensor(cc.x.shape(), rng);
      Tensor w = int_tensor(cc.w_shape(), rng, -2, 2);
      Tensor gy = int_tensor(cc.y_shape(), rng);
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
      EXPECT_TRUE(close("conv3d_bwd_gx", tag, gx, gxg, spec.parity, in));
      EXPECT_TRUE(close("conv3d_bwd_gw", tag, gw, gwg, spec.parity, in));
      EXPECT_TRUE(close("conv3d_bwd_gb", tag, gb, gbg, spec.parity, in));
    }
  expect_exact_conv_algorithms(dv.gpu);
}

// The algorithm cache: a second call with the same problem reuses the choice and gives the
// same bits (deterministic algorithms).
TEST(Parity, Conv3dBackwardDeterministic) {
  CUSEG_REQUIRE_CUDA();
  Devices dv;
  std::mt19937 rng(3);
  const Tolerance same_bits{0, 0, false, "the same deterministic algorithm on the same inputs"};
  for (const ConvCase& cc : with_use(conv3d().cases, kRepeat)) {
    const std::string tag = cc.name();
    Tensor x = uniform_tensor(cc.x.shape(), rng), w = uniform_tensor(cc.w_shape(), rng);
    Tensor gy = uniform_tensor(cc.y_shape(), rng);
    Tensor xg = x.to(Device::CUDA), wg = w.to(Device::CUDA), gyg = gy.to(Device::CUDA);
    Tensor gx[2], gw[2], gb[2];
    for (int r = 0; r < 2; ++r) {
      gx[r] = Tensor::empty(x.shape(), DType::F32, Device::CUDA);
      gw[r] = Tensor::zeros(w.shape(), DType::F32, Device::CUDA);
      gb[r] = Tensor::zeros({cc.cout}, DType::F32, Device::CUDA);
      conv3d_backward(dv.gpu, xg, wg, gyg, gx[r], gw[r], gb[r]);
    }
    EXPECT_TRUE(close("conv3d_bwd_repeat_gx", tag, gx[0], gx[1], same_bits));
    EXPECT_TRUE(close("conv3d_bwd_repeat_gw", tag, gw[0], gw[1], same_bits));
    EXPECT_TRUE(close("conv3d_bwd_repeat_gb", tag, gb[0], gb[1], same_bits));
  }
}

// --------------------------------------------------------------------------- element-wise

TEST(Parity, ReluAdd) {
  CUSEG_REQUIRE_CUDA();
  Devices dv;
  std::mt19937 rng(4);
  const ElementwiseSpec& spec = elementwise();
  for (const VolCase& vc : with_use(spec.cases, kParity))
    for (int strided = 0; strided < 2; ++strided) {
      const std::string tag = tag_of(vc) + (strided ? "_strided" : "");
      Tensor a = int_tensor(vc.x.shape(), rng), g = int_tensor(vc.x.shape(), rng);
      Tensor ag = place(a, Device::CUDA, strided), gg = place(g, Device::CUDA, strided);
      Tensor ac = a.clone(), gc = g.clone();
      relu_forward(dv.cpu, ac);
      relu_forward(dv.gpu, ag);
      EXPECT_TRUE(close("relu_fwd", tag, ac, ag, spec.parity, {{"x", a}}));
      relu_backward(dv.cpu, ac, gc);
      relu_backward(dv.gpu, ag, gg);
      EXPECT_TRUE(close("relu_bwd", tag, gc, gg, spec.parity, {{"y", ac}, {"g", g}}));
      add_inplace(dv.cpu, ac, gc);
      add_inplace(dv.gpu, ag, gg);
      EXPECT_TRUE(close("add", tag, ac, ag, spec.parity));
    }
}

TEST(Parity, BiasRelu) {
  // The conv epilogue the CUDA path uses when cuDNN refuses the fused conv + bias + ReLU.
  CUSEG_REQUIRE_CUDA();
  Devices dv;
  std::mt19937 rng(14);
  const ElementwiseSpec& spec = elementwise();
  for (const VolCase& vc : with_use(spec.cases, kParity))
    for (int variant = 0; variant < 3; ++variant) {  // bias + ReLU, bias only, ReLU only
      const bool relu = variant != 1, with_bias = variant != 2;
      const std::string tag = tag_of(vc) + "_v" + std::to_string(variant);
      Tensor y = int_tensor(vc.x.shape(), rng), b = int_tensor({vc.x.c}, rng);
      Tensor yg = place(y, Device::CUDA, true), bg = b.to(Device::CUDA);
      Tensor yc = y.clone();
      bias_relu_forward(dv.cpu, yc, with_bias ? b : Tensor(), relu);
      bias_relu_forward(dv.gpu, yg, with_bias ? bg : Tensor(), relu);
      EXPECT_TRUE(close("bias_relu", tag, yc, yg, spec.parity, {{"y", y}, {"b", b}}));
    }
}

// --------------------------------------------------------------------------- max pooling

TEST(Parity, MaxPool) {
  CUSEG_REQUIRE_CUDA();
  Devices dv;
  std::mt19937 rng(5);
  const PoolSpec& spec = maxpool3d();
  for (const VolCase& vc : with_use(spec.cases, kParity))
    for (int variant = 0; variant < 3; ++variant) {
      // 0: all packed; 1: all strided; 2: the U-Net's layout, x and y strided (x a concat
      // slice) but gy / gx packed (cudnnPoolingBackward needs equal x / dx strides).
      const bool strided = variant != 0, grads_strided = variant == 1;
      const std::string tag = tag_of(vc) + (variant == 1   ? "_strided"
                                            : variant == 2 ? "_mixed"
                                                           : "");
      const Shape ys = PoolSpec::y_shape(vc.x);
      Tensor x = distinct_tensor(vc.x.shape(), rng), gy = int_tensor(ys, rng);
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
      EXPECT_TRUE(close("maxpool_fwd", tag, y, yg, spec.parity, {{"x", x}}));
      EXPECT_TRUE(close("maxpool_bwd", tag, gx, gxg, spec.parity, {{"x", x}, {"gy", gy}}));
    }
}

// Ties: the CPU (and PyTorch) route a window's gradient to its FIRST maximum in scan order.
// cuDNN does not document its rule; this records whether it agrees.
TEST(Parity, MaxPoolTies) {
  CUSEG_REQUIRE_CUDA();
  Devices dv;
  std::mt19937 rng(6);
  const PoolSpec& spec = maxpool3d();
  for (const VolCase& vc : with_use(spec.cases, kTies)) {
    Tensor x = int_tensor(vc.x.shape(), rng, 0, 1);  // many ties
    const Shape ys = PoolSpec::y_shape(vc.x);
    Tensor gy = int_tensor(ys, rng, 1, 3);
    Tensor y = Tensor::empty(ys), gx = Tensor::empty(x.shape());
    maxpool3d_forward(dv.cpu, x, y);
    maxpool3d_backward(dv.cpu, x, y, gy, gx);
    Tensor xg = x.to(Device::CUDA), yg = Tensor::empty(ys, DType::F32, Device::CUDA);
    Tensor gxg = Tensor::empty(x.shape(), DType::F32, Device::CUDA);
    maxpool3d_forward(dv.gpu, xg, yg);
    maxpool3d_backward(dv.gpu, xg, yg, gy.to(Device::CUDA), gxg);
    EXPECT_TRUE(close("maxpool_ties_fwd", tag_of(vc), y, yg, spec.parity, {{"x", x}}));
    EXPECT_TRUE(close("maxpool_ties_bwd", tag_of(vc), gx, gxg, spec.parity, {{"x", x}, {"gy", gy}}))
        << "cuDNN's max-pool tie rule differs from the first-maximum rule";
  }
}

// NaN propagates through max pooling on both sides (CPU: PyTorch's rule, kernels/maxpool3d.h;
// cuDNN: CUDNN_PROPAGATE_NAN): pooled values must agree exactly, NaN for NaN. Gradients agree
// exactly in windows without NaN. In a window holding a NaN the gradient's position is
// undocumented for cuDNN; the loss is NaN there anyway (the trainer stops on a non-finite
// loss), so the test records how many such windows place it as the CPU does instead of
// asserting it.
TEST(Parity, MaxPoolNaN) {
  CUSEG_REQUIRE_CUDA();
  Devices dv;
  std::mt19937 rng(16);
  const PoolSpec& spec = maxpool3d();
  for (const VolCase& vc : with_use(spec.cases, kNaN)) {
    const Dims& s = vc.x;
    Tensor x = distinct_tensor(s.shape(), rng);
    const int64_t plane = int64_t(s.h) * s.w;
    std::bernoulli_distribution pick(0.05);
    for (int64_t i = 0; i < x.numel(); ++i)
      if (pick(rng)) x.f32()[i] = std::nanf("");
    // One window entirely NaN and one with a leading NaN (batch 0, channel 0).
    for (int t = 0; t < 8; ++t)
      x.f32()[(t >> 2) * plane + ((t >> 1) & 1) * s.w + (t & 1)] = std::nanf("");
    x.f32()[2 * plane + 2] = std::nanf("");
    const Shape ys = PoolSpec::y_shape(s);
    Tensor gy = int_tensor(ys, rng, 1, 3);
    Tensor y = Tensor::empty(ys), gx = Tensor::empty(x.shape());
    maxpool3d_forward(dv.cpu, x, y);
    maxpool3d_backward(dv.cpu, x, y, gy, gx);
    Tensor xg = x.to(Device::CUDA), yg = Tensor::empty(ys, DType::F32, Device::CUDA);
    Tensor gxg = Tensor::empty(x.shape(), DType::F32, Device::CUDA);
    maxpool3d_forward(dv.gpu, xg, yg);
    maxpool3d_backward(dv.gpu, xg, yg, gy.to(Device::CUDA), gxg);
    EXPECT_TRUE(close("maxpool_nan_fwd", tag_of(vc), y, yg, spec.parity, {{"x", x}},
                      /*nan_equal=*/true));
    // Split the gradient comparison by window.
    Tensor gc = gx.clone(), gg = to_cpu(gxg);
    int64_t nan_windows = 0, same_place = 0;
    for (int64_t nc = 0; nc < int64_t(s.n) * s.c; ++nc)
      for (int z = 0; z < s.d / 2; ++z)
        for (int yy = 0; yy < s.h / 2; ++yy)
          for (int xx = 0; xx < s.w / 2; ++xx) {
            const int64_t base = nc * s.d * plane + lin3(2 * z, 2 * yy, 2 * xx, s.h, s.w);
            bool has_nan = false, same = true;
            for (int t = 0; t < 8; ++t) {
              const int64_t o = base + lin3(t >> 2, (t >> 1) & 1, t & 1, s.h, s.w);
              has_nan = has_nan || std::isnan(x.f32()[o]);
              same = same && gc.f32()[o] == gg.f32()[o];
            }
            if (!has_nan) continue;
            ++nan_windows;
            same_place += same;
            for (int t = 0; t < 8; ++t) {  // NaN windows stay out of the exact comparison
              const int64_t o = base + lin3(t >> 2, (t >> 1) & 1, t & 1, s.h, s.w);
              gc.f32()[o] = gg.f32()[o] = 0.f;
            }
          }
    EXPECT_GT(nan_windows, 2);
    EXPECT_TRUE(close("maxpool_nan_bwd", tag_of(vc), gc, gg, spec.parity, {{"x", x}, {"gy", gy}}));
    std::printf(
        "cuseg-maxpool-nan: %s: %lld windows hold a NaN; cuDNN places their gradient as "
        "the CPU (last NaN) in %lld\n",
        tag_of(vc).c_str(), (long long)nan_windows, (long long)same_place);
  }
}

// The backward zeroes gx before cuDNN writes it. When gx is a channel slice of a buffer whose
// batch pitch exceeds 2 GiB (cudaMemset2DAsync's pitch limit, cudaDevAttrMaxPitch), the
// zeroing must split rows instead of failing. Needs about 8.6 GB of device memory.
TEST(Parity, MaxPoolBackwardHugeBatchPitch) {
  CUSEG_REQUIRE_CUDA();
  Devices dv;
  std::mt19937 rng(17);
  const PoolSpec& spec = maxpool3d();
  // [2, C, 8, 8, 8] with C = 2^20 + 1: a batch element is 2^31 + 2048 bytes.
  const int64_t wide = (int64_t(1) << 20) + 1;
  const Shape buf_shape = {2, wide, 8, 8, 8};
  Tensor xbuf = Tensor::zeros(buf_shape, DType::F32, Device::CUDA);
  Tensor gxbuf = Tensor::zeros(buf_shape, DType::F32, Device::CUDA);
  Tensor xg = xbuf.channel_slice(1, 2), gxg = gxbuf.channel_slice(1, 2);
  ASSERT_GT(size_t(gxg.vol().sn) * sizeof(float), size_t(0x7fffffff));
  const Shape xs = {2, 1, 8, 8, 8}, ys = {2, 1, 4, 4, 4};
  Tensor x = distinct_tensor(xs, rng), gy = int_tensor(ys, rng);
  xg.copy_from(x);
  // Sentinels in the neighbouring channels: the zeroing must not touch them.
  Tensor sentinel = Tensor::empty(xs);
  sentinel.fill(7.f);
  gxbuf.channel_slice(0, 1).copy_from(sentinel);
  gxbuf.channel_slice(2, 3).copy_from(sentinel);
  gxg.copy_from(int_tensor(xs, rng));  // garbage to be overwritten
  Tensor y = Tensor::empty(ys), gx = Tensor::empty(xs);
  maxpool3d_forward(dv.cpu, x, y);
  maxpool3d_backward(dv.cpu, x, y, gy, gx);
  Tensor yg = Tensor::empty(ys, DType::F32, Device::CUDA);
  maxpool3d_forward(dv.gpu, xg, yg);
  maxpool3d_backward(dv.gpu, xg, yg, gy.to(Device::CUDA), gxg);
  EXPECT_TRUE(close("maxpool_hugepitch_bwd", "2x1x8x8x8", gx, gxg, spec.parity, {{"x", x}}));
  EXPECT_TRUE(
      close("maxpool_hugepitch_c0", "2x1x8x8x8", sentinel, gxbuf.channel_slice(0, 1), spec.parity));
  EXPECT_TRUE(
      close("maxpool_hugepitch_c2", "2x1x8x8x8", sentinel, gxbuf.channel_slice(2, 3), spec.parity));
}

// --------------------------------------------------------------------------- upsample

TEST(Parity, Upsample2x) {
  CUSEG_REQUIRE_CUDA();
  Devices dv;
  std::mt19937 rng(7);
  const UpsampleSpec& spec = upsample2x();
  for (const VolCase& vc : with_use(spec.cases, kParity))
    for (int strided = 0; strided < 2; ++strided) {
      const std::string tag = tag_of(vc) + (strided ? "_strided" : "");
      const Shape ys = UpsampleSpec::y_shape(vc.x);
      Tensor x = int_tensor(vc.x.shape(), rng), gy = int_tensor(ys, rng);
      Tensor y = Tensor::empty(ys), gx = Tensor::empty(x.shape());
      upsample2x_forward(dv.cpu, x, y);
      upsample2x_backward(dv.cpu, gy, gx);
      Tensor yg = place(Tensor::empty(ys), Device::CUDA, strided);
      Tensor gxg = place(Tensor::empty(x.shape()), Device::CUDA, strided);
      upsample2x_forward(dv.gpu, place(x, Device::CUDA, strided), yg);
      upsample2x_backward(dv.gpu, place(gy, Device::CUDA, strided), gxg);
      EXPECT_TRUE(close("upsample_fwd", tag, y, yg, spec.parity, {{"x", x}}));
      EXPECT_TRUE(close("upsample_bwd", tag, gx, gxg, spec.parity, {{"gy", gy}}));
    }
}

// --------------------------------------------------------------------------- loss head

TEST(Parity, WeightedCrossEntropy) {
  CUSEG_REQUIRE_CUDA();
  Devices dv;
  std::mt19937 rng(8);
  const LogitsSpec& spec = logits();
  for (const VolCase& vc : with_use(spec.cases, kParity)) {
    const std::string tag = tag_of(vc);
    Tensor logits = uniform_tensor(vc.x.shape(), rng, -4.f, 4.f);
    Tensor labels = labels_tensor(vc.x, rng);
    const std::vector<float> wts = LogitsSpec::parity_weights(vc.x.c);
    Tensor g = Tensor::empty(logits.shape());
    const double l = weighted_cross_entropy(dv.cpu, logits, labels, wts, g);
    Tensor gg = Tensor::empty(logits.shape(), DType::F32, Device::CUDA);
    const double lg =
        weighted_cross_entropy(dv.gpu, logits.to(Device::CUDA), labels.to(Device::CUDA), wts, gg);
    EXPECT_NEAR(lg, l, spec.parity_loss.rtol * std::fabs(l))
        << "loss " << tag << " (" << spec.parity_loss.why << ")";
    EXPECT_TRUE(close("ce_grad", tag, g, gg, spec.parity_grad, {{"logits", logits}}));
    // Loss only (no gradient) gives the same value.
    const double lg2 = weighted_cross_entropy(dv.gpu, logits.to(Device::CUDA),
                                              labels.to(Device::CUDA), wts, Tensor());
    EXPECT_EQ(lg2, lg) << "loss-only pass differs " << tag;
    // argmax (exact).
    Tensor am = Tensor::empty(labels.shape(), DType::U8);
    Tensor amg = Tensor::empty(labels.shape(), DType::U8, Device::CUDA);
    argmax_channels(dv.cpu, logits, am);
    argmax_channels(dv.gpu, logits.to(Device::CUDA), amg);
    EXPECT_EQ(count_differences_u8(am, amg), 0)
        << "argmax " << tag << " (" << spec.parity_argmax.why << ")";
  }
}

TEST(Parity, CrossEntropyRejectsBadLabel) {
  CUSEG_REQUIRE_CUDA();
  Devices dv;
  Tensor logits = Tensor::zeros({1, 3, 2, 2, 2}, DType::F32, Device::CUDA);
  Tensor labels = Tensor::zeros({1, 2, 2, 2}, DType::U8);
  labels.data<uint8_t>()[5] = 7;
  EXPECT_THROW(weighted_cross_entropy(dv.gpu, logits, labels.to(Device::CUDA), {1, 1, 3}, Tensor()),
               Error);
}

TEST(Parity, LabelHistogram) {
  CUSEG_REQUIRE_CUDA();
  Devices dv;
  std::mt19937 rng(13);
  for (const VolCase& vc : with_use(logits().cases, kParity)) {
    const Tensor lab = labels_tensor(vc.x, rng);
    const int K = vc.x.c;
    int64_t c0[16], c1[16];
    int bad0 = -1, bad1 = -1;
    ASSERT_TRUE(run_op(dv.cpu, op::LabelHistogram{lab, K, c0, &bad0}));
    const Tensor labg = lab.to(Device::CUDA);
    ASSERT_TRUE(run_op(dv.gpu, op::LabelHistogram{labg, K, c1, &bad1}));
    int64_t total = 0;
    for (int k = 0; k < K; ++k) {
      EXPECT_EQ(c0[k], c1[k]) << "class " << k << " " << tag_of(vc);
      total += c0[k];
    }
    EXPECT_EQ(total, lab.numel()) << tag_of(vc);
  }
}

// --------------------------------------------------------------------------- Adam

TEST(Parity, AdamMultiTensor) {
  CUSEG_REQUIRE_CUDA();
  Devices dv;
  std::mt19937 rng(9);
  const AdamSpec& spec = adam();
  for (const AdamCase& ac : with_use(spec.cases, kParity)) {
    const size_t n_tensors = ac.sizes.size();
    std::vector<Param> pc(n_tensors), pg(n_tensors);
    for (size_t i = 0; i < n_tensors; ++i) {
      const int64_t n = ac.sizes[i];
      pc[i].name = pg[i].name = "p" + std::to_string(i);
      pc[i].value = uniform_tensor({n}, rng);
      pc[i].grad = uniform_tensor({n}, rng, -1e-2f, 1e-2f);
      pg[i].value = pc[i].value.to(Device::CUDA);
      pg[i].grad = pc[i].grad.to(Device::CUDA);
    }
    std::vector<Param*> qc, qg;
    for (size_t i = 0; i < n_tensors; ++i) {
      qc.push_back(&pc[i]);
      qg.push_back(&pg[i]);
    }
    AdamConfig cfg;
    cfg.lr = 1e-2f;
    Adam oc(qc, cfg), og(qg, cfg);
    for (int step = 0; step < spec.parity_steps; ++step) {
      oc.step(dv.cpu);
      og.step(dv.gpu);
    }
    for (size_t i = 0; i < n_tensors; ++i) {
      const std::string tag =
          ac.label + "_" + pc[i].name + "_n" + std::to_string(pc[i].value.numel());
      EXPECT_TRUE(close("adam_p", tag, pc[i].value, pg[i].value, spec.parity_p));
      EXPECT_TRUE(close("adam_m", tag, oc.exp_avg()[i], og.exp_avg()[i], spec.parity_m));
      EXPECT_TRUE(close("adam_v", tag, oc.exp_avg_sq()[i], og.exp_avg_sq()[i], spec.parity_v));
    }
  }
}

// --------------------------------------------------------------------------- volume ops

TEST(Parity, CropOrPad) {
  CUSEG_REQUIRE_CUDA();
  Devices dv;
  std::mt19937 rng(10);
  const CropSpec& spec = crop_or_pad();
  for (const CropCase& cs : with_use(spec.cases, kParity)) {
    const std::string tag = cs.label + "_" + cs.in.str() + "_to_" + std::to_string(cs.d) + "x" +
                            std::to_string(cs.h) + "x" + std::to_string(cs.w);
    Tensor in = int_tensor(cs.in.shape(), rng);
    Tensor out = Tensor::empty(cs.out_shape());
    const CropOrPadParams p = crop_or_pad_params(in.vol(), out.vol(), -5.f);
    crop_or_pad(dv.cpu, in, out, p);
    Tensor ing = in.to(Device::CUDA),
           outg = Tensor::empty(cs.out_shape(), DType::F32, Device::CUDA);
    crop_or_pad(dv.gpu, ing, outg, p);
    EXPECT_TRUE(close("crop_or_pad", tag, out, outg, spec.parity, {{"in", in}}));
  }
}

// Gaussian weights (kernels/grid_aggregate.h) are the same double formula on both sides: they
// are equal on the device when no weight of the patch changes for exp() results up to 2 ulp
// either side of the host's (CUDA's exp is within 1 ulp).
bool gaussian_weights_robust(int pd, int ph, int pw) {
  for (int z = 0; z < pd; ++z)
    for (int y = 0; y < ph; ++y)
      for (int x = 0; x < pw; ++x) {
        const double e = std::exp(-0.5 * gaussian_exponent(x, y, z, pw, ph, pd));
        double lo = e, hi = e;
        for (int u = 0; u < 2; ++u) {
          lo = std::nextafter(lo, 0.0);
          hi = std::nextafter(hi, 1.0);
          if (gaussian_from_exp(lo) != gaussian_from_exp(e) ||
              gaussian_from_exp(hi) != gaussian_from_exp(e))
            return false;
        }
      }
  return true;
}

TEST(Parity, GridAggregate) {
  CUSEG_REQUIRE_CUDA();
  Devices dv;
  std::mt19937 rng(11);
  const GridSpec& spec = grid_aggregate();
  for (const GridCase& cs : with_use(spec.cases, kParity))
    for (AggregateMode mode : spec.modes) {
      const std::vector<int> starts = cs.grid_starts();
      const int np = int(starts.size() / 3);
      Tensor patches = int_tensor(cs.patches_shape(np), rng);
      const GridAggregateParams p =
          grid_aggregate_params(mode, cs.overlap, cs.overlap, cs.overlap, cs.pd, cs.ph, cs.pw);
      if (mode == AggregateMode::Gaussian)
        ASSERT_TRUE(gaussian_weights_robust(cs.pd, cs.ph, cs.pw)) << cs.str();
      Tensor st = Tensor::empty({np, 3}, DType::I32);
      std::copy(starts.begin(), starts.end(), st.data<int32_t>());
      // Two calls (batches) as inference does: first half, then the rest.
      const int half = np / 2;
      auto aggregate = [&](Context& ctx, const Tensor& pt, const Tensor& stt, Tensor& sum,
                           Tensor& wt, Tensor& out) {
        const Device d = ctx.device();
        sum = Tensor::zeros(cs.sum_shape(), DType::F32, d);
        wt = Tensor::zeros(cs.weight_shape(), DType::F32, d);
        out = Tensor::empty(cs.sum_shape(), DType::F32, d);
        if (half > 0)
          grid_aggregate(ctx, pt.batch_slice(0, half), stt.batch_slice(0, half), sum, wt, p);
        grid_aggregate(ctx, pt.batch_slice(half, np), stt.batch_slice(half, np), sum, wt, p);
        grid_aggregate_finalize(ctx, sum, wt, out);
      };
      Tensor sum, wt, out, sumg, wtg, outg;
      aggregate(dv.cpu, patches, st, sum, wt, out);
      // Device inputs are kept alive until the results are read back (launches are async).
      const Tensor patches_g = patches.to(Device::CUDA), st_g = st.to(Device::CUDA);
      aggregate(dv.gpu, patches_g, st_g, sumg, wtg, outg);
      const std::string tag =
          std::string(GridSpec::mode_name(mode)) + "_" + cs.label + "_" + cs.str();
      const bool hann = mode == AggregateMode::Hann;
      const Tolerance& t = hann                              ? spec.parity_hann
                           : mode == AggregateMode::Gaussian ? spec.parity_gaussian
                                                             : spec.parity_exact;
      const Tolerance& t_out = hann ? spec.parity_hann_out : t;
      EXPECT_TRUE(close("grid_sum", tag, sum, sumg, t, {{"patches", patches}}));
      EXPECT_TRUE(close("grid_weight", tag, wt, wtg, t));
      EXPECT_TRUE(close("grid_out", tag, out, outg, t_out));
    }
}

TEST(Parity, RescaleIntensity) {
  CUSEG_REQUIRE_CUDA();
  Devices dv;
  std::mt19937 rng(12);
  const RescaleSpec& spec = rescale_intensity();
  for (const RescaleCase& rc : with_use(spec.cases, kParity)) {
    const int64_t n = shape_numel(rc.shape);
    const std::string tag = rc.label + "_n" + std::to_string(n);
    Tensor in = uniform_tensor(rc.shape, rng, -1024.f, 3071.f);
    Tensor ing = in.to(Device::CUDA);
    // The min / max reduction (percentiles 0 and 100 of the rescale), a table op: both
    // backends against std::minmax_element.
    const float* h = in.f32();
    const auto mm = std::minmax_element(h, h + n);
    const auto mmc = minmax(dv.cpu, in), mmg = minmax(dv.gpu, ing);
    EXPECT_EQ(mmg.first, *mm.first) << "min " << tag << " (" << spec.parity_minmax.why << ")";
    EXPECT_EQ(mmg.second, *mm.second) << "max " << tag;
    EXPECT_EQ(mmc, mmg) << "CPU twin " << tag;
    for (const RescaleParams& p : spec.ranges) {
      Tensor out = Tensor::empty(rc.shape),
             outg = Tensor::empty(rc.shape, DType::F32, Device::CUDA);
      rescale_intensity(dv.cpu, in, out, p);
      rescale_intensity(dv.gpu, ing, outg, p);
      const std::string rtag =
          tag + "_out" + std::to_string(int(p.out_min)) + "_" + std::to_string(int(p.out_max));
      EXPECT_TRUE(close("rescale", rtag, out, outg, spec.parity, {{"in", in}}));
    }
  }
}
