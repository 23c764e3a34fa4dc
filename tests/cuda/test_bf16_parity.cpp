// bf16 channels-last parity: every CUDA kernel of the mixed-precision path against its CPU twin
// (the CPU oracle: the fp32 op on bf16-rounded inputs, the stored result rounded once to bf16),
// on the same bf16 inputs. Skipped (GTEST_SKIP) when no CUDA device answers.
//
// Tolerances, and where they come from:
// - EXACT (bit equality): conversions, max pooling forward and its fused backward, upsampling
//   forward and backward, the bias gradient, argmax, the filter copies and their accumulation.
//   Each twin pair performs the same fp32 operations in the same order (shared CUSEG_HD code;
//   multiplies and adds via mul_rn / add_rn so nvcc cannot contract them into FMAs), and both
//   round with the same to_bf16(); nothing is left to differ.
// - Cross-entropy: the loss as the fp32 parity test (expf / logf of glibc and CUDA differ by
//   <= 2 ulp, partial sums associate differently: rel 1e-6); each bf16 gradient element is the
//   RNE rounding of fp32 values that differ by a few fp32 ulp, so the two roundings are equal or
//   adjacent: |a - b| <= 1 bf16 ulp of max(|a|, |b|) (plus 1e-6 * max|g| for the fp32 part).
// - Adam (master): as the fp32 test, rtol 1e-5, atol 1e-7 (FMA contraction on the device); the
//   bf16 copy is the rounding of masters that differ by that much: equal or 1 bf16 ulp apart.
// - Convolutions: derived below (ConvolutionsWithinTheDerivedBound).
// Shapes include odd and size-1 extents, channel slices (strided views) and padded channels.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "cuseg/engine/context.h"
#include "cuseg/engine/ops.h"
#include "cuseg/engine/param.h"
#include "cuseg/engine/tensor.h"
#include "cuseg/kernels/adam.h"
#include "cuseg/kernels/bias_grad.h"
#include "cuseg/kernels/channels_last.h"
#include "cuseg/kernels/cross_entropy.h"
#include "cuseg/kernels/maxpool3d.h"
#include "cuseg/kernels/upsample.h"
#include "cuseg/kernels/weight_copy.h"
#include "test_util.h"

using namespace cuseg;

namespace {

// Kernel launches below use the legacy default stream (nullptr), which is ordered with the
// synchronous copies Tensor::to / copy_from make.
constexpr Stream kDefault = nullptr;

Tensor f32_random(const Shape& s, std::mt19937& rng, float lo = -2.f, float hi = 2.f) {
  return uniform_tensor(s, rng, lo, hi);
}

// A bf16 channels-last CPU tensor of `s` (channels padded by `pad`, zeros) from fp32 values.
Tensor cl_from(const Tensor& f, int pad = 0) {
  Shape s = f.shape();
  s[1] += pad;
  Tensor t = Tensor::empty_channels_last(s, DType::BF16, Device::CPU);
  to_channels_last_cpu(f.vol(), t.cl<bf16>(), VolCL<const bf16>{});
  return t;
}

// The same bf16 values on the device, optionally as channel slice [2, 2 + C) of a wider
// (C + 5)-channel buffer (a strided view like the U-Net's concat slices).
Tensor on_device(const Tensor& cl, bool slice) {
  if (!slice) return cl.to(Device::CUDA);
  Shape wide = cl.shape();
  wide[1] += 5;
  Tensor host = cl_from(Tensor::zeros(wide));
  Tensor view = host.channel_slice(2, 2 + cl.dim(1));
  copy_channels_last_cpu(cl.cl<const bf16>(), view.cl<bf16>());
  return host.to(Device::CUDA).channel_slice(2, 2 + cl.dim(1));
}

// An empty device output, packed or as a slice, prefilled with bf16 NaN (must be overwritten).
Tensor device_out(const Shape& s, bool slice) {
  Shape wide = s;
  if (slice) wide[1] += 5;
  Tensor host = Tensor::empty_channels_last(wide, DType::BF16, Device::CPU);
  std::fill(host.data<bf16>(), host.data<bf16>() + host.numel(), to_bf16(NAN));
  Tensor d = host.to(Device::CUDA);
  return slice ? d.channel_slice(2, 2 + s[1]) : d;
}

// The values of a (device or host, possibly sliced) bf16 channels-last tensor as fp32 NCDHW.
Tensor values(const Tensor& t) {
  Tensor h = t;
  if (t.device() == Device::CUDA) {
    // A slice is first packed on the device.
    Tensor whole_dev = t.is_dense() ? t : Tensor();
    if (!t.is_dense()) {
      Tensor packed = Tensor::empty_channels_last(t.shape(), DType::BF16, Device::CUDA);
      copy_channels_last_cuda(t.cl<const bf16>(), packed.cl<bf16>(), kDefault);
      whole_dev = packed;
    }
    h = whole_dev.to(Device::CPU);
  }
  Tensor f = Tensor::empty(t.shape());
  from_channels_last_cpu(h.cl<const bf16>(), f.vol());
  return f;
}

::testing::AssertionResult bits_equal(const std::string& what, const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape())
    return ::testing::AssertionFailure()
           << what << ": shapes " << shape_str(a.shape()) << " vs " << shape_str(b.shape());
  int64_t bad = 0, first = -1;
  for (int64_t i = 0; i < a.numel(); ++i)
    if (std::memcmp(a.f32() + i, b.f32() + i, 4) != 0) {
      if (first < 0) first = i;
      ++bad;
    }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << what << ": " << bad << " of " << a.numel() << " elements differ; first " << first
         << ": cpu " << a.f32()[first] << " cuda " << b.f32()[first];
}

