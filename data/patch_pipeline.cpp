// The training patch stream (see data/patch_pipeline.h).
#include "cuseg/data/patch_pipeline.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <sstream>

#include "cuseg/core/check.h"
#include "cuseg/engine/context.h"
#include "cuseg/engine/ops.h"
#include "cuseg/kernels/crop_or_pad.h"

namespace cuseg {
namespace data {

namespace {

using M3 = std::array<double, 9>;

M3 inverse3(const M3& m) {
  const double det = m[0] * (m[4] * m[8] - m[5] * m[7]) - m[1] * (m[3] * m[8] - m[5] * m[6]) +
                     m[2] * (m[3] * m[7] - m[4] * m[6]);
  CUSEG_CHECK(std::abs(det) > 1e-12,
              "affine patch: singular transform (determinant " << det << ")");
  return {(m[4] * m[8] - m[5] * m[7]) / det, (m[2] * m[7] - m[1] * m[8]) / det,
          (m[1] * m[5] - m[2] * m[4]) / det, (m[5] * m[6] - m[3] * m[8]) / det,
          (m[0] * m[8] - m[2] * m[6]) / det, (m[2] * m[3] - m[0] * m[5]) / det,
          (m[3] * m[7] - m[4] * m[6]) / det, (m[1] * m[6] - m[0] * m[7]) / det,
          (m[0] * m[4] - m[1] * m[3]) / det};
}

// Q.40 of a double; |x| must stay below 2^22 (checked) so that products with indices < 2^16
// stay inside int64.
int64_t to_fix(double x) {
  CUSEG_CHECK(std::isfinite(x) && std::abs(x) < double(1 << 22),
              "affine patch: map entry " << x << " out of the fixed-point range");
  return int64_t(std::llround(x * double(kFixOne)));
}

FixAffine to_fix(const M3& m, const std::array<double, 3>& t) {
  FixAffine f;
  for (int i = 0; i < 9; ++i) f.m[i] = to_fix(m[size_t(i)]);
  for (int i = 0; i < 3; ++i) f.t[i] = to_fix(t[size_t(i)]);
  return f;
}

}  // namespace

PatchStorage parse_patch_storage(const std::string& s, const std::string& what) {
  if (s == "f32") return kStoreF32;
  if (s == "bf16") return kStoreBF16;
  if (s == "i16") return kStoreI16;
  CUSEG_THROW(what << ": unknown volume storage '" << s << "' (expected f32, bf16 or i16)");
}

const char* patch_storage_name(PatchStorage s) {
  switch (s) {
    case kStoreF32:
      return "f32";
    case kStoreBF16:
      return "bf16";
    case kStoreI16:
      return "i16";
  }
  return "?";
}

// ---------------------------------------------------------------- subjects
size_t PatchSubject::bytes() const {
  size_t b = image.size() + label.size();
  for (const auto& t : tables) b += t.list.size() * sizeof(int32_t);
  return b;
}

PatchSource PatchSubject::source() const {
  PatchSource s;
  s.image = image.data();
  s.label = label.data();
  s.storage = storage;
  s.scale = scale;
  s.offset = offset;
  for (int a = 0; a < 3; ++a) s.size[a] = geo.size[size_t(a)];
  return s;
}

double PatchSubject::value(int64_t idx) const {
  return stored_value(source(), idx);
}

PatchSubject make_patch_subject(std::string id, const Image& image, const LabelMap& label,
                                const PatchSpec& spec) {
  CUSEG_CHECK(image.geo.size == label.geo.size, id << ": image " << describe(image.geo)
                                                   << " and label " << describe(label.geo)
                                                   << " grids differ");
  const int64_t n = image.geo.numel();
  CUSEG_CHECK(n > 0 && int64_t(image.v.size()) == n && int64_t(label.v.size()) == n,
              id << ": empty or inconsistent volume");
  for (int a = 0; a < 3; ++a)
    CUSEG_CHECK(
        image.geo.size[size_t(a)] <= kAffinePatchMaxExtent,
        id << ": extent " << image.geo.size[size_t(a)] << " exceeds " << kAffinePatchMaxExtent);
  PatchSubject s;
  s.id = std::move(id);
  s.geo = image.geo;
  s.storage = spec.storage;
  const size_t un = size_t(n);
  if (spec.storage == kStoreF32) {
    s.image.resize(un * 4);
    std::memcpy(s.image.data(), image.v.data(), un * 4);
  } else if (spec.storage == kStoreBF16) {
    s.image.resize(un * 2);
    uint16_t* q = reinterpret_cast<uint16_t*>(s.image.data());
    for (size_t i = 0; i < un; ++i) q[i] = to_bf16(image.v[i]).bits;
  } else {
    // int16 + scale: 65535 levels over [min, max]; a voxel moves by at most scale / 2 =
    // (max - min) / 131068.
    const auto mm = std::minmax_element(image.v.begin(), image.v.end());
    const double lo = *mm.first, hi = *mm.second;
    CUSEG_CHECK(std::isfinite(lo) && std::isfinite(hi), s.id << ": image holds non-finite values");
    s.offset = (hi + lo) / 2;
    s.scale = hi > lo ? (hi - lo) / 65534.0 : 1.0;
    s.image.resize(un * 2);
    int16_t* q = reinterpret_cast<int16_t*>(s.image.data());
    for (size_t i = 0; i < un; ++i) {
      const double r = std::nearbyint((double(image.v[i]) - s.offset) / s.scale);
      q[i] = int16_t(std::min(32767.0, std::max(-32767.0, r)));
    }
  }
  s.label = label.v;
  // Smallest value as the op reads it back (monotonic storage: the stored minimum).
  {
    const PatchSource src = s.source();
    double mn = std::numeric_limits<double>::infinity();
    for (int64_t i = 0; i < n; ++i) mn = std::min(mn, stored_value(src, i));
    s.image_min = mn;
  }
  // Label tables.
  const Index3 size = image.geo.size;
  int64_t count[256] = {};
  Index3 lo[256], hi[256];
  for (int l = 0; l < 256; ++l) lo[l] = {INT32_MAX, INT32_MAX, INT32_MAX}, hi[l] = {-1, -1, -1};
  for (int k = 0; k < size[2]; ++k)
    for (int j = 0; j < size[1]; ++j) {
      const uint8_t* row = label.v.data() + label.geo.index(0, j, k);
      for (int i = 0; i < size[0]; ++i) {
        const int l = row[i];
        if (count[l]++ == 0) lo[l] = hi[l] = {i, j, k};
        lo[l][0] = std::min(lo[l][0], i), hi[l][0] = std::max(hi[l][0], i);
        lo[l][1] = std::min(lo[l][1], j), hi[l][1] = std::max(hi[l][1], j);
        lo[l][2] = std::min(lo[l][2], k), hi[l][2] = std::max(hi[l][2], k);
      }
    }
  for (const auto& kv : spec.label_probabilities) {
    const int l = kv.first;
    if (kv.second <= 0 || l < 0 || l > 255) continue;
    if (l != 0 && count[l] == 0) continue;  // never a centre (label 0 can come from padding)
    PatchLabelTable t;
    t.label = l;
    t.count = count[l];
    if (count[l] > 0) t.lo = lo[l], t.hi = hi[l];
    if (l != 0) {
      const int64_t box =
          int64_t(hi[l][0] - lo[l][0] + 1) * (hi[l][1] - lo[l][1] + 1) * (hi[l][2] - lo[l][2] + 1);
      t.list_mode = count[l] * 8 < box;
    }
    if (t.list_mode) {
      CUSEG_CHECK(n < int64_t(INT32_MAX), s.id << ": volume too large for voxel lists");
      t.list.reserve(size_t(count[l]));
      for (int64_t i = 0; i < n; ++i)
        if (label.v[size_t(i)] == l) t.list.push_back(int32_t(i));
      // Nearest to the grid centre first: the presence scan then usually ends at entry 0.
      const double c0 = (size[0] - 1) / 2.0, c1 = (size[1] - 1) / 2.0, c2 = (size[2] - 1) / 2.0;
      auto d2 = [&](int32_t x) {
        const double a = x % size[0] - c0, b = (x / size[0]) % size[1] - c1,
                     c = x / (int64_t(size[0]) * size[1]) - c2;
        return a * a + b * b + c * c;
      };
      std::stable_sort(t.list.begin(), t.list.end(),
                       [&](int32_t a, int32_t b) { return d2(a) < d2(b); });
    }
    s.tables.push_back(std::move(t));
  }
  CUSEG_CHECK(int(s.tables.size()) <= kMaxPatchLabels, s.id << ": " << s.tables.size()
                                                            << " sampled labels (at most "
                                                            << kMaxPatchLabels << ")");
  return s;
}

// ---------------------------------------------------------------- order
PatchSchedule::PatchSchedule(const PatchOrder& o) : o_(o) {
  CUSEG_CHECK(o.num_subjects > 0, "patch schedule: no subjects");
  CUSEG_CHECK(o.samples_per_volume > 0 && o.max_length >= o.samples_per_volume,
              "patch schedule: need 0 < samples_per_volume ("
                  << o.samples_per_volume << ") <= max_length (" << o.max_length << ")");
  CUSEG_CHECK(o.rank < (1u << 24), "patch schedule: rank " << o.rank << " exceeds 2^24 - 1");
  per_fill_ = std::max(1, std::min(o.max_length / o.samples_per_volume, o.num_subjects));
}

int64_t PatchSchedule::fills_per_epoch() const {
  return (o_.num_subjects + per_fill_ - 1) / per_fill_;
}

int64_t PatchSchedule::fill_of(int64_t patch) const {
  return patch / (int64_t(per_fill_) * o_.samples_per_volume);
}

std::vector<int> PatchSchedule::subject_order(uint32_t epoch) const {
  std::vector<int> order(size_t(o_.num_subjects));
  std::iota(order.begin(), order.end(), 0);
  if (o_.shuffle_subjects) {
    const PhiloxStream st = stream(epoch);
    for (int i = o_.num_subjects - 1; i > 0; --i) {  // Fisher-Yates, draw i picks from [0, i]
      const Philox4 r = st.draw(PhiloxPurpose::SubjectOrder, uint32_t(i), 0);
      std::swap(order[size_t(i)], order[philox_below(r.v[0], uint32_t(i + 1))]);
    }
  }
  return order;
}

PatchFill PatchSchedule::fill(uint32_t epoch, int64_t index) const {
  CUSEG_CHECK(index >= 0 && index < fills_per_epoch(),
              "patch schedule: fill " << index << " of " << fills_per_epoch());
  PatchFill f;
  f.index = index;
  f.first_visit = index * per_fill_;
  f.visits = int(std::min<int64_t>(per_fill_, o_.num_subjects - f.first_visit));
  f.patches = f.visits * o_.samples_per_volume;
  f.first_patch = index * per_fill_ * int64_t(o_.samples_per_volume);
  const std::vector<int> order = subject_order(epoch);
  for (int j = 0; j < f.visits; ++j) f.subjects.push_back(order[size_t(f.first_visit + j)]);
  for (int j = 0; j < f.visits; ++j)
    for (int s = 0; s < o_.samples_per_volume; ++s) f.layout.push_back({j, s});
  if (o_.shuffle_patches) {
    const PhiloxStream st = stream(epoch);
    for (int i = f.patches - 1; i > 0; --i) {
      const Philox4 r = st.draw(PhiloxPurpose::FillShuffle, uint32_t(index), uint32_t(i));
      std::swap(f.layout[size_t(i)], f.layout[philox_below(r.v[0], uint32_t(i + 1))]);
    }
  }
  return f;
}

PatchSlot PatchSchedule::locate(uint32_t epoch, int64_t patch) const {
  CUSEG_CHECK(patch >= 0 && patch < patches_per_epoch(),
              "patch schedule: patch " << patch << " of " << patches_per_epoch());
  const PatchFill f = fill(epoch, fill_of(patch));
  const auto& js = f.layout[size_t(patch - f.first_patch)];
  return PatchSlot{f.first_visit + js.first, f.subjects[size_t(js.first)], js.second};
}

// ---------------------------------------------------------------- visits and patches
AffineParams visit_affine(const PatchSpec& spec, const PhiloxStream& stream, int64_t visit) {
  AffineParams p;
  if (!spec.random_affine) return p;
  double u[10];
  for (int b = 0; b < 5; ++b) {
    const Philox4 r = stream.draw(PhiloxPurpose::Affine, uint32_t(visit), uint32_t(b));
    u[2 * b] = philox_u01(r.v[0], r.v[1]);
    u[2 * b + 1] = philox_u01(r.v[2], r.v[3]);
  }
  const RandomAffineConfig& c = spec.affine;
  for (int a = 0; a < 3; ++a) {
    const size_t ua = size_t(a);
    p.scales[ua] = c.scale_lo + (c.scale_hi - c.scale_lo) * u[a];
    p.degrees[ua] = -c.max_degrees + 2 * c.max_degrees * u[3 + a];
    p.translation_mm[ua] = -c.max_translation_mm + 2 * c.max_translation_mm * u[6 + a];
  }
  return p;
}

PatchVisit plan_visit(const PatchSubject& subject, const PatchSpec& spec,
                      const AffineParams& affine, const PatchSource& src,
                      const std::vector<const int32_t*>& lists, const PhiloxStream& stream) {
  CUSEG_CHECK(lists.size() == subject.tables.size(), "plan_visit: " << lists.size() << " lists for "
                                                                    << subject.tables.size()
                                                                    << " tables");
  const Geometry& g = subject.geo;
  PatchVisit v{};
  v.src = src;
  const IndexAffine m = affine_index_map(g, affine);
  const M3 finv = inverse3(m.b);
  std::array<double, 3> ft{0, 0, 0};  // F(x) = finv x + ft
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 3; ++c) ft[size_t(r)] -= finv[size_t(3 * r + c)] * m.t[size_t(c)];
  v.out_to_in = to_fix(m.b, m.t);
  v.in_to_out = to_fix(finv, ft);
  for (int a = 0; a < 3; ++a) {
    const int size = g.size[size_t(a)], patch = spec.patch[size_t(a)];
    CUSEG_CHECK(patch > 0, "patch size must be positive");
    const int grid = std::max(size, patch);
    v.out[a] = size;
    v.pad_off[a] = -crop_or_pad_offset(size, grid);  // pad_to_patch: ceil(diff / 2) before
    v.grid[a] = grid;
    v.valid_lo[a] = patch / 2;
    v.valid_hi[a] = grid - (patch - 1) / 2;
  }
  v.image_pad = subject.image_min;
  v.patch_pad = double(spec.patch_pad_value);
  v.num_labels = int32_t(subject.tables.size());
  // Output index bounds of F over a box of input cells [lo - 0.5, hi + 0.5] (corners suffice:
  // F is affine). The 1e-6 voxel margin exceeds the fixed-point error of G and F by far.
  auto out_range = [&](const PatchLabelTable& t, int axis, int* lo, int* len) {
    double mn = std::numeric_limits<double>::infinity(), mx = -mn;
    for (int c = 0; c < 8; ++c) {
      const double x[3] = {(c & 1) ? t.hi[0] + 0.5 : t.lo[0] - 0.5,
                           (c & 2) ? t.hi[1] + 0.5 : t.lo[1] - 0.5,
                           (c & 4) ? t.hi[2] + 0.5 : t.lo[2] - 0.5};
      double y = ft[size_t(axis)];
      for (int b = 0; b < 3; ++b) y += finv[size_t(3 * axis + b)] * x[b];
      mn = std::min(mn, y), mx = std::max(mx, y);
    }
    const int a = int(std::ceil(mn - 1e-6)) + v.pad_off[axis];
    const int b = int(std::floor(mx + 1e-6)) + v.pad_off[axis];
    const int l = std::max(a, v.valid_lo[axis]), h = std::min(b + 1, v.valid_hi[axis]);
    *lo = l;
    *len = std::max(0, h - l);
  };
  // A stride coprime with the box volume near its golden-ratio fraction: consecutive scan
  // positions land far apart, and every voxel is visited once.
  auto scan_stride = [](int64_t n) {
    // s * stride < n^2 must fit int64 in presence_candidate.
    CUSEG_CHECK(n < (int64_t(1) << 31), "affine patch: candidate box of " << n << " voxels");
    if (n <= 2) return int64_t(1);
    int64_t s = std::max<int64_t>(1, int64_t(double(n) * 0.6180339887498949));
    while (std::gcd(s, n) != 1) ++s;
    return s;
  };
  for (int l = 0; l < v.num_labels; ++l) {
    const PatchLabelTable& t = subject.tables[size_t(l)];
    PatchLabel& L = v.labels[l];
    L.label = t.label;
    if (t.label == 0) {  // padding is label 0 too: the whole valid region
      L.mode = kLabelBox;
      for (int a = 0; a < 3; ++a) L.lo[a] = v.valid_lo[a], L.len[a] = v.valid_hi[a] - v.valid_lo[a];
      L.scan_stride = scan_stride(presence_scan_length(L));
    } else if (!t.list_mode) {
      L.mode = kLabelBox;
      for (int a = 0; a < 3; ++a) out_range(t, a, &L.lo[a], &L.len[a]);
      L.scan_stride = scan_stride(presence_scan_length(L));
    } else {
      L.mode = kLabelList;
      L.list = lists[size_t(l)];
      L.list_len = t.count;  // the list holds every voxel of the label
      // Every output o with nearest(G(o)) = x lies within 0.5 sum_b |F_ab| of F(x) on axis a;
      // the 2^-16 voxel margin covers the difference between F and the exact inverse of the
      // quantised G (below 1e-6 voxel for extents < 2^16).
      for (int a = 0; a < 3; ++a) {
        double e = std::pow(2.0, -16);
        for (int b = 0; b < 3; ++b) e += 0.5 * std::abs(finv[size_t(3 * a + b)]);
        L.reach[a] = int64_t(std::ceil(e * double(kFixOne)));
        L.nbox[a] = int32_t(((2 * L.reach[a]) >> kFixBits) + 1);
      }
    }
  }
  v.stream = stream;
  return v;
}

PatchVisit plan_visit_host(const PatchSubject& subject, const PatchSpec& spec,
                           const AffineParams& affine, const PhiloxStream& stream) {
  std::vector<const int32_t*> lists;
  for (const auto& t : subject.tables) lists.push_back(t.list_mode ? t.list.data() : nullptr);
  return plan_visit(subject, spec, affine, subject.source(), lists, stream);
}

VisitLabels visit_labels(const PatchVisit& v, const PatchSpec& spec, const uint8_t* present,
                         const int32_t* witness, const std::string& subject_id) {
  VisitLabels r;
  r.present.assign(present, present + v.num_labels);
  r.witness.assign(witness, witness + 3 * v.num_labels);
  double total = 0;
  for (int l = 0; l < v.num_labels; ++l)
    if (present[l]) total += spec.label_probabilities.at(v.labels[l].label);
  CUSEG_REQUIRE(total > 0, subject_id << ": none of the sampled labels occurs in the valid centre "
                                         "region of the transformed volume (LabelSampler needs "
                                         "one; check sampler.label_probabilities)");
  double acc = 0;
  for (int l = 0; l < v.num_labels; ++l) {
    if (!present[l]) continue;
    acc += spec.label_probabilities.at(v.labels[l].label) / total;
    r.cdf.push_back({acc, l});
  }
  r.cdf.back().first = 1.0;
  return r;
}

PatchJob patch_job(const PatchVisit& v, const VisitLabels& labels, const PatchSpec& spec,
                   uint32_t patch) {
  PatchJob j;
  j.patch = patch;
  const Philox4 r = v.stream.draw(PhiloxPurpose::LabelChoice, patch, 0);
  const double u = philox_u01(r.v[0], r.v[1]);
  j.label_slot = labels.cdf.back().second;
  for (const auto& c : labels.cdf)
    if (u < c.first) {
      j.label_slot = c.second;
      break;
    }
  for (int a = 0; a < 3; ++a) {
    j.witness[a] = labels.witness[size_t(3 * j.label_slot + a)];
    j.patch_size[a] = spec.patch[size_t(a)];
  }
  j.out_type = spec.out_type;
  return j;
}

std::string PatchStats::summary() const {
  std::ostringstream os;
  os.precision(3);
  os << "patches: " << patches << " handed out, " << visits << " visits prepared, waited "
     << wait_seconds << " s for data";
  if (candidates > 0)
    os << ", " << double(candidates) / double(std::max<int64_t>(patches, 1))
       << " centre candidates per patch, " << fallbacks << " witness fallbacks";
  return os.str();
}

// ---------------------------------------------------------------- host pipeline
struct HostPatchPipeline::VisitState {
  std::once_flag once;
  std::shared_ptr<const PatchSubject> subject;
  PatchVisit visit{};
  VisitLabels labels;
};

struct HostPatchPipeline::Slot {
  std::vector<uint8_t> image, label;
  int64_t patch = -1;
  bool ready = false;
  std::exception_ptr error;
};

HostPatchPipeline::HostPatchPipeline(Source source, const PatchSpec& spec, const PatchOrder& order,
                                     int workers, int prefetch)
    : source_(std::move(source)),
      spec_(spec),
      schedule_(order),
      workers_(std::max(1, workers)),
      prefetch_(prefetch > 0 ? prefetch : order.max_length) {
  voxels_ = int64_t(spec.patch[0]) * spec.patch[1] * spec.patch[2];
  const size_t value_bytes = spec.out_type == kOutBF16 ? 2 : 4;
  for (int i = 0; i < prefetch_; ++i) {
    auto s = std::make_unique<Slot>();
    s->image.resize(size_t(voxels_) * value_bytes);
    s->label.resize(size_t(voxels_));
    slots_.push_back(std::move(s));
  }
}

HostPatchPipeline::~HostPatchPipeline() {
  stop_workers();
}

void HostPatchPipeline::stop_workers() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
  }
  cv_work_.notify_all();
  cv_ready_.notify_all();
  for (auto& t : threads_) t.join();
  threads_.clear();
}

