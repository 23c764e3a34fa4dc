// The training patch stream: the reference chain (RandomAffine on the whole volume, then
// LabelSampler, then a torchio Queue) computed patch by patch with the fused op of
// kernels/affine_patch.h, in a reproducible, counter-based order.
//
// - PatchSubject: one preprocessed training subject as the fused op reads it: the image stored
//   as float32, bf16 or int16 + scale (PatchStorage), the uint8 label map, and per-label tables
//   (bounding box; voxel list for sparse labels).
// - PatchSchedule: which subject visit and which sample every patch index of an epoch is, with
//   torchio Queue semantics: subjects in a shuffled order, `samples_per_volume` patches per
//   visit, `max_length / samples_per_volume` visits per fill, the fill's patches shuffled.
// - Every random decision is a Philox4x32-10 draw (core/philox.h) keyed by the seed with the
//   counter (epoch, rank, item): the subject order by (epoch, rank); a fill's shuffle by its fill
//   index; a visit's RandomAffine by its visit index; a patch's label and centre candidates by
//   its patch index. Patch n of epoch e on rank r is therefore the same on any device, with any
//   number of workers or ranks, and a run resumed at patch n continues the same stream.
// - HostPatchPipeline: worker threads run the CPU twin, one patch per task, in patch order.
//   DevicePatchPipeline (data/device_patches.h): the CUDA kernels, volumes on the device.
//
// Equivalence with the chain (tests/cpu/test_affine_patch.cpp): for a given transform and
// centre the patch is the chain's crop (labels identical except at coordinate ties within the
// fixed-point error, images within the bound stated in kernels/affine_patch.h); the centre is
// drawn from exactly the chain's distribution (labels renormalised over those present in the
// transformed valid region, then uniform over that label's valid voxels). What differs from
// today's PatchQueue is only the random stream (Philox instead of mt19937, decisions keyed as
// above) and the storage rounding (int16 + scale: at most (max - min) / 131068 per voxel;
// float32 storage reproduces the chain's values).
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
#include <string>
#include <thread>
#include <vector>

#include "cuseg/core/philox.h"
#include "cuseg/data/image.h"
#include "cuseg/data/samplers.h"
#include "cuseg/data/transforms.h"
#include "cuseg/kernels/affine_patch.h"

namespace cuseg {
namespace data {

// What every patch is (the reference chain's settings).
struct PatchSpec {
  Index3 patch{96, 96, 96};
  std::map<int, double> label_probabilities{{0, 0.2}, {1, 0.3}, {2, 0.5}};
  bool random_affine = true;
  RandomAffineConfig affine;
  float patch_pad_value = -1.f;  // pad_to_patch's image value (volumes smaller than the patch)
  PatchStorage storage = kStoreI16;
  PatchOutType out_type = kOutF32;
};
// "f32" | "bf16" | "i16" (throws naming `what` otherwise).
PatchStorage parse_patch_storage(const std::string& s, const std::string& what);
const char* patch_storage_name(PatchStorage s);

// ---------------------------------------------------------------- subjects
struct PatchLabelTable {
  int label = 0;
  int64_t count = 0;                   // voxels with this label in the whole volume
  Index3 lo{0, 0, 0}, hi{-1, -1, -1};  // bounding box, inclusive (empty when count == 0)
  bool list_mode = false;
  // list mode: linear indices (i fastest) of the label's voxels, nearest to the volume centre
  // first (so the presence scan usually stops at its first entry).
  std::vector<int32_t> list;
};

struct PatchSubject {
  std::string id;
  Geometry geo;  // the preprocessed grid: RandomAffine needs its spacing and direction
  PatchStorage storage = kStoreI16;
  double scale = 1.0, offset = 0.0;     // value = q * scale + offset (kStoreI16)
  std::vector<uint8_t> image;           // geo.numel() stored values, i fastest
  std::vector<uint8_t> label;           // geo.numel() labels
  double image_min = 0.0;               // smallest stored value (as read back): RandomAffine's pad
  std::vector<PatchLabelTable> tables;  // labels with p > 0, ascending; label 0 always (padding)

  size_t image_bytes() const { return image.size(); }
  size_t bytes() const;             // image + label + lists
  PatchSource source() const;       // host pointers
  double value(int64_t idx) const;  // dequantised voxel (as the op reads it)
};

// Stores a preprocessed subject. The label map must have the image's grid. Labels listed in
// `spec.label_probabilities` with p > 0 get a table: box mode when they fill at least 1/8 of
// their bounding box (and always for label 0), list mode otherwise.
PatchSubject make_patch_subject(std::string id, const Image& image, const LabelMap& label,
                                const PatchSpec& spec);

// ---------------------------------------------------------------- order
struct PatchOrder {
  int num_subjects = 0;
  int samples_per_volume = 5;  // patches per visit
  int max_length = 40;         // patches per fill (torchio Queue max_length)
  bool shuffle_subjects = true;
  bool shuffle_patches = true;
  uint64_t seed = 0;
  uint32_t rank = 0;  // each rank draws its own stream
};

struct PatchSlot {
  int64_t visit = 0;  // visit index in the epoch
  int subject = 0;
  int sample = 0;  // 0 .. samples_per_volume - 1
};

// One fill: visits [first_visit, first_visit + visits) and patches [first_patch, + patches).
struct PatchFill {
  int64_t index = 0, first_visit = 0, first_patch = 0;
  int visits = 0, patches = 0;
  std::vector<int> subjects;  // per visit of the fill
  // position p of the fill -> (visit of the fill, sample)
  std::vector<std::pair<int, int>> layout;
};

class PatchSchedule {
 public:
  explicit PatchSchedule(const PatchOrder& o);
  const PatchOrder& order() const { return o_; }
  int subjects_per_fill() const { return per_fill_; }
  int64_t patches_per_epoch() const { return int64_t(o_.num_subjects) * o_.samples_per_volume; }
  int64_t fills_per_epoch() const;
  int64_t fill_of(int64_t patch) const;
  PhiloxStream stream(uint32_t epoch) const { return PhiloxStream{o_.seed, epoch, o_.rank}; }
  std::vector<int> subject_order(uint32_t epoch) const;  // visit -> subject
  PatchFill fill(uint32_t epoch, int64_t index) const;
  PatchSlot locate(uint32_t epoch, int64_t patch) const;

