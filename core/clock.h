// Wall-clock durations for logs and reports.
#pragma once
#include <chrono>

namespace cuseg {

// Seconds on the steady (monotonic) clock from an arbitrary origin: only differences of two
// now_s() values mean anything.
inline double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace cuseg
