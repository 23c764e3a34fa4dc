// The fused patch op (kernels/affine_patch.h) against the reference chain it replaces: whole-
// volume RandomAffine (data::apply_affine), pad_to_patch, LabelSampler on the transformed label
// map, crop. And the patch stream (data/patch_pipeline.h): order, reproducibility across worker
// counts, resume.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <random>
#include <set>

#include "cuseg/core/check.h"
#include "cuseg/data/patch_pipeline.h"
#include "cuseg/data/samplers.h"
#include "cuseg/data/transforms.h"
#include "patch_fixture.h"

using namespace cuseg;
using namespace cuseg::data;

namespace {

const std::array<int, 3> kSize{29, 23, 19};

struct Fixture {
  Image image;
  LabelMap label;
  Fixture() { test::patch_test_volume(kSize, 11, &image, &label); }
};
const Fixture& fixture() {
  static Fixture f;
  return f;
}

PatchSpec spec_for(const Index3& patch, PatchStorage storage = kStoreF32) {
  PatchSpec s;
  s.patch = patch;
  s.label_probabilities = {{0, 0.2}, {1, 0.3}, {2, 0.5}};
  s.storage = storage;
  s.patch_pad_value = -1.f;
  return s;
}

// The chain on whole volumes, as the trainer ran it before the fused op.
struct Chain {
  Image image;
  LabelMap label;
};
Chain run_chain(const AffineParams& p, const Index3& patch, float pad_value) {
  const Fixture& f = fixture();
  const float mn = *std::min_element(f.image.v.begin(), f.image.v.end());
  Chain c{apply_affine(f.image, p, Interp::Linear, mn),
          apply_affine(f.label, p, Interp::Nearest, uint8_t(0))};
  pad_to_patch(c.image, &c.label, patch, pad_value);
  return c;
}

// Fixed-point error bound of the op's coordinate for unpadded voxel u (kernels/affine_patch.h):
// each of the three quantised entries and the translation is off by at most 2^-41.
double coord_error(int u0, int u1, int u2) {
  return (std::abs(u0) + std::abs(u1) + std::abs(u2) + 1) * std::ldexp(1.0, -41);
}

// Whether the chain's double coordinate of unpadded voxel u is within `tol` of a decision
// boundary of nearest-neighbour rounding (half-integers) or of the buffer test (-0.5, n - 0.5).
bool near_tie(const IndexAffine& m, const Index3& size, int u0, int u1, int u2, double tol) {
  for (int r = 0; r < 3; ++r) {
    const size_t b = size_t(3 * r);
    const double x = m.b[b] * u0 + m.b[b + 1] * u1 + m.b[b + 2] * u2 + m.t[size_t(r)];
    const double h = x + 0.5;
    if (std::abs(h - std::round(h)) <= tol) return true;  // covers -0.5 and n - 0.5 too
    (void)size;
  }
  return false;
}

float ulp_of(float v) {
  const float a = std::abs(v);
  return std::nextafter(a, std::numeric_limits<float>::infinity()) - a;
}

struct Visit {
  PatchSubject subject;
  PatchVisit visit;
  std::vector<uint8_t> present;
  std::vector<int32_t> witness;
};
Visit make_visit(const PatchSpec& spec, const AffineParams& p, uint64_t seed = 5) {
  Visit v;
  v.subject = make_patch_subject("fixture", fixture().image, fixture().label, spec);
  v.visit = plan_visit_host(v.subject, spec, p, PhiloxStream{seed, 0, 0});
  v.present.assign(size_t(v.visit.num_labels), 0);
  v.witness.assign(size_t(3 * v.visit.num_labels), 0);
  affine_patch_presence_cpu(v.visit, v.present.data(), v.witness.data());
  return v;
}

std::vector<AffineParams> test_transforms() {
  std::vector<AffineParams> ps(1);  // identity first
  std::mt19937_64 rng(2024);
  RandomAffineConfig cfg;
  cfg.max_translation_mm = 3.0;
  for (int i = 0; i < 10; ++i) ps.push_back(sample_affine(cfg, rng));
  AffineParams strong;  // the extremes of the reference recipe
  strong.scales = {0.9, 1.1, 0.9};
  strong.degrees = {10, -10, 10};
  ps.push_back(strong);
  return ps;
}

struct OpPatch {
  std::vector<float> image;
  std::vector<uint8_t> label;
  int32_t centre[5];
};
OpPatch run_patch(const Visit& v, const PatchSpec& spec, int slot, uint32_t n) {
  OpPatch p;
  const size_t voxels = size_t(spec.patch[0]) * spec.patch[1] * spec.patch[2];
  p.image.resize(voxels);
  p.label.resize(voxels);
  PatchJob job;
  job.patch = n;
  job.label_slot = slot;
  for (int a = 0; a < 3; ++a) job.witness[a] = v.witness[size_t(3 * slot + a)];
  for (int a = 0; a < 3; ++a) job.patch_size[a] = spec.patch[size_t(a)];
  job.image_out = p.image.data();
  job.label_out = p.label.data();
  job.centre_out = p.centre;
  affine_patch_cpu(v.visit, job);
  return p;
}

}  // namespace