 private:
  PatchOrder o_;
  int per_fill_ = 1;
};

// ---------------------------------------------------------------- visits and patches
// The visit's RandomAffine parameters (identity when spec.random_affine is off): one Philox
// block per three draws, in sample_affine's order (scales, degrees, translations).
AffineParams visit_affine(const PatchSpec& spec, const PhiloxStream& stream, int64_t visit);

// Everything the op needs for one visit of `subject` under `affine`. `src` points at the
// subject's volume where the op will read it (host vectors, or device copies) and `lists` at
// its tables' lists (one per table, same order; nullptr for box-mode tables).
PatchVisit plan_visit(const PatchSubject& subject, const PatchSpec& spec,
                      const AffineParams& affine, const PatchSource& src,
                      const std::vector<const int32_t*>& lists, const PhiloxStream& stream);
PatchVisit plan_visit_host(const PatchSubject& subject, const PatchSpec& spec,
                           const AffineParams& affine, const PhiloxStream& stream);

// Label choice of the LabelSampler: probabilities renormalised over the present labels (the
// presence op's result), then the first cumulative entry above u (u = Philox(patch)).
// Throws naming the subject when no requested label is present (as LabelSampler::prepare).
struct VisitLabels {
  std::vector<std::pair<double, int>> cdf;  // cumulative probability -> table slot
  std::vector<uint8_t> present;
  std::vector<int32_t> witness;  // 3 per table
};
VisitLabels visit_labels(const PatchVisit& v, const PatchSpec& spec, const uint8_t* present,
                         const int32_t* witness, const std::string& subject_id);
PatchJob patch_job(const PatchVisit& v, const VisitLabels& labels, const PatchSpec& spec,
                   uint32_t patch);

struct PatchStats {
  int64_t patches = 0;
  int64_t visits = 0;
  int64_t candidates = 0;   // centre candidates tried (host pipeline only)
  int64_t fallbacks = 0;    // centres that took the presence witness (host pipeline only)
  double wait_seconds = 0;  // consumer time blocked on workers
  std::string summary() const;
};

// ---------------------------------------------------------------- host pipeline
// Worker threads compute patches in stream order, up to `prefetch` ahead of the consumer. Each
// visit's affine and presence are computed once (by the first of its patches to run). The
// stream runs on across epoch ends (patch 0 of epoch e + 1 follows the last patch of epoch e),
// so the next epoch's first patches are prefetched while the trainer validates.
class HostPatchPipeline {
 public:
  // Returns subject s, ready to sample (thread-safe; may load and preprocess on each call).
  using Source = std::function<std::shared_ptr<const PatchSubject>(int subject)>;
  HostPatchPipeline(Source source, const PatchSpec& spec, const PatchOrder& order, int workers,
                    int prefetch = 0);  // prefetch 0: one fill (order.max_length patches)
  ~HostPatchPipeline();
  HostPatchPipeline(const HostPatchPipeline&) = delete;
  HostPatchPipeline& operator=(const HostPatchPipeline&) = delete;

  const PatchSchedule& schedule() const { return schedule_; }
  // Positions the stream at patch `patch` of `epoch`. A no-op when the stream is already there
  // (a consumer that seeks at every epoch start keeps what was prefetched); otherwise the
  // workers restart from there.
  void seek(uint32_t epoch, int64_t patch = 0);
  // The next `count` patches: images (float or bf16 per spec.out_type) and labels, patch after
  // patch, each i fastest. Rethrows a worker's error.
  void next(int count, void* image, uint8_t* label);
  uint32_t epoch() const;
  int64_t position() const;  // patch index in epoch()
  PatchStats stats() const;

 private:
  struct VisitState;
  struct Slot;
  void worker();
  void stop_workers();

  Source source_;
  PatchSpec spec_;
  PatchSchedule schedule_;
  int workers_, prefetch_;
  int64_t voxels_;
  // Stream positions: g = epoch * patches_per_epoch + patch.
  int64_t next_g_ = -1;                                    // consumer
  int64_t claim_g_ = -1;                                   // next patch a worker takes
  std::vector<std::unique_ptr<Slot>> slots_;               // ring of prefetch patches
  std::map<int64_t, std::shared_ptr<VisitState>> visits_;  // by epoch * subjects + visit
  std::map<int64_t, PatchFill> fills_;                     // by epoch * fills + fill
  mutable std::mutex mu_;
  std::condition_variable cv_work_, cv_ready_;
  bool stop_ = false;
  PatchStats stats_;
  std::vector<std::thread> threads_;
};

}  // namespace data
}  // namespace cuseg