uint32_t HostPatchPipeline::epoch() const {
  return uint32_t(std::max<int64_t>(next_g_, 0) / schedule_.patches_per_epoch());
}

int64_t HostPatchPipeline::position() const {
  return std::max<int64_t>(next_g_, 0) % schedule_.patches_per_epoch();
}

void HostPatchPipeline::seek(uint32_t epoch, int64_t patch) {
  const int64_t per = schedule_.patches_per_epoch();
  CUSEG_CHECK(patch >= 0 && patch <= per,
              "patch pipeline: seek to patch " << patch << " of " << per);
  const int64_t g = int64_t(epoch) * per + patch;
  if (g == next_g_ && !threads_.empty()) return;
  // A short jump forward (a data-parallel rank skipping the other ranks' slices of a global
  // batch) keeps the workers and what they prefetched: the skipped patches are taken and
  // dropped. Anything else restarts the workers at g.
  if (!threads_.empty() && g > next_g_ && g - next_g_ <= 4 * int64_t(prefetch_)) {
    const size_t value_bytes = spec_.out_type == kOutBF16 ? 2 : 4;
    std::vector<uint8_t> image(size_t(voxels_) * value_bytes);
    std::vector<uint8_t> label(static_cast<size_t>(voxels_));
    while (next_g_ < g) next(1, image.data(), label.data());
    return;
  }
  stop_workers();
  next_g_ = claim_g_ = g;
  visits_.clear();
  fills_.clear();
  for (auto& s : slots_) s->ready = false, s->patch = -1, s->error = nullptr;
  stop_ = false;
  for (int w = 0; w < workers_; ++w) threads_.emplace_back([this] { worker(); });
}