std::string tag(const Shape& s, bool slice) {
  return shape_str(s) + (slice ? " (slices)" : "");
}

const std::vector<Shape> kShapes = {
    {1, 1, 1, 1, 1}, {1, 3, 1, 1, 7},   {2, 8, 5, 1, 3},     {1, 16, 7, 9, 11},
    {2, 8, 8, 8, 8}, {1, 5, 17, 13, 1}, {2, 32, 24, 24, 24},
};
const std::vector<Shape> kPoolShapes = {
    {1, 1, 2, 2, 2}, {1, 3, 3, 5, 7}, {2, 8, 4, 6, 2}, {1, 16, 9, 9, 9}, {2, 32, 24, 24, 24},
};
const std::vector<Shape> kUpShapes = {
    {1, 1, 1, 1, 1}, {1, 3, 1, 3, 2}, {2, 8, 5, 4, 3}, {1, 16, 7, 1, 9}, {2, 32, 12, 12, 12},
};

}  // namespace

TEST(Bf16Parity, Conversions) {
  CUSEG_REQUIRE_CUDA();
  std::mt19937 rng(1);
  for (const Shape& s : kShapes)
    for (int slice = 0; slice < 2; ++slice) {
      const Tensor f = f32_random(s, rng);
      // to_channels_last with padding and a mask.
      const Tensor mask = cl_from(f32_random(s, rng));
      Shape padded = s;
      padded[1] = (s[1] + 7) / 8 * 8;
      Tensor want = Tensor::empty_channels_last(padded, DType::BF16, Device::CPU);
      to_channels_last_cpu(f.vol(), want.cl<bf16>(), mask.cl<const bf16>());
      Tensor got = device_out(padded, slice);
      const Tensor fd = f.to(Device::CUDA), md = on_device(mask, slice);
      to_channels_last_cuda(fd.vol(), got.cl<bf16>(), md.cl<const bf16>(), kDefault);
      EXPECT_TRUE(bits_equal("to_channels_last " + tag(s, slice), values(want), values(got)));
      // from_channels_last of the first C channels.
      Tensor back = Tensor::empty(s, DType::F32, Device::CUDA);
      from_channels_last_cuda(got.channel_slice(0, s[1]).cl<const bf16>(), back.vol(), kDefault);
      EXPECT_TRUE(bits_equal("from_channels_last " + tag(s, slice),
                             values(want.channel_slice(0, s[1])), back.to(Device::CPU)));
      // copy_channels_last slice <-> packed, with zero padding.
      Tensor copied = device_out(padded, !slice);
      copy_channels_last_cuda(on_device(cl_from(f), slice).cl<const bf16>(), copied.cl<bf16>(),
                              kDefault);
      EXPECT_TRUE(bits_equal("copy_channels_last " + tag(s, slice),
                             values(cl_from(f, int(padded[1] - s[1]))), values(copied)));
    }
}

