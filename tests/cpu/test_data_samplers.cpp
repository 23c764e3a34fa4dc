// Samplers, grid sampler/aggregator and the patch queue against torchio's rules
// (docs/ARCHITECTURE.md).
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <set>
#include <thread>

#include "cuseg/core/check.h"
#include "cuseg/data/samplers.h"

using namespace cuseg::data;

// torchio: range(0, size - patch + 1, patch - overlap) plus size - patch if missing.
TEST(DataSamplers, GridStartsFollowTorchio) {
  EXPECT_EQ(grid_starts(10, 4, 2), (std::vector<int>{0, 2, 4, 6}));
  EXPECT_EQ(grid_starts(11, 4, 2), (std::vector<int>{0, 2, 4, 6, 7}));
  EXPECT_EQ(grid_starts(4, 4, 0), (std::vector<int>{0}));
  // The reference: 256 x 256 x 200 with patch 96, overlap 8 (step 88).
  EXPECT_EQ(grid_starts(256, 96, 8), (std::vector<int>{0, 88, 160}));
  EXPECT_EQ(grid_starts(200, 96, 8), (std::vector<int>{0, 88, 104}));
  EXPECT_THROW(grid_starts(10, 4, 3), cuseg::Error);  // odd overlap
  EXPECT_THROW(grid_starts(3, 4, 0), cuseg::Error);   // patch larger than volume
  EXPECT_THROW(grid_starts(10, 4, 4), cuseg::Error);  // overlap == patch
  const auto loc = grid_locations({256, 256, 200}, {96, 96, 96}, {8, 8, 8});
  ASSERT_EQ(loc.size(), 27u);
  // np.unique order: i slowest, k fastest.
  EXPECT_EQ(loc[0], (Index3{0, 0, 0}));
  EXPECT_EQ(loc[1], (Index3{0, 0, 88}));
  EXPECT_EQ(loc[3], (Index3{0, 88, 0}));
  EXPECT_EQ(loc[26], (Index3{160, 160, 104}));
}

// Grid sample -> identity "network" -> aggregate reproduces the volume in every mode (each
// output is a weighted mean of copies of the same value; 1e-5 relative from float weights).
TEST(DataSamplers, GridRoundTripReproducesVolume) {
  Geometry g;
  g.size = {13, 11, 9};
  Image im = Image::make(g);
  for (size_t n = 0; n < im.v.size(); ++n) im.v[n] = float((n * 37) % 101) - 50.f;
  const Index3 patch{6, 5, 4}, overlap{2, 2, 2};
  for (auto mode : {cuseg::AggregateMode::Crop, cuseg::AggregateMode::Average,
                    cuseg::AggregateMode::Hann, cuseg::AggregateMode::Gaussian}) {
    GridAggregator agg(g, 1, patch, overlap, mode);
    for (const auto& ini : grid_locations(g.size, patch, overlap)) {
      const Patch p = extract_patch(im, nullptr, ini, patch);
      agg.add(p.image.data(), 1, &ini);
    }
    const auto out = agg.output();
    for (size_t n = 0; n < im.v.size(); ++n)
      ASSERT_NEAR(out[n], im.v[n], 1e-5 * std::max(1.f, std::abs(im.v[n]))) << n;
  }
}

TEST(DataSamplers, ArgmaxOfAggregatedScores) {
  Geometry g;
  g.size = {4, 4, 4};
  GridAggregator agg(g, 3, {4, 4, 4}, {0, 0, 0}, cuseg::AggregateMode::Average);
  std::vector<float> scores(3 * 64, 0.f);
  for (int n = 0; n < 64; ++n) scores[size_t((n % 3) * 64 + n)] = 1.f;
  const Index3 ini{0, 0, 0};
  agg.add(scores.data(), 1, &ini);
  const LabelMap lab = agg.argmax();
  for (int n = 0; n < 64; ++n) EXPECT_EQ(lab.v[size_t(n)], n % 3);
}

// LabelSampler: index_ini = centre - patch//2 with centres in [patch//2, size - (patch-1)//2).
// Empirical label frequencies of sampled centres must match the renormalised probabilities
// within 5 binomial standard deviations (sqrt(p (1 - p) / N)); false-failure odds ~ 6e-7
// per comparison.
TEST(DataSamplers, LabelSamplerFrequenciesWithinBinomialBounds) {
  Geometry g;
  g.size = {20, 18, 16};
  LabelMap lab = LabelMap::make(g);
  // A liver block with a small tumour, plus a tumour voxel outside the valid region.
  for (int k = 5; k < 12; ++k)
    for (int j = 4; j < 12; ++j)
      for (int i = 6; i < 14; ++i) lab.at(i, j, k) = 1;
  for (int k = 7; k < 9; ++k)
    for (int j = 7; j < 9; ++j)
      for (int i = 8; i < 10; ++i) lab.at(i, j, k) = 2;
  lab.at(0, 0, 0) = 2;
  const Index3 patch{8, 7, 6};
  LabelSampler s(patch, {{0, 0.2}, {1, 0.3}, {2, 0.5}});
  s.prepare(lab);
  EXPECT_EQ(s.valid_counts().at(2), 8);  // the corner voxel is not a valid centre
  const int N = 40000;
  std::mt19937_64 rng(123);
  std::map<int, int> hits;
  std::map<int64_t, int> tumour_voxels;
  for (int t = 0; t < N; ++t) {
    const Index3 ini = s.sample(rng);
    Index3 c;
    for (int a = 0; a < 3; ++a) {
      c[size_t(a)] = ini[size_t(a)] + patch[size_t(a)] / 2;
      ASSERT_GE(ini[size_t(a)], 0);
      ASSERT_LE(ini[size_t(a)] + patch[size_t(a)], g.size[size_t(a)]);
    }
    const int l = lab.at(c[0], c[1], c[2]);
    hits[l]++;
    if (l == 2) tumour_voxels[g.index(c[0], c[1], c[2])]++;
  }
  for (const auto& kv : std::map<int, double>{{0, 0.2}, {1, 0.3}, {2, 0.5}}) {
    const double f = double(hits[kv.first]) / N, sd = std::sqrt(kv.second * (1 - kv.second) / N);
    EXPECT_NEAR(f, kv.second, 5 * sd) << "label " << kv.first;
  }
  // Within a label, voxels are equally likely: each of the 8 tumour voxels ~ Bin(n2, 1/8).
  const int n2 = hits[2];
  EXPECT_EQ(tumour_voxels.size(), 8u);
  for (const auto& kv : tumour_voxels)
    EXPECT_NEAR(kv.second, n2 / 8.0, 5 * std::sqrt(n2 * (1 / 8.0) * (7 / 8.0)));
}

