// 300 Adam steps of phantom-CT training in bf16 (the CPU bf16 oracle: exactly the GPU bf16 path's
// arithmetic model, every tensor the GPU stores in bf16 rounded to bf16) against the same 300
// steps in fp32: same initial fp32 weights, same patches, same order.
//
// The bound, stated (not derived: two training runs that differ by rounding follow different
// trajectories, and no closed form bounds how far apart they drift):
//  - the loss curves are compared as means over windows of 30 steps (10 windows); each window's
//    bf16 mean lies within 20 % of the fp32 mean;
//  - over the last 100 steps the two means agree within 10 %;
//  - both runs learn: the last window's mean is at most 60 % of the first window's (a bf16 path
//    that stalled, e.g. by losing small gradients, fails here however close it stays early on).
// Measured (deterministic, this seed; 2026-12-01): the curves are identical for ~30 steps
// (0.00 %), drift apart from step ~90 (bf16 lags fp32 by 4-11 % in windows 90-209, the worst
// 10.6 %), and meet again at the end (last 100 steps: 0.11664 vs 0.11724, 0.5 %). A forward
// pass on identical weights differs by 0.3 % (tests/cpu/test_bf16_model.cpp), so the spread is
// the trajectories', not a bias of the bf16 ops. The bounds leave 2x / 20x margin over what was
// measured.
// Cost: ~30 s of CPU time on one thread (filters 8, 16; patch 24x24x16; batch 2; two runs of
// 300 steps; ~50 ms per step and precision; measured 2026-12-01: 30.4 s user, 232 s wall at
// load average ~12 on the shared 2-core machine), label cpu (part of CI). ctest runs it with
// OMP_NUM_THREADS=1 (tests/CMakeLists.txt): two spinning OpenMP threads on a loaded 2-core
// machine cost 8x the CPU time for these small shapes; the figures above are the same.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "cuseg/data/phantom.h"
#include "cuseg/engine/context.h"
#include "cuseg/engine/ops.h"
#include "cuseg/engine/optim.h"
#include "cuseg/model/unet3d.h"

using namespace cuseg;

namespace {

constexpr int kSteps = 300, kWindow = 30, kBatch = 2;
constexpr int kPatchX = 24, kPatchY = 24, kPatchZ = 16;

struct Volume {
  std::vector<float> x;  // intensities in [-1, 1]
  std::vector<uint8_t> y;
  int nx, ny, nz;
};

// Phantom CT (HU) clipped to a soft-tissue window [-200, 250] and mapped to [-1, 1].
Volume phantom_volume(int index) {
  data::PhantomConfig pc;
  pc.size = {48, 48, 32};
  pc.seed = 0;
  const data::PhantomCase c = data::make_phantom(pc, index);
  Volume v;
  v.nx = c.ct.geo.size[0];
  v.ny = c.ct.geo.size[1];
  v.nz = c.ct.geo.size[2];
  v.x.resize(c.ct.v.size());
  for (size_t i = 0; i < v.x.size(); ++i)
    v.x[i] = (std::min(250.f, std::max(-200.f, c.ct.v[i])) + 200.f) / 225.f - 1.f;
  v.y = c.label.v;
  return v;
}

// The batches of the run: patches at seeded random corners, half of them centred on a
// foreground voxel (so liver and tumour appear in most batches).
struct Batch {
  Tensor x, y;
};
std::vector<Batch> make_batches(const std::vector<Volume>& vols) {
  std::mt19937 rng(1234);
  std::vector<Batch> out;
  for (int s = 0; s < kSteps; ++s) {
    Batch b;
    b.x = Tensor::empty({kBatch, 1, kPatchZ, kPatchY, kPatchX});
    b.y = Tensor::empty({kBatch, kPatchZ, kPatchY, kPatchX}, DType::U8);
    for (int n = 0; n < kBatch; ++n) {
      const Volume& v = vols[rng() % vols.size()];
      int x0 = int(rng() % uint32_t(v.nx - kPatchX + 1));
      int y0 = int(rng() % uint32_t(v.ny - kPatchY + 1));
      int z0 = int(rng() % uint32_t(v.nz - kPatchZ + 1));
      if (n % 2 == 0) {  // centre on a random foreground voxel when there is one
        std::vector<int64_t> fg;
        for (int64_t i = 0; i < int64_t(v.y.size()); i += 7)
          if (v.y[size_t(i)] > 0) fg.push_back(i);
        if (!fg.empty()) {
          const int64_t i = fg[rng() % fg.size()];
          const int cx = int(i % v.nx), cy = int((i / v.nx) % v.ny), cz = int(i / (v.nx * v.ny));
          x0 = std::clamp(cx - kPatchX / 2, 0, v.nx - kPatchX);
          y0 = std::clamp(cy - kPatchY / 2, 0, v.ny - kPatchY);
          z0 = std::clamp(cz - kPatchZ / 2, 0, v.nz - kPatchZ);
        }
      }
      for (int z = 0; z < kPatchZ; ++z)
        for (int yy = 0; yy < kPatchY; ++yy)
          for (int xx = 0; xx < kPatchX; ++xx) {
            const int64_t src = (int64_t(z0 + z) * v.ny + (y0 + yy)) * v.nx + (x0 + xx);
            const int64_t dst = ((int64_t(n) * kPatchZ + z) * kPatchY + yy) * kPatchX + xx;
            b.x.f32()[dst] = v.x[size_t(src)];
            b.y.data<uint8_t>()[dst] = v.y[size_t(src)];
          }
    }
    out.push_back(std::move(b));
  }
  return out;
}

std::vector<double> train(Precision precision, const std::vector<Batch>& batches) {
  Context ctx(Device::CPU);
  UNet3D net(UNetConfig{1, 3, {8, 16}}, Device::CPU, /*seed=*/21, precision);
  Adam opt(net.parameters(), AdamConfig{3e-3f});
  const std::vector<float> w = {1.f, 1.f, 3.f};
  Tensor grad;
  std::vector<double> losses;
  for (const Batch& b : batches) {
    const Tensor& logits = net.forward(ctx, b.x);
    if (!grad.defined()) grad = Tensor::zeros_like(logits);
    losses.push_back(weighted_cross_entropy(ctx, logits, b.y, w, grad));
    net.zero_grad();
    net.backward(ctx, grad);
    opt.step(ctx);
  }
  return losses;
}

}  // namespace

