// The bf16 path on the CPU (the bf16 oracle): channels-last tensors, the bf16 engine ops against
// the fp32 ops on bf16-rounded inputs, and a whole bf16 U-Net against the fp32 one.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "cuseg/core/check.h"
#include "cuseg/engine/context.h"
#include "cuseg/engine/ops.h"
#include "cuseg/engine/optim.h"
#include "cuseg/engine/tensor.h"
#include "cuseg/model/unet3d.h"
#include "test_util.h"
#include "train_step_util.h"

using namespace cuseg;
using train_step::rel_err;

namespace {

Tensor rounded(const Tensor& t) {
  Tensor r = t.clone();
  for (int64_t i = 0; i < r.numel(); ++i) r.f32()[i] = round_bf16(r.f32()[i]);
  return r;
}

// fp32 NCDHW -> bf16 channels-last through the engine op.
Tensor to_bf16_cl(Context& ctx, const Tensor& f, int64_t channels = -1) {
  Shape s = f.shape();
  if (channels >= 0) s[1] = channels;
  Tensor t = Tensor::empty_channels_last(s, DType::BF16, Device::CPU);
  convert(ctx, f, t);
  return t;
}

Tensor to_f32(Context& ctx, const Tensor& cl) {
  Tensor f = Tensor::empty(cl.shape());
  convert(ctx, cl, f);
  return f;
}

int64_t count_bit_differences(const Tensor& a, const Tensor& b) {
  int64_t n = 0;
  for (int64_t i = 0; i < a.numel(); ++i) n += std::memcmp(a.f32() + i, b.f32() + i, 4) != 0;
  return n;
}

}  // namespace

TEST(ChannelsLast, LayoutViewsAndCopies) {
  Tensor t = Tensor::empty_channels_last({2, 8, 3, 4, 5}, DType::BF16, Device::CPU);
  EXPECT_EQ(t.strides(), (Shape{480, 1, 160, 40, 8}));
  EXPECT_TRUE(t.is_channels_last());
  EXPECT_TRUE(t.is_dense());
  EXPECT_FALSE(t.is_contiguous());
  EXPECT_THROW(t.vol(), Error);  // channels-last is not a Vol
  Tensor s = t.channel_slice(2, 5);
  EXPECT_TRUE(s.is_channels_last());
  EXPECT_FALSE(s.is_dense());
  EXPECT_EQ(s.cl<const bf16>().cs, 8);
  EXPECT_EQ(s.cl<const bf16>().p, t.cl<const bf16>().p + 2);
  // zeros_like of a slice [0, 3): a zeroed 8-channel buffer's slice, widened back with as_shape.
  Tensor z = Tensor::zeros_like(t.channel_slice(0, 3));
  EXPECT_EQ(z.shape(), (Shape{2, 3, 3, 4, 5}));
  EXPECT_EQ(z.strides(), t.strides());
  Tensor wide = z.as_shape({2, 8, 3, 4, 5});
  for (int64_t i = 0; i < wide.numel(); ++i) ASSERT_EQ(wide.data<bf16>()[i].bits, 0);
  EXPECT_THROW(z.as_shape({2, 9, 3, 4, 5}), Error);  // past the storage
  // A packed [N, 1, D, H, W] is both layouts.
  EXPECT_TRUE(Tensor::empty({2, 1, 3, 4, 5}, DType::BF16).is_channels_last());
  // Dense copies keep the layout.
  for (int64_t i = 0; i < t.numel(); ++i) t.data<bf16>()[i] = to_bf16(float(i));
  Tensor c = t.clone();
  EXPECT_EQ(c.strides(), t.strides());
  EXPECT_EQ(std::memcmp(c.raw(), t.raw(), t.nbytes()), 0);
}