// The transformed label map the op sees equals the chain's, voxel for voxel, except where the
// chain's double coordinate lies within the fixed-point error of a rounding tie; and the
// presence op agrees with the chain's "label occurs in the valid centre region".
TEST(AffinePatch, TransformedLabelsAndPresenceMatchTheChain) {
  for (const Index3 patch : {Index3{12, 10, 8}, Index3{16, 26, 8}}) {
    const PatchSpec spec = spec_for(patch);
    int64_t ties = 0, compared = 0;
    for (const AffineParams& p : test_transforms()) {
      const Chain c = run_chain(p, patch, spec.patch_pad_value);
      const Visit v = make_visit(spec, p);
      const IndexAffine m = affine_index_map(fixture().image.geo, p);
      ASSERT_EQ(c.label.geo.size[0], v.visit.grid[0]);
      ASSERT_EQ(c.label.geo.size[1], v.visit.grid[1]);
      ASSERT_EQ(c.label.geo.size[2], v.visit.grid[2]);
      std::map<int, int64_t> valid_counts;
      for (int k = 0; k < v.visit.grid[2]; ++k)
        for (int j = 0; j < v.visit.grid[1]; ++j)
          for (int i = 0; i < v.visit.grid[0]; ++i) {
            const int ours = transformed_label(v.visit, i, j, k), chain = c.label.at(i, j, k);
            ++compared;
            if (in_valid(v.visit, i, j, k)) valid_counts[chain]++;
            if (ours == chain) continue;
            const int u0 = i - v.visit.pad_off[0], u1 = j - v.visit.pad_off[1],
                      u2 = k - v.visit.pad_off[2];
            ASSERT_TRUE(near_tie(m, kSize, u0, u1, u2, coord_error(u0, u1, u2) + 1e-12))
                << "label differs at (" << i << "," << j << "," << k << "): " << ours << " vs "
                << chain;
            ++ties;
          }
      for (int l = 0; l < v.visit.num_labels; ++l) {
        const int label = v.visit.labels[l].label;
        EXPECT_EQ(bool(v.present[size_t(l)]), valid_counts[label] > 0) << "label " << label;
        if (v.present[size_t(l)]) {  // the witness is an admissible centre
          const int* w = &v.witness[size_t(3 * l)];
          EXPECT_TRUE(in_valid(v.visit, w[0], w[1], w[2]));
          EXPECT_EQ(transformed_label(v.visit, w[0], w[1], w[2]), label);
        }
      }
    }
    // Ties are measure-zero events: none expected on these grids (reported if any).
    EXPECT_LE(ties, compared / 100000) << ties << " tie voxels of " << compared;
  }
}

