// Deterministic mode on CUDA (ContextOptions::deterministic, the default; config key
// train.deterministic): two training runs from the same seed and batches give the same bits.
// Ten Adam steps of a 3-level U-Net (filters 4, 8, 16; batch 2, 16^3 patches) in two fresh
// contexts, so every cuDNN convolution direction (forward, backward-data, backward-filter), the
// pooling, upsampling, cross-entropy and Adam kernels take part; the weights, both Adam moments
// and every step's loss must be equal bit for bit. Skipped without a device.
#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "cuseg/engine/context.h"
#include "cuseg/engine/ops.h"
#include "cuseg/engine/optim.h"
#include "cuseg/model/unet3d.h"

using namespace cuseg;

namespace {

struct TrainedRun {
  std::vector<double> losses;
  std::vector<Tensor> state;  // weights, then exp_avg, then exp_avg_sq (CPU copies)
  Tensor initial;             // the first weight tensor before training
};

TrainedRun train(int steps) {
  ContextOptions opt;
  opt.deterministic = true;
  Context ctx(Device::CUDA, opt);
  UNetConfig cfg;
  cfg.filters = {4, 8, 16};
  UNet3D net(cfg, Device::CUDA, /*seed=*/3);
  Adam adam(net.parameters(), AdamConfig{1e-3f});
  std::mt19937 rng(17);
  std::normal_distribution<float> nd(0.f, 1.f);
  TrainedRun r;
  r.initial = net.parameters()[0]->value.to(Device::CPU);
  Tensor grad;
  for (int s = 0; s < steps; ++s) {
    Tensor x = Tensor::empty({2, 1, 16, 16, 16});
    Tensor y = Tensor::empty({2, 16, 16, 16}, DType::U8);
    for (int64_t i = 0; i < y.numel(); ++i) {
      y.data<uint8_t>()[i] = uint8_t(rng() % 3);
      x.f32()[i] = nd(rng) + float(y.data<uint8_t>()[i]);
    }
    const Tensor xd = x.to(Device::CUDA), yd = y.to(Device::CUDA);
    const Tensor& logits = net.forward(ctx, xd);
    if (!grad.defined()) grad = Tensor::empty(logits.shape(), DType::F32, Device::CUDA);
    r.losses.push_back(weighted_cross_entropy(ctx, logits, yd, {1.f, 1.f, 3.f}, grad));
    net.zero_grad();
    net.backward(ctx, grad);
    adam.step(ctx);
  }
  ctx.synchronize();
  for (Param* p : net.parameters()) r.state.push_back(p->value.to(Device::CPU));
  for (const Tensor& t : adam.exp_avg()) r.state.push_back(t.to(Device::CPU));
  for (const Tensor& t : adam.exp_avg_sq()) r.state.push_back(t.to(Device::CPU));
  return r;
}

TEST(DeterministicTraining, TwoCudaRunsGiveTheSameBits) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  const TrainedRun a = train(10), b = train(10);
  ASSERT_EQ(a.losses.size(), b.losses.size());
  for (size_t s = 0; s < a.losses.size(); ++s) EXPECT_EQ(a.losses[s], b.losses[s]) << "step " << s;
  ASSERT_EQ(a.state.size(), b.state.size());
  for (size_t i = 0; i < a.state.size(); ++i)
    EXPECT_EQ(std::memcmp(a.state[i].raw(), b.state[i].raw(), a.state[i].nbytes()), 0)
        << "tensor " << i;
  // The weights moved (a run that never updated would pass the comparison trivially).
  EXPECT_NE(std::memcmp(a.initial.raw(), a.state[0].raw(), a.initial.nbytes()), 0);
}

}  // namespace
