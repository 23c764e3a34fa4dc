// Mirroring for test-time augmentation (kernels/mirror.h), CPU twin against plain references:
// the flip by explicit coordinates, a flip applied twice is the identity, and the accumulated
// softmax against a double-precision softmax of the flipped-back logits.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "cuseg/engine/tensor.h"
#include "cuseg/kernels/mirror.h"
#include "test_util.h"

using namespace cuseg;

TEST(Mirror, EveryAxisMaskFlipsByCoordinatesAndIsItsOwnInverse) {
  std::mt19937 rng(1);
  const int N = 2, C = 3, D = 4, H = 5, W = 6;
  Tensor x = uniform_tensor({N, C, D, H, W}, rng, -4.f, 4.f);
  for (int axes = 0; axes <= kMirrorAll; ++axes) {
    Tensor y = Tensor::empty(x.shape()), z = Tensor::empty(x.shape());
    mirror_cpu(x.vol(), y.vol(), axes);
    for (int n = 0; n < N; ++n)
      for (int c = 0; c < C; ++c)
        for (int d = 0; d < D; ++d)
          for (int h = 0; h < H; ++h)
            for (int w = 0; w < W; ++w) {
              const int sd = axes & kMirrorD ? D - 1 - d : d, sh = axes & kMirrorH ? H - 1 - h : h,
                        sw = axes & kMirrorW ? W - 1 - w : w;
              ASSERT_EQ(y.vol().at(n, c)[lin3(d, h, w, H, W)],
                        x.vol().at(n, c)[lin3(sd, sh, sw, H, W)])
                  << "axes " << axes;
            }
    mirror_cpu(y.vol(), z.vol(), axes);
    for (int64_t i = 0; i < x.numel(); ++i) ASSERT_EQ(z.f32()[i], x.f32()[i]) << "axes " << axes;
  }
}

// acc += scale * softmax(flip(logits)) for all 8 masks, against double arithmetic. Tolerance:
// float32 softmax of logits in [-8, 8] (expf < 1 ulp in glibc, a sum of 3 terms, one divide)
// is within a few ulp of 1: 1e-6 absolute per probability, 8 accumulations: 1e-5.
TEST(Mirror, SoftmaxAccumulateAveragesTheFlippedBackProbabilities) {
  std::mt19937 rng(2);
  const int N = 2, C = 3, D = 3, H = 4, W = 5;
  Tensor logits[8];
  for (auto& l : logits) l = uniform_tensor({N, C, D, H, W}, rng, -8.f, 8.f);
  Tensor acc = Tensor::zeros({N, C, D, H, W});
  for (int axes = 0; axes < 8; ++axes)
    softmax_mirror_accumulate_cpu(logits[axes].vol(), acc.vol(), axes, 1.f / 8.f);
  double worst = 0;
  for (int n = 0; n < N; ++n)
    for (int d = 0; d < D; ++d)
      for (int h = 0; h < H; ++h)
        for (int w = 0; w < W; ++w) {
          std::vector<double> want(C, 0.0);
          for (int axes = 0; axes < 8; ++axes) {
            const int sd = axes & kMirrorD ? D - 1 - d : d, sh = axes & kMirrorH ? H - 1 - h : h,
                      sw = axes & kMirrorW ? W - 1 - w : w;
            std::vector<double> e(C);
            double s = 0;
            for (int c = 0; c < C; ++c)
              s += e[size_t(c)] =
                  std::exp(double(logits[axes].vol().at(n, c)[lin3(sd, sh, sw, H, W)]));
            for (int c = 0; c < C; ++c) want[size_t(c)] += e[size_t(c)] / s / 8.0;
          }
          double total = 0;
          for (int c = 0; c < C; ++c) {
            const double got = acc.vol().at(n, c)[lin3(d, h, w, H, W)];
            worst = std::max(worst, std::fabs(got - want[size_t(c)]));
            total += got;
          }
          EXPECT_NEAR(total, 1.0, 1e-5);
        }
  EXPECT_LT(worst, 1e-5);
}