// Every bf16 engine op is the fp32 op on the bf16-rounded inputs, its stored result rounded once.
TEST(Bf16Ops, ConvolutionIsFp32OnRoundedValues) {
  Context ctx(Device::CPU);
  std::mt19937 rng(11);
  const int N = 2, Cin = 8, Cout = 16, D = 5, H = 6, W = 7, k = 3;
  const Tensor x = uniform_tensor({N, Cin, D, H, W}, rng),
               w = uniform_tensor({Cout, Cin, k, k, k}, rng);
  const Tensor b = uniform_tensor({Cout}, rng), gy = uniform_tensor({N, Cout, D, H, W}, rng);
  const Tensor mask = uniform_tensor({N, Cin, D, H, W}, rng);
  // The bf16 weight copy through a Param, as the model holds it.
  Param p;
  p.value = w.clone();
  p.copy = Tensor::empty_channels_last({Cout, Cin, k, k, k}, DType::BF16, Device::CPU);
  p.copy.zero();
  p.copy_map = filter_map_cl(Cout, Cin, Cin, k * k * k);
  refresh_weight_copy(ctx, p);
  Param pb;
  pb.value = b.clone();
  pb.copy = Tensor::zeros({Cout}, DType::BF16);
  pb.copy_map = filter_map_master(Cout, 1, 1);
  refresh_weight_copy(ctx, pb);
  // Forward into a channel slice of a wider output (the skip connection's case).
  const Tensor xb = to_bf16_cl(ctx, x);
  Tensor out = Tensor::empty_channels_last({N, Cout + 8, D, H, W}, DType::BF16, Device::CPU);
  Tensor y = out.channel_slice(8, 8 + Cout);
  conv3d_forward(ctx, xb, p.copy, pb.copy, y, true);
  Tensor yref = Tensor::empty({N, Cout, D, H, W});
  conv3d_forward(ctx, rounded(x), rounded(w), rounded(b), yref, true);
  EXPECT_EQ(count_bit_differences(to_f32(ctx, y), rounded(yref)), 0);
  // Backward with the ReLU mask; gradients accumulate into non-zero starts.
  const Tensor gyb = to_bf16_cl(ctx, gy), mb = to_bf16_cl(ctx, mask);
  Tensor gx = Tensor::empty_channels_last(xb.shape(), DType::BF16, Device::CPU);
  Tensor gw = Tensor::zeros(w.shape()), gb = Tensor::zeros({Cout});
  conv3d_backward(ctx, xb, p.copy, gyb, gx, gw, gb, mb);
  Tensor gxr = Tensor::empty(x.shape()), gwr = Tensor::zeros(w.shape()),
         gbr = Tensor::zeros({Cout});
  conv3d_backward(ctx, rounded(x), rounded(w), rounded(gy), gxr, gwr, gbr, rounded(mask));
  EXPECT_EQ(count_bit_differences(to_f32(ctx, gx), rounded(gxr)), 0) << "gx";
  EXPECT_EQ(count_bit_differences(gw, gwr), 0) << "gw: the same fp32 computation";
  // The bias gradient sums in its own fixed order (kernels/bias_grad.h) where the fp32 conv sums
  // per GEMM row: equal within recursive-summation error, (n + 1) 2^-24 sum|gy| for n terms.
  const Tensor gyr = rounded(gy);
  for (int c = 0; c < Cout; ++c) {
    double abs_sum = 0;
    for (int n = 0; n < N; ++n)
      for (int64_t v = 0; v < D * H * W; ++v) abs_sum += std::fabs(gyr.vol().at(n, c)[v]);
    EXPECT_NEAR(gb.f32()[c], gbr.f32()[c], 2.0 * (N * D * H * W + 1) * std::ldexp(abs_sum, -24));
  }
}

