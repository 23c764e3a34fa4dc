// The device-resident patch pipeline (see data/device_patches.h).
#include "cuseg/data/device_patches.h"

#include <algorithm>
#include <cstring>
#include <sstream>

#include "cuseg/core/check.h"
#include "cuseg/engine/context.h"
#include "cuseg/engine/ops.h"
#include "cuseg/engine/tensor.h"
#if CUSEG_HAVE_CUDA
#include "cuseg/engine/cuda/async.h"
#include "cuseg/engine/cuda/runtime.h"
#endif

namespace cuseg {
namespace data {

std::string DevicePatchInfo::summary() const {
  std::ostringstream os;
  os.precision(4);
  os << resident_subjects << " subjects resident (" << to_mib(resident_bytes) << " MiB), "
     << streamed_subjects << " streamed from page-locked memory (" << to_mib(pinned_bytes)
     << " MiB; staging " << to_mib(staging_bytes) << " MiB), budget " << to_mib(budget_bytes)
     << " MiB";
  return os.str();
}

#if CUSEG_HAVE_CUDA

size_t default_device_patch_budget() {
  size_t free_b = 0, total_b = 0;
  cuda_memory_info(&free_b, &total_b);
  return total_b / 5 * 2;
}

namespace {

constexpr size_t kBlobAlign = 256;
size_t align_up(size_t b) {
  return (b + kBlobAlign - 1) / kBlobAlign * kBlobAlign;
}

// Byte offsets of one subject's blob: image, labels, then each table's list.
struct BlobLayout {
  size_t label = 0;
  std::vector<size_t> lists;
  size_t bytes = 0;
};
BlobLayout blob_layout(const PatchSubject& s) {
  BlobLayout b;
  size_t at = align_up(s.image.size());
  b.label = at;
  at = align_up(at + s.label.size());
  for (const auto& t : s.tables) {
    b.lists.push_back(at);
    at = align_up(at + t.list.size() * sizeof(int32_t));
  }
  b.bytes = at;
  return b;
}
void fill_blob(const PatchSubject& s, const BlobLayout& b, uint8_t* dst) {
  std::memcpy(dst, s.image.data(), s.image.size());
  std::memcpy(dst + b.label, s.label.data(), s.label.size());
  for (size_t t = 0; t < s.tables.size(); ++t)
    std::memcpy(dst + b.lists[t], s.tables[t].list.data(), s.tables[t].list.size() * 4);
}

}  // namespace

struct DevicePatchPipeline::Impl {
  struct Subject {
    PatchSubject meta;  // geometry, storage, tables (no voxel data)
    BlobLayout layout;
    std::shared_ptr<Storage> blob;  // resident on the device
    void* pinned = nullptr;         // streamed: page-locked host copy
  };
  struct Fill {
    int64_t index = -1;
    PatchFill fill;
    std::vector<PatchVisit> visits;
    std::vector<VisitLabels> labels;
  };

  Context& ctx;
  PatchSpec spec;
  PatchSchedule schedule;
  Stream compute = nullptr, copy = nullptr;
  std::vector<Subject> subjects;
  DevicePatchInfo info;
  int per_fill = 1;
  size_t slot_bytes = 0;
  std::shared_ptr<Storage> staging;            // 2 sets x per_fill slots
  CudaEvent copied[2] = {nullptr, nullptr};    // staging set filled (copy stream)
  CudaEvent released[2] = {nullptr, nullptr};  // last kernels reading the set done (compute)
  CudaEvent presence_done = nullptr;
  int64_t staged_fill[2] = {-1, -1};      // fill whose blobs the set holds (or is receiving)
  std::shared_ptr<Storage> presence_dev;  // per_fill x (labels + 3 labels ints)
  uint8_t* presence_host = nullptr;       // page-locked copy
  size_t presence_bytes = 0;
  Fill cur;
  int64_t next_g = -1;  // stream position: epoch * patches_per_epoch + patch
  PatchStats stats;

