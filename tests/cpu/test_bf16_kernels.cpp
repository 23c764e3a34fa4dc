// The bf16 channels-last CPU twins (kernels/*_cl*, bias_grad, weight_copy, channels_last, the bf16
// cross-entropy and Adam's copy) against the fp32 ops they mirror, on the CPU. Each bf16 op is
// defined as "the fp32 op on the bf16-rounded inputs, its stored result rounded once to bf16";
// where the twin performs exactly the fp32 op's floating-point operations in the same order, the
// comparison is EXACT (bit equality), which is what these tests check. The CUDA kernels are held
// to the same definition by tests/cuda/test_bf16_parity.cpp.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "cuseg/engine/tensor.h"
#include "cuseg/kernels/adam.h"
#include "cuseg/kernels/bf16.h"
#include "cuseg/kernels/bias_grad.h"
#include "cuseg/kernels/channels_last.h"
#include "cuseg/kernels/cross_entropy.h"
#include "cuseg/kernels/elementwise.h"
#include "cuseg/kernels/maxpool3d.h"
#include "cuseg/kernels/upsample.h"
#include "cuseg/kernels/weight_copy.h"
#include "test_util.h"

using namespace cuseg;

namespace {

// bf16 RNE by a different route: the two neighbouring bf16 values in double, nearest wins,
// ties to the even significand.
float reference_bf16(float f) {
  if (std::isnan(f) || std::isinf(f)) return f;
  uint32_t u;
  std::memcpy(&u, &f, 4);
  const uint32_t lo_bits = u & 0xffff0000u;
  float lo;
  std::memcpy(&lo, &lo_bits, 4);
  // The next bf16 away from zero, in double (past the largest finite bf16 it is 2^128: any
  // value rounding up to it overflows to infinity, as IEEE rounding does).
  const uint32_t hi_bits = lo_bits + 0x10000u;
  double hi;
  if ((hi_bits & 0x7fffffffu) >= 0x7f800000u) {
    hi = std::copysign(std::ldexp(1.0, 128), double(f));
  } else {
    float h;
    std::memcpy(&h, &hi_bits, 4);
    hi = h;
  }
  const double dl = std::fabs(double(f) - double(lo)), dh = std::fabs(hi - double(f));
  const bool up = dh < dl || (dh == dl && ((lo_bits >> 16) & 1u));
  if (!up) return lo;
  return std::fabs(hi) >= std::ldexp(1.0, 128) ? std::copysign(INFINITY, f) : float(hi);
}

bool same_bits(float a, float b) {
  return std::memcmp(&a, &b, 4) == 0;
}

// Random fp32 values in [lo, hi] that are NOT bf16 values (so rounding matters).
Tensor f32_random(const Shape& s, std::mt19937& rng, float lo = -2.f, float hi = 2.f) {
  return uniform_tensor(s, rng, lo, hi);
}

// The bf16-rounded copy of an fp32 tensor (same layout).
Tensor rounded(const Tensor& t) {
  Tensor r = Tensor::empty(t.shape());
  for (int64_t i = 0; i < t.numel(); ++i) r.f32()[i] = round_bf16(t.f32()[i]);
  return r;
}

// fp32 NCDHW -> bf16 channels-last with `pad` extra zero channels (the twin under test).
Tensor to_cl(const Tensor& f, int pad = 0) {
  Shape s = f.shape();
  s[1] += pad;
  Tensor t = Tensor::empty_channels_last(s, DType::BF16, Device::CPU);
  to_channels_last_cpu(f.vol(), t.cl<bf16>(), VolCL<const bf16>{});
  return t;
}

Tensor to_f32(const Tensor& cl, int channels = -1) {
  Shape s = cl.shape();
  if (channels >= 0) s[1] = channels;
  Tensor f = Tensor::empty(s);
  from_channels_last_cpu(cl.cl<const bf16>(), f.vol());
  return f;
}

void expect_bits_equal(const Tensor& a, const Tensor& b, const char* what) {
  ASSERT_EQ(a.shape(), b.shape()) << what;
  int64_t bad = 0;
  for (int64_t i = 0; i < a.numel(); ++i)
    if (!same_bits(a.f32()[i], b.f32()[i]) && bad++ < 5)
      ADD_FAILURE() << what << ": element " << i << " " << a.f32()[i] << " vs " << b.f32()[i];
  EXPECT_EQ(bad, 0) << what;
}

}  // namespace

