// The training run behind engine_train: dataset (phantom generation, integrity check, split),
// preprocessing + augmentation + label-sampled patch queue, the Adam loop, validation, and the
// run folder (config.yaml, train.log, metrics.jsonl, curves.svg, previews/, last/best
// checkpoints).
//
// Determinism and resume: the only randomness is the network init (train.seed) and the patch
// stream, which is a fresh PatchQueue per epoch seeded from (train.seed, epoch); a queue's
// stream does not depend on thread timing. A checkpoint therefore records the RNG state as
// (seed, epoch, patches consumed in that epoch) and --resume rebuilds the queue and skips the
// consumed patches, so a resumed run continues the interrupted run's loss curve exactly (on
// the same device and thread count).
#pragma once
#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

namespace cuseg {

struct TrainOptions {
  std::string config_path;  // required unless resuming (then RUN_DIR/config.yaml is used)
  std::vector<std::string> overrides;  // "key=value" (--set, and -d/--device/--seed as keys)
  std::string run_dir = "runs/train";
  bool resume = false;
  bool overwrite = false;  // start over in a run folder that already holds a run
  // Testing aid: act as if Ctrl-C arrived after this many optimiser steps (global count).
  int64_t stop_after_steps = -1;
  const std::atomic<bool>* stop = nullptr;  // set by the SIGINT handler
};

// Exit codes: 0 finished, 130 interrupted (checkpoint saved). Throws cuseg::Error on bad input.
int run_training(const TrainOptions& opt);

}  // namespace cuseg