  Impl(const std::vector<std::shared_ptr<const PatchSubject>>& subs, const PatchSpec& sp,
       const PatchOrder& order, Context& c, size_t budget)
      : ctx(c), spec(sp), schedule(order) {
    CUSEG_CHECK(ctx.device() == Device::CUDA, "device patch pipeline: needs a CUDA context");
    CUSEG_CHECK(
        int(subs.size()) == order.num_subjects,
        "device patch pipeline: " << subs.size() << " subjects, order says " << order.num_subjects);
    compute = context_stream(ctx);
    copy = cuda_stream_create();
    for (auto& e : copied) e = cuda_event_create();
    for (auto& e : released) e = cuda_event_create();
    presence_done = cuda_event_create();
    per_fill = schedule.subjects_per_fill();
    info.budget_bytes = budget ? budget : default_device_patch_budget();

    size_t total = 0, biggest = 0;
    for (const auto& s : subs) {
      CUSEG_CHECK(s, "device patch pipeline: null subject");
      CUSEG_CHECK(s->storage == spec.storage,
                  s->id << ": stored as " << patch_storage_name(s->storage) << ", the spec says "
                        << patch_storage_name(spec.storage));
      const BlobLayout b = blob_layout(*s);
      total += b.bytes;
      biggest = std::max(biggest, b.bytes);
    }
    // Everything fits: all resident. Otherwise two sets of staging slots come first.
    size_t room = info.budget_bytes;
    if (total > info.budget_bytes) {
      slot_bytes = biggest;
      const size_t need = 2 * size_t(per_fill) * slot_bytes;
      CUSEG_REQUIRE(need <= info.budget_bytes,
                    "data.device_budget_mib: " << to_mib(info.budget_bytes)
                                               << " MiB cannot hold the dataset (" << to_mib(total)
                                               << " MiB) nor the streaming slots it needs ("
                                               << to_mib(need) << " MiB: 2 fills x " << per_fill
                                               << " subjects x " << to_mib(slot_bytes) << " MiB)");
      room -= need;
      staging = std::make_shared<Storage>(need, Device::CUDA);
      info.staging_bytes = need;
    }
    for (const auto& sp_sub : subs) {
      const PatchSubject& s = *sp_sub;
      Subject d;
      d.layout = blob_layout(s);
      d.meta.id = s.id;
      d.meta.geo = s.geo;
      d.meta.storage = s.storage;
      d.meta.scale = s.scale;
      d.meta.offset = s.offset;
      d.meta.image_min = s.image_min;
      for (const auto& t : s.tables) {
        PatchLabelTable m = t;
        m.list.clear();
        m.list.shrink_to_fit();
        d.meta.tables.push_back(std::move(m));
      }
      if (d.layout.bytes <= room) {
        std::vector<uint8_t> host(d.layout.bytes);
        fill_blob(s, d.layout, host.data());
        d.blob = std::make_shared<Storage>(d.layout.bytes, Device::CUDA);
        cuda_copy_2d(d.blob->ptr, d.layout.bytes, host.data(), d.layout.bytes, d.layout.bytes, 1,
                     true, false);
        room -= d.layout.bytes;
        info.resident_subjects++;
        info.resident_bytes += d.layout.bytes;
      } else {
        d.pinned = cuda_host_alloc(d.layout.bytes);
        fill_blob(s, d.layout, static_cast<uint8_t*>(d.pinned));
        info.streamed_subjects++;
        info.pinned_bytes += d.layout.bytes;
      }
      subjects.push_back(std::move(d));
    }
    presence_bytes = size_t(per_fill) * kMaxPatchLabels * (1 + 3 * sizeof(int32_t));
    presence_dev = std::make_shared<Storage>(presence_bytes, Device::CUDA);
    presence_host = static_cast<uint8_t*>(cuda_host_alloc(presence_bytes));
  }

  ~Impl() {
    if (compute) cuda_stream_synchronize(compute);
    if (copy) cuda_stream_synchronize(copy);
    for (auto& s : subjects) cuda_host_free(s.pinned);
    cuda_host_free(presence_host);
    for (auto& e : copied) cuda_event_destroy(e);
    for (auto& e : released) cuda_event_destroy(e);
    cuda_event_destroy(presence_done);
    cuda_stream_destroy(copy);
  }

  uint8_t* slot_ptr(int set, int j) const {
    return static_cast<uint8_t*>(staging->ptr) + (size_t(set) * per_fill + size_t(j)) * slot_bytes;
  }

