// bf16 training steps on CUDA (cuDNN graphs, bf16 kernels, Adam writing the bf16 copies) against
// the CPU bf16 oracle (the same precision on the CPU: fp32 arithmetic, every tensor the GPU
// stores in bf16 rounded to bf16): a tiny U-Net (filters 8, 16, 32; batch 2, 16^3 patches),
// weighted CE (1, 1, 3), Adam. Skipped without a device.
//
// Bounds:
// - One step, loss: each side computes the loss from its bf16 logits. Every op of the forward
//   agrees per element within the derived parity bounds (tests/cuda/test_bf16_parity.cpp): in
//   practice equal, or one bf16 ulp apart where the two fp32 sums straddle a rounding boundary
//   (a fraction ~ sqrt(K) 2^-16 of the elements). The loss is a weighted mean of per-voxel
//   terms whose derivative in a logit is <= 1 (softmax minus one-hot), and logits are O(1):
//   a one-ulp change of a fraction f of logits moves the loss by <= f 2^-7 in relative terms.
//   With f <= 1 that gives 2^-7 = 7.8e-3 as the bound (relative), far above what f ~ 1e-3
//   produces.
// - One step, gradients (norm-relative, per parameter): the same one-ulp flips propagate
//   through the backward; each stored gradient tensor adds at most 2^-8 relative per flipped
//   element. We bound the norm-relative difference by 2^-5 = 3.1e-2 (8 stored tensors on the
//   longest path x 2^-8), stated as such.
// - 20 steps (Adam lr 1e-3): per-step losses within 3e-2 relative. Adam's update m / sqrt(v)
//   normalises gradient magnitudes, so two runs whose gradients differ by <= 3 % take steps
//   that differ by about as much for well-determined parameters; over 20 steps at lr 1e-3 the
//   weights stay within ~20 lr of each other and the loss within a few %: a stated bound, as
//   for the fp32 20-step test.
// - Determinism: two GPU runs of a step give the same bits (deterministic plans and kernels).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <random>

#include "cuseg/engine/context.h"
#include "cuseg/engine/ops.h"
#include "cuseg/engine/optim.h"
#include "cuseg/model/unet3d.h"
#include "test_util.h"
#include "train_step_util.h"

using namespace cuseg;
using train_step::Batch;
using train_step::rel_err;

namespace {
// The step tests' trainer with the bf16 U-Net of this file (filters 8, 16, 32).
struct Trainer : train_step::Trainer {
  Trainer(Device d, const AdamConfig& ac)
      : train_step::Trainer(d, UNetConfig{1, 3, {8, 16, 32}}, ac, Precision::BF16) {}
};
}  // namespace

namespace {

// A sphere of liver (1) holding a tumour blob (2), intensities with Gaussian noise.
Batch make_batch(int n, int s, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.f, 1.f);
  Batch b;
  b.x = Tensor::empty({n, 1, s, s, s});
  b.y = Tensor::empty({n, s, s, s}, DType::U8);
  for (int ni = 0; ni < n; ++ni)
    for (int z = 0; z < s; ++z)
      for (int yy = 0; yy < s; ++yy)
        for (int xx = 0; xx < s; ++xx) {
          const float c = (s - 1) * 0.5f;
          const float r2 = (z - c) * (z - c) + (yy - c) * (yy - c) + (xx - c - ni) * (xx - c - ni);
          const float t2 = (z - c / 2) * (z - c / 2) + (yy - c) * (yy - c) + (xx - c) * (xx - c);
          uint8_t lab = r2 < (s * 0.4f) * (s * 0.4f) ? 1 : 0;
          if (t2 < (s * 0.15f) * (s * 0.15f)) lab = 2;
          const int64_t v = ((int64_t(ni) * s + z) * s + yy) * s + xx;
          b.y.data<uint8_t>()[v] = lab;
          b.x.f32()[v] = nd(rng) * 0.5f + float(lab);
        }
  return b;
}

}  // namespace

TEST(Bf16TrainStep, OneStepLossAndEveryGradientAgainstTheOracle) {
  CUSEG_REQUIRE_CUDA();
  AdamConfig ac;
  Trainer cpu(Device::CPU, ac), gpu(Device::CUDA, ac);
  const Batch b = make_batch(2, 16, 1);
  cpu.load(b);
  gpu.load(b);
  const double lc = cpu.step(false), lg = gpu.step(false);
  std::printf("loss oracle %.7f cuda %.7f\n", lc, lg);
  EXPECT_NEAR(lg, lc, std::ldexp(std::fabs(lc), -7)) << "loss";
  auto pc = cpu.net.parameters(), pg = gpu.net.parameters();
  ASSERT_EQ(pc.size(), pg.size());
  for (size_t i = 0; i < pc.size(); ++i) {
    const double e = rel_err(pc[i]->grad, pg[i]->grad);
    std::printf("grad %-24s rel err %.2e\n", pc[i]->name.c_str(), e);
    EXPECT_LT(e, std::ldexp(1.0, -5)) << pc[i]->name;
  }
  const Context::GraphPlans g = gpu.ctx.graph_plans();
  std::printf("cuDNN graph plans: %d built, %d refused; %s\n", g.built, g.refused,
              gpu_library_versions().c_str());
}

TEST(Bf16TrainStep, OneStepIsDeterministic) {
  CUSEG_REQUIRE_CUDA();
  AdamConfig ac;
  const Batch b = make_batch(2, 16, 2);
  double loss[2];
  std::vector<Tensor> grads[2];
  for (int r = 0; r < 2; ++r) {
    Trainer gpu(Device::CUDA, ac);
    gpu.load(b);
    loss[r] = gpu.step(false);
    for (Param* p : gpu.net.parameters()) grads[r].push_back(p->grad.to(Device::CPU));
  }
  EXPECT_EQ(loss[0], loss[1]);
  for (size_t i = 0; i < grads[0].size(); ++i)
    EXPECT_EQ(rel_err(grads[0][i], grads[1][i]), 0.0) << i;
}

TEST(Bf16TrainStep, TwentyStepLossesFollowTheOracle) {
  CUSEG_REQUIRE_CUDA();
  AdamConfig ac;
  ac.lr = 1e-3f;
  Trainer cpu(Device::CPU, ac), gpu(Device::CUDA, ac);
  double first = 0, last = 0;
  for (int s = 0; s < 20; ++s) {
    const Batch b = make_batch(2, 16, 100 + s % 4);
    cpu.load(b);
    gpu.load(b);
    const double lc = cpu.step(), lg = gpu.step();
    std::printf("step %2d loss oracle %.7f cuda %.7f\n", s, lc, lg);
    EXPECT_NEAR(lg, lc, 3e-2 * std::fabs(lc)) << "step " << s;
    if (s == 0) first = lc;
    last = lc;
  }
  EXPECT_LT(last, first) << "the oracle did not learn in 20 steps";
}
