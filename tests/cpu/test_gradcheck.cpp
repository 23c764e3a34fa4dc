// Central finite-difference gradient checks of every layer and of whole small U-Nets, on
// the CPU backend. The scalar probed is L = sum_i out_i * r_i (r fixed random), summed in
// double; d L / d theta from backward is compared with (L(theta+e) - L(theta-e)) / 2e.
//
// The layer problems, the step e and the tolerances (each with its reason) are the cases
// marked kGradcheck in tests/opcases/op_cases.h. In short: forward passes run in float32, so
// L carries an absolute rounding error of about delta = sqrt(#terms) * 2^-24 * max|out * r|.
// For ops that are linear in the probed variable (conv in x or w, upsample, add; ReLU and
// max-pool away from kinks and ties) the central difference is otherwise exact, so the error
// is ~ 2 * delta / (2e); with e = 1e-2 and the sizes there that is < 1e-3, hence atol 2e-3
// with rtol 1e-2. For the non-linear pieces (softmax CE, the U-Nets) the truncation error is
// O(e^2 * L''') while the rounding term grows with 1 / |grad|: softmax CE has its own atol,
// the U-Nets below state theirs. Inputs of ReLU and max-pool are kept at least 4e away from
// kinks and ties so no probe crosses one.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "cuseg/engine/ops.h"
#include "cuseg/model/unet3d.h"
#include "opcases/op_cases.h"
#include "test_util.h"

using namespace cuseg;
using namespace cuseg::opcases;

namespace {

double dot(const Tensor& a, const Tensor& b) {
  double s = 0;
  for (int64_t i = 0; i < a.numel(); ++i) s += double(a.f32()[i]) * double(b.f32()[i]);
  return s;
}

// Checks every element (or `max_checks` evenly spaced ones) of `var` against `grad`, with
// the case list's step and tolerance.
void check_fd(const std::string& what, const Tensor& var, const Tensor& grad,
              const std::function<double()>& loss, const FdCheck& fd,
              int64_t max_checks = 1 << 30) {
  const float eps = fd.eps;
  const double atol = fd.tol.atol, rtol = fd.tol.rtol;
  const int64_t n = var.numel();
  const int64_t step = std::max<int64_t>(1, n / max_checks);
  double worst = 0;
  int checked = 0;
  for (int64_t i = 0; i < n; i += step) {
    float& v = var.f32()[i];
    const float keep = v;
    v = keep + eps;
    const double lp = loss();
    v = keep - eps;
    const double lm = loss();
    v = keep;
    const double num = (lp - lm) / (2.0 * double(eps));
    const double ana = grad.f32()[i];
    const double budget = atol + rtol * std::fabs(num);
    worst = std::max(worst, std::fabs(num - ana) / budget);
    ASSERT_LE(std::fabs(num - ana), budget) << what << " element " << i << ": numeric " << num
                                            << " analytic " << ana << " (" << fd.tol.why << ")";
    ++checked;
  }
  double gmax = 0;
  for (int64_t i = 0; i < n; ++i) gmax = std::max(gmax, double(std::fabs(grad.f32()[i])));
  // A check whose gradients are all far below atol could not fail: refuse it.
  ASSERT_GT(gmax, 10 * atol) << what << ": gradients too small for a meaningful check";
  std::printf("  %-34s %5d checks, max|grad| %.3g, worst %.1f%% of tolerance\n", what.c_str(),
              checked, gmax, worst * 100);
}

}  // namespace

TEST(GradCheck, Conv3dK3AndK1) {
  Context ctx(Device::CPU);
  std::mt19937 rng(1);
  const ConvSpec& spec = conv3d();
  const std::vector<ConvCase> cases = with_use(spec.cases, kGradcheck);
  ASSERT_FALSE(cases.empty());
  for (const ConvCase& cc : cases) {
    Tensor x = uniform_tensor(cc.x.shape(), rng);
    Tensor w = uniform_tensor(cc.w_shape(), rng, -0.5f, 0.5f);
    Tensor b = uniform_tensor({cc.cout}, rng);
    Tensor y = Tensor::empty(cc.y_shape());
    Tensor r = uniform_tensor(y.shape(), rng);
    auto loss = [&] {
      conv3d_forward(ctx, x, w, b, y, false);
      return dot(y, r);
    };
    Tensor gx = Tensor::empty(x.shape()), gw = Tensor::zeros(w.shape()),
           gb = Tensor::zeros(b.shape());
    loss();
    conv3d_backward(ctx, x, w, r, gx, gw, gb);
    const std::string what = "conv3d " + cc.name();
    check_fd(what + " input", x, gx, loss, spec.gradcheck);
    check_fd(what + " weight", w, gw, loss, spec.gradcheck);
    check_fd(what + " bias", b, gb, loss, spec.gradcheck);
  }
}

