// The training run behind engine_train. run_training() reads top to bottom as the recipe; each
// step is a named unit in pipeline/:
//   1. run folder: new, resumed or started over; config resolved and saved   run_folder.h
//   2. data: dataset, integrity check, split, preprocessing, validation set  training_data.h
//   3. batch source: the training batches (fused patch pipeline, device or  batch_source.h,
//      host; data.pipeline)                                                  training_patches.h
//   4. model + optimiser, restored from last.safetensors on --resume         checkpointing.h
//   5. per epoch: train one epoch (forward, loss, backward, step), validate  trainer.cpp,
//                                                                             validation.h
//   6. per epoch: preview, checkpoints (best, last), metrics + curves        previews.h,
//                                                                             checkpointing.h,
//                                                                             metrics_log.h
// Everything written to the run folder after step 1 happens in record_epoch() and
// save_interrupted() (trainer.cpp): with several ranks, rank 0 alone calls them.
//
// Determinism and resume: see checkpointing.h.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "cuseg/data/image.h"
#include "cuseg/engine/context.h"
#include "cuseg/engine/param.h"
#include "cuseg/pipeline/config.h"
#include "cuseg/pipeline/inference.h"

namespace cuseg {

// What TrainHooks::on_best_checkpoint is given (references valid during the call only).
struct BestCheckpoint {
  int epoch;                // 1-based epoch whose weights best.safetensors now holds
  const std::string& path;  // best.safetensors
  const std::string& run_dir;
  const RunConfig& cfg;
  const Preprocessed& volume;  // the first validation case, on the model grid
  const std::string& case_id;
  const data::LabelMap& prediction;  // its prediction by those weights
};

// Extension points for code that drives training. Every hook is optional.
struct TrainHooks {
  // Runs after backward and before the optimiser step of every training step, with the step's
  // gradients in params[i]->grad (on the training device). Distributed training averages the
  // gradients across ranks here (all-reduce, then divide by the number of ranks).
  std::function<void(Context& ctx, const std::vector<Param*>& params)> after_backward;
  // Runs right after best.safetensors was written (the validation loss improved): pictures of
  // the best model go here (engine_train installs write_best_preview_gif, previews.h).
  std::function<void(const BestCheckpoint& best)> on_best_checkpoint;
};

struct TrainOptions {
  std::string config_path;  // required unless resuming (then RUN_DIR/config.yaml is used)
  std::vector<std::string> overrides;  // "key=value" (--set, and -d/--device/--seed as keys)
  std::string run_dir = "runs/train";
  bool resume = false;
  bool overwrite = false;  // start over in a run folder that already holds a run
  // Testing aid: act as if Ctrl-C arrived after this many optimiser steps (global count).
  int64_t stop_after_steps = -1;
  const std::atomic<bool>* stop = nullptr;  // set by the SIGINT handler
  TrainHooks hooks;
  // "auto": data-parallel over the ranks of an mpirun / srun / torchrun-style launch (one
  // process without one); "none": one process whatever the environment (pipeline/distributed.h).
  std::string dist = "auto";
};

// Exit codes: 0 finished, 130 interrupted (checkpoint saved). Throws cuseg::Error on bad input.
int run_training(const TrainOptions& opt);

}  // namespace cuseg