TEST(Bf16Parity, MaxPoolForwardAndFusedBackward) {
  CUSEG_REQUIRE_CUDA();
  std::mt19937 rng(2);
  for (const Shape& s : kPoolShapes)
    for (int slice = 0; slice < 2; ++slice) {
      // Few distinct values: ties (first maximum wins) and ReLU zeros are common.
      Tensor f = Tensor::empty(s);
      std::uniform_int_distribution<int> u(-2, 3);
      for (int64_t i = 0; i < f.numel(); ++i) f.f32()[i] = float(std::max(0, u(rng))) * 0.5f;
      const Shape ys = {s[0], s[1], s[2] / 2, s[3] / 2, s[4] / 2};
      const Tensor x = cl_from(f), gy = cl_from(f32_random(ys, rng)),
                   gadd = cl_from(f32_random(s, rng));
      Tensor y = Tensor::empty_channels_last(ys, DType::BF16, Device::CPU);
      maxpool3d_cl_forward_cpu(x.cl<const bf16>(), y.cl<bf16>());
      const Tensor xd = on_device(x, slice);
      Tensor yd = device_out(ys, false);
      maxpool3d_cl_forward_cuda(xd.cl<const bf16>(), yd.cl<bf16>(), kDefault);
      EXPECT_TRUE(bits_equal("maxpool fwd " + tag(s, slice), values(y), values(yd)));
      for (int fused = 0; fused < 2; ++fused) {
        Tensor gx = Tensor::empty_channels_last(s, DType::BF16, Device::CPU);
        MaxPoolClBackward a;
        a.x = x.cl<const bf16>();
        a.gy = gy.cl<const bf16>();
        if (fused) a.gadd = gadd.cl<const bf16>();
        a.gx = gx.cl<bf16>();
        a.relu_mask = fused;
        maxpool3d_cl_backward_cpu(a);
        const Tensor gyd = gy.to(Device::CUDA), gaddd = on_device(gadd, slice);
        Tensor gxd = device_out(s, false);
        MaxPoolClBackward b;
        b.x = xd.cl<const bf16>();
        b.gy = gyd.cl<const bf16>();
        if (fused) b.gadd = gaddd.cl<const bf16>();
        b.gx = gxd.cl<bf16>();
        b.relu_mask = fused;
        maxpool3d_cl_backward_cuda(b, kDefault);
        EXPECT_TRUE(bits_equal(
            std::string("maxpool bwd") + (fused ? " + add + relu " : " ") + tag(s, slice),
            values(gx), values(gxd)));
      }
    }
}

TEST(Bf16Parity, UpsampleForwardAndBackward) {
  CUSEG_REQUIRE_CUDA();
  std::mt19937 rng(3);
  for (const Shape& s : kUpShapes)
    for (int slice = 0; slice < 2; ++slice) {
      const Shape ys = {s[0], s[1], 2 * s[2], 2 * s[3], 2 * s[4]};
      const Tensor x = cl_from(f32_random(s, rng)), gy = cl_from(f32_random(ys, rng));
      Tensor y = Tensor::empty_channels_last(ys, DType::BF16, Device::CPU);
      upsample2x_cl_forward_cpu(x.cl<const bf16>(), y.cl<bf16>());
      Tensor yd = device_out(ys, slice);  // into a concat-like slice
      upsample2x_cl_forward_cuda(x.to(Device::CUDA).cl<const bf16>(), yd.cl<bf16>(), kDefault);
      EXPECT_TRUE(bits_equal("upsample fwd " + tag(s, slice), values(y), values(yd)));
      for (int masked = 0; masked < 2; ++masked) {
        Tensor gx = Tensor::empty_channels_last(s, DType::BF16, Device::CPU);
        upsample2x_cl_backward_cpu(gy.cl<const bf16>(), gx.cl<bf16>(),
                                   masked ? x.cl<const bf16>() : VolCL<const bf16>{});
        const Tensor xd = x.to(Device::CUDA), gyd = on_device(gy, slice);
        Tensor gxd = device_out(s, false);
        upsample2x_cl_backward_cuda(gyd.cl<const bf16>(), gxd.cl<bf16>(),
                                    masked ? xd.cl<const bf16>() : VolCL<const bf16>{}, kDefault);
        EXPECT_TRUE(
            bits_equal(std::string("upsample bwd") + (masked ? " + relu " : " ") + tag(s, slice),
                       values(gx), values(gxd)));
      }
    }
}