TEST(Bf16Training, PhantomLossCurveFollowsFp32For300Steps) {
  const std::vector<Volume> vols = {phantom_volume(0), phantom_volume(1), phantom_volume(2)};
  const std::vector<Batch> batches = make_batches(vols);
  const std::vector<double> l32 = train(Precision::F32, batches);
  const std::vector<double> l16 = train(Precision::BF16, batches);
  ASSERT_EQ(l32.size(), size_t(kSteps));
  ASSERT_EQ(l16.size(), size_t(kSteps));
  std::vector<double> m32, m16;
  double worst = 0, tail32 = 0, tail16 = 0;
  for (int i = kSteps - 100; i < kSteps; ++i) tail32 += l32[size_t(i)], tail16 += l16[size_t(i)];
  tail32 /= 100, tail16 /= 100;
  std::printf("window  fp32 mean  bf16 mean  |diff| / fp32\n");
  for (int s = 0; s < kSteps; s += kWindow) {
    double a = 0, b = 0;
    for (int i = s; i < s + kWindow; ++i) a += l32[size_t(i)], b += l16[size_t(i)];
    a /= kWindow, b /= kWindow;
    m32.push_back(a);
    m16.push_back(b);
    const double rel = std::fabs(b - a) / a;
    worst = std::max(worst, rel);
    std::printf("%3d-%3d  %.5f    %.5f    %.4f\n", s, s + kWindow - 1, a, b, rel);
    EXPECT_TRUE(std::isfinite(b)) << "bf16 loss not finite in window " << s;
    EXPECT_LE(rel, 0.20) << "window starting at step " << s;
  }
  std::printf(
      "worst window deviation %.4f (bound 0.20); last 100 steps: fp32 %.5f bf16 %.5f "
      "(%.4f, bound 0.10)\n",
      worst, tail32, tail16, std::fabs(tail16 - tail32) / tail32);
  EXPECT_LE(std::fabs(tail16 - tail32), 0.10 * tail32);
  EXPECT_LE(m32.back(), 0.6 * m32.front()) << "fp32 did not learn";
  EXPECT_LE(m16.back(), 0.6 * m16.front()) << "bf16 did not learn";
}