TEST(DataSamplers, LabelSamplerRenormalisesAbsentLabels) {
  Geometry g;
  g.size = {10, 10, 10};
  LabelMap lab = LabelMap::make(g);
  for (int k = 3; k < 7; ++k)
    for (int j = 3; j < 7; ++j)
      for (int i = 3; i < 7; ++i) lab.at(i, j, k) = 1;
  LabelSampler s({4, 4, 4}, {{0, 0.2}, {1, 0.3}, {2, 0.5}});
  s.prepare(lab);  // no tumour: 0.2 / 0.5 and 0.3 / 0.5
  EXPECT_NEAR(s.label_probabilities().at(0), 0.4, 1e-12);
  EXPECT_NEAR(s.label_probabilities().at(1), 0.6, 1e-12);
  EXPECT_EQ(s.label_probabilities().count(2), 0u);
  // Too small: clear error naming both sizes, or pad when configured.
  LabelSampler big({12, 4, 4}, {{1, 1.0}});
  try {
    big.prepare(lab);
    FAIL();
  } catch (const cuseg::Error& e) {
    EXPECT_NE(std::string(e.what()).find("smaller than the patch 12x4x4"), std::string::npos)
        << e.what();
  }
  Image im = Image::make(g, 5.f);
  pad_to_patch(im, &lab, {12, 4, 4}, -1024.f);
  EXPECT_EQ(lab.geo.size, (std::array<int, 3>{12, 10, 10}));
  EXPECT_EQ(im.at(0, 0, 0), -1024.f);
  big.prepare(lab);
  std::mt19937_64 rng(1);
  EXPECT_EQ(big.sample(rng)[0], 0);
}

TEST(DataSamplers, UniformSamplerCoversRange) {
  Geometry g;
  g.size = {10, 6, 5};
  std::mt19937_64 rng(7);
  std::set<int> seen;
  for (int t = 0; t < 2000; ++t) {
    const Index3 ini = uniform_patch_ini(g, {4, 6, 2}, rng);
    EXPECT_EQ(ini[1], 0);
    EXPECT_LE(ini[2], 3);
    seen.insert(ini[0]);
  }
  EXPECT_EQ(seen, (std::set<int>{0, 1, 2, 3, 4, 5, 6}));
}

// Queue: each epoch visits every subject samples_per_volume times; the patch stream is the
// same for the same seed regardless of worker count; errors surface in next().
TEST(DataSamplers, QueueFollowsTorchioAndIsDeterministic) {
  const int nsub = 7;
  auto load = [](int s, std::mt19937_64&) {
    Subject sub;
    sub.id = std::to_string(s);
    Geometry g;
    g.size = {8, 8, 8};
    sub.image = Image::make(g, float(s));
    sub.label = LabelMap::make(g, uint8_t(s % 3));
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    return sub;
  };
  auto sample = [](const Subject& s, int count, std::mt19937_64& rng) {
    std::vector<Patch> out;
    for (int c = 0; c < count; ++c)
      out.push_back(extract_patch(s.image, &s.label, uniform_patch_ini(s.image.geo, {4, 4, 4}, rng),
                                  {4, 4, 4}));
    return out;
  };
  auto run = [&](int workers) {
    QueueConfig cfg;
    cfg.max_length = 12;
    cfg.samples_per_volume = 3;
    cfg.num_workers = workers;
    cfg.seed = 42;
    PatchQueue q(nsub, load, sample, cfg);
    EXPECT_EQ(q.patches_per_epoch(), 21);
    std::vector<std::pair<int, Index3>> seq;
    for (int t = 0; t < 84; ++t) {
      const Patch p = q.next();
      EXPECT_EQ(p.image[0], float(p.subject));
      seq.push_back({p.subject, p.ini});
    }
    EXPECT_EQ(q.stats().patches, 84);
    EXPECT_EQ(q.stats().fills, 7);
    EXPECT_FALSE(q.stats().summary().empty());
    return seq;
  };
  const auto a = run(1), b = run(3);
  EXPECT_EQ(a, b);
  // Fills take min(12 / 3, 7) = 4 subjects; 84 patches = 7 fills = 28 visits = 4 whole
  // epochs of the subject stream, so every subject gave 4 x 3 patches.
  std::map<int, int> per;
  for (const auto& x : a) per[x.first]++;
  for (int s = 0; s < nsub; ++s) EXPECT_EQ(per[s], 12) << s;
  // Worker errors reach the consumer.
  QueueConfig cfg;
  PatchQueue bad(
      2, [](int, std::mt19937_64&) -> Subject { throw cuseg::Error("broken.nii"); }, sample, cfg);
  EXPECT_THROW(bad.next(), cuseg::Error);
}