TEST(Bf16Parity, BiasGradient) {
  CUSEG_REQUIRE_CUDA();
  std::mt19937 rng(4);
  for (const Shape& s : kShapes)
    for (int slice = 0; slice < 2; ++slice) {
      const Tensor dy = cl_from(f32_random(s, rng));
      const int c = int(s[1]);
      Tensor gb = f32_random({c}, rng);  // accumulates
      Tensor gbd = gb.to(Device::CUDA);
      bias_grad_cl_cpu(dy.cl<const bf16>(), gb.f32());
      const Tensor dyd = on_device(dy, slice);
      const VolCL<const bf16> v = dyd.cl<const bf16>();
      Tensor ws = Tensor::empty({int64_t(bias_grad_workspace_bytes(v))}, DType::U8, Device::CUDA);
      bias_grad_cl_cuda(v, gbd.f32(), ws.raw(), ws.nbytes(), kDefault);
      EXPECT_TRUE(bits_equal("bias grad " + tag(s, slice), gb, gbd.to(Device::CPU)));
    }
}

TEST(Bf16Parity, CrossEntropyAndArgmax) {
  CUSEG_REQUIRE_CUDA();
  std::mt19937 rng(5);
  const std::vector<float> w = {1.f, 1.f, 3.f};
  for (const Shape& s0 : {Shape{1, 3, 1, 1, 1}, Shape{2, 3, 5, 7, 9}, Shape{2, 3, 96, 96, 96}}) {
    const Shape padded = {s0[0], 8, s0[2], s0[3], s0[4]};
    const Tensor logits = cl_from(f32_random(s0, rng, -6.f, 6.f), 5);
    const int64_t vox = s0[0] * s0[2] * s0[3] * s0[4];
    Tensor lab = Tensor::empty({s0[0], s0[2], s0[3], s0[4]}, DType::U8);
    for (int64_t i = 0; i < vox; ++i) lab.data<uint8_t>()[i] = uint8_t(rng() % 3);
    Tensor g = Tensor::zeros_like(logits.channel_slice(0, 3));
    CeArgsCL a;
    a.logits = logits.channel_slice(0, 3).cl<const bf16>();
    a.labels = lab.data<uint8_t>();
    a.weights = w.data();
    a.gscale = float(1.0 / double(vox));
    a.grad = g.cl<bf16>();
    const double l_cpu = cross_entropy_cl_cpu(a);
    const Tensor ld = logits.to(Device::CUDA), labd = lab.to(Device::CUDA);
    const Tensor wd = Tensor::empty({3}, DType::F32, Device::CPU);
    std::copy(w.begin(), w.end(), wd.f32());
    const Tensor wdd = wd.to(Device::CUDA);
    Tensor gd = Tensor::zeros_like(ld.channel_slice(0, 3));
    CeArgsCL b = a;
    b.logits = ld.channel_slice(0, 3).cl<const bf16>();
    b.labels = labd.data<uint8_t>();
    b.weights = wdd.f32();
    b.grad = gd.cl<bf16>();
    Tensor ws = Tensor::empty({int64_t(cross_entropy_workspace_bytes(int(s0[0]), vox / s0[0]))},
                              DType::U8, Device::CUDA);
    const double l_gpu = cross_entropy_cl_cuda(b, ws.raw(), ws.nbytes(), kDefault);
    EXPECT_NEAR(l_gpu, l_cpu, 1e-6 * std::fabs(l_cpu)) << shape_str(s0);
    const Tensor gc = values(g), gg = values(gd);
    float gmax = 0;
    for (int64_t i = 0; i < gc.numel(); ++i) gmax = std::max(gmax, std::fabs(gc.f32()[i]));
    int64_t bad = 0;
    for (int64_t i = 0; i < gc.numel(); ++i) {
      const float a0 = gc.f32()[i], b0 = gg.f32()[i];
      if (!(std::fabs(a0 - b0) <= bf16_ulp(std::max(std::fabs(a0), std::fabs(b0))) + 1e-6f * gmax))
        ++bad;
    }
    EXPECT_EQ(bad, 0) << "gradient elements beyond 1 bf16 ulp, " << shape_str(s0);
    // Padding channels of the gradient stay 0 on the device.
    const Tensor all = values(gd.as_shape(padded));
    for (int n = 0; n < s0[0]; ++n)
      for (int c = 3; c < 8; ++c)
        for (int64_t v = 0; v < vox / s0[0]; ++v) ASSERT_EQ(all.vol().at(n, c)[v], 0.f);
    // Argmax.
    std::vector<uint8_t> am(static_cast<size_t>(vox));
    argmax_channels_cl_cpu(logits.channel_slice(0, 3).cl<const bf16>(), am.data());
    Tensor amd = Tensor::empty({vox}, DType::U8, Device::CUDA);
    argmax_channels_cl_cuda(ld.channel_slice(0, 3).cl<const bf16>(), amd.data<uint8_t>(), kDefault);
    const Tensor amh = amd.to(Device::CPU);
    EXPECT_EQ(std::memcmp(am.data(), amh.data<uint8_t>(), size_t(vox)), 0) << shape_str(s0);
  }
}

