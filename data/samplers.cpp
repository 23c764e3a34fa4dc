// Samplers, grid aggregation and the patch queue (see data/samplers.h).
#include "cuseg/data/samplers.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "cuseg/core/check.h"
#include "cuseg/core/clock.h"
#include "cuseg/core/random.h"
#include "cuseg/data/transforms.h"

namespace cuseg {
namespace data {
namespace {

void check_patch_fits(const Geometry& g, const Index3& patch, const char* who) {
  for (int a = 0; a < 3; ++a) {
    CUSEG_CHECK(patch[size_t(a)] > 0, who << ": patch size must be positive");
    CUSEG_CHECK(patch[size_t(a)] <= g.size[size_t(a)],
                who << ": volume " << g.size[0] << "x" << g.size[1] << "x" << g.size[2]
                    << " is smaller than the patch " << patch[0] << "x" << patch[1] << "x"
                    << patch[2] << " (pad it first: pad_to_patch / the pad option)");
  }
}

}  // namespace

Patch extract_patch(const Image& img, const LabelMap* lab, const Index3& ini, const Index3& size) {
  for (int a = 0; a < 3; ++a)
    CUSEG_CHECK(ini[size_t(a)] >= 0 && ini[size_t(a)] + size[size_t(a)] <= img.geo.size[size_t(a)],
                "extract_patch: patch at (" << ini[0] << "," << ini[1] << "," << ini[2] << ") size "
                                            << size[0] << "x" << size[1] << "x" << size[2]
                                            << " leaves the volume");
  Patch p;
  p.ini = ini;
  p.size = size;
  const size_t n = size_t(size[0]) * size_t(size[1]) * size_t(size[2]);
  p.image.resize(n);
  if (lab) p.label.resize(n);
  size_t q = 0;
  for (int k = 0; k < size[2]; ++k)
    for (int j = 0; j < size[1]; ++j, q += size_t(size[0])) {
      const int64_t src = img.geo.index(ini[0], ini[1] + j, ini[2] + k);
      std::copy_n(img.v.begin() + src, size[0], p.image.begin() + long(q));
      if (lab) std::copy_n(lab->v.begin() + src, size[0], p.label.begin() + long(q));
    }
  return p;
}

void pad_to_patch(Image& img, LabelMap* lab, const Index3& patch, float image_pad_value) {
  Index3 t = img.geo.size;
  bool need = false;
  for (int a = 0; a < 3; ++a)
    if (t[size_t(a)] < patch[size_t(a)]) t[size_t(a)] = patch[size_t(a)], need = true;
  if (!need) return;
  img = crop_or_pad(img, t, image_pad_value);
  if (lab) *lab = crop_or_pad(*lab, t, uint8_t(0));
}

Index3 uniform_patch_ini(const Geometry& g, const Index3& patch, std::mt19937_64& rng) {
  check_patch_fits(g, patch, "UniformSampler");
  Index3 ini;
  for (int a = 0; a < 3; ++a)
    ini[size_t(a)] = int(uniform_index(rng, g.size[size_t(a)] - patch[size_t(a)] + 1));
  return ini;
}

// ---------------------------------------------------------------- LabelSampler
LabelSampler::LabelSampler(const Index3& patch, std::map<int, double> probabilities)
    : patch_(patch), probs_(std::move(probabilities)) {
  CUSEG_CHECK(!probs_.empty(), "LabelSampler: no label probabilities given");
  for (const auto& kv : probs_)
    CUSEG_CHECK(kv.second >= 0,
                "LabelSampler: probability of label " << kv.first << " is negative");
}

void LabelSampler::prepare(const LabelMap& lab) {
  check_patch_fits(lab.geo, patch_, "LabelSampler");
  geo_ = lab.geo;
  lists_.clear();
  counts_.clear();
  effective_.clear();
  cdf_.clear();
  lab_.clear();
  rejection_label_ = -1;
  Index3 lo, hi;  // valid centres [lo, hi)
  for (int a = 0; a < 3; ++a) {
    lo[size_t(a)] = patch_[size_t(a)] / 2;
    hi[size_t(a)] = geo_.size[size_t(a)] - (patch_[size_t(a)] - 1) / 2;
  }
  int64_t hist[256] = {};
  for (int k = lo[2]; k < hi[2]; ++k)
    for (int j = lo[1]; j < hi[1]; ++j)
      for (int i = lo[0]; i < hi[0]; ++i) hist[lab.at(i, j, k)]++;
  double total = 0;
  int biggest = -1;
  for (const auto& kv : probs_) {
    if (kv.first < 0 || kv.first > 255 || hist[kv.first] == 0 || kv.second <= 0) continue;
    counts_[kv.first] = hist[kv.first];
    total += kv.second;
    if (biggest < 0 || hist[kv.first] > hist[biggest]) biggest = kv.first;
  }
  CUSEG_CHECK(total > 0,
              "LabelSampler: none of the requested labels occurs in the valid "
              "centre region of this label map ("
                  << describe(lab.geo) << ")");
  double acc = 0;
  for (const auto& kv : counts_) {
    effective_[kv.first] = probs_.at(kv.first) / total;
    acc += effective_[kv.first];
    cdf_.push_back({acc, kv.first});
  }
  cdf_.back().first = 1.0;
  // The most frequent label is drawn by rejection (acceptance >= 1 / number of labels); the
  // others keep explicit voxel lists, so memory stays O(foreground).
  rejection_label_ = biggest;
  lab_ = lab.v;
  for (int k = lo[2]; k < hi[2]; ++k)
    for (int j = lo[1]; j < hi[1]; ++j)
      for (int i = lo[0]; i < hi[0]; ++i) {
        const int l = lab.at(i, j, k);
        if (l != rejection_label_ && counts_.count(l)) lists_[l].push_back(geo_.index(i, j, k));
      }
}

Index3 LabelSampler::sample(std::mt19937_64& rng) const {
  CUSEG_CHECK(!cdf_.empty(), "LabelSampler: sample() before prepare()");
  const double u = uniform01(rng);
  int label = cdf_.back().second;
  for (const auto& c : cdf_)
    if (u < c.first) {
      label = c.second;
      break;
    }
  Index3 centre;
  if (label == rejection_label_) {
    Index3 lo, n;
    for (int a = 0; a < 3; ++a) {
      lo[size_t(a)] = patch_[size_t(a)] / 2;
      n[size_t(a)] = geo_.size[size_t(a)] - (patch_[size_t(a)] - 1) / 2 - lo[size_t(a)];
    }
    for (;;) {
      for (int a = 0; a < 3; ++a)
        centre[size_t(a)] = lo[size_t(a)] + int(uniform_index(rng, n[size_t(a)]));
      if (lab_[size_t(geo_.index(centre[0], centre[1], centre[2]))] == label) break;
    }
  } else {
    const auto& list = lists_.at(label);
    const int64_t idx = list[size_t(uniform_index(rng, int64_t(list.size())))];
    centre = {int(idx % geo_.size[0]), int(idx / geo_.size[0] % geo_.size[1]),
              int(idx / (int64_t(geo_.size[0]) * geo_.size[1]))};
  }
  Index3 ini;
  for (int a = 0; a < 3; ++a) ini[size_t(a)] = centre[size_t(a)] - patch_[size_t(a)] / 2;
  return ini;
}

// ---------------------------------------------------------------- GridSampler
std::vector<int> grid_starts(int size, int patch, int overlap) {
  CUSEG_CHECK(patch > 0 && patch <= size,
              "GridSampler: patch " << patch << " must be in [1, volume size " << size << "]");
  CUSEG_CHECK(
      overlap >= 0 && overlap < patch && overlap % 2 == 0,
      "GridSampler: overlap " << overlap << " must be even and smaller than the patch " << patch);
  std::vector<int> s;
  for (int x = 0; x < size - patch + 1; x += patch - overlap) s.push_back(x);
  if (s.back() != size - patch) s.push_back(size - patch);
  return s;
}

std::vector<Index3> grid_locations(const Index3& size, const Index3& patch, const Index3& overlap) {
  const auto si = grid_starts(size[0], patch[0], overlap[0]);
  const auto sj = grid_starts(size[1], patch[1], overlap[1]);
  const auto sk = grid_starts(size[2], patch[2], overlap[2]);
  std::vector<Index3> out;
  for (int i : si)
    for (int j : sj)
      for (int k : sk) out.push_back({i, j, k});
  return out;  // starts are increasing, so this is already np.unique's lexicographic order
}

GridAggregator::GridAggregator(const Geometry& geo, int channels, const Index3& patch,
                               const Index3& overlap, AggregateMode mode)
    : geo_(geo), channels_(channels), patch_(patch), overlap_(overlap), mode_(mode) {
  CUSEG_CHECK(channels > 0, "GridAggregator: channels must be positive");
  sum_.assign(size_t(geo.numel()) * size_t(channels), 0.f);
  weight_.assign(size_t(geo.numel()), 0.f);
}

void GridAggregator::add(const float* patches, int n, const Index3* ini) {
  std::vector<int> starts(size_t(3 * n));
  for (int q = 0; q < n; ++q) {  // (z, y, x) = (k, j, i) for the kernel
    starts[size_t(3 * q)] = ini[q][2];
    starts[size_t(3 * q + 1)] = ini[q][1];
    starts[size_t(3 * q + 2)] = ini[q][0];
  }
  const int64_t pvol = int64_t(patch_[0]) * patch_[1] * patch_[2];
  Vol vp{
      const_cast<float*>(patches), n, channels_, patch_[2], patch_[1], patch_[0], pvol * channels_};
  Vol vs{sum_.data(), 1, channels_, geo_.size[2], geo_.size[1], geo_.size[0], int64_t(sum_.size())};
  Vol vw{weight_.data(), 1, 1, geo_.size[2], geo_.size[1], geo_.size[0], int64_t(weight_.size())};
  const GridAggregateParams p = grid_aggregate_params(mode_, overlap_[2], overlap_[1], overlap_[0],
                                                      patch_[2], patch_[1], patch_[0]);
  grid_aggregate_cpu(vp, starts.data(), vs, vw, p);
}

std::vector<float> GridAggregator::output() const {
  std::vector<float> out(sum_.size());
  Vol vs{const_cast<float*>(sum_.data()),
         1,
         channels_,
         geo_.size[2],
         geo_.size[1],
         geo_.size[0],
         int64_t(sum_.size())};
  Vol vw{const_cast<float*>(weight_.data()),
         1,
         1,
         geo_.size[2],
         geo_.size[1],
         geo_.size[0],
         int64_t(weight_.size())};
  Vol vo = vs;
  vo.p = out.data();
  grid_aggregate_finalize_cpu(vs, vw, vo);
  return out;
}

LabelMap GridAggregator::argmax() const {
  const std::vector<float> out = output();
  LabelMap lab = LabelMap::make(geo_);
  const size_t n = size_t(geo_.numel());
  for (size_t v = 0; v < n; ++v) {
    int best = 0;
    for (int c = 1; c < channels_; ++c)
      if (out[size_t(c) * n + v] > out[size_t(best) * n + v]) best = c;
    lab.v[v] = uint8_t(best);
  }
  return lab;
}

// ---------------------------------------------------------------- Queue
std::string QueueStats::summary() const {
  std::ostringstream os;
  os.precision(3);
  os << "queue: " << patches << " patches, " << fills << " fills, waited " << wait_seconds
     << " s for data (" << stalls << " stalled fills)";
  return os.str();
}

PatchQueue::PatchQueue(int num_subjects, Loader load, Sampler sample, const QueueConfig& cfg)
    : num_subjects_(num_subjects), load_(std::move(load)), sample_(std::move(sample)), cfg_(cfg) {
  CUSEG_CHECK(num_subjects > 0, "PatchQueue: no subjects");
  CUSEG_CHECK(cfg.samples_per_volume > 0 && cfg.max_length >= cfg.samples_per_volume,
              "PatchQueue: need 0 < samples_per_volume ("
                  << cfg.samples_per_volume << ") <= max_length (" << cfg.max_length << ")");
  subjects_per_fill_ = std::min(cfg.max_length / cfg.samples_per_volume, num_subjects);
  const int workers = std::max(1, cfg.num_workers);
  for (int w = 0; w < workers; ++w) threads_.emplace_back([this] { worker(); });
}

PatchQueue::~PatchQueue() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
  }
  cv_work_.notify_all();
  cv_ready_.notify_all();
  for (auto& t : threads_) t.join();
}