// The fixture exercises both table modes, and the candidate boxes contain every admissible
// centre: box mode's R holds every valid voxel of the label; list mode's box around F(x) holds
// every valid voxel whose nearest input voxel is x. Together with "accept the first hit" this
// makes the centre exactly uniform over the chain's admissible set.
TEST(AffinePatch, CandidateBoxesCoverEveryAdmissibleCentre) {
  const PatchSpec spec = spec_for({12, 10, 8});
  const Visit v0 = make_visit(spec, AffineParams{});
  ASSERT_EQ(v0.visit.num_labels, 3);
  EXPECT_EQ(v0.visit.labels[0].mode, kLabelBox);
  EXPECT_EQ(v0.visit.labels[1].mode, kLabelBox);
  EXPECT_EQ(v0.visit.labels[2].mode, kLabelList);
  for (const AffineParams& p : test_transforms()) {
    const Visit v = make_visit(spec, p);
    const PatchVisit& pv = v.visit;
    for (int k = pv.valid_lo[2]; k < pv.valid_hi[2]; ++k)
      for (int j = pv.valid_lo[1]; j < pv.valid_hi[1]; ++j)
        for (int i = pv.valid_lo[0]; i < pv.valid_hi[0]; ++i) {
          const int label = transformed_label(pv, i, j, k);
          for (int l = 0; l < pv.num_labels; ++l) {
            const PatchLabel& L = pv.labels[l];
            if (L.label != label) continue;
            const int o[3] = {i, j, k};
            if (L.mode == kLabelBox) {
              for (int a = 0; a < 3; ++a)
                ASSERT_TRUE(o[a] >= L.lo[a] && o[a] < L.lo[a] + L.len[a]) << "axis " << a;
            } else {
              const int u[3] = {i - pv.pad_off[0], j - pv.pad_off[1], k - pv.pad_off[2]};
              int x[3];
              for (int a = 0; a < 3; ++a)
                x[a] = fix_nearest(fix_row(pv.out_to_in, a, u[0], u[1], u[2]), pv.src.size[a]);
              ASSERT_TRUE(maps_to_voxel(pv, i, j, k, x[0], x[1], x[2]));
              for (int a = 0; a < 3; ++a) {
                const int s = list_box_start(pv, L, a, x[0], x[1], x[2]);
                ASSERT_TRUE(o[a] >= s && o[a] < s + L.nbox[a])
                    << "axis " << a << ": " << o[a] << " outside [" << s << ", " << s + L.nbox[a]
                    << ")";
              }
            }
          }
        }
  }
}