TEST(Bf16, RoundToNearestEvenAndSpecials) {
  std::mt19937 rng(1);
  std::uniform_int_distribution<uint32_t> bits;
  for (int i = 0; i < 200000; ++i) {
    uint32_t u = bits(rng);
    float f;
    std::memcpy(&f, &u, 4);
    if (std::isnan(f)) continue;
    ASSERT_TRUE(same_bits(round_bf16(f), reference_bf16(f))) << std::hexfloat << f;
    if (std::isfinite(f) && std::isfinite(round_bf16(f))) {
      const double err = std::fabs(double(round_bf16(f)) - f);
      if (std::fabs(f) >= std::numeric_limits<float>::min())
        ASSERT_LE(err, std::ldexp(std::fabs(double(f)), -8)) << "|rn(v) - v| <= 2^-8 |v|";
      else
        ASSERT_LE(err, std::ldexp(1.0, -134)) << "subnormal: half the spacing 2^-133";
    }
  }
  // Exact ties go to the even significand.
  EXPECT_EQ(round_bf16(1.f + 1.f / 256.f), 1.f);                // tie between 1 and 1+2^-7
  EXPECT_EQ(round_bf16(1.f + 3.f / 256.f), 1.f + 4.f / 256.f);  // tie, even is upward
  EXPECT_EQ(round_bf16(1.f + 1.f / 256.f + 1e-7f), 1.f + 1.f / 128.f);
  EXPECT_TRUE(std::isnan(round_bf16(std::numeric_limits<float>::quiet_NaN())));
  EXPECT_EQ(round_bf16(std::numeric_limits<float>::infinity()),
            std::numeric_limits<float>::infinity());
  EXPECT_EQ(round_bf16(std::numeric_limits<float>::max()), std::numeric_limits<float>::infinity());
  EXPECT_EQ(round_bf16(-0.f), 0.f);
  EXPECT_TRUE(std::signbit(round_bf16(-0.f)));
  // bf16 values are fixed points; widening is exact.
  for (float v : {1.f, -2.5f, 0.0078125f, 3.0e38f})
    EXPECT_EQ(round_bf16(round_bf16(v)), round_bf16(v));
  EXPECT_EQ(bf16_ulp(1.f), 1.f / 128.f);
  EXPECT_EQ(bf16_ulp(1.99f), 1.f / 128.f);
  EXPECT_EQ(bf16_ulp(0.75f), 1.f / 256.f);
}

TEST(Bf16, ChannelsLastConversionsPadAndMask) {
  std::mt19937 rng(2);
  const Tensor f = f32_random({2, 3, 3, 4, 5}, rng);
  const Tensor cl = to_cl(f, 5);  // 3 channels padded to 8
  EXPECT_EQ(cl.strides(), (Shape{8 * 60, 1, 8 * 20, 8 * 5, 8}));
  const Tensor back = to_f32(cl, 3);
  expect_bits_equal(back, rounded(f), "round trip = rounding");
  const Tensor all = to_f32(cl);
  for (int n = 0; n < 2; ++n)
    for (int c = 3; c < 8; ++c)
      for (int v = 0; v < 60; ++v) ASSERT_EQ(all.vol().at(n, c)[v], 0.f) << "padding";
  // The mask zeroes where mask <= 0.
  const Tensor m = to_cl(f32_random({2, 3, 3, 4, 5}, rng));
  Tensor masked = Tensor::empty_channels_last({2, 3, 3, 4, 5}, DType::BF16, Device::CPU);
  to_channels_last_cpu(f.vol(), masked.cl<bf16>(), m.cl<const bf16>());
  const Tensor mf = to_f32(m), got = to_f32(masked);
  for (int64_t i = 0; i < f.numel(); ++i)
    ASSERT_EQ(got.f32()[i], mf.f32()[i] > 0.f ? round_bf16(f.f32()[i]) : 0.f);
  // copy_channels_last into a slice of a wider buffer and back out, with zero padding.
  Tensor wide = Tensor::zeros({2, 11, 3, 4, 5}, DType::F32);
  Tensor wide_cl = to_cl(wide);
  Tensor slice = wide_cl.channel_slice(4, 7);
  EXPECT_TRUE(slice.is_channels_last());
  EXPECT_FALSE(slice.is_dense());
  copy_channels_last_cpu(cl.channel_slice(0, 3).cl<const bf16>(), slice.cl<bf16>());
  Tensor packed = Tensor::empty_channels_last({2, 8, 3, 4, 5}, DType::BF16, Device::CPU);
  copy_channels_last_cpu(slice.cl<const bf16>(), packed.cl<bf16>());
  expect_bits_equal(to_f32(packed), to_f32(cl), "slice round trip + padding");
}