void HostPatchPipeline::worker() {
  const int64_t per = schedule_.patches_per_epoch();
  const int64_t fills = schedule_.fills_per_epoch();
  const int64_t subjects = schedule_.order().num_subjects;
  Context cpu(Device::CPU);  // each worker runs the op through the CPU backend
  for (;;) {
    int64_t g, n, visit;
    uint32_t epoch;
    int subject;
    std::shared_ptr<VisitState> vs;
    Slot* slot;
    {
      std::unique_lock<std::mutex> lk(mu_);
      cv_work_.wait(lk, [&] { return stop_ || claim_g_ < next_g_ + prefetch_; });
      if (stop_) return;
      g = claim_g_++;
      epoch = uint32_t(g / per);
      n = g % per;
      const int64_t fi = schedule_.fill_of(n);
      auto fit = fills_.find(int64_t(epoch) * fills + fi);
      if (fit == fills_.end())
        fit = fills_.emplace(int64_t(epoch) * fills + fi, schedule_.fill(epoch, fi)).first;
      const PatchFill& f = fit->second;
      const int j = f.layout[size_t(n - f.first_patch)].first;
      subject = f.subjects[size_t(j)];
      visit = f.first_visit + j;
      auto vit = visits_.find(int64_t(epoch) * subjects + visit);
      if (vit == visits_.end())
        vit = visits_.emplace(int64_t(epoch) * subjects + visit, std::make_shared<VisitState>())
                  .first;
      vs = vit->second;
      slot = slots_[size_t(g % prefetch_)].get();
    }
    std::exception_ptr error;
    int32_t centre[5] = {0, 0, 0, 0, 0};
    bool first_of_visit = false;
    try {
      std::call_once(vs->once, [&] {
        auto sub = source_(subject);
        CUSEG_CHECK(sub, "patch pipeline: no subject " << subject);
        const PhiloxStream st = schedule_.stream(epoch);
        const AffineParams ap = visit_affine(spec_, st, visit);
        PatchVisit v = plan_visit_host(*sub, spec_, ap, st);
        std::vector<uint8_t> present(size_t(std::max(1, v.num_labels)));
        std::vector<int32_t> witness(size_t(3 * std::max(1, v.num_labels)));
        affine_patch_presence(cpu, v, present.data(), witness.data());
        vs->labels = visit_labels(v, spec_, present.data(), witness.data(), sub->id);
        vs->visit = v;
        vs->subject = std::move(sub);
        first_of_visit = true;
      });
      PatchJob job = patch_job(vs->visit, vs->labels, spec_, uint32_t(n));
      job.image_out = slot->image.data();
      job.label_out = slot->label.data();
      job.centre_out = centre;
      affine_patch(cpu, vs->visit, job);
    } catch (...) {
      error = std::current_exception();
    }
    {
      std::lock_guard<std::mutex> lk(mu_);
      slot->patch = g;
      slot->ready = true;
      slot->error = error;
      stats_.visits += first_of_visit;
      stats_.candidates += centre[3];
      stats_.fallbacks += centre[4];
    }
    cv_ready_.notify_all();
  }
}

