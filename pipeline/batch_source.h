// Step 3 of a training run: where training batches come from.
//
// EXTENSION POINT (another patch source): implement
// BatchSource and return it from make_batch_source() for the config that selects it. The
// trainer only asks for an epoch's stream and then for one batch per optimiser step; it never
// sees patches, queues or threads. The contract that keeps --resume bit-exact: the stream of
// epoch e depends only on (config, e), never on timing, and start_epoch(e, k) continues it
// after its first k batches exactly as an uninterrupted run would.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "cuseg/data/samplers.h"
#include "cuseg/engine/context.h"
#include "cuseg/engine/tensor.h"
#include "cuseg/pipeline/config.h"

namespace cuseg {

class TrainingData;

// One batch on the training device.
struct TrainBatch {
  Tensor image;                    // [N, 1, D, H, W] float32, rescaled intensities
  Tensor label;                    // [N, D, H, W] uint8 class indices
  std::vector<std::string> cases;  // case id of each patch (messages: which data was this?)
};

// Host patches -> a batch on `dev` (also used for the validation patches).
TrainBatch to_batch(const std::vector<data::Patch>& patches, Device dev,
                    std::vector<std::string> cases = {});

class BatchSource {
 public:
  virtual ~BatchSource() = default;
  // Optimiser steps per epoch (full batches only, as a DataLoader with drop_last).
  virtual int64_t batches_per_epoch() const = 0;
  // Starts epoch `epoch`'s stream (0-based), skipping its first `skip_batches` batches.
  virtual void start_epoch(int epoch, int64_t skip_batches) = 0;
  // The next batch of the current epoch; blocks until it is ready.
  virtual TrainBatch next() = 0;
  // Seconds next() spent waiting for data this epoch, and a one-line summary for the log.
  virtual double wait_seconds() const = 0;
  virtual std::string summary() const = 0;
};

// The source for a run: the fused patch pipeline (pipeline/training_patches.h). Per
// data.pipeline, on the device (every training case loaded once from `data`, uploaded, patches
// written into the batch on ctx's stream) or on host worker threads (cases from `data`,
// converted to the patch storage once and cached when data.cache). RandomAffine per case visit,
// LabelSampler centres, torchio Queue order; the stream is keyed by (train.seed, epoch, patch
// index), so start_epoch(e, k) seeks straight to batch k. `data` and `ctx` must outlive the
// source.
//
// Data-parallel ranks (pipeline/distributed.h): every rank follows the same epoch stream, cut
// into global batches of world_size x train.batch_size patches, and takes slice `rank` of each
// global batch (the rank enters the patch index: rank r's patches of global batch b are
// b W B + r B .. b W B + r B + B - 1). batches_per_epoch() and start_epoch()'s skip count
// global batches, so every rank takes the same number of steps, and one rank with batch W B
// sees the same patches as W ranks with batch B. The device pipeline computes only this rank's
// patches; the host pipeline's workers compute the whole global batch and the other ranks'
// patches are dropped (W times the host augmentation work: CPU ranks are for testing).
std::unique_ptr<BatchSource> make_batch_source(const RunConfig& cfg, const TrainingData& data,
                                               Context& ctx, int rank = 0, int world_size = 1);

}  // namespace cuseg