TEST(Bf16Ops, CrossEntropyArgmaxAndConvert) {
  Context ctx(Device::CPU);
  std::mt19937 rng(12);
  const Tensor logits = uniform_tensor({2, 3, 4, 5, 6}, rng, -3.f, 3.f);
  Tensor lab = Tensor::empty({2, 4, 5, 6}, DType::U8);
  for (int64_t i = 0; i < lab.numel(); ++i) lab.data<uint8_t>()[i] = uint8_t(rng() % 3);
  const std::vector<float> w = {1.f, 1.f, 3.f};
  // bf16 logits as the network's head gives them: [0, 3) of an 8-channel buffer.
  const Tensor head = to_bf16_cl(ctx, logits, 8);
  const Tensor lb = head.channel_slice(0, 3);
  Tensor g = Tensor::zeros_like(lb);
  const double loss = weighted_cross_entropy(ctx, lb, lab, w, g);
  Tensor g32 = Tensor::empty(logits.shape());
  const double loss32 = weighted_cross_entropy(ctx, rounded(logits), lab, w, g32);
  EXPECT_EQ(loss, loss32);
  EXPECT_EQ(count_bit_differences(to_f32(ctx, g), rounded(g32)), 0);
  Tensor am = Tensor::empty({2, 4, 5, 6}, DType::U8), am32 = Tensor::empty({2, 4, 5, 6}, DType::U8);
  argmax_channels(ctx, lb, am);
  argmax_channels(ctx, rounded(logits), am32);
  EXPECT_EQ(std::memcmp(am.raw(), am32.raw(), am.nbytes()), 0);
  // convert refuses what it cannot do.
  EXPECT_THROW(convert(ctx, logits, Tensor::empty(logits.shape())), Error);  // fp32 -> fp32
  EXPECT_THROW(convert(ctx, head, Tensor::empty({2, 9, 4, 5, 6})), Error);   // invent channels
}

// The whole bf16 network (CPU oracle) against the fp32 one from the same fp32 weights.
// Bound (norm-relative, logits and every parameter gradient): every stored bf16 tensor carries a
// relative rounding error of at most u = 2^-8 per element; a forward stores ~2 tensors per conv
// level and the backward as many again, and a rounding error propagates through a ReLU network
// with a gain of order 1 per layer for these weights (PyTorch init, |w| ~ 1/sqrt(fan_in)). With
// 2 levels (7 convs) the accumulated error is bounded by about 7 x 2 x u ~ 5.5 %: we require
// < 6 % for the logits and < 10 % for gradients, whose reductions over every voxel cancel more.
// Measured (2026-12-01): logits 0.29 %, loss 0.02 %, gradients 0.1 % (head) to 4.4 % (the first
// conv's weight, a sum over every voxel of products of the input and a gradient that went
// through the whole backward).
TEST(Bf16Model, ForwardAndBackwardFollowFp32) {
  Context ctx(Device::CPU);
  const UNetConfig cfg{1, 3, {8, 16}};
  UNet3D f32(cfg, Device::CPU, 3), b16(cfg, Device::CPU, 3, Precision::BF16);
  EXPECT_EQ(b16.precision(), Precision::BF16);
  std::mt19937 rng(13);
  const Tensor x = uniform_tensor({2, 1, 8, 12, 10}, rng);
  Tensor lab = Tensor::empty({2, 8, 12, 10}, DType::U8);
  for (int64_t i = 0; i < lab.numel(); ++i) lab.data<uint8_t>()[i] = uint8_t(rng() % 3);
  const Tensor& l32 = f32.forward(ctx, x);
  const Tensor& l16 = b16.forward(ctx, x);
  EXPECT_EQ(l16.dtype(), DType::BF16);
  EXPECT_EQ(l16.shape(), l32.shape());
  const Tensor l16f = b16.logits_f32(ctx).clone();
  const double e_logits = rel_err(l32, l16f);
  std::printf("bf16 vs fp32 logits: rel err %.2e\n", e_logits);
  EXPECT_LT(e_logits, 0.06);
  const std::vector<float> w = {1.f, 1.f, 3.f};
  Tensor g32 = Tensor::zeros_like(l32), g16 = Tensor::zeros_like(l16);
  const double loss32 = weighted_cross_entropy(ctx, l32, lab, w, g32);
  const double loss16 = weighted_cross_entropy(ctx, l16, lab, w, g16);
  std::printf("loss fp32 %.6f bf16 %.6f\n", loss32, loss16);
  EXPECT_NEAR(loss16, loss32, 0.06 * loss32);
  f32.zero_grad();
  b16.zero_grad();
  f32.backward(ctx, g32);
  b16.backward(ctx, g16);
  auto p32 = f32.parameters(), p16 = b16.parameters();
  for (size_t i = 0; i < p32.size(); ++i) {
    const double e = rel_err(p32[i]->grad, p16[i]->grad);
    std::printf("grad %-20s rel err %.2e\n", p32[i]->name.c_str(), e);
    EXPECT_LT(e, 0.10) << p32[i]->name;
  }
  // An fp32 gradient of the logits is accepted too (converted into the padded head).
  Tensor g16f = Tensor::empty(l32.shape());
  convert(ctx, g16, g16f);
  std::vector<Tensor> before;
  for (Param* p : p16) before.push_back(p->grad.clone());
  b16.zero_grad();
  b16.backward(ctx, g16f);
  for (size_t i = 0; i < p16.size(); ++i)
    EXPECT_EQ(count_bit_differences(p16[i]->grad, before[i]), 0) << p16[i]->name;
}