TEST(Bf16Parity, FilterCopiesAndAdamWithCopy) {
  CUSEG_REQUIRE_CUDA();
  std::mt19937 rng(6);
  const int cout = 3, cin = 9, cin_pad = 16, cout_pad = 8, k3 = 27;
  const Tensor w = f32_random({cout, cin, 3, 3, 3}, rng);
  const FilterMap cl = filter_map_cl(cout, cin, cin_pad, k3);
  const Shape copy_shape = {cout_pad, cin_pad, 3, 3, 3};
  // Master -> bf16 copy.
  Tensor copy =
      Tensor::zeros_like(Tensor::empty_channels_last(copy_shape, DType::BF16, Device::CPU));
  filter_copy_cpu(FilterRef{w.raw(), false, filter_map_master(cout, cin, k3)},
                  FilterRef{copy.raw(), true, cl}, false);
  Tensor copyd =
      Tensor::zeros_like(Tensor::empty_channels_last(copy_shape, DType::BF16, Device::CUDA));
  const Tensor wd = w.to(Device::CUDA);
  filter_copy_cuda(FilterRef{wd.raw(), false, filter_map_master(cout, cin, k3)},
                   FilterRef{copyd.raw(), true, cl}, false, kDefault);
  const Tensor copyh = copyd.to(Device::CPU);
  EXPECT_EQ(std::memcmp(copy.raw(), copyh.raw(), copy.nbytes()), 0) << "master -> bf16 copy";
  // Accumulating a channels-last fp32 dw into the master gradient.
  const Tensor dw = f32_random({cout_pad, cin_pad, 3, 3, 3}, rng);  // read through a cl map
  Tensor g = f32_random(w.shape(), rng), gd = g.to(Device::CUDA);
  const Tensor dwd = dw.to(Device::CUDA);
  filter_copy_cpu(FilterRef{dw.raw(), false, cl},
                  FilterRef{g.raw(), false, filter_map_master(cout, cin, k3)}, true);
  filter_copy_cuda(FilterRef{dwd.raw(), false, cl},
                   FilterRef{gd.raw(), false, filter_map_master(cout, cin, k3)}, true, kDefault);
  EXPECT_TRUE(bits_equal("gradient accumulation", g, gd.to(Device::CPU)));
  // Adam over 3 steps, the copy written in the same pass.
  Tensor p = w.clone(), m = Tensor::zeros(w.shape()), v = Tensor::zeros(w.shape());
  Tensor pd = p.to(Device::CUDA), md = m.to(Device::CUDA), vd = v.to(Device::CUDA);
  for (int step = 1; step <= 3; ++step) {
    const Tensor gr = f32_random(w.shape(), rng), grd = gr.to(Device::CUDA);
    AdamCoeffs c{0.9f, 0.999f, 1e-8f, float(1e-3 / (1 - std::pow(0.9, step))),
                 float(std::sqrt(1 - std::pow(0.999, step)))};
    AdamTensor t{p.f32(), gr.f32(), m.f32(), v.f32(), p.numel()};
    t.copy = copy.data<bf16>();
    t.copy_map = cl;
    adam_step_cpu(&t, 1, c);
    AdamTensor td{pd.f32(), grd.f32(), md.f32(), vd.f32(), pd.numel()};
    td.copy = copyd.data<bf16>();
    td.copy_map = cl;
    adam_step_cuda(&td, 1, c, kDefault);
  }
  const Tensor ph = pd.to(Device::CPU), ch = values(copyd), cc = values(copy);
  for (int64_t i = 0; i < p.numel(); ++i)
    ASSERT_NEAR(ph.f32()[i], p.f32()[i], 1e-7 + 1e-5 * std::fabs(p.f32()[i])) << "master " << i;
  for (int64_t i = 0; i < cc.numel(); ++i) {
    const float a = cc.f32()[i], b = ch.f32()[i];
    ASSERT_LE(std::fabs(a - b), bf16_ulp(std::max(std::fabs(a), std::fabs(b)))) << "copy " << i;
  }
}

