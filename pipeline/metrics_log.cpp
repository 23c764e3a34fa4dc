// metrics.jsonl (see metrics_log.h).
#include "cuseg/pipeline/metrics_log.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cuseg/core/check.h"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace cuseg {

namespace {

json num_or_null(double v) {
  return std::isfinite(v) ? json(v) : json(nullptr);
}

// Keeps metrics.jsonl consistent with a checkpoint (see the constructor) and returns the
// per-epoch history for the curves.
std::vector<CurvePoint> trim_metrics(const std::string& path, int64_t step, int epochs) {
  std::vector<CurvePoint> pts;
  std::ifstream f(path);
  if (!f) return pts;
  std::string line, kept;
  while (std::getline(f, line)) {
    if (line.empty()) continue;
    // A line that is not a record of ours (a torn last line from a hard kill) is dropped.
    try {
      const json j = json::parse(line);
      if (!j.is_object() || j.value("step", int64_t(0)) > step) continue;
      const bool epoch_record = j.value("type", "") == "epoch";
      if (epoch_record && j.value("epoch", 0) > epochs) continue;
      if (epoch_record) {
        CurvePoint p;
        p.epoch = j.value("epoch", 0);
        auto num = [&](const char* k) {
          return j.contains(k) && j[k].is_number() ? j[k].get<double>() : NAN;
        };
        p.train_loss = num("train_loss");
        p.val_loss = num("val_loss");
        const bool dice = j.contains("dice") && j["dice"].is_object();
        p.dice_liver = dice && j["dice"].value("liver", json()).is_number()
                           ? j["dice"]["liver"].get<double>()
                           : NAN;
        p.dice_tumour = dice && j["dice"].value("tumour", json()).is_number()
                            ? j["dice"]["tumour"].get<double>()
                            : NAN;
        pts.push_back(p);
      }
      kept += line + "\n";
    } catch (const json::exception&) {
      continue;
    }
  }
  f.close();
  write_text_atomic(path, kept);
  return pts;
}

}  // namespace

MetricsLog::MetricsLog(const std::string& path, bool resume, int64_t checkpoint_step,
                       int checkpoint_epochs, bool write)
    : path_(path), write_(write) {
  if (!write) return;
  if (resume) {
    history_ = trim_metrics(path, checkpoint_step, checkpoint_epochs);
  } else {
    std::error_code ec;
    fs::remove(path, ec);
  }
}

MetricsLog::~MetricsLog() {
  if (f_) std::fclose(f_);
}

void MetricsLog::write_line(const std::string& line) {
  if (!write_) return;
  if (!f_) {
    f_ = std::fopen(path_.c_str(), "a");
    if (!f_) CUSEG_THROW(path_ << ": cannot open for appending (" << std::strerror(errno) << ")");
  }
  if (std::fprintf(f_, "%s\n", line.c_str()) < 0 || std::fflush(f_) != 0)
    CUSEG_THROW(path_ << ": cannot append a record (" << std::strerror(errno) << ")");
}

void MetricsLog::sync() {
  if (f_ && ::fsync(::fileno(f_)) != 0)
    CUSEG_THROW(path_ << ": fsync failed (" << std::strerror(errno) << ")");
}

void MetricsLog::append(const TrainRecord& r) {
  const json j = {{"type", "train"},
                  {"step", r.step},
                  {"epoch", r.epoch},
                  {"loss", r.loss},
                  {"last_loss", r.last_loss},
                  {"lr", r.lr},
                  {"patches_per_s", r.patches_per_s},
                  {"data_wait", r.data_wait},
                  {"seconds", r.seconds},
                  {"peak_mib", r.peak_mib}};
  write_line(j.dump());
}

void MetricsLog::append(const EpochRecord& r) {
  const bool dice = std::isfinite(r.dice_liver);
  const json j = {
      {"type", "epoch"},
      {"step", r.step},
      {"epoch", r.epoch},
      {"train_loss", num_or_null(r.train_loss)},
      {"val_loss", r.val_loss},
      {"dice", dice ? json{{"liver", r.dice_liver}, {"tumour", r.dice_tumour}} : json(nullptr)},
      {"best", r.best},
      {"lr", r.lr},
      {"seconds", r.seconds},
      {"peak_mib", r.peak_mib},
      {"data_wait_s", r.data_wait_s},
      {"skipped_batches", r.skipped_batches}};
  write_line(j.dump());
  CurvePoint cp;
  cp.epoch = r.epoch;
  cp.train_loss = r.train_loss;
  cp.val_loss = r.val_loss;
  cp.dice_liver = r.dice_liver;
  cp.dice_tumour = r.dice_tumour;
  history_.push_back(cp);
}

}  // namespace cuseg