TEST(Bf16, MaxPoolChannelsLastIsFp32PoolOfRoundedValues) {
  std::mt19937 rng(3);
  for (const Shape& s : {Shape{2, 8, 4, 6, 4}, Shape{1, 3, 5, 3, 7}}) {
    // Values in a small set so that ties (first maximum wins) occur often.
    Tensor f = Tensor::empty(s);
    std::uniform_int_distribution<int> u(-3, 3);
    for (int64_t i = 0; i < f.numel(); ++i)
      f.f32()[i] = float(u(rng)) * 0.25f + 0.001f * float(i % 3);
    const Tensor fr = rounded(f);
    const Tensor x = to_cl(f);
    const Shape ys = {s[0], s[1], s[2] / 2, s[3] / 2, s[4] / 2};
    Tensor y = Tensor::empty_channels_last(ys, DType::BF16, Device::CPU);
    maxpool3d_cl_forward_cpu(x.cl<const bf16>(), y.cl<bf16>());
    Tensor yref = Tensor::empty(ys);
    maxpool3d_forward_cpu(fr.vol(), yref.vol());
    expect_bits_equal(to_f32(y), yref, "maxpool forward");
    // Backward, fused: (route(gy) + gadd) * (x > 0), rounded once.
    const Tensor gyf = f32_random(ys, rng), gaddf = f32_random(s, rng);
    const Tensor gy = to_cl(gyf), gadd = to_cl(gaddf);
    Tensor gx = Tensor::empty_channels_last(s, DType::BF16, Device::CPU);
    MaxPoolClBackward a;
    a.x = x.cl<const bf16>();
    a.gy = gy.cl<const bf16>();
    a.gadd = gadd.cl<const bf16>();
    a.gx = gx.cl<bf16>();
    a.relu_mask = true;
    maxpool3d_cl_backward_cpu(a);
    Tensor gref = Tensor::empty(s);
    maxpool3d_backward_cpu(fr.vol(), rounded(gyf).vol(), gref.vol());
    const Tensor gaddr = rounded(gaddf);
    for (int64_t i = 0; i < gref.numel(); ++i)
      gref.f32()[i] = round_bf16(relu_bwd(fr.f32()[i], gref.f32()[i] + gaddr.f32()[i]));
    expect_bits_equal(to_f32(gx), gref, "maxpool backward + add + relu");
  }
}