void HostPatchPipeline::next(int count, void* image, uint8_t* label) {
  CUSEG_CHECK(count >= 0, "patch pipeline: " << count << " patches asked");
  CUSEG_CHECK(!threads_.empty(), "patch pipeline: next() before seek()");
  const size_t value_bytes = spec_.out_type == kOutBF16 ? 2 : 4;
  const int64_t per = schedule_.patches_per_epoch();
  const int64_t fills = schedule_.fills_per_epoch();
  for (int c = 0; c < count; ++c) {
    const int64_t g = next_g_;
    Slot* slot = slots_[size_t(g % prefetch_)].get();
    const auto t0 = std::chrono::steady_clock::now();
    {
      std::unique_lock<std::mutex> lk(mu_);
      cv_ready_.wait(lk, [&] { return slot->ready && slot->patch == g; });
      stats_.wait_seconds +=
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (slot->error) std::rethrow_exception(slot->error);
    }
    std::memcpy(static_cast<uint8_t*>(image) + size_t(c) * size_t(voxels_) * value_bytes,
                slot->image.data(), size_t(voxels_) * value_bytes);
    std::memcpy(label + size_t(c) * size_t(voxels_), slot->label.data(), size_t(voxels_));
    {
      std::lock_guard<std::mutex> lk(mu_);
      slot->ready = false;
      ++next_g_;
      stats_.patches++;
      // Visits and fills wholly before the current fill are done with.
      const int64_t cur = (next_g_ / per) * fills + schedule_.fill_of(next_g_ % per);
      const int64_t subjects = schedule_.order().num_subjects;
      while (!fills_.empty() && fills_.begin()->first < cur) {
        const int64_t e = fills_.begin()->first / fills;
        const PatchFill& f = fills_.begin()->second;
        for (int j = 0; j < f.visits; ++j) visits_.erase(e * subjects + f.first_visit + j);
        fills_.erase(fills_.begin());
      }
    }
    cv_work_.notify_all();
  }
}

PatchStats HostPatchPipeline::stats() const {
  std::lock_guard<std::mutex> lk(mu_);
  return stats_;
}

}  // namespace data
}  // namespace cuseg
