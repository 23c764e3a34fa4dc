// The device-resident patch pipeline: the patch stream of data/patch_pipeline.h produced by the
// CUDA kernels of kernels/affine_patch.h, written straight into the batch tensors.
//
// Memory: every subject's stored volume (image as f32/bf16/int16 + scale, uint8 labels, the
// sparse labels' voxel lists) is one blob. Blobs are uploaded once, in subject order, while
// they fit the budget; when the dataset does not fit, the rest stay in page-locked host memory
// and are streamed: each fill (the visits whose patches a Queue fill mixes) gets a set of
// staging slots, two sets alternate, and the next fill's blobs are copied on a copy stream of
// our own while the current fill's patches are made (events order the copy after the kernels
// that last read the slot, and the kernels after the copy; the host never waits for a copy).
//
// Per fill the presence kernel decides, per visit, which labels are present in the transformed
// valid region (a few bytes come back: the host then knows the label probabilities and, as
// LabelSampler does, refuses a visit with none); per patch the fused kernel draws the centre and
// gathers the patch into the caller's device buffers on the context's stream.
//
// The patches are bit-identical to HostPatchPipeline's for the same spec, order, epoch and
// patch index (tests/cuda/test_affine_patch.cpp).
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "cuseg/data/patch_pipeline.h"

namespace cuseg {

class Context;

namespace data {

struct DevicePatchInfo {
  int resident_subjects = 0;
  int streamed_subjects = 0;
  size_t resident_bytes = 0;  // blobs kept on the device
  size_t staging_bytes = 0;   // slots for streamed blobs (2 fills' worth)
  size_t pinned_bytes = 0;    // page-locked host copies of the streamed blobs
  size_t budget_bytes = 0;
  std::string summary() const;
};

// The budget used when none is given: 40% of the device's memory (the rest is left to the
// network; the reference U-Net at batch 2, 96^3 needs a few GiB).
size_t default_device_patch_budget();

class DevicePatchPipeline {
 public:
  // `ctx` must be a CUDA context (its stream runs the kernels); budget 0 = the default. The
  // subjects' host data is copied (to the device or to page-locked memory) and not kept: drop
  // the shared pointers afterwards to free host memory.
  DevicePatchPipeline(const std::vector<std::shared_ptr<const PatchSubject>>& subjects,
                      const PatchSpec& spec, const PatchOrder& order, Context& ctx,
                      size_t budget_bytes = 0);
  ~DevicePatchPipeline();
  DevicePatchPipeline(const DevicePatchPipeline&) = delete;
  DevicePatchPipeline& operator=(const DevicePatchPipeline&) = delete;

  const PatchSchedule& schedule() const;
  // Positions the stream at patch `patch` of `epoch` (a no-op when already there); the stream
  // then runs on across epoch ends, as HostPatchPipeline's.
  void seek(uint32_t epoch, int64_t patch = 0);
  // Enqueues the next `count` patches on the context's stream: images (float or bf16 per
  // spec.out_type) at `image`, labels at `label`, patch after patch, each i fastest; both
  // device pointers (e.g. a [count, 1, D, H, W] and a [count, D, H, W] tensor). When
  // `centres` is given (device memory, 5 ints per patch) it receives each patch's centre,
  // candidates tried and witness flag.
  void next(int count, void* image, uint8_t* label, int32_t* centres = nullptr);
  uint32_t epoch() const;
  int64_t position() const;  // patch index in epoch()
  DevicePatchInfo info() const;
  PatchStats stats() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace data
}  // namespace cuseg
