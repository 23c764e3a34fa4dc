// Patch samplers (torchio semantics, docs/ARCHITECTURE.md), grid aggregation and the patch queue.
// Coordinates are voxel indices (i, j, k) = (W, H, D); a patch is the box
// [ini, ini + size) and its buffers are i fastest, i.e. one C=1 NCDHW channel of size
// (size[2], size[1], size[0]).
#pragma once
#include <array>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "cuseg/data/image.h"
#include "cuseg/kernels/grid_aggregate.h"

namespace cuseg {
namespace data {

using Index3 = std::array<int, 3>;

struct Patch {
  Index3 ini{0, 0, 0};
  Index3 size{0, 0, 0};
  std::vector<float> image;    // normalised intensities, i fastest
  std::vector<uint8_t> label;  // class indices (empty when the subject has no label)
  int subject = -1;            // index of the subject it came from
};
Patch extract_patch(const Image& img, const LabelMap* lab, const Index3& ini, const Index3& size);

// Pads image and label (centred, CropOrPad rule) to at least `patch` on every axis.
void pad_to_patch(Image& img, LabelMap* lab, const Index3& patch, float image_pad_value);

// ---------------------------------------------------------------- UniformSampler
// index_ini uniform over [0, size - patch] on each axis. Throws if the volume is smaller.
Index3 uniform_patch_ini(const Geometry& g, const Index3& patch, std::mt19937_64& rng);

// ---------------------------------------------------------------- LabelSampler
// torchio LabelSampler: valid centres exclude patch//2 voxels at the start and (patch-1)//2
// at the end of each axis; a present label L (with p_L > 0) gets total probability
// p_L / sum(p over present labels), spread uniformly over its voxels in the valid region;
// index_ini = centre - patch//2. Labels absent from `probabilities` are never centres.
// Sampling is two-stage (label, then a uniform voxel of that label), which is the same
// distribution as torchio's per-voxel CDF without a full-volume float map.
class LabelSampler {
 public:
  LabelSampler(const Index3& patch, std::map<int, double> probabilities);
  // Prepares the per-label centre lists for one label map (throws if smaller than the patch:
  // call pad_to_patch first when padding is configured, or if no listed label is present).
  void prepare(const LabelMap& lab);
  Index3 sample(std::mt19937_64& rng) const;  // index_ini of a patch
  // Probability that a sampled centre has each label (after renormalisation), and the
  // per-label voxel counts in the valid region of the prepared map.
  const std::map<int, double>& label_probabilities() const { return effective_; }
  const std::map<int, int64_t>& valid_counts() const { return counts_; }
  const Index3& patch() const { return patch_; }

 private:
  Index3 patch_;
  std::map<int, double> probs_, effective_;
  std::map<int, int64_t> counts_;
  Geometry geo_;
  // Labels sampled from explicit voxel lists; the most frequent one by rejection on `lab_`.
  std::map<int, std::vector<int64_t>> lists_;
  int rejection_label_ = -1;
  std::vector<uint8_t> lab_;
  std::vector<std::pair<double, int>> cdf_;  // cumulative probability -> label
};

// ---------------------------------------------------------------- GridSampler
// torchio rule per axis: starts range(0, size - patch + 1, patch - overlap), plus size - patch
// if missing. overlap must be even and < patch, patch <= size.
std::vector<int> grid_starts(int size, int patch, int overlap);
// All patch origins in torchio's order (np.unique on (i, j, k): i slowest, k fastest).
std::vector<Index3> grid_locations(const Index3& size, const Index3& patch, const Index3& overlap);

// Accumulates C-channel network outputs of grid patches (kernels/grid_aggregate.h).
class GridAggregator {
 public:
  GridAggregator(const Geometry& geo, int channels, const Index3& patch, const Index3& overlap,
                 AggregateMode mode);
  // patches: n x C x (patch k, j, i), i fastest; ini: n patch origins (i, j, k).
  void add(const float* patches, int n, const Index3* ini);
  // C x volume (i fastest within each channel): sum / weight.
  std::vector<float> output() const;
  LabelMap argmax() const;  // class index per voxel (first maximum on ties)

 private:
  Geometry geo_;
  int channels_;
  Index3 patch_, overlap_;
  AggregateMode mode_;
  std::vector<float> sum_, weight_;
};

// ---------------------------------------------------------------- Queue
struct Subject {
  std::string id;
  Image image;
  LabelMap label;
};

struct QueueConfig {
  int max_length = 40;         // patches held after a fill
  int samples_per_volume = 5;  // patches drawn from each subject per visit
  int num_workers = 2;         // loader/sampler threads
  bool shuffle_subjects = true;
  bool shuffle_patches = true;
  uint64_t seed = 0;
};

struct QueueStats {
  double wait_seconds = 0;  // time next() spent blocked on workers
  int64_t patches = 0;      // patches handed out
  int64_t fills = 0;
  int64_t stalls = 0;  // fills that had to wait for data (> 1 ms)
  std::string summary() const;
};

// torchio Queue: each fill takes min(max_length / samples_per_volume, num_subjects) subjects
// from an endless stream (subject order reshuffled every epoch when shuffle_subjects), draws
// samples_per_volume patches from each, shuffles them and pops one per next(). Workers load,
// transform and sample ahead while the consumer drains the current fill. Determinism: a
// subject visit's RNG is seeded from (seed, visit number) and results are assembled in visit
// order, so the patch stream does not depend on thread timing.
class PatchQueue {
 public:
  // load(subject_index, rng): read + transform one subject (called from worker threads).
  using Loader = std::function<Subject(int subject, std::mt19937_64& rng)>;
  // sample(subject, count, rng): draw `count` patches from a loaded subject.
  using Sampler = std::function<std::vector<Patch>(const Subject&, int count, std::mt19937_64&)>;
  PatchQueue(int num_subjects, Loader load, Sampler sample, const QueueConfig& cfg);
  ~PatchQueue();
  PatchQueue(const PatchQueue&) = delete;
  PatchQueue& operator=(const PatchQueue&) = delete;

  int64_t patches_per_epoch() const { return int64_t(num_subjects_) * cfg_.samples_per_volume; }
  Patch next();  // blocks until a patch is ready; rethrows a worker's error
  QueueStats stats() const;

 private:
  struct Group {
    std::vector<Patch> patches;
    std::exception_ptr error;
  };
  void worker();
  int subject_for_visit(int64_t visit);

  int num_subjects_;
  Loader load_;
  Sampler sample_;
  QueueConfig cfg_;
  int subjects_per_fill_;
  std::vector<Patch> current_;
  int64_t next_visit_consume_ = 0;
  std::atomic<int64_t> next_visit_claim_{0};
  std::map<int64_t, Group> ready_;
  std::map<int64_t, std::vector<int>> epoch_orders_;
  mutable std::mutex mu_;
  std::condition_variable cv_work_, cv_ready_;
  bool stop_ = false;
  QueueStats stats_;
  std::vector<std::thread> threads_;
};

// Stacks patches into engine-ready buffers: image N x 1 x D x H x W float and label
// N x 1 x D x H x W uint8 (copy the vectors into Tensors; the layouts already match).
void stack_patches(const std::vector<Patch>& patches, std::vector<float>* image,
                   std::vector<uint8_t>* label);

}  // namespace data
}  // namespace cuseg
