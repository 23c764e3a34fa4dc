// Transforms against hand-computed small cases and the torchio rules in shared/DESIGN.md.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "data/transforms.h"
#include "engine/check.h"
#include "kernels/crop_or_pad.h"
#include "kernels/grid_aggregate.h"
#include "kernels/rescale_intensity.h"

using namespace cuseg::data;

namespace {
// Volume whose value encodes its index: v = i + 10 j + 100 k (exact in float).
Image coded(int X, int Y, int Z) {
  Geometry g;
  g.size = {X, Y, Z};
  g.spacing = {0.5, 2.0, 3.0};
  g.origin = {10, -20, 30};
  g.direction = {-1, 0, 0, 0, -1, 0, 0, 0, 1};
  Image im = Image::make(g);
  for (int k = 0; k < Z; ++k)
    for (int j = 0; j < Y; ++j)
      for (int i = 0; i < X; ++i) im.at(i, j, k) = float(i + 10 * j + 100 * k);
  return im;
}
}  // namespace

// torchio _get_six_bounds_parameters: diff 4 -> (2, 2), 7 -> (4, 3), 0 -> (0, 0).
TEST(DataTransforms, CropOrPadOffsetsFollowTorchio) {
  EXPECT_EQ(cuseg::crop_or_pad_offset(10, 6), 2);   // crop 4: ini 2, fin 2
  EXPECT_EQ(cuseg::crop_or_pad_offset(10, 3), 4);   // crop 7: ini 4, fin 3
  EXPECT_EQ(cuseg::crop_or_pad_offset(3, 10), -4);  // pad 7: ini 4, fin 3
  EXPECT_EQ(cuseg::crop_or_pad_offset(6, 10), -2);  // pad 4
  EXPECT_EQ(cuseg::crop_or_pad_offset(5, 5), 0);
}

TEST(DataTransforms, CropOrPadMixedAxesHandComputed) {
  const Image im = coded(5, 4, 3);
  // i: 5 -> 2 (crop 3: ini 2, fin 1), j: 4 -> 7 (pad 3: ini 2, fin 1), k: 3 -> 3.
  const Image out = crop_or_pad(im, {2, 7, 3}, -1.f);
  ASSERT_EQ(out.geo.size, (std::array<int, 3>{2, 7, 3}));
  for (int k = 0; k < 3; ++k)
    for (int j = 0; j < 7; ++j)
      for (int i = 0; i < 2; ++i) {
        const int sj = j - 2;
        const float want = (sj < 0 || sj >= 4) ? -1.f : float((i + 2) + 10 * sj + 100 * k);
        EXPECT_EQ(out.at(i, j, k), want) << i << "," << j << "," << k;
      }
  // Geometry: new voxel (0,0,0) sits where old voxel (2, -2, 0) was.
  const auto w = im.geo.world(2, -2, 0);
  for (int a = 0; a < 3; ++a) EXPECT_DOUBLE_EQ(out.geo.origin[size_t(a)], w[size_t(a)]);
  // uint8 labels take the same path through the shared index functions.
  LabelMap lab = LabelMap::make(im.geo);
  lab.at(3, 1, 2) = 2;  // -> (3 - 2, 1 + 2, 2)
  lab.at(4, 1, 2) = 1;  // i = 4 is cropped away (only source i = 2, 3 are kept)
  const LabelMap lo = crop_or_pad(lab, {2, 7, 3}, uint8_t(0));
  EXPECT_EQ(lo.at(1, 3, 2), 2);
  EXPECT_EQ(std::count(lo.v.begin(), lo.v.end(), 1), 0);
}

TEST(DataTransforms, CropOrPadInverseRestores) {
  const Image im = coded(7, 6, 5);
  for (const std::array<int, 3> t : {std::array<int, 3>{4, 9, 5}, {10, 3, 2}, {7, 6, 8}}) {
    const Image fwd = crop_or_pad(im, t, -5.f);
    const Image back = crop_or_pad_inverse(fwd, im.geo, -5.f);
    EXPECT_EQ(back.geo.origin, im.geo.origin);
    for (int k = 0; k < 5; ++k)
      for (int j = 0; j < 6; ++j)
        for (int i = 0; i < 7; ++i) {
          // Voxels kept by the forward crop come back unchanged; cropped ones are pad.
          const int oi = cuseg::crop_or_pad_offset(7, t[0]),
                    oj = cuseg::crop_or_pad_offset(6, t[1]),
                    ok = cuseg::crop_or_pad_offset(5, t[2]);
          const bool kept = i - oi >= 0 && i - oi < t[0] && j - oj >= 0 && j - oj < t[1] &&
                            k - ok >= 0 && k - ok < t[2];
          EXPECT_EQ(back.at(i, j, k), kept ? im.at(i, j, k) : -5.f);
        }
  }
}