// --------------------------------------------------------------------------- convolutions
// GPU: the cuDNN graphs (engine/cuda/conv_cl.h), CPU: the oracle (engine/conv_cl_cpu.h), through
// the public ops with identical bf16 inputs and weight copies.
//
// Tolerance, derived. An output element is s = sum_{i=1..K} a_i b_i (+ bias), every a_i, b_i a
// bf16 value (8 significant bits), so every product is exact in fp32 (16 bits <= 24). Both sides
// sum the K (+1) exact terms in fp32, in different orders: the CPU with IEEE round-to-nearest
// (unit roundoff 2^-24), the GPU's tensor cores with an fp32 accumulator we allow to truncate
// (unit 2^-23); plans with the numerical notes REDUCED_PRECISION_REDUCTION, FFT, WINOGRAD or
// DOWN_CONVERT_INPUTS are never built (engine/cuda/cudnn_graph.h), so every plan is such a direct
// sum. Recursive summation of n terms is within gamma_n * S of the exact sum, gamma_n =
// n u / (1 - n u), S = sum |a_i b_i| (+ |bias|); so |s_gpu - s_cpu| <= 2 gamma_{K+1} S with
// u = 2^-23. ReLU and the ReLU mask are 1-Lipschitz / exact. Where the result is stored in bf16
// each side rounds once (RNE): |rn(p) - rn(q)| <= |p - q| + 2^-8 (|p| + |q|) <= |p - q| +
// 2^-7 max. Hence, per element:
//   forward / backward-data: |gpu - cpu| <= 2 gamma_{K+1} S + 2^-7 max(|gpu|, |cpu|) + 2^-133
//     (K = Cin k^3 resp. Cout k^3; the last term covers subnormal spacing),
//   backward-filter (fp32 dw, or bf16 when cuDNN offers no fp32 dw: conv_cl.h):
//     |gpu - cpu| <= 2 gamma_{K+1} S + 2^-7 max(...) with K = N D H W (the bf16 term only
//     matters in the bf16-dw case; it is kept in both because the test does not know which ran),
//   bias gradient: exact (kernels/bias_grad.h: the same order on both sides).
// S is computed on the CPU by the same fp32 operation on |x|, |w|, |b| (|dy|), whose own
// rounding (<= gamma S, positive terms) is covered by using 2 gamma + 2^-20 relative headroom.
// The bound is worst-case; real differences are orders of magnitude below it, and a wrong
// result (a wrong tap, a transposed filter, a lost bias, cuDNN 9.8-9.10's bf16 conv3d bug) is
// of the order of S itself, far above it.
namespace {

double gamma_n(double n) {
  const double u = std::ldexp(1.0, -23);
  return n * u / (1 - n * u);
}

Tensor abs_of(const Tensor& f) {
  Tensor a = f.clone();
  for (int64_t i = 0; i < a.numel(); ++i) a.f32()[i] = std::fabs(a.f32()[i]);
  return a;
}

Tensor rounded(const Tensor& f) {
  Tensor r = f.clone();
  for (int64_t i = 0; i < r.numel(); ++i) r.f32()[i] = round_bf16(r.f32()[i]);
  return r;
}

::testing::AssertionResult within_bound(const std::string& what, const Tensor& cpu,
                                        const Tensor& gpu, const Tensor& S, double gamma2) {
  int64_t bad = 0, first = -1;
  double worst = 0;
  for (int64_t i = 0; i < cpu.numel(); ++i) {
    const double a = cpu.f32()[i], b = gpu.f32()[i];
    const double tol = (gamma2 + std::ldexp(1.0, -20)) * S.f32()[i] +
                       std::ldexp(std::max(std::fabs(a), std::fabs(b)), -7) + std::ldexp(1.0, -133);
    const double err = std::fabs(a - b);
    if (!(err <= tol)) {
      if (first < 0) first = i;
      ++bad;
    }
    if (tol > 0) worst = std::max(worst, err / tol);
  }
  std::printf("%-48s worst |err| / bound = %.3g\n", what.c_str(), worst);
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << what << ": " << bad << " of " << cpu.numel() << " elements beyond the bound; first "
         << first << ": cpu " << cpu.f32()[first] << " cuda " << gpu.f32()[first];
}

struct ConvCaseCL {
  Shape x;   // [N, Cin, D, H, W]
  int cout;  // output channels (a multiple of 8, or the padded head)
  int k;
};
const std::vector<ConvCaseCL> kConvCases = {
    {{1, 8, 1, 1, 1}, 8, 3},      {{2, 8, 6, 5, 7}, 16, 3},     {{1, 8, 9, 9, 9}, 8, 3},
    {{2, 8, 5, 6, 4}, 8, 1},      {{2, 32, 8, 8, 8}, 8, 1},     {{2, 16, 8, 8, 8}, 32, 3},
    {{2, 32, 24, 24, 24}, 32, 3}, {{2, 96, 12, 12, 12}, 32, 3},
};

// A bf16 weight copy (channels-last, the model's layout) and its bias copy from fp32 values.
struct Copies {
  Tensor w, b;
};
Copies make_copies(Context& ctx, const Tensor& w32, const Tensor& b32) {
  const int cout = int(w32.dim(0)), cin = int(w32.dim(1)), k = int(w32.dim(2));
  Param pw, pb;
  pw.value = w32.to(ctx.device());
  pw.copy = Tensor::empty_channels_last(w32.shape(), DType::BF16, ctx.device());
  pw.copy.zero();
  pw.copy_map = filter_map_cl(cout, cin, cin, k * k * k);
  refresh_weight_copy(ctx, pw);
  pb.value = b32.to(ctx.device());
  pb.copy = Tensor::zeros({cout}, DType::BF16, ctx.device());
  pb.copy_map = filter_map_master(cout, 1, 1);
  refresh_weight_copy(ctx, pb);
  return {pw.copy, pb.copy};
}

}  // namespace