// A patch is the chain's crop at the same centre: labels identical (except ties), images
// within the fixed-point bound: the op's and the chain's double results differ by at most
// sum over axes of (coordinate error x largest neighbour step) <= 3 * coord_error * (max - min),
// and each is rounded to float once (one ulp).
TEST(AffinePatch, PatchEqualsTheChainsCropAtTheSameCentre) {
  const auto mm = std::minmax_element(fixture().image.v.begin(), fixture().image.v.end());
  const double range = double(*mm.second) - double(*mm.first);
  for (const Index3 patch : {Index3{12, 10, 8}, Index3{16, 26, 8}}) {
    const PatchSpec spec = spec_for(patch);
    for (const AffineParams& p : test_transforms()) {
      const Chain c = run_chain(p, patch, spec.patch_pad_value);
      const Visit v = make_visit(spec, p);
      const IndexAffine m = affine_index_map(fixture().image.geo, p);
      const VisitLabels labels =
          visit_labels(v.visit, spec, v.present.data(), v.witness.data(), "fixture");
      for (uint32_t n = 0; n < 6; ++n) {
        const PatchJob job = patch_job(v.visit, labels, spec, n);
        const OpPatch ours = run_patch(v, spec, job.label_slot, n);
        const int* ctr = ours.centre;
        ASSERT_TRUE(in_valid(v.visit, ctr[0], ctr[1], ctr[2]));
        EXPECT_EQ(c.label.at(ctr[0], ctr[1], ctr[2]), v.visit.labels[job.label_slot].label)
            << "the centre lies on the chosen label in the chain's transformed map";
        const Index3 ini{ctr[0] - patch[0] / 2, ctr[1] - patch[1] / 2, ctr[2] - patch[2] / 2};
        const data::Patch crop = extract_patch(c.image, &c.label, ini, patch);
        for (size_t q = 0; q < crop.image.size(); ++q) {
          const int i = int(q % size_t(patch[0])), j = int(q / size_t(patch[0]) % size_t(patch[1])),
                    k = int(q / (size_t(patch[0]) * size_t(patch[1])));
          const int u0 = ini[0] + i - v.visit.pad_off[0], u1 = ini[1] + j - v.visit.pad_off[1],
                    u2 = ini[2] + k - v.visit.pad_off[2];
          const double err = coord_error(u0, u1, u2);
          if (near_tie(m, kSize, u0, u1, u2, err + 1e-12)) continue;
          ASSERT_EQ(ours.label[q], crop.label[q]) << "voxel " << q;
          ASSERT_LE(std::abs(double(ours.image[q]) - double(crop.image[q])),
                    3 * err * range + ulp_of(crop.image[q]))
              << "voxel " << q << ": " << ours.image[q] << " vs " << crop.image[q];
        }
      }
    }
  }
}

// Storage: int16 + scale moves a stored value by at most scale / 2, and bf16 (8 significant
// bits, round to nearest) by at most 2^-8 of its magnitude; trilinear weights sum to 1, so a patch
// voxel moves by at most that (plus one float rounding). Labels and centres do not depend on the
// storage. bf16 output = float output rounded to nearest even.
TEST(AffinePatch, StoragesAndOutputTypes) {
  const Index3 patch{12, 10, 8};
  const AffineParams p = test_transforms()[3];
  const PatchSpec f32 = spec_for(patch, kStoreF32);
  const Visit vf = make_visit(f32, p);
  const auto mm = std::minmax_element(fixture().image.v.begin(), fixture().image.v.end());
  const double max_abs = std::max(std::abs(double(*mm.first)), std::abs(double(*mm.second)));
  for (const PatchStorage st : {kStoreI16, kStoreBF16}) {
    const PatchSpec spec = spec_for(patch, st);
    const Visit v = make_visit(spec, p);
    const double bound =
        st == kStoreI16 ? v.subject.scale / 2 : std::ldexp(max_abs, -8);  // stored value error
    for (uint32_t n = 0; n < 4; ++n) {
      const OpPatch a = run_patch(vf, f32, 1, n), b = run_patch(v, spec, 1, n);
      ASSERT_EQ(std::vector<int32_t>(a.centre, a.centre + 3),
                std::vector<int32_t>(b.centre, b.centre + 3));
      ASSERT_EQ(a.label, b.label);
      for (size_t q = 0; q < a.image.size(); ++q)
        ASSERT_LE(std::abs(a.image[q] - b.image[q]), bound + ulp_of(a.image[q])) << q;
    }
  }
  // bf16 output
  PatchSpec bspec = f32;
  bspec.out_type = kOutBF16;
  const OpPatch a = run_patch(vf, f32, 2, 9);
  std::vector<uint16_t> img(a.image.size());
  std::vector<uint8_t> lab(a.image.size());
  PatchJob job;
  job.patch = 9;
  job.label_slot = 2;
  for (int ax = 0; ax < 3; ++ax) job.witness[ax] = vf.witness[size_t(6 + ax)];
  for (int ax = 0; ax < 3; ++ax) job.patch_size[ax] = patch[size_t(ax)];
  job.image_out = img.data();
  job.out_type = kOutBF16;
  job.label_out = lab.data();
  affine_patch_cpu(vf.visit, job);
  EXPECT_EQ(lab, a.label);
  for (size_t q = 0; q < img.size(); ++q) ASSERT_EQ(img[q], to_bf16(a.image[q]).bits) << q;
}

