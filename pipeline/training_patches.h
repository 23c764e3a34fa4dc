// The training patches a run consumes (data.pipeline): the fused patch pipeline of
// data/patch_pipeline.h, on the device (data/device_patches.h: volumes uploaded once, patches
// written straight into the batch tensors) or on host worker threads, chosen once per run.
//
// Both produce the same stream for the same config: Philox keyed by (train.seed, epoch, rank,
// patch index), torchio Queue order (queue.max_length, queue.samples_per_volume), RandomAffine
// per subject visit (augment.*), LabelSampler centres (sampler.*). A run resumed at step s of
// epoch e seeks to patch s * batch of epoch e: no replay.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "cuseg/data/image.h"
#include "cuseg/data/patch_pipeline.h"
#include "cuseg/engine/context.h"
#include "cuseg/engine/tensor.h"
#include "cuseg/pipeline/config.h"

namespace cuseg {

namespace data {
class DevicePatchPipeline;
}

// The patch settings of a run config (patch pad = the rescaled minimum, as pad_to_patch).
data::PatchSpec patch_spec(const RunConfig& cfg);
// The stream order of a run config for `num_subjects` training subjects on `rank`.
data::PatchOrder patch_order(const RunConfig& cfg, int num_subjects, uint32_t rank = 0);

// Whether data.pipeline resolves to the device pipeline for training on `dev` (auto: on CUDA).
// Throws naming the key when it asks for the device on a CPU run.
bool uses_device_pipeline(const RunConfig& cfg, Device dev);

class TrainingPatches {
 public:
  // Preprocessed training subject s (image + label on the model grid); thread-safe.
  using Load = std::function<std::shared_ptr<const data::PatchSubject>(int subject)>;
  // Resolves data.pipeline for the training device (auto: device on CUDA; device on a CPU run
  // is a config error). The device pipeline loads and uploads every subject now (with
  // queue.num_workers threads); the host pipeline loads on demand.
  // `out`: the dtype of the image batches next() fills (float32, or bf16 for a bf16 run).
  TrainingPatches(const RunConfig& cfg, Context& ctx, int num_subjects, Load load,
                  uint32_t rank = 0, PatchOutType out = kOutF32);
  ~TrainingPatches();
  TrainingPatches(const TrainingPatches&) = delete;
  TrainingPatches& operator=(const TrainingPatches&) = delete;

  bool on_device() const { return device_ != nullptr; }
  std::string describe() const;  // which pipeline, storage, memory
  int64_t patches_per_epoch() const;
  // Positions the stream (a no-op when already there).
  void seek(int epoch, int64_t patch);
  // The next image.dim(0) patches into image [N, 1, D, H, W] (float32 or bf16, as constructed)
  // and label [N, D, H, W] (uint8), both on the context's device; `subjects` (optional)
  // receives each patch's subject index.
  void next(Tensor& image, Tensor& label, std::vector<int>* subjects = nullptr);
  data::PatchStats stats() const;

 private:
  Context& ctx_;
  data::PatchSpec spec_;
  std::unique_ptr<data::HostPatchPipeline> host_;
  std::unique_ptr<data::DevicePatchPipeline> device_;
  Tensor host_image_, host_label_;  // host pipeline + CUDA training: staging before the copy
  std::string describe_;
};

}  // namespace cuseg
