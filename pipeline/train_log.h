// The training log: every line printed to stdout also goes to RUN_DIR/train.log (appended, so
// the log of an interrupted session stays above the resumed one), plus the small formatting
// helpers the training steps share.
#pragma once
#include <cstdio>
#include <string>

namespace cuseg {

class TrainLog {
 public:
  // Opens `path` for appending; throws cuseg::Error naming it when that fails. With
  // write = false (ranks other than 0 of a distributed run) the log neither prints nor writes.
  explicit TrainLog(const std::string& path, bool write = true);
  ~TrainLog();
  TrainLog(const TrainLog&) = delete;
  TrainLog& operator=(const TrainLog&) = delete;

  // Prints `s` and appends it to the file. Throws naming the file when the append fails
  // (full disk, file-size limit): a run must not go on without its log.
  void line(const std::string& s);
  // Same, prefixed "warning: ".
  void warn(const std::string& s) { line("warning: " + s); }

 private:
  std::string path_;
  std::FILE* f_ = nullptr;
};

// printf into a std::string (messages up to 1023 characters).
std::string fmt(const char* f, ...) __attribute__((format(printf, 1, 2)));
// "12m05s" / "1h02m"; "?" for a negative or non-finite duration.
std::string hms(double seconds);

}  // namespace cuseg