// Adam writes the bf16 copies with the masters; anything else that writes values marks them.
TEST(Bf16Model, WeightCopiesFollowTheMasters) {
  Context ctx(Device::CPU);
  const UNetConfig cfg{1, 3, {8, 16}};
  UNet3D a(cfg, Device::CPU, 5, Precision::BF16), b(cfg, Device::CPU, 6, Precision::BF16);
  std::mt19937 rng(14);
  const Tensor x = uniform_tensor({1, 1, 8, 8, 8}, rng);
  a.forward(ctx, x);
  Tensor la = a.logits_f32(ctx).clone();
  // b takes a's weights by direct writes: copies are stale until invalidated.
  auto pa = a.parameters(), pb = b.parameters();
  for (size_t i = 0; i < pa.size(); ++i) pb[i]->value.copy_from(pa[i]->value);
  b.invalidate_weight_copies();
  b.forward(ctx, x);
  EXPECT_EQ(count_bit_differences(la, b.logits_f32(ctx)), 0);
  // One Adam step on a: the copies equal a fresh refresh of the updated masters.
  Tensor g = Tensor::zeros_like(a.forward(ctx, x));
  Tensor lab = Tensor::zeros({1, 8, 8, 8}, DType::U8);
  weighted_cross_entropy(ctx, a.forward(ctx, x), lab, {1.f, 1.f, 3.f}, g);
  a.zero_grad();
  a.backward(ctx, g);
  Adam opt(a.parameters(), AdamConfig{1e-2f});
  opt.step(ctx);
  for (Param* p : a.parameters()) {
    EXPECT_FALSE(p->copy_stale);
    Param q = *p;
    q.copy = p->copy.clone();
    refresh_weight_copy(ctx, q);
    EXPECT_EQ(std::memcmp(q.copy.raw(), p->copy.raw(), p->copy.nbytes()), 0) << p->name;
  }
  // bf16 needs filter counts that are multiples of 8.
  EXPECT_THROW(UNet3D(UNetConfig{1, 3, {4, 8}}, Device::CPU, 0, Precision::BF16), Error);
}

// The planned bytes of a forward-only call equal the formula the inference planner uses.
TEST(Bf16Model, ForwardBytesArePlannedExactly) {
  Context ctx(Device::CPU);
  for (const Precision pr : {Precision::F32, Precision::BF16}) {
    const UNetConfig cfg{1, 3, {8, 16, 32}};
    UNet3D net(cfg, Device::CPU, 1, pr);
    const Shape in = {2, 1, 16, 12, 8};
    net.forward(ctx, Tensor::zeros(in));
    EXPECT_EQ(net.activation_bytes(), unet_forward_bytes(cfg, in, pr)) << precision_name(pr);
    net.logits_f32(ctx);
    EXPECT_EQ(net.activation_bytes(), unet_forward_bytes(cfg, in, pr, true)) << precision_name(pr);
  }
}
