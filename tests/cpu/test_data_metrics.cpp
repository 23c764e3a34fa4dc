// Metrics against hand-computed cases (data/metrics.h states the definitions and the policy).
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "cuseg/data/metrics.h"

using namespace cuseg::data;

namespace {
Geometry geo(int X, int Y, int Z, double sx = 1, double sy = 1, double sz = 1) {
  Geometry g;
  g.size = {X, Y, Z};
  g.spacing = {sx, sy, sz};
  return g;
}
}  // namespace

TEST(DataMetrics, DiceAndEmptyPolicy) {
  Mask a{1, 1, 1, 0, 0}, b{0, 1, 1, 1, 0}, e(5, 0);
  EXPECT_DOUBLE_EQ(dice(a, b), 2.0 * 2 / 6);
  EXPECT_DOUBLE_EQ(dice(e, e), 1.0);  // both empty
  EXPECT_DOUBLE_EQ(dice(a, e), 0.0);  // one empty
  const Geometry g = geo(5, 1, 1);
  const auto both = surface_distances(e, e, g);
  EXPECT_EQ(*both.hd95_mm, 0.0);
  EXPECT_EQ(*both.assd_mm, 0.0);
  const auto one = surface_distances(a, e, g);
  EXPECT_FALSE(one.hd95_mm.has_value());
  EXPECT_EQ(fmt_opt(one.hd95_mm), "null");
}

// Two single voxels 3 voxels apart along k with 2.5 mm slices: every distance is 7.5 mm.
TEST(DataMetrics, SurfaceDistanceUsesSpacing) {
  const Geometry g = geo(3, 3, 6, 0.7, 0.7, 2.5);
  Mask a(size_t(g.numel()), 0), b = a;
  a[size_t(g.index(1, 1, 1))] = 1;
  b[size_t(g.index(1, 1, 4))] = 1;
  const auto d = surface_distances(a, b, g);
  EXPECT_NEAR(*d.hd95_mm, 7.5, 1e-12);
  EXPECT_NEAR(*d.assd_mm, 7.5, 1e-12);
  // Diagonal offset (1, 2, 1) voxels: sqrt(0.7^2 + 1.4^2 + 2.5^2).
  Mask c(size_t(g.numel()), 0);
  c[size_t(g.index(2, 0, 2))] = 1;  // from (1,1,1): (1, -1, 1) -> sqrt(0.49 + 0.49 + 6.25)
  EXPECT_NEAR(*surface_distances(a, c, g).hd95_mm, std::sqrt(0.49 + 0.49 + 6.25), 1e-12);
}

// A 1-D hand case in an 8x1x1 volume. Every voxel touches the volume border along j and k,
// so (as with medpy's binary_erosion, border value 0) every foreground voxel is surface:
// A = {0..3}, B = {0..5}. Directed A->B: four 0s; B->A: 0,0,0,0,1,2.
// HD95 of the ten values (eight 0s, 1, 2): rank 0.95 * 9 = 8.55 -> 1 + 0.55 * (2 - 1) = 1.55.
// ASSD = mean of all ten = 3/10 = 0.3 (the mean of the two directed means would be 0.25: the
// surfaces have 4 and 6 voxels, so this case tells the two definitions apart); HD = 2.
TEST(DataMetrics, Hd95AndAssdHandComputed) {
  const Geometry g = geo(8, 1, 1);
  Mask a{1, 1, 1, 1, 0, 0, 0, 0}, b{1, 1, 1, 1, 1, 1, 0, 0};
  const auto d = surface_distances(a, b, g);
  EXPECT_NEAR(*d.hd95_mm, 1.55, 1e-12);
  EXPECT_NEAR(*d.assd_mm, 0.3, 1e-12);
  EXPECT_NEAR(*d.hd_mm, 2.0, 1e-12);
  // Interior surface: a 5x5x5 cube inside 9x9x9 has 98 surface voxels (125 - 27 inner); the
  // cube against itself shrunk by one voxel on every side: every surface voxel of the big
  // cube is 1 voxel (or sqrt 2, sqrt 3 at edges/corners) from the small cube's surface.
  const Geometry g9 = geo(9, 9, 9);
  Mask big(size_t(g9.numel()), 0), small = big;
  for (int k = 2; k < 7; ++k)
    for (int j = 2; j < 7; ++j)
      for (int i = 2; i < 7; ++i) {
        big[size_t(g9.index(i, j, k))] = 1;
        if (i > 2 && i < 6 && j > 2 && j < 6 && k > 2 && k < 6)
          small[size_t(g9.index(i, j, k))] = 1;
      }
  const auto c = surface_distances(big, small, g9);
  EXPECT_NEAR(*c.hd_mm, std::sqrt(3.0), 1e-12);  // cube corners
  // Identical masks: all zero.
  EXPECT_EQ(*surface_distances(a, a, g).hd95_mm, 0.0);
}