  // Global fill id gf = epoch * fills_per_epoch + fill.
  PatchFill fill_of_id(int64_t gf) const {
    const int64_t fills = schedule.fills_per_epoch();
    return schedule.fill(uint32_t(gf / fills), gf % fills);
  }

  // Issues the copies of fill gf's streamed blobs into staging set gf % 2 (once).
  void stage(int64_t gf) {
    if (!staging) return;
    const int set = int(gf % 2);
    if (staged_fill[set] == gf) return;
    const PatchFill pf = fill_of_id(gf);
    cuda_stream_wait_event(copy, released[set]);  // kernels that read the set are done
    for (int j = 0; j < pf.visits; ++j) {
      const Subject& s = subjects[size_t(pf.subjects[size_t(j)])];
      if (s.blob) continue;
      cuda_copy_async(slot_ptr(set, j), s.pinned, s.layout.bytes, true, false, copy);
    }
    cuda_event_record(copied[set], copy);
    staged_fill[set] = gf;
  }

  void begin_fill(int64_t f) {  // f: global fill id
    // The previous fill's kernels are all enqueued: mark its set releasable.
    if (cur.index >= 0 && staging) cuda_event_record(released[cur.index % 2], compute);
    stage(f);
    const int set = int(f % 2);
    if (staging) cuda_stream_wait_event(compute, copied[set]);
    Fill n;
    n.index = f;
    n.fill = fill_of_id(f);
    const uint32_t epoch = uint32_t(f / schedule.fills_per_epoch());
    const PhiloxStream st = schedule.stream(epoch);
    uint8_t* pres_dev = static_cast<uint8_t*>(presence_dev->ptr);
    int32_t* wit_dev = reinterpret_cast<int32_t*>(pres_dev + size_t(per_fill) * kMaxPatchLabels);
    for (int j = 0; j < n.fill.visits; ++j) {
      const Subject& s = subjects[size_t(n.fill.subjects[size_t(j)])];
      const uint8_t* base = s.blob ? static_cast<const uint8_t*>(s.blob->ptr) : slot_ptr(set, j);
      PatchSource src;
      src.image = base;
      src.label = base + s.layout.label;
      src.storage = s.meta.storage;
      src.scale = s.meta.scale;
      src.offset = s.meta.offset;
      for (int a = 0; a < 3; ++a) src.size[a] = s.meta.geo.size[size_t(a)];
      std::vector<const int32_t*> lists;
      for (size_t t = 0; t < s.meta.tables.size(); ++t)
        lists.push_back(s.meta.tables[t].list_mode
                            ? reinterpret_cast<const int32_t*>(base + s.layout.lists[t])
                            : nullptr);
      const int64_t visit = n.fill.first_visit + j;
      n.visits.push_back(plan_visit(s.meta, spec, visit_affine(spec, st, visit), src, lists, st));
      affine_patch_presence(ctx, n.visits.back(), pres_dev + size_t(j) * kMaxPatchLabels,
                            wit_dev + size_t(j) * 3 * kMaxPatchLabels);
    }
    cuda_copy_async(presence_host, pres_dev, presence_bytes, false, true, compute);
    cuda_event_record(presence_done, compute);
    stage(f + 1);  // prefetch: overlaps with this fill's patches
    cuda_event_synchronize(presence_done);
    const uint8_t* pres = presence_host;
    const int32_t* wit =
        reinterpret_cast<const int32_t*>(presence_host + size_t(per_fill) * kMaxPatchLabels);
    for (int j = 0; j < n.fill.visits; ++j)
      n.labels.push_back(visit_labels(n.visits[size_t(j)], spec, pres + size_t(j) * kMaxPatchLabels,
                                      wit + size_t(j) * 3 * kMaxPatchLabels,
                                      subjects[size_t(n.fill.subjects[size_t(j)])].meta.id));
    stats.visits += n.fill.visits;
    cur = std::move(n);
  }

  void seek(uint32_t e, int64_t patch) {
    const int64_t per = schedule.patches_per_epoch();
    CUSEG_CHECK(patch >= 0 && patch <= per,
                "patch pipeline: seek to patch " << patch << " of " << per);
    const int64_t g = int64_t(e) * per + patch;
    if (g == next_g) return;
    // Forward (a data-parallel rank skipping the other ranks' slices of a global batch): the
    // fill state stays valid, next() begins whichever fill the new position is in.
    if (next_g >= 0 && g > next_g) {
      next_g = g;
      return;
    }
    cuda_stream_synchronize(compute);
    cuda_stream_synchronize(copy);
    next_g = g;
    cur = Fill{};
    staged_fill[0] = staged_fill[1] = -1;
  }

