// Helpers shared by the test files (tests/ is on every test's include path).
#pragma once
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <random>
#include <string>

#include "cuseg/core/check.h"
#include "cuseg/engine/tensor.h"  // cuda_available

// Builds configured with CUSEG_WITH_ITK=OFF (the GPU check kit) have no image file I/O: the
// tests that read or write files are skipped there (data/image_io_noitk.cpp says why).
#define CUSEG_REQUIRE_FILE_IO()                                                              \
  do {                                                                                       \
    if (!CUSEG_HAVE_ITK) GTEST_SKIP() << "built with CUSEG_WITH_ITK=OFF: no image file I/O"; \
  } while (0)

// A fresh, empty scratch folder <build>/test_tmp/<suite>/<name>.
inline std::filesystem::path scratch_dir(const std::string& suite, const std::string& name) {
  namespace fs = std::filesystem;
  fs::path p = fs::path(CUSEG_BINARY_DIR) / "test_tmp" / suite / name;
  fs::remove_all(p);
  fs::create_directories(p);
  return p;
}

// The message of the cuseg::Error that f throws; "" when it throws none.
inline std::string error_message(const std::function<void()>& f) {
  try {
    f();
  } catch (const cuseg::Error& e) {
    return e.what();
  }
  return "";
}

// A CPU float32 tensor of uniform values in [lo, hi) from `rng` (std distribution: the values
// are those of this standard library; tests only).
inline cuseg::Tensor uniform_tensor(const cuseg::Shape& s, std::mt19937& rng, float lo = -1.f,
                                    float hi = 1.f) {
  cuseg::Tensor t = cuseg::Tensor::empty(s);
  std::uniform_real_distribution<float> u(lo, hi);
  for (int64_t i = 0; i < t.numel(); ++i) t.f32()[i] = u(rng);
  return t;
}

// CUDA tests: skipped (shown as SKIPPED, never passed) when no device answers.
#define CUSEG_REQUIRE_CUDA()                                          \
  do {                                                                \
    if (!::cuseg::cuda_available()) GTEST_SKIP() << "no CUDA device"; \
  } while (0)

// Runs a shell command (tests only: the apps as a user runs them) and captures stdout + stderr.
// rc: the exit status, or 128 + the signal that ended the shell.
struct CommandResult {
  int rc = -1;
  std::string out;
  double seconds = 0;
};
inline CommandResult run_command(const std::string& cmd) {
  CommandResult r;
  const auto t0 = std::chrono::steady_clock::now();
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  const int st = pclose(p);
  r.rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}