TEST(DataMetrics, ComponentsAre26Connected) {
  const Geometry g = geo(5, 5, 5);
  Mask m(size_t(g.numel()), 0);
  m[size_t(g.index(0, 0, 0))] = 1;
  m[size_t(g.index(1, 1, 1))] = 1;  // corner-touching: same component under 26-connectivity
  m[size_t(g.index(3, 3, 3))] = 1;  // separate
  m[size_t(g.index(4, 4, 0))] = 1;  // separate
  EXPECT_EQ(count_components(m, g), 3);
}

TEST(DataMetrics, StructureStatsSizesLesionsAndBorder) {
  const Geometry g = geo(6, 6, 6, 2, 2, 5);  // voxel 20 mm^3 = 0.02 mL
  Mask m(size_t(g.numel()), 0);
  // An interior 2x2x2 lesion (8 voxels) and a 3-voxel one, not touching each other or the
  // border (indices 1..4 only).
  for (int k = 1; k < 3; ++k)
    for (int j = 1; j < 3; ++j)
      for (int i = 1; i < 3; ++i) m[size_t(g.index(i, j, k))] = 1;
  for (int i = 2; i < 5; ++i) m[size_t(g.index(i, 4, 4))] = 1;
  StructureStats s = structure_stats(m, g);
  EXPECT_EQ(s.voxels, 11);
  EXPECT_NEAR(s.ml, 11 * 0.02, 1e-12);
  EXPECT_EQ(s.components, 2);
  EXPECT_EQ(s.largest_voxels, 8);
  EXPECT_NEAR(s.largest_ml, 8 * 0.02, 1e-12);
  EXPECT_FALSE(s.touches_border);
  EXPECT_EQ(component_sizes(m, g), (std::vector<int64_t>{8, 3}));
  // One more voxel on each face in turn makes the structure touch the border.
  for (int face = 0; face < 6; ++face) {
    Mask f = m;
    const int a = face / 2, at = face % 2 ? 5 : 0;
    std::array<int, 3> idx{3, 3, 3};
    idx[size_t(a)] = at;
    f[size_t(g.index(idx[0], idx[1], idx[2]))] = 1;
    const StructureStats t = structure_stats(f, g);
    EXPECT_TRUE(t.touches_border) << "face " << face;
    EXPECT_EQ(t.voxels, 12) << "face " << face;
  }
  // Empty mask: all zero, no border contact.
  const StructureStats e = structure_stats(Mask(size_t(g.numel()), 0), g);
  EXPECT_EQ(e.voxels, 0);
  EXPECT_EQ(e.components, 0);
  EXPECT_EQ(e.largest_voxels, 0);
  EXPECT_FALSE(e.touches_border);
}