TEST(GradCheck, Conv3dBatchStridedViews) {
  // Input and output as channel slices of wider tensors (zero-copy concat layout), on the
  // first k = 3 gradient-check problem: x = channels [1, 1 + Cin) of Cin + 2, y = channels
  // [3, 3 + Cout) of Cout + 4.
  Context ctx(Device::CPU);
  std::mt19937 rng(2);
  const ConvSpec& spec = conv3d();
  const std::vector<ConvCase> cases = with_use(spec.cases, kGradcheck);
  const auto it =
      std::find_if(cases.begin(), cases.end(), [](const ConvCase& c) { return c.k == 3; });
  ASSERT_NE(it, cases.end());
  const ConvCase& cc = *it;
  const Dims& d = cc.x;
  Tensor xw = uniform_tensor({d.n, d.c + 2, d.d, d.h, d.w}, rng);
  Tensor x = xw.channel_slice(1, 1 + d.c);
  Tensor w = uniform_tensor(cc.w_shape(), rng, -0.5f, 0.5f);
  Tensor b = uniform_tensor({cc.cout}, rng);
  const int ywc = cc.cout + 4;
  Tensor yw = Tensor::zeros({d.n, ywc, d.d, d.h, d.w});
  Tensor y = yw.channel_slice(3, 3 + cc.cout);
  Tensor r = uniform_tensor(y.shape(), rng);
  auto loss = [&] {
    conv3d_forward(ctx, x, w, b, y, false);
    return dot(y.clone(), r);
  };
  Tensor gxw = Tensor::zeros(xw.shape());
  Tensor gx = gxw.channel_slice(1, 1 + d.c);
  Tensor gw = Tensor::zeros(w.shape()), gb = Tensor::zeros(b.shape());
  loss();
  conv3d_backward(ctx, x, w, r, gx, gw, gb);
  Tensor gxc = gx.clone();
  Tensor xc = x.clone();
  // Probe through the contiguous copy: loss reads x through the view, so perturb the view.
  auto loss_c = [&] {
    x.copy_from(xc);
    return loss();
  };
  check_fd("conv3d strided input", xc, gxc, loss_c, spec.gradcheck);
  check_fd("conv3d strided weight", w, gw, loss_c, spec.gradcheck);
  // Channels outside the views are untouched.
  const int64_t vox = int64_t(d.d) * d.h * d.w;
  for (int64_t i = 0; i < yw.numel(); ++i) {
    const int64_t c = (i / vox) % ywc;
    if (c < 3 || c >= 3 + cc.cout) ASSERT_EQ(yw.f32()[i], 0.f);
  }
}

TEST(GradCheck, Relu) {
  Context ctx(Device::CPU);
  std::mt19937 rng(3);
  const ElementwiseSpec& spec = elementwise();
  const std::vector<VolCase> cases = with_use(spec.cases, kGradcheck);
  ASSERT_FALSE(cases.empty());
  for (const VolCase& vc : cases) {
    Tensor x = uniform_tensor(vc.x.shape(), rng);
    for (int64_t i = 0; i < x.numel(); ++i)  // keep inputs >= 0.05 away from the kink
      if (std::fabs(x.f32()[i]) < 0.05f) x.f32()[i] = x.f32()[i] < 0 ? -0.05f : 0.05f;
    Tensor r = uniform_tensor(x.shape(), rng);
    Tensor y = Tensor::empty(x.shape());
    auto loss = [&] {
      y.copy_from(x);
      relu_forward(ctx, y);
      return dot(y, r);
    };
    loss();
    Tensor g = r.clone();
    relu_backward(ctx, y, g);
    check_fd("relu " + vc.x.str(), x, g, loss, spec.gradcheck);
  }
}

