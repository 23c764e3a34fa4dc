// Step 1 of a training run: the run folder. Every file a run reads and writes has its name
// here; open_run_folder() decides whether the run is new, resumed or started over, resolves
// the config and saves it as RUN_DIR/config.yaml.
//
// RUN_DIR holds: config.yaml (the resolved config), train.log (appended by every session),
// metrics.jsonl (one JSON record per logged step and per epoch), curves.svg, splits.json,
// previews/ (PNG per epoch), last.safetensors + last.optim.safetensors (weights and optimiser
// state at the last epoch end or interruption), best.safetensors (lowest validation loss),
// best_<case>.gif (engine_train's best-checkpoint animation, previews.h).
#pragma once
#include <string>
#include <vector>

#include "cuseg/pipeline/config.h"

namespace cuseg {

struct RunFolder {
  std::string dir;
  std::string file(const std::string& name) const;  // dir/name
  std::string config_yaml() const { return file("config.yaml"); }
  std::string train_log() const { return file("train.log"); }
  std::string metrics() const { return file("metrics.jsonl"); }
  std::string curves() const { return file("curves.svg"); }
  std::string splits() const { return file("splits.json"); }
  std::string previews() const { return file("previews"); }
  std::string last() const { return file("last.safetensors"); }
  std::string best() const { return file("best.safetensors"); }
};

struct OpenedRun {
  RunFolder folder;
  RunConfig cfg;
  bool resume = false;                // continue from folder.last()
  std::vector<std::string> warnings;  // for the log, once it is open
};

// New run (resume = false): `config_path` + overrides; refuses a folder that already holds a
// run unless `overwrite`, which deletes the previous run's outputs.
// Resume with a checkpoint (last.safetensors): RUN_DIR/config.yaml + overrides (a resumed run
// keeps its config; --set may change e.g. train.epochs or train.lr; a -c is not used).
// Resume without a checkpoint (as nnU-Net's --c): a new run with a warning, from -c when given,
// else from RUN_DIR/config.yaml (a run killed before its first checkpoint); the earlier
// session's outputs except train.log are deleted. With neither (an empty or missing folder and
// no -c) it is an error that asks for -c.
// Creates the folder, removes temporary files a killed session left (core/atomic_file.h) and
// writes config.yaml. Throws cuseg::Error naming the folder or file.
// writer = false (ranks other than 0 of a distributed run): the same checks, config and
// decisions, but nothing created, deleted or written (and no warnings).
OpenedRun open_run_folder(const std::string& run_dir, const std::string& config_path,
                          const std::vector<std::string>& overrides, bool resume, bool overwrite,
                          bool writer = true);

}  // namespace cuseg