// Uniformity: centres of each label are uniform over the label's admissible set (Pearson's
// chi-square with m - 1 degrees of freedom below dof + 6 sqrt(2 dof), a 6-sigma bound of the
// normal approximation; the draws are seeded, so the test is deterministic), and every draw is
// admissible.
TEST(AffinePatch, CentresAreUniformOverTheAdmissibleSet) {
  const Index3 patch{12, 10, 8};
  const PatchSpec spec = spec_for(patch);
  AffineParams p;
  p.scales = {1.07, 0.93, 1.02};
  p.degrees = {6, -8, 9};
  const Visit v = make_visit(spec, p);
  const PatchVisit& pv = v.visit;
  for (int l = 0; l < pv.num_labels; ++l) {
    ASSERT_TRUE(v.present[size_t(l)]);
    std::map<std::array<int, 3>, int64_t> counts;  // admissible set -> draws
    for (int k = pv.valid_lo[2]; k < pv.valid_hi[2]; ++k)
      for (int j = pv.valid_lo[1]; j < pv.valid_hi[1]; ++j)
        for (int i = pv.valid_lo[0]; i < pv.valid_hi[0]; ++i)
          if (transformed_label(pv, i, j, k) == pv.labels[l].label) counts[{i, j, k}] = 0;
    const int64_t m = int64_t(counts.size());
    ASSERT_GT(m, 1);
    const int64_t per = pv.labels[l].mode == kLabelList ? 100 : 20;
    const int64_t draws = std::min<int64_t>(per * m, 40000);
    for (int64_t n = 0; n < draws; ++n) {
      const int32_t* c = nullptr;
      int32_t centre[5];
      PatchJob job;
      job.patch = uint32_t(n);
      job.label_slot = l;
      job.patch_size[0] = job.patch_size[1] = job.patch_size[2] = 1;  // the centre is what counts
      float img;
      uint8_t lab;
      job.image_out = &img;
      job.label_out = &lab;
      job.centre_out = centre;
      for (int a = 0; a < 3; ++a) job.witness[a] = v.witness[size_t(3 * l + a)];
      affine_patch_cpu(pv, job);
      c = centre;
      auto it = counts.find({c[0], c[1], c[2]});
      ASSERT_NE(it, counts.end()) << "inadmissible centre";
      ASSERT_EQ(c[4], 0) << "witness fallback";
      it->second++;
    }
    const double e = double(draws) / double(m);
    double chi2 = 0;
    for (const auto& kv : counts) chi2 += (double(kv.second) - e) * (double(kv.second) - e) / e;
    const double dof = double(m - 1);
    EXPECT_LT(chi2, dof + 6 * std::sqrt(2 * dof)) << "label " << pv.labels[l].label << ": " << m
                                                  << " admissible voxels, " << draws << " draws";
  }
}

// Label choice: frequencies follow the LabelSampler rule (probabilities renormalised over the
// present labels), within 5 binomial standard deviations over 20,000 patches.
TEST(AffinePatch, LabelFrequenciesFollowTheRenormalisedProbabilities) {
  PatchSpec spec = spec_for({12, 10, 8});
  spec.label_probabilities = {{0, 0.1}, {1, 0.6}, {2, 0.3}, {7, 0.5}};  // 7 absent
  const Visit v = make_visit(spec, test_transforms()[2]);
  const VisitLabels labels =
      visit_labels(v.visit, spec, v.present.data(), v.witness.data(), "fixture");
  int counts[3] = {};
  const int n = 20000;
  for (int i = 0; i < n; ++i) counts[patch_job(v.visit, labels, spec, uint32_t(i)).label_slot]++;
  const double p[3] = {0.1, 0.6, 0.3};
  for (int l = 0; l < 3; ++l)
    EXPECT_NEAR(counts[l], n * p[l], 5 * std::sqrt(n * p[l] * (1 - p[l]))) << "label slot " << l;
}

