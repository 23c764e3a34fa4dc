// Whole training steps on CUDA vs the CPU reference: a tiny U-Net (filters 4, 8, 16; batch 2,
// 16^3 patches) with weighted CE (1, 1, 3) and Adam.
//
// One step: the loss and EVERY parameter gradient are compared by the norm-relative error
// ||cuda - cpu|| / ||cpu|| <= 1e-4. Source of the bound: both sides are fp32 with different
// summation orders (cuDNN's algorithms vs im2col + SGEMM; FMA vs separate rounding), which
// gives ~1e-6 per op; through ~20 layers of a 3-level U-Net backward this stays well under
// 1e-4 (the CPU finite-difference checks use 1e-2 for a different reason: truncation).
// 20 steps: losses agree to rel 2e-3 at every step (Adam with lr 1e-3 amplifies the small
// per-step differences through m / sqrt(v) for near-zero v; a bound stated, not derived).
// (Timing the reference step is engine_bench step's job: bench/README.md.)
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <random>

#include "cuseg/engine/context.h"
#include "cuseg/engine/ops.h"
#include "cuseg/engine/optim.h"
#include "cuseg/model/unet3d.h"
#include "test_util.h"

using namespace cuseg;

namespace {

const std::vector<float> kClassWeights = {1.f, 1.f, 3.f};

struct Batch {
  Tensor x, y;  // CPU
};

Batch make_batch(int n, int s, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.f, 1.f);
  Batch b;
  b.x = Tensor::empty({n, 1, s, s, s});
  b.y = Tensor::empty({n, s, s, s}, DType::U8);
  for (int64_t i = 0; i < b.x.numel(); ++i) b.x.f32()[i] = nd(rng);
  // Labels: a sphere of liver (1) with a tumour blob (2) inside, over background (0).
  for (int ni = 0; ni < n; ++ni)
    for (int z = 0; z < s; ++z)
      for (int yy = 0; yy < s; ++yy)
        for (int xx = 0; xx < s; ++xx) {
          const float c = (s - 1) * 0.5f;
          const float r2 = (z - c) * (z - c) + (yy - c) * (yy - c) + (xx - c - ni) * (xx - c - ni);
          const float t2 = (z - c / 2) * (z - c / 2) + (yy - c) * (yy - c) + (xx - c) * (xx - c);
          uint8_t lab = r2 < (s * 0.4f) * (s * 0.4f) ? 1 : 0;
          if (t2 < (s * 0.15f) * (s * 0.15f)) lab = 2;
          b.y.data<uint8_t>()[((int64_t(ni) * s + z) * s + yy) * s + xx] = lab;
          b.x.f32()[((int64_t(ni) * s + z) * s + yy) * s + xx] += float(lab);
        }
  return b;
}

double rel_err(const Tensor& ref0, const Tensor& got0) {
  const Tensor ref = ref0.to(Device::CPU), got = got0.to(Device::CPU);
  double num = 0, den = 0;
  for (int64_t i = 0; i < ref.numel(); ++i) {
    const double d = double(got.f32()[i]) - double(ref.f32()[i]);
    num += d * d;
    den += double(ref.f32()[i]) * double(ref.f32()[i]);
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

struct Trainer {
  Context ctx;
  UNet3D net;
  Adam opt;
  Tensor x, y, grad;
  Trainer(Device d, const UNetConfig& cfg, const AdamConfig& ac)
      : ctx(d), net(cfg, d, /*seed=*/7), opt(net.parameters(), ac) {}
  void load(const Batch& b) {
    x = b.x.to(ctx.device());
    y = b.y.to(ctx.device());
  }
  // One step; returns the loss. No host sync in here except inside weighted_cross_entropy.
  double step(bool update = true) {
    net.zero_grad();
    const Tensor& logits = net.forward(ctx, x);
    if (!grad.defined() || grad.shape() != logits.shape())
      grad = Tensor::empty(logits.shape(), DType::F32, ctx.device());
    const double loss = weighted_cross_entropy(ctx, logits, y, kClassWeights, grad);
    net.backward(ctx, grad);
    if (update) opt.step(ctx);
    return loss;
  }
};

UNetConfig tiny() {
  UNetConfig c;
  c.filters = {4, 8, 16};
  return c;
}

TEST(TrainStep, OneStepLossAndEveryGradient) {
  CUSEG_REQUIRE_CUDA();
  AdamConfig ac;
  Trainer cpu(Device::CPU, tiny(), ac), gpu(Device::CUDA, tiny(), ac);
  auto pc = cpu.net.parameters(), pg = gpu.net.parameters();
  ASSERT_EQ(pc.size(), pg.size());
  for (size_t i = 0; i < pc.size(); ++i) pg[i]->value.copy_from(pc[i]->value);  // same weights
  const Batch b = make_batch(2, 16, 1);
  cpu.load(b);
  gpu.load(b);
  const double lc = cpu.step(false), lg = gpu.step(false);
  EXPECT_NEAR(lg, lc, 1e-5 * std::fabs(lc)) << "loss";
  EXPECT_LT(rel_err(cpu.grad, gpu.grad), 1e-5) << "d loss / d logits";
  for (size_t i = 0; i < pc.size(); ++i) {
    const double e = rel_err(pc[i]->grad, pg[i]->grad);
    EXPECT_LT(e, 1e-4) << pc[i]->name;
    std::printf("grad %-24s rel err %.2e\n", pc[i]->name.c_str(), e);
  }
  // Logits too (forward parity).
  EXPECT_LT(rel_err(cpu.net.forward(cpu.ctx, cpu.x), gpu.net.forward(gpu.ctx, gpu.x)), 1e-5)
      << "logits";
}

TEST(TrainStep, OneStepIsDeterministic) {
  CUSEG_REQUIRE_CUDA();
  AdamConfig ac;
  const Batch b = make_batch(2, 16, 2);
  double loss[2];
  std::vector<Tensor> grads[2];
  for (int r = 0; r < 2; ++r) {
    Trainer gpu(Device::CUDA, tiny(), ac);
    gpu.load(b);
    loss[r] = gpu.step(false);
    for (Param* p : gpu.net.parameters()) grads[r].push_back(p->grad.to(Device::CPU));
  }
  EXPECT_EQ(loss[0], loss[1]);
  for (size_t i = 0; i < grads[0].size(); ++i)
    EXPECT_EQ(rel_err(grads[0][i], grads[1][i]), 0.0) << i;
}

TEST(TrainStep, TwentyStepLosses) {
  CUSEG_REQUIRE_CUDA();
  AdamConfig ac;
  ac.lr = 1e-3f;
  Trainer cpu(Device::CPU, tiny(), ac), gpu(Device::CUDA, tiny(), ac);
  auto pc = cpu.net.parameters(), pg = gpu.net.parameters();
  for (size_t i = 0; i < pc.size(); ++i) pg[i]->value.copy_from(pc[i]->value);
  for (int s = 0; s < 20; ++s) {
    const Batch b = make_batch(2, 16, 100 + s % 4);
    cpu.load(b);
    gpu.load(b);
    const double lc = cpu.step(), lg = gpu.step();
    std::printf("step %2d loss cpu %.7f cuda %.7f\n", s, lc, lg);
    EXPECT_NEAR(lg, lc, 2e-3 * std::fabs(lc)) << "step " << s;
  }
}

}  // namespace
