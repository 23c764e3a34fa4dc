// metrics.jsonl (see metrics_log.h).
#include "cuseg/pipeline/metrics_log.h"

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

// Keeps metrics.jsonl consistent with a checkpoint: drops records after `step` and returns the
// per-epoch history for the curves.
std::vector<CurvePoint> trim_metrics(const std::string& path, int64_t step) {
  std::vector<CurvePoint> pts;
  std::ifstream f(path);
  if (!f) return pts;
  std::string line, kept;
  while (std::getline(f, line)) {
    if (line.empty()) continue;
    json j;
    try {
      j = json::parse(line);
    } catch (const json::exception&) {
      continue;  // a torn last line from a hard kill
    }
    if (j.value("step", int64_t(0)) > step) continue;
    kept += line + "\n";
    if (j.value("type", "") == "epoch") {
      CurvePoint p;
      p.epoch = j.value("epoch", 0);
      auto num = [&](const json& v) { return v.is_number() ? v.get<double>() : NAN; };
      p.train_loss = num(j["train_loss"]);
      p.val_loss = num(j["val_loss"]);
      p.dice_liver = j["dice"].is_object() ? num(j["dice"]["liver"]) : NAN;
      p.dice_tumour = j["dice"].is_object() ? num(j["dice"]["tumour"]) : NAN;
      pts.push_back(p);
    }
  }
  f.close();
  write_text_atomic(path, kept);
  return pts;
}

}  // namespace

MetricsLog::MetricsLog(const std::string& path, bool resume, int64_t checkpoint_step, bool write)
    : path_(path), write_(write) {
  if (!write) return;
  if (resume) {
    history_ = trim_metrics(path, checkpoint_step);
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
      {"data_wait_s", r.data_wait_s}};
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