// A label that the transform moves out of the valid region is not present; with no requested
// label present the visit is refused naming the subject, as LabelSampler::prepare refuses.
TEST(AffinePatch, AbsentLabelsAreRenormalisedAwayOrRefused) {
  PatchSpec spec = spec_for({12, 10, 8});
  spec.label_probabilities = {{2, 1.0}};
  // Label 2 blobs sit at the grid's quarter points and near the border; a strong shift moves
  // them: search a few translations for one that leaves none in the valid region.
  bool refused = false, present_case = false;
  for (int t = -12; t <= 12 && !(refused && present_case); t += 2) {
    AffineParams p;
    p.translation_mm = {double(t) * 2.0, double(-t) * 1.5, double(t) * 3.0};
    const Visit v = make_visit(spec, p);
    const Chain c = run_chain(p, spec.patch, spec.patch_pad_value);
    int64_t in_valid_count = 0;
    for (int k = v.visit.valid_lo[2]; k < v.visit.valid_hi[2]; ++k)
      for (int j = v.visit.valid_lo[1]; j < v.visit.valid_hi[1]; ++j)
        for (int i = v.visit.valid_lo[0]; i < v.visit.valid_hi[0]; ++i)
          in_valid_count += c.label.at(i, j, k) == 2;
    ASSERT_EQ(v.visit.num_labels, 1);
    EXPECT_EQ(bool(v.present[0]), in_valid_count > 0);
    if (!v.present[0]) {
      refused = true;
      try {
        visit_labels(v.visit, spec, v.present.data(), v.witness.data(), "case_17");
        ADD_FAILURE() << "no label present but the visit was accepted";
      } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("case_17"), std::string::npos) << e.what();
      }
    } else {
      present_case = true;
    }
  }
  EXPECT_TRUE(refused && present_case) << "the translations did not cover both cases";
}

// The witness path: a list label whose only admissible centres are few among many list voxels
// (acceptance ~1e-5) can exhaust the candidates; the centre is then the witness, admissible.
TEST(AffinePatch, WitnessFallbackIsAdmissible) {
  Geometry g;
  g.size = {64, 64, 64};
  Image im = Image::make(g, 0.f);
  LabelMap lb = LabelMap::make(g, 0);
  // A sparse lattice of label-3 voxels in the border band (never valid for a 60^3 patch: valid
  // centres are [30, 35)) plus one voxel inside the valid region.
  for (int k = 0; k < 64; k += 2)
    for (int j = 0; j < 64; j += 2)
      for (int i = 0; i < 64; i += 2)
        if (i < 24 || i > 40) lb.at(i, j, k) = 3;
  lb.at(32, 32, 32) = 3;
  PatchSpec spec;
  spec.patch = {60, 60, 60};
  spec.label_probabilities = {{3, 1.0}};
  spec.storage = kStoreF32;
  spec.random_affine = false;
  const PatchSubject s = make_patch_subject("sparse", im, lb, spec);
  ASSERT_TRUE(s.tables[0].list_mode);
  const PatchVisit v = plan_visit_host(s, spec, AffineParams{}, PhiloxStream{1, 0, 0});
  uint8_t present = 0;
  int32_t witness[3];
  affine_patch_presence_cpu(v, &present, witness);
  ASSERT_TRUE(present);
  EXPECT_EQ(std::vector<int32_t>(witness, witness + 3), (std::vector<int32_t>{32, 32, 32}));
  PatchJob job;
  job.label_slot = 0;
  std::copy(witness, witness + 3, job.witness);
  job.patch_size[0] = job.patch_size[1] = job.patch_size[2] = 1;
  float img;
  uint8_t lab;
  int32_t centre[5];
  job.image_out = &img;
  job.label_out = &lab;
  job.centre_out = centre;
  int fallbacks = 0;
  for (uint32_t n = 0; n < 4; ++n) {
    job.patch = n;
    affine_patch_cpu(v, job);
    EXPECT_EQ(std::vector<int32_t>(centre, centre + 3), (std::vector<int32_t>{32, 32, 32}));
    EXPECT_EQ(lab, 3);
    fallbacks += centre[4];
  }
  // Acceptance is 1 / (list length * box volume) ~ 1 / (20,000 * 8): most patches fall back.
  EXPECT_GE(fallbacks, 1);
}

