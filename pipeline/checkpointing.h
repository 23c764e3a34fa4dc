// Training checkpoints: what a run saves at every epoch end and on interruption, and what
// --resume restores. The weights file is a plain safetensors checkpoint (engine/checkpoint.h,
// loads into the PyTorch reference module); its metadata carries the resolved config and the
// training progress below; the optimiser state goes to the companion "<stem>.optim" file.
//
// Determinism and resume: the only randomness is the network init (train.seed) and the batch
// stream, whose every draw is Philox keyed by (train.seed, epoch, patch index; data-parallel
// ranks share the rank-0 stream and take slices of it, batch_source.h)
// (batch_source.h, data/patch_pipeline.h). So (epoch, steps done in it) is the whole RNG state:
// --resume seeks the stream to the next patch, and the resumed run continues the interrupted
// one's loss curve exactly (same device).
#pragma once
#include <cmath>
#include <cstdint>
#include <string>

#include "cuseg/engine/optim.h"
#include "cuseg/model/unet3d.h"
#include "cuseg/pipeline/config.h"

namespace cuseg {

struct TrainProgress {
  int epoch = 0;              // 0-based epoch in progress (= epochs completed)
  int64_t step_in_epoch = 0;  // optimiser steps already done in that epoch
  // Data-parallel runs: the ranks of the run (each step consumes world_size x
  // train.batch_size patches), and the patches of the epoch consumed so far, which is what a
  // run resumed on another world size or batch size continues from (resume_position()).
  int world_size = 1;
  int64_t patches_in_epoch = 0;
  int64_t global_step = 0;  // optimiser steps since the start of the run
  double best_val_loss = INFINITY;
  double elapsed_s = 0;  // training wall time of all sessions up to the save
};

// Writes `path` (and, when `adam` is given, its optimiser companion) with `p` and the config in
// the metadata. Throws cuseg::Error naming the file when it cannot be written.
void save_training_checkpoint(const std::string& path, const RunConfig& cfg, Device dev,
                              UNet3D& net, const Adam* adam, const TrainProgress& p);

// Loads weights and optimiser state from `path` into net / adam and returns the progress
// stored with them. The optimiser takes the current config's learning rate (a resumed run may
// change it). Throws naming the file when the metadata is missing or train.seed differs.
// `warning` (optional) receives why the continuation will not repeat the interrupted run's
// bits (today: another CPU thread count), else stays as it is.
TrainProgress restore_training_checkpoint(const std::string& path, const RunConfig& cfg,
                                          UNet3D& net, Adam& adam, std::string* warning = nullptr);

// Re-expresses a restored position for `world_size` ranks of cfg.batch_size: step_in_epoch =
// patches_in_epoch / (world_size x batch). Returns the number of patches that the resumed run
// will draw a second time because the position is not a whole number of the new global
// batches (0 when the world and batch sizes are unchanged).
int64_t resume_position(TrainProgress& p, const RunConfig& cfg, int world_size);

}  // namespace cuseg