TEST(Bf16Parity, ConvolutionsWithinTheDerivedBound) {
  CUSEG_REQUIRE_CUDA();
  Context cpu(Device::CPU), gpu(Device::CUDA);
  std::mt19937 rng(7);
  for (const ConvCaseCL& cc : kConvCases)
    for (int variant = 0; variant < 2; ++variant) {
      const bool slices = variant == 1;  // x, y, gy, gx and the mask as channel slices
      const Shape xs = cc.x;
      const Shape ys = {xs[0], cc.cout, xs[2], xs[3], xs[4]};
      const std::string tag = shape_str(xs) + " -> " + std::to_string(cc.cout) + " k" +
                              std::to_string(cc.k) + (slices ? " (slices)" : "");
      const Tensor x32 = rounded(f32_random(xs, rng)), gy32 = rounded(f32_random(ys, rng));
      const Tensor m32 = rounded(f32_random(xs, rng));  // ReLU mask: about half positive
      const double fan = double(xs[1]) * cc.k * cc.k * cc.k;
      const Tensor w32 = rounded(f32_random({cc.cout, xs[1], cc.k, cc.k, cc.k}, rng,
                                            float(-1 / std::sqrt(fan)), float(1 / std::sqrt(fan))));
      const Tensor b32 = rounded(f32_random({cc.cout}, rng));
      const Copies cc_cpu = make_copies(cpu, w32, b32), cc_gpu = make_copies(gpu, w32, b32);
      // CPU side (packed).
      const Tensor x = cl_from(x32), gy = cl_from(gy32), m = cl_from(m32);
      Tensor y = Tensor::empty_channels_last(ys, DType::BF16, Device::CPU);
      conv3d_forward(cpu, x, cc_cpu.w, cc_cpu.b, y, true);
      Tensor gx = Tensor::empty_channels_last(xs, DType::BF16, Device::CPU);
      Tensor gw = Tensor::zeros(w32.shape()), gb = Tensor::zeros({cc.cout});
      conv3d_backward(cpu, x, cc_cpu.w, gy, gx, gw, gb, m);
      // GPU side, twice (the second run must give the same bits: deterministic plans).
      const Tensor xd = on_device(x, slices), gyd = on_device(gy, slices),
                   md = on_device(m, slices);
      Tensor yd[2], gxd[2], gwd[2], gbd[2];
      for (int r = 0; r < 2; ++r) {
        yd[r] = device_out(ys, slices);
        conv3d_forward(gpu, xd, cc_gpu.w, cc_gpu.b, yd[r], true);
        gxd[r] = device_out(xs, slices);
        gwd[r] = Tensor::zeros(w32.shape(), DType::F32, Device::CUDA);
        gbd[r] = Tensor::zeros({cc.cout}, DType::F32, Device::CUDA);
        conv3d_backward(gpu, xd, cc_gpu.w, gyd, gxd[r], gwd[r], gbd[r], md);
      }
      // Bounds: S from the fp32 CPU ops on absolute values.
      Tensor Sy = Tensor::empty(ys), Sx = Tensor::empty(xs), Sw = Tensor::zeros(w32.shape());
      conv3d_forward(cpu, abs_of(x32), abs_of(w32), abs_of(b32), Sy, false);
      conv3d_backward(cpu, abs_of(x32), abs_of(w32), abs_of(gy32), Sx, Sw, Tensor());
      const double K_fwd = fan + 1, K_bwd = double(cc.cout) * cc.k * cc.k * cc.k,
                   K_w = double(xs[0]) * xs[2] * xs[3] * xs[4];
      EXPECT_TRUE(within_bound("forward " + tag, values(y), values(yd[0]), Sy, 2 * gamma_n(K_fwd)));
      EXPECT_TRUE(
          within_bound("backward-data " + tag, values(gx), values(gxd[0]), Sx, 2 * gamma_n(K_bwd)));
      EXPECT_TRUE(
          within_bound("backward-filter " + tag, gw, gwd[0].to(Device::CPU), Sw, 2 * gamma_n(K_w)));
      EXPECT_TRUE(bits_equal("bias gradient " + tag, gb, gbd[0].to(Device::CPU)));
      EXPECT_TRUE(bits_equal("forward repeat " + tag, values(yd[0]), values(yd[1])));
      EXPECT_TRUE(bits_equal("backward-data repeat " + tag, values(gxd[0]), values(gxd[1])));
      EXPECT_TRUE(bits_equal("backward-filter repeat " + tag, gwd[0].to(Device::CPU),
                             gwd[1].to(Device::CPU)));
    }
  const Context::GraphPlans g = gpu.graph_plans();
  std::printf(
      "cuDNN graph plans: %d built, %d refused (refusals are warned on stderr), largest "
      "workspace %zu B; %s\n",
      g.built, g.refused, g.max_workspace, gpu_library_versions().c_str());
}