TEST(GradCheck, MaxPool3dOddExtents) {
  Context ctx(Device::CPU);
  std::mt19937 rng(4);
  const PoolSpec& spec = maxpool3d();
  const std::vector<VolCase> cases = with_use(spec.cases, kGradcheck);
  ASSERT_FALSE(cases.empty());
  for (const VolCase& vc : cases) {
    Tensor x = Tensor::empty(vc.x.shape());
    // Distinct values 0.05 apart in random order: no probe (e = 1e-2) can change an argmax.
    std::vector<int> perm(size_t(x.numel()));
    for (size_t i = 0; i < perm.size(); ++i) perm[i] = int(i);
    std::shuffle(perm.begin(), perm.end(), rng);
    for (int64_t i = 0; i < x.numel(); ++i) x.f32()[i] = 0.05f * float(perm[size_t(i)]) - 30.f;
    Tensor y = Tensor::empty(PoolSpec::y_shape(vc.x));
    Tensor r = uniform_tensor(y.shape(), rng);
    auto loss = [&] {
      maxpool3d_forward(ctx, x, y);
      return dot(y, r);
    };
    loss();
    Tensor gx = Tensor::empty(x.shape());
    maxpool3d_backward(ctx, x, y, r, gx);
    check_fd("maxpool3d " + vc.x.str(), x, gx, loss, spec.gradcheck);
  }
}

TEST(GradCheck, UpsampleTrilinear) {
  Context ctx(Device::CPU);
  std::mt19937 rng(5);
  const UpsampleSpec& spec = upsample2x();
  const std::vector<VolCase> cases = with_use(spec.cases, kGradcheck);
  ASSERT_FALSE(cases.empty());
  for (const VolCase& vc : cases) {
    Tensor x = uniform_tensor(vc.x.shape(), rng);
    Tensor y = Tensor::empty(UpsampleSpec::y_shape(vc.x));
    Tensor r = uniform_tensor(y.shape(), rng);
    auto loss = [&] {
      upsample2x_forward(ctx, x, y);
      return dot(y, r);
    };
    loss();
    Tensor gx = Tensor::empty(x.shape());
    upsample2x_backward(ctx, r, gx);
    check_fd("upsample2x " + vc.x.str(), x, gx, loss, spec.gradcheck);
  }
}

TEST(GradCheck, WeightedCrossEntropy) {
  Context ctx(Device::CPU);
  std::mt19937 rng(6);
  const LogitsSpec& spec = logits();
  const std::vector<VolCase> cases = with_use(spec.cases, kGradcheck);
  ASSERT_FALSE(cases.empty());
  for (const VolCase& vc : cases) {
    ASSERT_EQ(vc.x.c, 3) << "the recipe's class weights are for 3 classes";
    Tensor x = uniform_tensor(vc.x.shape(), rng, -2.f, 2.f);
    Tensor lab = Tensor::empty({vc.x.n, vc.x.d, vc.x.h, vc.x.w}, DType::U8);
    for (int64_t i = 0; i < lab.numel(); ++i) lab.data<uint8_t>()[i] = uint8_t(rng() % 3);
    const std::vector<float> wts = {1.f, 1.f, 3.f};
    Tensor g = Tensor::empty(x.shape());
    auto loss = [&] { return weighted_cross_entropy(ctx, x, lab, wts, Tensor()); };
    const double l0 = weighted_cross_entropy(ctx, x, lab, wts, g);
    EXPECT_NEAR(l0, loss(), 1e-12);  // the gradient pass does not change the loss
    check_fd("cross-entropy logits " + vc.x.str(), x, g, loss, spec.gradcheck);
  }
}

TEST(GradCheck, AddInplaceIsIdentityForSource) {
  Context ctx(Device::CPU);
  std::mt19937 rng(7);
  const std::vector<VolCase> cases = with_use(elementwise().cases, kGradcheck);
  ASSERT_FALSE(cases.empty());
  for (const VolCase& vc : cases) {
    Tensor a = uniform_tensor(vc.x.shape(), rng), b = uniform_tensor(vc.x.shape(), rng);
    Tensor c = a.clone();
    add_inplace(ctx, c, b);
    for (int64_t i = 0; i < a.numel(); ++i) ASSERT_EQ(c.f32()[i], a.f32()[i] + b.f32()[i]);
  }
}