// RescaleIntensity with percentiles: numpy.percentile of 0..99 at 10 / 90 is 9.9 / 89.1
// (linear interpolation between closest ranks), so v maps to (clip(v) - 9.9) / 79.2 * 2 - 1.
// Tolerance 1e-6: float32 arithmetic (torchio's order) on values of magnitude <= 1.
TEST(DataTransforms, RescaleIntensityPercentilesHandComputed) {
  Image im = Image::make(Geometry{{10, 10, 1}});
  std::iota(im.v.begin(), im.v.end(), 0.f);
  EXPECT_NEAR(percentile(im.v, 10), 9.9, 1e-12);
  EXPECT_NEAR(percentile(im.v, 90), 89.1, 1e-12);
  EXPECT_EQ(percentile(im.v, 0), 0.0);
  EXPECT_EQ(percentile(im.v, 100), 99.0);
  const std::vector<float> src = im.v;
  rescale_intensity(im, -1.f, 1.f, 10, 90);
  for (size_t n = 0; n < src.size(); ++n) {
    const double c = std::min(89.1, std::max(9.9, double(src[n])));
    EXPECT_NEAR(im.v[n], (c - 9.9) / 79.2 * 2 - 1, 1e-6) << n;
  }
  // Default (0, 100): min -> out_min, max -> out_max exactly.
  Image a = Image::make(Geometry{{3, 1, 1}});
  a.v = {-1000.f, 0.f, 1000.f};
  rescale_intensity(a);
  EXPECT_EQ(a.v, (std::vector<float>{-1.f, 0.f, 1.f}));
  // Constant image: unchanged (torchio warns and returns the input).
  Image c = Image::make(Geometry{{3, 1, 1}}, 7.f);
  rescale_intensity(c);
  EXPECT_EQ(c.v, (std::vector<float>{7.f, 7.f, 7.f}));
}

TEST(DataTransforms, ClampAndCtWindow) {
  Image im = Image::make(Geometry{{5, 1, 1}});
  im.v = {-1000.f, -140.f, 60.f, 260.f, 3000.f};
  Image w = im;
  ct_window(w, 60.f, 400.f);  // [-140, 260] -> [-1, 1]
  EXPECT_EQ(w.v, (std::vector<float>{-1.f, -1.f, 0.f, 1.f, 1.f}));
  clamp(im, -100.f, 200.f);
  EXPECT_EQ(im.v, (std::vector<float>{-100.f, -100.f, 60.f, 200.f, 200.f}));
}

// torchio Resample: 2 mm -> 1 mm keeps the field of view: size 4 -> 8, origin at old
// continuous index 0.5 * (1/2 - 1) = -0.25. Linear values on a ramp are exact in the interior
// (linear interpolation reproduces linear functions; 1e-5 for float storage) and clamp at the
// border (ITK behaviour). Nearest on labels is checked voxel by voxel.
TEST(DataTransforms, ResampleToSpacingHandComputed) {
  Geometry g;
  g.size = {4, 1, 1};
  g.spacing = {2, 1, 1};
  Image im = Image::make(g);
  im.v = {0.f, 10.f, 20.f, 30.f};
  const Geometry t = resampled_geometry(g, {1, 1, 1});
  EXPECT_EQ(t.size, (std::array<int, 3>{8, 1, 1}));
  EXPECT_DOUBLE_EQ(t.origin[0], -0.5);  // world of old index -0.25 at 2 mm
  const Image r = resample_to(im, t, Interp::Linear, -99.f);
  // new voxel n sits at old continuous index -0.25 + n / 2
  const float want[8] = {0.f, 2.5f, 7.5f, 12.5f, 17.5f, 22.5f, 27.5f, 30.f};
  for (int n = 0; n < 8; ++n) EXPECT_NEAR(r.v[size_t(n)], want[n], 1e-5) << n;
  LabelMap lab = LabelMap::make(g);
  lab.v = {0, 1, 2, 1};
  const LabelMap rl = resample_to(lab, t, Interp::Nearest, uint8_t(0));
  // old index -0.25 + n/2 rounded half up: 0,0,1,1,2,2,3,3
  EXPECT_EQ(rl.v, (std::vector<uint8_t>{0, 0, 1, 1, 2, 2, 1, 1}));
  // Inverse: back onto the original grid (old index n = new index 2n + 0.5): exact midpoints.
  const Image back = resample_to(r, g, Interp::Linear, -99.f);
  EXPECT_NEAR(back.v[1], 10.f, 1e-5);
  EXPECT_NEAR(back.v[2], 20.f, 1e-5);
  const Geometry rs = resized_geometry(g, {2, 1, 1});
  EXPECT_EQ(rs.size, (std::array<int, 3>{2, 1, 1}));
  EXPECT_DOUBLE_EQ(rs.spacing[0], 4.0);
}

