// The CUSEG_HD index maths that the CUDA kernels share with their CPU twins, checked on the
// CPU (the cuda tests only run where a GPU answers). Each property below is one the CUDA
// kernels rely on: gather-based backward = transpose of the forward taps, crop tiles cover a
// volume exactly once, crop_or_pad back to the original size restores every kept voxel, the
// fused CE gradient is a weighted softmax minus one-hot, Adam's single-step formula.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "cuseg/kernels/adam.h"
#include "cuseg/kernels/common.h"
#include "cuseg/kernels/crop_or_pad.h"
#include "cuseg/kernels/cross_entropy.h"
#include "cuseg/kernels/grid_aggregate.h"
#include "cuseg/kernels/maxpool3d.h"
#include "cuseg/kernels/rescale_intensity.h"
#include "cuseg/kernels/upsample.h"

using namespace cuseg;

// upsample2x_backward_cuda gathers through upsample_taps(); it must be exactly the transpose
// of the forward's upsample_src() weights, and each output's weights must sum to 1.
TEST(KernelIndex, UpsampleTapsAreTheForwardTranspose) {
  for (int n : {1, 2, 3, 5, 8, 48}) {
    std::vector<double> fwd(size_t(2 * n) * n, 0.0), bwd(size_t(2 * n) * n, 0.0);
    for (int o = 0; o < 2 * n; ++o) {
      const UpTap t = upsample_src(o, n);
      ASSERT_GE(t.i0, 0);
      ASSERT_LT(t.i1, n);
      fwd[size_t(o) * n + t.i0] += 1.0 - t.l;
      fwd[size_t(o) * n + t.i1] += t.l;
    }
    for (int i = 0; i < n; ++i) {
      int outs[5];
      float wts[5];
      const int m = upsample_taps(i, n, outs, wts);
      ASSERT_LE(m, 5);
      for (int k = 0; k < m; ++k) bwd[size_t(outs[k]) * n + i] += wts[k];
    }
    for (int o = 0; o < 2 * n; ++o) {
      double s = 0;
      for (int i = 0; i < n; ++i) {
        EXPECT_DOUBLE_EQ(fwd[size_t(o) * n + i], bwd[size_t(o) * n + i])
            << "n " << n << " o " << o << " i " << i;
        s += fwd[size_t(o) * n + i];
      }
      EXPECT_DOUBLE_EQ(s, 1.0);
    }
  }
}

// grid_aggregate_cuda in crop mode relies on the inner regions of a torchio grid tiling the
// volume: every voxel is written by at least one patch, and (for even overlap) exactly one.
TEST(KernelIndex, GridCropRegionsTileTheVolume) {
  for (int size : {11, 20, 37, 96, 200})
    for (int patch : {5, 8, 11, 96})
      for (int overlap : {0, 2, 4, 8}) {
        if (patch > size || overlap >= patch) continue;
        std::vector<int> starts;
        for (int s = 0; s <= size - patch; s += patch - overlap) starts.push_back(s);
        if (starts.back() != size - patch) starts.push_back(size - patch);
        std::vector<int> hits(size_t(size), 0);
        for (int s : starts) {
          const int lo = grid_crop_ini(s, overlap),
                    hi = patch - grid_crop_fin(s, patch, size, overlap);
          for (int i = lo; i < hi; ++i) ++hits[size_t(s + i)];
        }
        for (int v = 0; v < size; ++v)
          EXPECT_GE(hits[size_t(v)], 1) << size << "/" << patch << "/" << overlap << " voxel " << v;
      }
}

// crop_or_pad_cuda uses crop_or_pad_src per axis; cropping then padding back restores every
// kept voxel at its place (and only padding elsewhere).
TEST(KernelIndex, CropOrPadRoundTrip) {
  for (int size : {1, 2, 7, 10, 96})
    for (int target : {1, 3, 8, 11, 100}) {
      const int off = crop_or_pad_offset(size, target), back = crop_or_pad_offset(target, size);
      for (int d = 0; d < size; ++d) {
        const int mid = crop_or_pad_src(d, back, target);  // where d lands in the target
        if (mid < 0) continue;
        EXPECT_EQ(crop_or_pad_src(mid, off, size), d) << size << " -> " << target;
      }
    }
}

TEST(KernelIndex, HannWeightsSymmetricAndPositive) {
  for (int n : {1, 2, 5, 8, 96}) {
    for (int i = 0; i < n; ++i) {
      EXPECT_GT(hann_weight(i, n), 0.f);
      EXPECT_EQ(hann_weight(i, n), hann_weight(n - 1 - i, n));
    }
  }
}

