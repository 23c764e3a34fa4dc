// Helpers shared by the test files (tests/ is on every test's include path).
#pragma once
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
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

// The tiny phantom training run of the e2e tests: 6 phantom cases 48x48x24 (5 train / 1
// validation), 2 patches of 16^3 per volume and batch 2 (5 steps per epoch), a 2-level net
// (filters 4, 8: 4,907 parameters); inference on 16^3 patches, overlap 4, batch 4, hann.
// Fields left at -1 / "" leave their key out (the config default applies).
struct TinyRunConfig {
  std::string phantom_dir;  // data.dir: generated there on first use
  int phantom_seed = 3;
  int epochs = 2;
  int dice_every = 1;
  int preview_every = -1;
  int threads = 2;
  std::string device;
};
// Writes the YAML to `path` (creating its folder); returns the path.
inline std::string write_tiny_run_config(const std::filesystem::path& path,
                                         const TinyRunConfig& c) {
  std::filesystem::create_directories(path.parent_path());
  std::ofstream f(path);
  f << "data:\n  dir: " << c.phantom_dir << "\n  phantom: {generate: true, cases: 6, size: [48, "
    << "48, 24], seed: " << c.phantom_seed << "}\n  val_fraction: 0.2\n"
    << R"(preprocess:
  resample_inplane: null
  crop_or_pad: null
  pad_value: minimum
  clip: [-250, 250]
sampler:
  patch: [16, 16, 16]
queue: {max_length: 8, samples_per_volume: 2, num_workers: 1}
model:
  filters: [4, 8]
train:
  batch_size: 2
  lr: 3.0e-3
  log_every: 1
)"
    << "  epochs: " << c.epochs << "\n  dice_every: " << c.dice_every
    << "\n  threads: " << c.threads << "\n";
  if (c.preview_every >= 0) f << "  preview_every: " << c.preview_every << "\n";
  if (!c.device.empty()) f << "  device: " << c.device << "\n";
  f << R"(inference:
  patch: [16, 16, 16]
  overlap: 4
  batch: 4
  mode: hann
)";
  CUSEG_REQUIRE(f.good(), path.string() << ": cannot write the test config");
  return path.string();
}