TEST(DataTransforms, AffineIdentityAndNinetyDegrees) {
  const Image im = coded(5, 5, 3);
  AffineParams id;
  const Image same = apply_affine(im, id, Interp::Linear, -1.f);
  for (size_t n = 0; n < im.v.size(); ++n) EXPECT_NEAR(same.v[n], im.v[n], 1e-4);
  // 90 degrees about world z with isotropic in-plane spacing and direction diag(-1,-1,1):
  // a pure index rotation about the centre (2, 2); nearest sampling makes it exact.
  Image iso = im;
  iso.geo.spacing = {1, 1, 1};
  AffineParams rot;
  rot.degrees = {0, 0, 90};
  const Image r = apply_affine(iso, rot, Interp::Nearest, -1.f);
  for (int k = 0; k < 3; ++k)
    for (int j = 0; j < 5; ++j)
      for (int i = 0; i < 5; ++i) {
        // in = c + R (out - c) with R = [[0,-1],[1,0]] in the (x,y) world frame; index axes
        // are both flipped relative to world, which leaves R unchanged.
        const int si = 2 - (j - 2), sj = 2 + (i - 2);
        EXPECT_EQ(r.at(i, j, k), iso.at(si, sj, k)) << i << "," << j;
      }
}

TEST(DataTransforms, RandomAffineIsSeededAndKeepsLabelsNearest) {
  Image im = coded(12, 10, 8);
  LabelMap lab = LabelMap::make(im.geo);
  for (size_t n = 0; n < lab.v.size(); ++n) lab.v[n] = uint8_t(n % 3);
  Image a = im, b = im;
  LabelMap la = lab, lb = lab;
  std::mt19937_64 r1(5), r2(5);
  AffineParams p1, p2;
  random_affine(a, la, {}, r1, &p1);
  random_affine(b, lb, {}, r2, &p2);
  EXPECT_EQ(a.v, b.v);
  EXPECT_EQ(la.v, lb.v);
  for (int ax = 0; ax < 3; ++ax) {
    EXPECT_GE(p1.scales[size_t(ax)], 0.9);
    EXPECT_LE(p1.scales[size_t(ax)], 1.1);
    EXPECT_LE(std::abs(p1.degrees[size_t(ax)]), 10.0);
  }
  for (uint8_t v : la.v) EXPECT_LE(v, 2);  // nearest: no new label values
}

// Grid aggregation by hand: 1-D along W (size 6, patch 4, overlap 2 -> starts 0, 2).
TEST(DataTransforms, GridAggregateModesHandComputed) {
  std::vector<float> patches(8);
  for (int x = 0; x < 4; ++x) patches[size_t(x)] = 1.f, patches[size_t(4 + x)] = 3.f;
  const int starts[6] = {0, 0, 0, 0, 0, 2};
  auto run = [&](cuseg::AggregateMode m) {
    std::vector<float> sum(6, 0.f), w(6, 0.f), out(6);
    cuseg::Vol vp{patches.data(), 2, 1, 1, 1, 4, 4}, vs{sum.data(), 1, 1, 1, 1, 6, 6},
        vw{w.data(), 1, 1, 1, 1, 6, 6}, vo{out.data(), 1, 1, 1, 1, 6, 6};
    cuseg::GridAggregateParams p{m, 0, 0, 2};
    cuseg::grid_aggregate_cpu(vp, starts, vs, vw, p);
    cuseg::grid_aggregate_finalize_cpu(vs, vw, vo);
    return out;
  };
  // Average: overlap voxels 2, 3 get (1 + 3) / 2.
  EXPECT_EQ(run(cuseg::AggregateMode::Average), (std::vector<float>{1, 1, 2, 2, 3, 3}));
  // Crop: patch 0 drops 1 voxel at its inner end (x = 3), patch 1 drops 1 at its inner start
  // (x = 2); x = 2 from patch 0, x = 3 from patch 1.
  EXPECT_EQ(run(cuseg::AggregateMode::Crop), (std::vector<float>{1, 1, 1, 3, 3, 3}));
  // Hann: weights hann(6)[1:-1] = 0.5 - 0.5 cos(2 pi n / 5), n = 1..4 -> w0 = w3 = 0.345492,
  // w1 = w2 = 0.904508; the other two axes have size 1: hann(3)[1] = 1.
  const double w0 = 0.5 - 0.5 * std::cos(2 * M_PI / 5), w1 = 0.5 - 0.5 * std::cos(4 * M_PI / 5);
  const auto h = run(cuseg::AggregateMode::Hann);
  EXPECT_NEAR(h[0], 1, 1e-6);
  EXPECT_NEAR(h[2], (1 * w1 + 3 * w0) / (w1 + w0), 1e-6);  // float32 weights: 1e-6
  EXPECT_NEAR(h[3], (1 * w0 + 3 * w1) / (w0 + w1), 1e-6);
  EXPECT_NEAR(h[5], 3, 1e-6);
  EXPECT_NEAR(cuseg::hann_weight(0, 1), 1.0, 1e-7);
}
