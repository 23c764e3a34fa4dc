// Step 2 of a training run: the data. The dataset (the synthetic phantom is generated on first
// use), its integrity check, the train/validation split (kept in RUN_DIR/splits.json so a
// resumed run uses the same one), the preprocessed training volumes (deterministic steps only;
// cached per case when data.cache) and the fixed validation set.
//
// Random augmentation and patch sampling are not here: they belong to the batch source
// (batch_source.h), which draws training batches from these volumes.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "cuseg/data/dataset.h"
#include "cuseg/data/samplers.h"
#include "cuseg/pipeline/config.h"
#include "cuseg/pipeline/inference.h"
#include "cuseg/pipeline/train_log.h"

namespace cuseg {

class TrainingData {
 public:
  // Generates the phantom when configured and missing, discovers and checks the dataset, and
  // loads or creates the split at `splits_path`. Logs what it did. Throws cuseg::Error naming
  // the dataset folder or file on any problem.
  TrainingData(const RunConfig& cfg, const std::string& splits_path, TrainLog& log);
  TrainingData(const TrainingData&) = delete;
  TrainingData& operator=(const TrainingData&) = delete;

  const data::Split& split() const { return split_; }
  // Training case `s` (index into split().train), preprocessed. Thread-safe; with data.cache
  // each case is read and preprocessed once. (The batch source reads cases with load_case()
  // and caches them in its own storage format.)
  std::shared_ptr<const Preprocessed> train_case(int s) const;
  // Any case by id, read and preprocessed now (not cached).
  Preprocessed load_case(const std::string& id) const;

 private:
  const RunConfig& cfg_;
  std::map<std::string, data::CaseFiles> by_id_;
  data::Split split_;
  struct Slot {
    std::once_flag once;
    std::shared_ptr<const Preprocessed> pre;
  };
  std::vector<std::unique_ptr<Slot>> cache_;  // one per training case
};

// The fixed validation set: the whole preprocessed validation volumes (for Dice and previews)
// and val_patches_per_volume label-sampled patches per volume, drawn once from a stream seeded
// by (train.seed, volume), grouped into batches of train.batch_size (for the validation loss).
struct ValidationSet {
  std::vector<std::string> ids;       // split().val
  std::vector<Preprocessed> volumes;  // same order
  std::vector<std::vector<data::Patch>> batches;
};
ValidationSet build_validation_set(const RunConfig& cfg, const TrainingData& data, TrainLog& log);

}  // namespace cuseg