int PatchQueue::subject_for_visit(int64_t visit) {  // caller holds mu_
  const int64_t epoch = visit / num_subjects_;
  auto it = epoch_orders_.find(epoch);
  if (it == epoch_orders_.end()) {
    std::vector<int> order(static_cast<size_t>(num_subjects_));
    for (int s = 0; s < num_subjects_; ++s) order[size_t(s)] = s;
    if (cfg_.shuffle_subjects) {
      std::mt19937_64 rng(cfg_.seed * 1000003 + uint64_t(epoch) * 7919 + 17);
      portable_shuffle(order, rng);
    }
    it = epoch_orders_.emplace(epoch, std::move(order)).first;
    while (epoch_orders_.size() > 4) epoch_orders_.erase(epoch_orders_.begin());
  }
  return it->second[size_t(visit % num_subjects_)];
}

void PatchQueue::worker() {
  for (;;) {
    int64_t visit;
    int subject;
    {
      std::unique_lock<std::mutex> lk(mu_);
      // Look ahead at most two fills beyond the one being consumed (bounded memory).
      cv_work_.wait(lk, [&] {
        return stop_ || next_visit_claim_.load() < next_visit_consume_ + 2 * subjects_per_fill_;
      });
      if (stop_) return;
      visit = next_visit_claim_++;
      subject = subject_for_visit(visit);
    }
    Group g;
    try {
      std::mt19937_64 rng(cfg_.seed * 6364136223846793005ull +
                          uint64_t(visit) * 1442695040888963407ull + 1);
      Subject s = load_(subject, rng);
      g.patches = sample_(s, cfg_.samples_per_volume, rng);
      for (auto& p : g.patches) p.subject = subject;
    } catch (...) {
      g.error = std::current_exception();
    }
    {
      std::lock_guard<std::mutex> lk(mu_);
      ready_[visit] = std::move(g);
    }
    cv_ready_.notify_all();
  }
}