// ---------------------------------------------------------------- the stream
TEST(PatchSchedule, FillsFollowTheQueueAndDependOnTheKey) {
  PatchOrder o;
  o.num_subjects = 7;
  o.samples_per_volume = 3;
  o.max_length = 9;  // 3 visits per fill; fills of 9, 9, 3 patches
  o.seed = 42;
  const PatchSchedule s(o);
  EXPECT_EQ(s.subjects_per_fill(), 3);
  EXPECT_EQ(s.fills_per_epoch(), 3);
  EXPECT_EQ(s.patches_per_epoch(), 21);
  const std::vector<int> order = s.subject_order(0);
  EXPECT_EQ(std::set<int>(order.begin(), order.end()).size(), 7u);
  std::set<std::pair<int64_t, int>> seen;  // (visit, sample)
  for (int64_t n = 0; n < 21; ++n) {
    const PatchSlot slot = s.locate(0, n);
    EXPECT_EQ(s.fill_of(n), slot.visit / 3) << "a patch comes from a visit of its own fill";
    EXPECT_EQ(slot.subject, order[size_t(slot.visit)]);
    seen.insert({slot.visit, slot.sample});
  }
  EXPECT_EQ(seen.size(), 21u) << "every (visit, sample) exactly once";
  // Another epoch, rank or seed reorders; the same key does not.
  PatchOrder r1 = o;
  r1.rank = 1;
  PatchOrder s2 = o;
  s2.seed = 43;
  EXPECT_EQ(PatchSchedule(o).subject_order(0), order);
  EXPECT_NE(s.subject_order(1), order);
  EXPECT_NE(PatchSchedule(r1).subject_order(0), order);
  EXPECT_NE(PatchSchedule(s2).subject_order(0), order);
  // No shuffles: visit order and patch order are plain.
  PatchOrder plain = o;
  plain.shuffle_subjects = plain.shuffle_patches = false;
  const PatchSchedule ps(plain);
  EXPECT_EQ(ps.locate(0, 4).subject, 1);
  EXPECT_EQ(ps.locate(0, 4).sample, 1);
}

namespace {

std::vector<std::shared_ptr<const PatchSubject>> stream_subjects(const PatchSpec& spec, int n) {
  std::vector<std::shared_ptr<const PatchSubject>> subs;
  for (int s = 0; s < n; ++s) {
    Image im;
    LabelMap lb;
    test::patch_test_volume({21 + s, 19, 17}, 100 + uint64_t(s), &im, &lb);
    subs.push_back(std::make_shared<const PatchSubject>(
        make_patch_subject("s" + std::to_string(s), im, lb, spec)));
  }
  return subs;
}

struct PatchRun {
  std::vector<float> image;
  std::vector<uint8_t> label;
};
PatchRun host_stream(const std::vector<std::shared_ptr<const PatchSubject>>& subs,
                     const PatchSpec& spec, const PatchOrder& order, int workers, uint32_t epoch,
                     int64_t first, int batch, int64_t total = -1) {
  HostPatchPipeline pipe([&](int s) { return subs[size_t(s)]; }, spec, order, workers,
                         /*prefetch=*/workers * 3);
  pipe.seek(epoch, first);
  if (total < 0) total = pipe.schedule().patches_per_epoch() - first;
  const int64_t voxels = int64_t(spec.patch[0]) * spec.patch[1] * spec.patch[2];
  PatchRun out;
  for (int64_t done = 0; done < total;) {
    const int c = int(std::min<int64_t>(batch, total - done));
    const size_t at = out.label.size();
    out.image.resize(at + size_t(c * voxels));
    out.label.resize(at + size_t(c * voxels));
    pipe.next(c, out.image.data() + at, out.label.data() + at);
    done += c;
  }
  EXPECT_EQ(pipe.stats().patches, total);
  return out;
}

}  // namespace