TEST(DataMetrics, CaseMetricsLitsConventions) {
  const Geometry g = geo(4, 4, 2, 2, 2, 5);  // voxel = 20 mm^3 = 0.02 mL
  LabelMap ref = LabelMap::make(g), pred = LabelMap::make(g);
  // ref: 8 liver voxels of which 2 tumour (k = 0); pred: 6 liver incl. 1 tumour.
  for (int j = 0; j < 2; ++j)
    for (int i = 0; i < 4; ++i) ref.at(i, j, 0) = 1;
  ref.at(0, 0, 0) = 2;
  ref.at(1, 0, 0) = 2;
  for (int i = 0; i < 4; ++i) pred.at(i, 0, 0) = 1;
  pred.at(0, 1, 0) = 1;
  pred.at(1, 1, 0) = 1;
  pred.at(0, 0, 0) = 2;
  const CaseMetrics c = evaluate_case(pred, ref, "x");
  // liver (label >= 1): |P| = 6, |R| = 8, overlap 6 -> 12 / 14
  EXPECT_DOUBLE_EQ(c.dice_liver, 12.0 / 14.0);
  // tumour: |P| = 1, |R| = 2, overlap 1 -> 2 / 3
  EXPECT_DOUBLE_EQ(c.dice_tumour, 2.0 / 3.0);
  EXPECT_NEAR(c.liver_ml_ref, 8 * 0.02, 1e-12);
  EXPECT_NEAR(c.tumour_ml_pred, 0.02, 1e-12);
  EXPECT_EQ(c.tumours_ref, 1);
  EXPECT_EQ(c.tumours_pred, 1);
  // Global Dice over two copies of the case equals the per-case Dice; with an empty case
  // added it is unchanged (empty cases add nothing to the sums).
  LabelMap empty = LabelMap::make(g);
  const CaseMetrics e = evaluate_case(empty, empty, "empty");
  EXPECT_EQ(e.dice_liver, 1.0);
  const auto gd = global_dice({c, c, e});
  EXPECT_DOUBLE_EQ(gd.liver, 12.0 / 14.0);
  EXPECT_DOUBLE_EQ(gd.tumour, 2.0 / 3.0);
}

// Cross-check against medpy (tests/reference/metrics/make_metrics_ref.py wrote the JSON; it is
// not run in CI). Six mask pairs with anisotropic spacing: shifted ellipsoids, nested cubes,
// masks touching the volume border (border voxels are surface: erosion with border value 0),
// random blobs, a single voxel, a two-component mask. HD95 here and in medpy is the 95th
// percentile (linear interpolation) of the UNION of both directed surface-distance sets. The
// other common definition, the larger of the two directed 95th percentiles (MONAI's
// compute_hausdorff_distance(percentile=95) is built that way), gives 0.003 to 0.5 mm more on
// every case here (checked with medpy's directed distance sets), so this test tells them apart.
// Tolerance 1e-9 mm: both sides compute exact Euclidean distances between voxel centres in
// float64 (scipy's EDT and ours), so they differ only by rounding (~1e-15 relative); the
// smallest possible change of a surface distance, one voxel, is >= 0.5 mm here, so any real
// disagreement fails by many orders of magnitude. Dice is a ratio of integer counts: 1e-12.
TEST(DataMetrics, MatchesMedpyReference) {
  const std::string path =
      std::string(CUSEG_SOURCE_DIR) + "/tests/reference/metrics/metrics_ref.json";
  std::ifstream f(path);
  ASSERT_TRUE(f.good()) << path;
  const nlohmann::json doc = nlohmann::json::parse(f);
  ASSERT_GE(doc["cases"].size(), 6u);
  for (const auto& c : doc["cases"]) {
    SCOPED_TRACE(c["name"].get<std::string>());
    Geometry g;
    for (int a = 0; a < 3; ++a) {
      g.size[size_t(a)] = c["size"][size_t(a)].get<int>();
      g.spacing[size_t(a)] = c["spacing"][size_t(a)].get<double>();
    }
    Mask a(size_t(g.numel()), 0), b(size_t(g.numel()), 0);
    for (const auto& n : c["a"]) a[n.get<size_t>()] = 1;
    for (const auto& n : c["b"]) b[n.get<size_t>()] = 1;
    EXPECT_NEAR(dice(a, b), c["dice"].get<double>(), 1e-12);
    const SurfaceDistances d = surface_distances(a, b, g);
    ASSERT_TRUE(d.hd95_mm && d.assd_mm && d.hd_mm);
    EXPECT_NEAR(*d.hd95_mm, c["hd95"].get<double>(), 1e-9);
    EXPECT_NEAR(*d.assd_mm, c["assd"].get<double>(), 1e-9);
    EXPECT_NEAR(*d.hd_mm, c["hd"].get<double>(), 1e-9);
    // Symmetric by definition (union of both directions; mean of both means).
    const SurfaceDistances r = surface_distances(b, a, g);
    EXPECT_NEAR(*r.hd95_mm, *d.hd95_mm, 1e-12);
    EXPECT_NEAR(*r.assd_mm, *d.assd_mm, 1e-12);
  }
}