TEST(Bf16, UpsampleChannelsLastIsFp32UpsampleOfRoundedValues) {
  std::mt19937 rng(4);
  for (const Shape& s : {Shape{2, 8, 3, 4, 5}, Shape{1, 5, 1, 2, 3}}) {
    const Tensor f = f32_random(s, rng);
    const Shape ys = {s[0], s[1], 2 * s[2], 2 * s[3], 2 * s[4]};
    // Forward into a channel slice [3, 3 + C) of a wider channels-last buffer (the concat).
    Tensor cat = Tensor::empty_channels_last({s[0], s[1] + 6, ys[2], ys[3], ys[4]}, DType::BF16,
                                             Device::CPU);
    Tensor y = cat.channel_slice(3, 3 + s[1]);
    upsample2x_cl_forward_cpu(to_cl(f).cl<const bf16>(), y.cl<bf16>());
    Tensor yref = Tensor::empty(ys);
    upsample2x_forward_cpu(rounded(f).vol(), yref.vol());
    expect_bits_equal(to_f32(y), rounded(yref), "upsample forward");
    // Backward from a slice, with the ReLU mask of the input.
    const Tensor gyf = f32_random(ys, rng);
    Tensor gcat = to_cl(Tensor::zeros({s[0], s[1] + 6, ys[2], ys[3], ys[4]}));
    Tensor gy = gcat.channel_slice(2, 2 + s[1]);
    copy_channels_last_cpu(to_cl(gyf).cl<const bf16>(), gy.cl<bf16>());
    const Tensor mask = to_cl(f);
    Tensor gx = Tensor::empty_channels_last(s, DType::BF16, Device::CPU);
    upsample2x_cl_backward_cpu(gy.cl<const bf16>(), gx.cl<bf16>(), mask.cl<const bf16>());
    Tensor gref = Tensor::empty(s);
    upsample2x_backward_cpu(rounded(gyf).vol(), gref.vol());
    const Tensor fr = rounded(f);
    for (int64_t i = 0; i < gref.numel(); ++i)
      gref.f32()[i] = round_bf16(relu_bwd(fr.f32()[i], gref.f32()[i]));
    expect_bits_equal(to_f32(gx), gref, "upsample backward + relu");
  }
}

// The bias gradient's fixed-order fp32 sum against a double sum, within the bound stated in
// kernels/bias_grad.h: (chunk + chunks) * 2^-24 * sum |dy|.
TEST(Bf16, BiasGradientWithinItsSummationBound) {
  std::mt19937 rng(5);
  const Shape s = {2, 8, 9, 10, 11};  // 990 voxels: 2 chunks of 512 per batch element
  const Tensor f = f32_random(s, rng);
  const Tensor dy = to_cl(f);
  std::vector<float> gb(8, 0.5f);
  bias_grad_cl_cpu(dy.cl<const bf16>(), gb.data());
  const Tensor fr = rounded(f);
  const double chunks = double(bias_grad_chunks(dy.cl<const bf16>()));
  for (int c = 0; c < 8; ++c) {
    double sum = 0, abs_sum = 0;
    for (int n = 0; n < 2; ++n)
      for (int64_t v = 0; v < 990; ++v) {
        const double x = fr.vol().at(n, c)[v];
        sum += x;
        abs_sum += std::fabs(x);
      }
    const double bound = (double(kBiasGradChunk) + chunks) * std::ldexp(1.0, -24) * abs_sum +
                         std::ldexp(std::fabs(0.5 + sum), -24);  // the final += into gb
    EXPECT_NEAR(double(gb[size_t(c)]), 0.5 + sum, bound) << "channel " << c;
  }
}

// The bf16 cross-entropy reads bf16 logits exactly as the fp32 op reads their widened values:
// the loss is bit-identical, the gradient is the fp32 gradient rounded once.
TEST(Bf16, CrossEntropyChannelsLastIsFp32OnRoundedLogits) {
  std::mt19937 rng(6);
  const int K = 3;
  const Shape s = {2, K, 4, 5, 6};
  const Tensor f = f32_random(s, rng, -4.f, 4.f);
  const Tensor fr = rounded(f);
  std::vector<uint8_t> labels(size_t(2 * 120));
  for (auto& l : labels) l = uint8_t(rng() % K);
  const std::vector<float> w = {1.f, 1.f, 3.f};
  Tensor g32 = Tensor::empty(s);
  CeArgs a;
  a.logits = fr.vol();
  a.labels = labels.data();
  a.weights = w.data();
  a.gscale = 1.f / 300.f;
  a.grad = g32.vol();
  const double l32 = cross_entropy_cpu(a);
  const Tensor logits = to_cl(f, 5);  // padded to 8 channels, the network's head
  Tensor grad = to_cl(Tensor::zeros({2, 8, 4, 5, 6}));
  CeArgsCL b;
  b.logits = logits.channel_slice(0, K).cl<const bf16>();
  b.labels = labels.data();
  b.weights = w.data();
  b.gscale = 1.f / 300.f;
  b.grad = grad.channel_slice(0, K).cl<bf16>();
  const double l16 = cross_entropy_cl_cpu(b);
  EXPECT_EQ(l16, l32);
  expect_bits_equal(to_f32(grad, K), rounded(g32), "gradient");
  const Tensor all = to_f32(grad);
  for (int n = 0; n < 2; ++n)
    for (int c = K; c < 8; ++c)
      for (int v = 0; v < 120; ++v) ASSERT_EQ(all.vol().at(n, c)[v], 0.f) << "padding untouched";
  // Argmax agrees with the fp32 argmax of the rounded logits.
  std::vector<uint8_t> am32(240), am16(240);
  argmax_channels_cpu(fr.vol(), am32.data());
  argmax_channels_cl_cpu(logits.channel_slice(0, K).cl<const bf16>(), am16.data());
  EXPECT_EQ(am16, am32);
}