  void next(int count, void* image, uint8_t* label, int32_t* centres) {
    CUSEG_CHECK(count >= 0 && next_g >= 0, "patch pipeline: next() before seek()");
    const int64_t per = schedule.patches_per_epoch();
    const int64_t voxels = int64_t(spec.patch[0]) * spec.patch[1] * spec.patch[2];
    const size_t value_bytes = spec.out_type == kOutBF16 ? 2 : 4;
    for (int c = 0; c < count; ++c, ++next_g) {
      const int64_t n = next_g % per;
      const int64_t f = (next_g / per) * schedule.fills_per_epoch() + schedule.fill_of(n);
      if (f != cur.index) begin_fill(f);
      const auto& js = cur.fill.layout[size_t(n - cur.fill.first_patch)];
      const PatchVisit& v = cur.visits[size_t(js.first)];
      PatchJob job = patch_job(v, cur.labels[size_t(js.first)], spec, uint32_t(n));
      job.image_out = static_cast<uint8_t*>(image) + size_t(c) * size_t(voxels) * value_bytes;
      job.label_out = label + size_t(c) * size_t(voxels);
      job.centre_out = centres ? centres + 5 * c : nullptr;
      affine_patch(ctx, v, job);  // on the context's stream (= compute)
      stats.patches++;
    }
  }
};

DevicePatchPipeline::DevicePatchPipeline(
    const std::vector<std::shared_ptr<const PatchSubject>>& subjects, const PatchSpec& spec,
    const PatchOrder& order, Context& ctx, size_t budget_bytes)
    : impl_(std::make_unique<Impl>(subjects, spec, order, ctx, budget_bytes)) {}

DevicePatchPipeline::~DevicePatchPipeline() = default;

const PatchSchedule& DevicePatchPipeline::schedule() const {
  return impl_->schedule;
}
void DevicePatchPipeline::seek(uint32_t epoch, int64_t patch) {
  impl_->seek(epoch, patch);
}
void DevicePatchPipeline::next(int count, void* image, uint8_t* label, int32_t* centres) {
  impl_->next(count, image, label, centres);
}
uint32_t DevicePatchPipeline::epoch() const {
  return uint32_t(std::max<int64_t>(impl_->next_g, 0) / impl_->schedule.patches_per_epoch());
}
int64_t DevicePatchPipeline::position() const {
  return std::max<int64_t>(impl_->next_g, 0) % impl_->schedule.patches_per_epoch();
}
DevicePatchInfo DevicePatchPipeline::info() const {
  return impl_->info;
}
PatchStats DevicePatchPipeline::stats() const {
  return impl_->stats;
}

#else  // no CUDA backend in this build

size_t default_device_patch_budget() {
  CUSEG_THROW("the device patch pipeline needs a CUDA build");
}

struct DevicePatchPipeline::Impl {
  PatchSchedule schedule;
};

DevicePatchPipeline::DevicePatchPipeline(const std::vector<std::shared_ptr<const PatchSubject>>&,
                                         const PatchSpec&, const PatchOrder&, Context&, size_t) {
  CUSEG_THROW("the device patch pipeline needs a CUDA build (data.pipeline: host works anywhere)");
}
DevicePatchPipeline::~DevicePatchPipeline() = default;
const PatchSchedule& DevicePatchPipeline::schedule() const {
  return impl_->schedule;
}
void DevicePatchPipeline::seek(uint32_t, int64_t) {}
void DevicePatchPipeline::next(int, void*, uint8_t*, int32_t*) {}
uint32_t DevicePatchPipeline::epoch() const {
  return 0;
}
int64_t DevicePatchPipeline::position() const {
  return 0;
}
DevicePatchInfo DevicePatchPipeline::info() const {
  return {};
}
PatchStats DevicePatchPipeline::stats() const {
  return {};
}

#endif

}  // namespace data
}  // namespace cuseg
