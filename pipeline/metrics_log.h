// The metrics log RUN_DIR/metrics.jsonl: one JSON object per line, "type": "train" every
// train.log_every steps (and at epoch ends and interruptions), "type": "epoch" after every
// epoch's validation. It is also where the per-epoch history for curves.svg comes from.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "cuseg/pipeline/report.h"

namespace cuseg {

struct TrainRecord {
  int64_t step = 0;        // global optimiser step
  int epoch = 0;           // 1-based
  double loss = NAN;       // mean over the steps since the previous record
  double last_loss = NAN;  // this step's loss
  float lr = 0;
  double patches_per_s = 0;
  double data_wait = 0;  // fraction of the window spent waiting for data
  double seconds = 0;    // training time of all sessions so far
  double peak_mib = 0;
};

struct EpochRecord {
  int64_t step = 0;
  int epoch = 0;            // 1-based
  double train_loss = NAN;  // null when the epoch had no step (resumed at its end)
  double val_loss = NAN;
  double dice_liver = NAN, dice_tumour = NAN;  // "dice": null when not measured this epoch
  bool best = false;
  float lr = 0;
  double seconds = 0;
  double peak_mib = 0;
  double data_wait_s = 0;
  int64_t skipped_batches = 0;  // batches skipped for a non-finite loss (train.nonfinite_loss)
};

class MetricsLog {
 public:
  // New run: starts an empty file. Resume from a checkpoint at global step `checkpoint_step`
  // with `checkpoint_epochs` epochs completed: keeps the train records up to that step and the
  // epoch records up to that epoch (the others belong to work the resumed run repeats, e.g. an
  // epoch whose record was written but whose checkpoint was not; a torn last line from a hard
  // kill is dropped) and reads the epoch history back. write = false (ranks other than 0 of a
  // distributed run): the file is neither read nor written, records are dropped.
  MetricsLog(const std::string& path, bool resume, int64_t checkpoint_step, int checkpoint_epochs,
             bool write = true);
  ~MetricsLog();
  MetricsLog(const MetricsLog&) = delete;
  MetricsLog& operator=(const MetricsLog&) = delete;

  void append(const TrainRecord& r);
  void append(const EpochRecord& r);  // also extends history()
  const std::vector<CurvePoint>& history() const { return history_; }
  // fsync: the records written so far are on the disk (before a checkpoint that follows them).
  void sync();

 private:
  void write_line(const std::string& line);
  std::string path_;
  bool write_ = true;
  std::FILE* f_ = nullptr;  // opened for appending on the first record
  std::vector<CurvePoint> history_;
};

}  // namespace cuseg
