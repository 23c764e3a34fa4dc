// Transforms against hand-computed small cases and the torchio rules in docs/ARCHITECTURE.md.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "cuseg/core/check.h"
#include "cuseg/data/transforms.h"
#include "cuseg/kernels/crop_or_pad.h"
#include "cuseg/kernels/grid_aggregate.h"
#include "cuseg/kernels/rescale_intensity.h"

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

// Where the torchio rule shows: a size that does not divide. 5 voxels at 1 mm (world 0..4,
// centre 2) to 2 mm: current torchio keeps floor(5 * 1 / 2) = 2 voxels centred on 2 mm, i.e.
// origin 2 - 0.5 * 2 = 1 mm (older torchio: ceil -> 3 voxels from old index 0.5, origin 0.5).
// Spacing 3 along j: floor(4 * 1 / 3) = 1 voxel at the centre 1.5 mm. Direction diag(-1,-1,1)
// flips the world offsets. Resize 9 -> 7 (identity direction, world 10..18, centre 14):
// spacing 9 / 7 * 1, and 9 * 1 / (9/7) = 6.999999999999999 in float64, so floor gives 6 voxels
// centred on 14 (origin 14 - 2.5 * 9/7), then torchio's CropOrPad pads one voxel at the start:
// origin 14 - 3.5 * 9/7 = 9.5 mm (a centred 7-voxel grid, or the older torchio rule, would start
// half a voxel later, at 14 - 3 * 9/7 = 10.14 mm).
TEST(DataTransforms, ResampleSizeAndOriginFollowCurrentTorchio) {
  Geometry g;
  g.size = {5, 4, 1};
  g.spacing = {1, 1, 1};
  g.origin = {10, 20, 30};
  g.direction = {-1, 0, 0, 0, -1, 0, 0, 0, 1};
  const Geometry t = resampled_geometry(g, {2, 3, 7});
  EXPECT_EQ(t.size, (std::array<int, 3>{2, 1, 1}));
  EXPECT_DOUBLE_EQ(t.origin[0], 10 - 1.0);  // index axis i points toward -x
  EXPECT_DOUBLE_EQ(t.origin[1], 20 - 1.5);
  EXPECT_DOUBLE_EQ(t.origin[2], 30.0);  // singleton axis: the same voxel centre
  Image ramp = Image::make(g);
  for (int j = 0; j < 4; ++j)
    for (int i = 0; i < 5; ++i) ramp.at(i, j, 0) = float(i + 10 * j);
  const Image r = resample_to(ramp, t, Interp::Linear, -99.f);
  EXPECT_NEAR(r.at(0, 0, 0), 1 + 15, 1e-5);  // old index (1, 1.5)
  EXPECT_NEAR(r.at(1, 0, 0), 3 + 15, 1e-5);  // old index (3, 1.5)
  Geometry h = g;
  h.size = {9, 4, 1};
  h.direction = {1, 0, 0, 0, 1, 0, 0, 0, 1};
  ASSERT_EQ(std::floor(9.0 * 1.0 / (9.0 / 7.0 * 1.0)), 6.0);  // the float64 fact used above
  const Geometry rs = resized_geometry(h, {7, 4, 1});
  EXPECT_EQ(rs.size, (std::array<int, 3>{7, 4, 1}));
  EXPECT_DOUBLE_EQ(rs.spacing[0], 9.0 / 7.0);
  EXPECT_NEAR(rs.origin[0], 9.5, 1e-12);
  EXPECT_DOUBLE_EQ(rs.origin[1], 20.0);                          // unchanged axis: same grid
  EXPECT_THROW(resampled_geometry(g, {6, 1, 1}), cuseg::Error);  // 5 mm hold no 6 mm voxel
}

TEST(DataTransforms, AffineIdentityAndNinetyDegrees) {
  const Image im = coded(5, 5, 3);
  AffineParams id;
  const Image same = apply_affine(im, id, Interp::Linear, -1.f);
  for (size_t n = 0; n < im.v.size(); ++n) EXPECT_NEAR(same.v[n], im.v[n], 1e-4);
  // 90 degrees about S with isotropic in-plane spacing and direction diag(-1,-1,1) (RAS): a
  // pure index rotation about the centre (2, 2); nearest sampling makes it exact.
  Image iso = im;
  iso.geo.spacing = {1, 1, 1};
  AffineParams rot;
  rot.degrees = {0, 0, 90};
  const Image r = apply_affine(iso, rot, Interp::Nearest, -1.f);
  for (int k = 0; k < 3; ++k)
    for (int j = 0; j < 5; ++j)
      for (int i = 0; i < 5; ++i) {
        // torchio samples in = c + R^T (out - c): R^T = [[0,1],[-1,0]] in the LPS (x,y) frame;
        // index axes are both flipped relative to it, which leaves the matrix unchanged.
        const int si = 2 + (j - 2), sj = 2 - (i - 2);
        EXPECT_EQ(r.at(i, j, k), iso.at(si, sj, k)) << i << "," << j;
      }
}

