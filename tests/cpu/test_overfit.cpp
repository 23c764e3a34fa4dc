// The tiny U-Net (filters 4, 8, 16, 32) must fit one small synthetic volume: the weighted
// CE loss falls at least 10x within a bounded number of Adam steps on the CPU backend.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "cuseg/engine/ops.h"
#include "cuseg/engine/optim.h"
#include "cuseg/model/unet3d.h"

using namespace cuseg;

namespace {
// 16^3 volume: a large sphere ("liver", label 1) holding a small one ("tumour", label 2),
// intensities 0 / 0.5 / 1.0 plus Gaussian noise (sigma 0.1).
void make_volume(Tensor& x, Tensor& lab, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> noise(0.f, 0.1f);
  const int n = 16;
  for (int z = 0; z < n; ++z)
    for (int y = 0; y < n; ++y)
      for (int i = 0; i < n; ++i) {
        const float r1 = std::hypot(std::hypot(z - 7.5f, y - 7.0f), i - 8.0f);
        const float r2 = std::hypot(std::hypot(z - 9.0f, y - 8.0f), i - 9.5f);
        const int l = r2 < 2.6f ? 2 : (r1 < 6.0f ? 1 : 0);
        const int64_t v = (int64_t(z) * n + y) * n + i;
        lab.data<uint8_t>()[v] = uint8_t(l);
        x.f32()[v] = (l == 0 ? 0.f : l == 1 ? 0.5f : 1.0f) + noise(rng);
      }
}
}  // namespace

TEST(Overfit, TinyUNetLossFalls10x) {
  Context ctx(Device::CPU);
  UNet3D net(UNetConfig{1, 3, {4, 8, 16, 32}}, Device::CPU, 7);
  Tensor x = Tensor::empty({1, 1, 16, 16, 16});
  Tensor lab = Tensor::empty({1, 16, 16, 16}, DType::U8);
  make_volume(x, lab, 3);
  Adam opt(net.parameters(), AdamConfig{1e-2f});
  const std::vector<float> w = {1.f, 1.f, 3.f};
  Tensor g;
  double first = 0, loss = 0;
  int step = 0;
  const int kMaxSteps = 400;  // typically reached in ~100-200 steps; bound keeps CI short
  for (; step < kMaxSteps; ++step) {
    const Tensor& lg = net.forward(ctx, x);
    if (!g.defined()) g = Tensor::empty(lg.shape());
    loss = weighted_cross_entropy(ctx, lg, lab, w, g);
    if (step == 0) first = loss;
    if (loss < first / 10) break;
    net.zero_grad();
    net.backward(ctx, g);
    opt.step(ctx);
  }
  std::printf("loss %.4f -> %.4f after %d steps\n", first, loss, step);
  EXPECT_LT(loss, first / 10) << "after " << step << " steps";
}