namespace {

void unet_gradcheck(const UNetConfig& cfg, const Shape& in_shape, uint64_t seed) {
  Context ctx(Device::CPU);
  UNet3D net(cfg, Device::CPU, seed);
  // PyTorch's default init shrinks activations ~sqrt(3)x per conv, which leaves the deep
  // levels of a random net with gradients below float32 finite-difference resolution. Scale
  // weights up (x2, roughly He init) so every layer's gradient is measurable.
  for (Param* p : net.parameters())
    if (p->value.ndim() == 5)
      for (int64_t i = 0; i < p->value.numel(); ++i) p->value.f32()[i] *= 2.f;
  std::mt19937 rng{static_cast<unsigned>(seed)};
  Tensor x = uniform_tensor(in_shape, rng);
  Tensor lab = Tensor::empty({in_shape[0], in_shape[2], in_shape[3], in_shape[4]}, DType::U8);
  for (int64_t i = 0; i < lab.numel(); ++i) lab.data<uint8_t>()[i] = uint8_t(rng() % cfg.classes);
  const std::vector<float> wts = {1.f, 1.f, 3.f};
  // Probe the summed loss (mean * sum of voxel weights, a constant): O(1) gradients.
  double wsum = 0;
  for (int64_t i = 0; i < lab.numel(); ++i) wsum += wts[lab.data<uint8_t>()[i]];
  auto loss = [&] {
    const Tensor& lg = net.forward(ctx, x);
    return wsum * weighted_cross_entropy(ctx, lg, lab, wts, Tensor());
  };
  const Tensor& lg = net.forward(ctx, x);
  Tensor g = Tensor::empty(lg.shape());
  weighted_cross_entropy(ctx, lg, lab, wts, g);
  for (int64_t i = 0; i < g.numel(); ++i) g.f32()[i] *= float(wsum);
  net.zero_grad();
  net.backward(ctx, g);
  // Whole-network tolerance. Each layer's gradient is verified element-wise above; here the
  // point is the wiring (skip connections, concat order, pooling/upsampling routes). A probe
  // of e = 1e-3 on one weight moves thousands of ReLU inputs, and the few that cross zero
  // bias that element's central difference by up to ~10% (seen: <= 8%). So per element we
  // allow 15% of the tensor's max |grad| + 5% of the value, and require the aggregate
  // relative error ||num - ana|| / ||num|| over the tensor to stay under 10% (seen: <= 5.8%
  // on the 3-level net). A wiring bug
  // (wrong slice, wrong order, missing skip gradient) gives O(100%) errors.
  for (Param* p : net.parameters()) {
    double gmax = 0;
    for (int64_t i = 0; i < p->grad.numel(); ++i)
      gmax = std::max(gmax, double(std::fabs(p->grad.f32()[i])));
    ASSERT_GT(gmax, 1e-2) << p->name << ": gradient too small to check";
    const int64_t n = p->value.numel(), step = std::max<int64_t>(1, n / 16);
    double err2 = 0, ref2 = 0;
    for (int64_t i = 0; i < n; i += step) {
      float& v = p->value.f32()[i];
      const float keep = v;
      v = keep + 1e-3f;
      const double lp = loss();
      v = keep - 1e-3f;
      const double lm = loss();
      v = keep;
      const double num = (lp - lm) / 2e-3, ana = p->grad.f32()[i];
      ASSERT_LE(std::fabs(num - ana), 0.15 * gmax + 0.05 * std::fabs(num))
          << p->name << " element " << i << ": numeric " << num << " analytic " << ana;
      err2 += (num - ana) * (num - ana);
      ref2 += num * num;
    }
    const double rel = std::sqrt(err2 / std::max(ref2, 1e-30));
    EXPECT_LT(rel, 0.10) << p->name;
    std::printf("  %-24s max|grad| %8.3g  aggregate rel. error %.2f%%\n", p->name.c_str(), gmax,
                100 * rel);
  }
}

}  // namespace

TEST(GradCheck, UNetOneLevelOddShape) {
  unet_gradcheck(UNetConfig{1, 3, {3}}, {2, 1, 5, 7, 6}, 11);
}

TEST(GradCheck, UNetThreeLevels) {
  unet_gradcheck(UNetConfig{1, 3, {4, 6, 8}}, {2, 1, 4, 8, 4}, 12);
}
