// Training log and formatting helpers (see train_log.h).
#include "cuseg/pipeline/train_log.h"

#include <cerrno>
#include <cmath>
#include <cstdarg>
#include <cstring>

#include "cuseg/core/check.h"

namespace cuseg {

TrainLog::TrainLog(const std::string& path, bool write) : path_(path) {
  if (!write) return;
  f_ = std::fopen(path.c_str(), "a");
  if (!f_) CUSEG_THROW(path << ": cannot open the log file (" << std::strerror(errno) << ")");
}

TrainLog::~TrainLog() {
  if (f_) std::fclose(f_);
}

void TrainLog::line(const std::string& s) {
  if (!f_) return;  // a silent log (see the constructor)
  std::printf("%s\n", s.c_str());
  std::fflush(stdout);
  if (std::fprintf(f_, "%s\n", s.c_str()) < 0 || std::fflush(f_) != 0)
    CUSEG_THROW(path_ << ": cannot append to the log (" << std::strerror(errno) << ")");
}

std::string fmt(const char* f, ...) {
  char b[1024];
  va_list ap;
  va_start(ap, f);
  std::vsnprintf(b, sizeof b, f, ap);
  va_end(ap);
  return b;
}

std::string hms(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  char b[32];
  const int t = int(std::lround(s));
  if (t >= 3600)
    std::snprintf(b, sizeof b, "%dh%02dm", t / 3600, (t / 60) % 60);
  else
    std::snprintf(b, sizeof b, "%dm%02ds", t / 60, t % 60);
  return b;
}

}  // namespace cuseg