// The torchio Affine rule (data/transforms.h), each fact pinned on a 9x9x9 RAS volume
// (direction diag(-1,-1,1), 1 mm, centre index (4,4,4)) by hand:
//  (a) scale 2 along R magnifies: out(i) = in(4 + (i - 4) / 2) on a ramp v = i -> 4 + (i-4)/2
//      (the old forward convention sampled 4 + 2 (i - 4): outside for i = 0, padded);
//  (b) +90 degrees about S turns Right into Anterior (ITK Euler / RAS right-hand rule): a marker
//      voxel at i = 8 (4 mm right of the centre) appears at j = 8 (4 mm anterior);
//  (c) +90 about R then +90 about A composes as Rz Rx Ry: Right -> (Ry) Inferior -> (Rx)
//      Anterior, so the marker at i = 8 again lands at j = 8 (the order Rz Ry Rx would send
//      it to k = 0, the forward-sampling mistake to k = 8);
//  (d) rotation first, then scaling: +90 about S with scale 2 along R: the output at 4 mm
//      anterior samples R^T D^-1 (0, 4, 0)_RAS = 4 mm right -> ramp value 8 (scaling first
//      would give 4 + 2 = 6);
//  (e) translation (RAS mm): +2 mm toward R moves content right: out(i) = in(i - 2).
// Nearest sampling for the markers is exact (cos 90 degrees = 6e-17 moves no rounding); ramp
// values through linear interpolation: 1e-5 (float32 output of values <= 8).
TEST(DataTransforms, AffineFollowsTorchioConventions) {
  Geometry g;
  g.size = {9, 9, 9};
  g.direction = {-1, 0, 0, 0, -1, 0, 0, 0, 1};
  ASSERT_EQ(orientation_code(g), "RAS");
  Image ramp = Image::make(g);
  for (int k = 0; k < 9; ++k)
    for (int j = 0; j < 9; ++j)
      for (int i = 0; i < 9; ++i) ramp.at(i, j, k) = float(i);
  LabelMap marker = LabelMap::make(g);
  marker.at(8, 4, 4) = 1;
  auto only_at = [](const LabelMap& m, int i, int j, int k) {
    int n = 0;
    for (uint8_t v : m.v) n += v;
    return n == 1 && m.at(i, j, k) == 1;
  };
  AffineParams a;  // (a)
  a.scales = {2, 1, 1};
  const Image sa = apply_affine(ramp, a, Interp::Linear, -1.f);
  for (int i = 0; i < 9; ++i) EXPECT_NEAR(sa.at(i, 3, 5), 4 + (i - 4) / 2.0, 1e-5) << i;
  AffineParams b;  // (b)
  b.degrees = {0, 0, 90};
  EXPECT_TRUE(only_at(apply_affine(marker, b, Interp::Nearest, uint8_t(0)), 4, 8, 4));
  AffineParams c;  // (c)
  c.degrees = {90, 90, 0};
  EXPECT_TRUE(only_at(apply_affine(marker, c, Interp::Nearest, uint8_t(0)), 4, 8, 4));
  AffineParams d;  // (d)
  d.degrees = {0, 0, 90};
  d.scales = {2, 1, 1};
  EXPECT_NEAR(apply_affine(ramp, d, Interp::Linear, -1.f).at(4, 8, 4), 8.0, 1e-5);
  AffineParams e;  // (e)
  e.translation_mm = {2, 0, 0};
  const Image se = apply_affine(ramp, e, Interp::Linear, -1.f);
  for (int i = 2; i < 9; ++i) EXPECT_NEAR(se.at(i, 1, 7), i - 2, 1e-5) << i;
  EXPECT_EQ(se.at(0, 1, 7), -1.f);  // sampled 2 mm left of the volume: padded
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