// The performance path must be the graph path: packed bf16 operands of the reference network's
// layers (including the padded 8-channel input and head) are never refused by cuDNN. A failure
// here means this cuDNN runs the bf16 network on its fallbacks (numerically right, slow).
// Channel-slice operands may be refused (they then run on packed copies, conv_cl.h); that is
// reported, not failed.
TEST(Bf16Parity, GraphPathTakenForPackedReferenceLayers) {
  CUSEG_REQUIRE_CUDA();
  Context gpu(Device::CUDA);
  std::mt19937 rng(8);
  struct Layer {
    int cin, cout, k, edge;
  };
  // Level-1 shapes at batch 2, 32^3 (same plans' engines as 96^3, cheaper to build inputs for).
  for (const Layer& l : {Layer{8, 32, 3, 32}, Layer{32, 32, 3, 32}, Layer{96, 32, 3, 32},
                         Layer{64, 64, 3, 16}, Layer{384, 128, 3, 8}, Layer{32, 8, 1, 32}}) {
    const Shape xs = {2, l.cin, l.edge, l.edge, l.edge}, ys = {2, l.cout, l.edge, l.edge, l.edge};
    const Copies c = make_copies(gpu, f32_random({l.cout, l.cin, l.k, l.k, l.k}, rng, -0.1f, 0.1f),
                                 f32_random({l.cout}, rng));
    const Tensor x = cl_from(f32_random(xs, rng)).to(Device::CUDA);
    const Tensor gy = cl_from(f32_random(ys, rng)).to(Device::CUDA);
    Tensor y = Tensor::empty_channels_last(ys, DType::BF16, Device::CUDA);
    Tensor gx = Tensor::empty_channels_last(xs, DType::BF16, Device::CUDA);
    Tensor gw = Tensor::zeros({l.cout, l.cin, l.k, l.k, l.k}, DType::F32, Device::CUDA);
    Tensor gb = Tensor::zeros({l.cout}, DType::F32, Device::CUDA);
    const int before = gpu.graph_plans().refused;
    conv3d_forward(gpu, x, c.w, c.b, y, true);
    conv3d_backward(gpu, x, c.w, gy, gx, gw, gb, x);
    EXPECT_EQ(gpu.graph_plans().refused, before)
        << "cuDNN refused a packed bf16 graph for " << l.cin << " -> " << l.cout << " k" << l.k
        << " at " << l.edge << "^3 (see the warning above); " << gpu_library_versions();
  }
  std::printf("graph plans built: %d; %s\n", gpu.graph_plans().built,
              gpu_library_versions().c_str());
}