Patch PatchQueue::next() {
  if (current_.empty()) {
    const double t0 = now_s();
    std::vector<Patch> fill;
    for (int s = 0; s < subjects_per_fill_; ++s) {
      std::unique_lock<std::mutex> lk(mu_);
      cv_ready_.wait(lk, [&] { return ready_.count(next_visit_consume_) > 0; });
      Group g = std::move(ready_[next_visit_consume_]);
      ready_.erase(next_visit_consume_);
      ++next_visit_consume_;
      lk.unlock();
      cv_work_.notify_all();
      if (g.error) std::rethrow_exception(g.error);
      for (auto& p : g.patches) fill.push_back(std::move(p));
    }
    if (cfg_.shuffle_patches) {
      std::mt19937_64 rng(cfg_.seed * 2862933555777941757ull + uint64_t(stats_.fills) +
                          3037000493ull);
      portable_shuffle(fill, rng);
    }
    current_ = std::move(fill);
    const double waited = now_s() - t0;
    std::lock_guard<std::mutex> lk(mu_);
    stats_.wait_seconds += waited;
    stats_.stalls += waited > 1e-3;
    stats_.fills++;
  }
  CUSEG_CHECK(!current_.empty(), "PatchQueue: the sampler returned no patches");
  Patch p = std::move(current_.back());  // torchio pops from the end
  current_.pop_back();
  std::lock_guard<std::mutex> lk(mu_);
  stats_.patches++;
  return p;
}

QueueStats PatchQueue::stats() const {
  std::lock_guard<std::mutex> lk(mu_);
  return stats_;
}

void stack_patches(const std::vector<Patch>& patches, std::vector<float>* image,
                   std::vector<uint8_t>* label) {
  CUSEG_CHECK(!patches.empty(), "stack_patches: no patches");
  const Index3 s = patches[0].size;
  const size_t n = size_t(s[0]) * size_t(s[1]) * size_t(s[2]);
  if (image) image->clear();
  if (label) label->clear();
  for (const auto& p : patches) {
    CUSEG_CHECK(p.size == s, "stack_patches: patches of different sizes");
    if (image) image->insert(image->end(), p.image.begin(), p.image.end());
    if (label) {
      CUSEG_CHECK(p.label.size() == n, "stack_patches: a patch has no label");
      label->insert(label->end(), p.label.begin(), p.label.end());
    }
  }
}

}  // namespace data
}  // namespace cuseg