// The same patches whatever the number of workers, the look-ahead or the batch size; a resumed
// stream continues it exactly; epochs and ranks differ.
TEST(PatchPipeline, ReproducibleAcrossWorkersAndResumable) {
  PatchSpec spec = spec_for({10, 10, 8}, kStoreI16);
  const auto subs = stream_subjects(spec, 5);
  PatchOrder order;
  order.num_subjects = 5;
  order.samples_per_volume = 3;
  order.max_length = 6;
  order.seed = 9;
  const PatchRun one = host_stream(subs, spec, order, 1, 2, 0, 2);
  const PatchRun three = host_stream(subs, spec, order, 3, 2, 0, 5);
  EXPECT_EQ(one.label, three.label);
  EXPECT_EQ(one.image, three.image);
  // Resume at patch 7 (in the middle of a fill) continues exactly.
  const PatchRun tail = host_stream(subs, spec, order, 2, 2, 7, 2);
  const size_t voxels = 10 * 10 * 8;
  EXPECT_EQ(tail.label,
            std::vector<uint8_t>(one.label.begin() + long(7 * voxels), one.label.end()));
  EXPECT_EQ(tail.image, std::vector<float>(one.image.begin() + long(7 * voxels), one.image.end()));
  // The stream runs on into the next epoch: the same as seeking to its start.
  const int64_t per = 15;
  const PatchRun across = host_stream(subs, spec, order, 2, 2, 0, 4, per + 5);
  const PatchRun next_epoch = host_stream(subs, spec, order, 2, 3, 0, 2, 5);
  EXPECT_EQ(std::vector<uint8_t>(across.label.begin() + long(per * voxels), across.label.end()),
            next_epoch.label);
  EXPECT_EQ(std::vector<float>(across.image.begin(), across.image.begin() + long(per * voxels)),
            one.image);
  // Another epoch or rank: another stream.
  EXPECT_NE(host_stream(subs, spec, order, 2, 3, 0, 2).image, one.image);
  PatchOrder r = order;
  r.rank = 1;
  EXPECT_NE(host_stream(subs, spec, r, 2, 2, 0, 2).image, one.image);
}

// A worker's error reaches the consumer (no hang, no partial batch handed out as valid).
TEST(PatchPipeline, WorkerErrorsReachTheConsumer) {
  const PatchSpec spec = spec_for({10, 10, 8});
  const auto subs = stream_subjects(spec, 3);
  PatchOrder order;
  order.num_subjects = 3;
  order.samples_per_volume = 2;
  order.max_length = 4;
  HostPatchPipeline pipe(
      [&](int s) -> std::shared_ptr<const PatchSubject> {
        if (s == 1) CUSEG_THROW("subject 1: cannot read imagesTr/liver_1.nii.gz");
        return subs[size_t(s)];
      },
      spec, order, 2);
  pipe.seek(0, 0);
  std::vector<float> img(10 * 10 * 8 * 6);
  std::vector<uint8_t> lab(img.size());
  try {
    pipe.next(6, img.data(), lab.data());
    ADD_FAILURE() << "the error was swallowed";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("liver_1"), std::string::npos) << e.what();
  }
}