// ce_voxel with a channel stride (the CUDA kernel reads logits[k * dhw + v]).
TEST(KernelIndex, CeVoxelStridedLossAndGradient) {
  const int K = 3, cs = 5;
  float x[K * cs], g[K * cs];
  const float vals[K] = {0.3f, -1.2f, 2.0f};
  for (int k = 0; k < K; ++k) x[k * cs] = vals[k];
  for (int y = 0; y < K; ++y) {
    const float w = 1.f + y, gs = 0.25f;
    const float l = ce_voxel(x, cs, K, y, w, gs, g);
    double se = 0;
    for (int k = 0; k < K; ++k) se += std::exp(double(vals[k]));
    EXPECT_NEAR(l, w * (std::log(se) - vals[y]), 1e-5);
    double gsum = 0;
    for (int k = 0; k < K; ++k) {
      const double p = std::exp(double(vals[k])) / se;
      EXPECT_NEAR(g[k * cs], gs * w * (p - (k == y)), 1e-6);
      gsum += g[k * cs];
    }
    EXPECT_NEAR(gsum, 0.0, 1e-6);
  }
}

// The CE chunking the CPU and CUDA share: every voxel in exactly one chunk of one batch item.
TEST(KernelIndex, CeChunksCoverEveryVoxelOnce) {
  for (int64_t dhw :
       {int64_t(1), int64_t(4095), int64_t(4096), int64_t(4097), int64_t(96) * 96 * 96}) {
    const int64_t chunks = (dhw + kCeChunk - 1) / kCeChunk;
    int64_t covered = 0;
    for (int64_t t = 0; t < chunks; ++t) {
      const int64_t v0 = t * kCeChunk, v1 = std::min(dhw, v0 + kCeChunk);
      ASSERT_LT(v0, v1);
      covered += v1 - v0;
    }
    EXPECT_EQ(covered, dhw);
  }
}

TEST(KernelIndex, AdamUpdateMatchesFormula) {
  AdamCoeffs c{0.9f, 0.999f, 1e-8f, float(1e-3 / (1 - 0.9)), float(std::sqrt(1 - 0.999))};
  float p = 0.5f, m = 0.f, v = 0.f;
  const float g = 0.2f;
  adam_update(p, g, m, v, c);
  const double md = 0.1 * 0.2, vd = 0.001 * 0.04;
  const double pd = 0.5 - 1e-3 / 0.1 * md / (std::sqrt(vd) / std::sqrt(0.001) + 1e-8);
  // Tolerances: (1 - b1) and (1 - b2) are formed in float (rel 2.4e-7 and 1.3e-5 off).
  EXPECT_NEAR(m, md, 1e-8);
  EXPECT_NEAR(v, vd, 1e-9);
  EXPECT_NEAR(p, pd, 1e-6);
}

TEST(KernelIndex, RescaleValueClipsAndMaps) {
  RescaleParams p;
  p.in_min = -100.f;
  p.in_max = 300.f;
  EXPECT_EQ(rescale_value(-500.f, p), -1.f);
  EXPECT_EQ(rescale_value(1000.f, p), 1.f);
  EXPECT_EQ(rescale_value(100.f, p), 0.f);
}

// Two roundings on both sides (mul_rn / add_rn): a CT window mapped onto itself or onto
// [0, 255] must give the float32 result of the separate steps, which a fused multiply-add
// would miss by an ulp for many inputs.
TEST(KernelIndex, RescaleValueRoundsEachStep) {
  RescaleParams p;
  p.in_min = -160.f;
  p.in_max = 240.f;
  p.out_min = 0.f;
  p.out_max = 255.f;
  int checked = 0;
  for (float v = -160.f; v <= 240.f; v += 0.37f, ++checked) {
    const float q = (v - p.in_min) / (p.in_max - p.in_min);
    const volatile float prod = q * (p.out_max - p.out_min);  // volatile: rounded to float
    EXPECT_EQ(rescale_value(v, p), prod + p.out_min) << v;
  }
  EXPECT_GT(checked, 1000);
}

// NaN propagates through max pooling (PyTorch's rule); ties go to the first maximum.
TEST(KernelIndex, MaxPoolArgmaxTiesAndNaN) {
  const float nan = std::nanf("");
  // A packed 2x2x2 volume: h = w = 2, offsets t = (z * 2 + y) * 2 + x.
  float a[8] = {1, 3, 3, 0, 2, 3, 1, 0};
  EXPECT_EQ(maxpool_argmax(a, 2, 2), 1) << "first of the tied maxima";
  float b[8] = {1, 3, nan, 0, 2, 9, 1, 0};
  EXPECT_EQ(maxpool_argmax(b, 2, 2), 2) << "NaN wins over larger numbers after it";
  float c[8] = {nan, 3, 4, 0, 2, 9, 1, 0};
  EXPECT_EQ(maxpool_argmax(c, 2, 2), 0) << "a leading NaN is kept";
  float d[8] = {0, nan, 4, 0, nan, 9, 1, 0};
  EXPECT_EQ(maxpool_argmax(d, 2, 2), 4) << "the last NaN";
}