TEST(Bf16, FilterMapsAndAdamCopy) {
  std::mt19937 rng(7);
  const int cout = 3, cin = 5, cin_pad = 8, cout_pad = 8, k3 = 27;
  const Tensor w = f32_random({cout, cin, 3, 3, 3}, rng);
  // Master -> padded channels-last bf16 copy -> fp32 padded channels-first -> master.
  std::vector<bf16> copy(size_t(cout_pad * k3 * cin_pad), to_bf16(0.f));
  filter_copy_cpu(FilterRef{w.raw(), false, filter_map_master(cout, cin, k3)},
                  FilterRef{copy.data(), true, filter_map_cl(cout, cin, cin_pad, k3)}, false);
  for (int co = 0; co < cout_pad; ++co)
    for (int s = 0; s < k3; ++s)
      for (int ci = 0; ci < cin_pad; ++ci) {
        const float got = to_float(copy[size_t((co * k3 + s) * cin_pad + ci)]);
        const float want =
            co < cout && ci < cin ? round_bf16(w.f32()[(co * cin + ci) * k3 + s]) : 0.f;
        ASSERT_EQ(got, want) << co << " " << s << " " << ci;
      }
  std::vector<float> ncdhw(size_t(cout_pad * cin_pad * k3), 0.f);
  filter_copy_cpu(FilterRef{copy.data(), true, filter_map_cl(cout_pad, cin_pad, cin_pad, k3)},
                  FilterRef{ncdhw.data(), false, filter_map_master(cout_pad, cin_pad, k3)}, false);
  std::vector<float> acc(size_t(cout * cin * k3), 1.f);
  filter_copy_cpu(FilterRef{ncdhw.data(), false, filter_map_ncdhw(cout, cin, cin_pad, k3)},
                  FilterRef{acc.data(), false, filter_map_master(cout, cin, k3)}, true);
  for (int64_t i = 0; i < int64_t(acc.size()); ++i)
    ASSERT_EQ(acc[size_t(i)], 1.f + round_bf16(w.f32()[i])) << "accumulated round trip";

  // Adam writes the copy in the same pass: copy == rn(updated master), padding untouched.
  Tensor p = w.clone(), g = f32_random(w.shape(), rng), m = Tensor::zeros(w.shape()),
         v = Tensor::zeros(w.shape());
  std::vector<bf16> copy2(copy.size(), to_bf16(0.f));
  AdamTensor t{p.f32(), g.f32(), m.f32(), v.f32(), p.numel()};
  t.copy = copy2.data();
  t.copy_map = filter_map_cl(cout, cin, cin_pad, k3);
  AdamCoeffs c{0.9f, 0.999f, 1e-8f, 1e-2f, std::sqrt(1.f - 0.999f)};
  adam_step_cpu(&t, 1, c);
  for (int co = 0; co < cout_pad; ++co)
    for (int s = 0; s < k3; ++s)
      for (int ci = 0; ci < cin_pad; ++ci) {
        const float got = to_float(copy2[size_t((co * k3 + s) * cin_pad + ci)]);
        const float want =
            co < cout && ci < cin ? round_bf16(p.f32()[(co * cin + ci) * k3 + s]) : 0.f;
        ASSERT_EQ(got, want);
      }
  for (int64_t i = 0; i < p.numel(); ++i) ASSERT_NE(p.f32()[i], w.f32()[i]) << "master updated";
}
