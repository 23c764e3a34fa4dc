// Crash-safe writes (core/atomic_file.h) and the checkpoint pair protocol (engine/checkpoint.h):
// what a full disk, a file-size limit, a read-only folder or a kill between two writes leaves
// behind. The file-size limit (RLIMIT_FSIZE, in a forked child) works for any user; the full
// disk and the read-only folder use a tiny tmpfs in a private mount namespace, which needs root
// (CAP_SYS_ADMIN): skipped where that is refused. chmod cannot stand in for a read-only folder:
// root writes through it.
#include <gtest/gtest.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>

#include "cuseg/core/atomic_file.h"
#include "cuseg/core/check.h"
#include "cuseg/engine/checkpoint.h"
#include "cuseg/engine/ops.h"
#include "cuseg/model/unet3d.h"
#include "test_util.h"

namespace fs = std::filesystem;
using namespace cuseg;

namespace {

std::string read_all(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Names in `dir` that start with '.' and contain ".tmp." (AtomicFile's temporaries).
int temporaries(const fs::path& dir) {
  int n = 0;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string s = e.path().filename().string();
    if (s[0] == '.' && s.find(".tmp.") != std::string::npos) ++n;
  }
  return n;
}

// Runs `body` in a forked child and returns its exit status. GoogleTest expectations do not
// cross a fork: the child prints what went wrong and exits non-zero (77: not possible here).
int in_child(const std::function<int()>& body) {
  std::fflush(stdout);
  std::fflush(stderr);
  const pid_t pid = fork();
  if (pid == 0) {
    int rc = 90;
    try {
      rc = body();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "child: unexpected exception: %s\n", e.what());
    }
    std::fflush(stderr);
    _exit(rc);
  }
  int st = 0;
  waitpid(pid, &st, 0);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

// In the child: `write` must throw an Error whose message holds `reason`, leave `path` with
// `before` and leave no temporary file. Returns 0 when all of that holds.
int expect_failed_write(const fs::path& path, const std::string& before, const std::string& reason,
                        const std::function<void()>& write) {
  try {
    write();
    std::fprintf(stderr, "child: the write to %s did not fail\n", path.c_str());
    return 1;
  } catch (const Error& e) {
    const std::string m = e.what();
    std::fprintf(stderr, "child: got the expected error: %s\n", m.c_str());
    if (m.find(path.string()) == std::string::npos || m.find(reason) == std::string::npos ||
        m.find("left as it was") == std::string::npos) {
      std::fprintf(stderr, "child: the message lacks the file, '%s' or 'left as it was'\n",
                   reason.c_str());
      return 2;
    }
  }
  if (read_all(path) != before) {
    std::fprintf(stderr, "child: %s changed\n", path.c_str());
    return 3;
  }
  if (temporaries(path.parent_path()) != 0) {
    std::fprintf(stderr, "child: a temporary file was left in %s\n", path.parent_path().c_str());
    return 4;
  }
  return 0;
}

TEST(AtomicFile, WritesTheWholeFileAndLeavesNoTemporary) {
  const fs::path dir = scratch_dir("AtomicFile", "whole");
  const fs::path p = dir / "a.txt";
  write_file_atomic(p.string(), "first");
  write_file_atomic(p.string(), std::string(100000, 'x'));
  EXPECT_EQ(read_all(p), std::string(100000, 'x'));
  EXPECT_EQ(temporaries(dir), 0);
  // A folder that does not exist: an error naming the file, nothing created.
  try {
    write_file_atomic((dir / "no" / "b.txt").string(), "x");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("b.txt"), std::string::npos) << e.what();
  }
}

TEST(AtomicFile, FileSizeLimitKeepsThePreviousFile) {
  const fs::path dir = scratch_dir("AtomicFile", "fsize");
  const fs::path p = dir / "model.safetensors";
  const std::string before(1000, 'A');
  write_file_atomic(p.string(), before);
  const int rc = in_child([&] {
    // Without SIG_IGN the kernel ends the process with SIGXFSZ at the limit (engine_train
    // ignores it the same way); with it the write fails with EFBIG.
    std::signal(SIGXFSZ, SIG_IGN);
    rlimit lim{};
    getrlimit(RLIMIT_FSIZE, &lim);
    lim.rlim_cur = 4096;  // bytes per file
    if (setrlimit(RLIMIT_FSIZE, &lim) != 0) return 77;
    return expect_failed_write(p, before, "File too large",
                               [&] { write_file_atomic(p.string(), std::string(10000, 'B')); });
  });
  if (rc == 77) GTEST_SKIP() << "setrlimit(RLIMIT_FSIZE) refused";
  EXPECT_EQ(rc, 0);
  EXPECT_EQ(read_all(p), before);
}

TEST(AtomicFile, FullDiskAndReadOnlyFolderKeepThePreviousFile) {
  const fs::path dir = scratch_dir("AtomicFile", "tmpfs");
  const int rc = in_child([&] {
    // A private mount namespace: the tmpfs is gone when the child ends, whatever happens.
    if (unshare(CLONE_NEWNS) != 0) return 77;
    if (mount("none", "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) return 77;
    if (mount("tmpfs", dir.c_str(), "tmpfs", 0, "size=64k") != 0) return 77;
    const fs::path p = dir / "last.safetensors";
    const std::string before(1000, 'A');
    write_file_atomic(p.string(), before);
    // 64 KiB of disk: 200 KB cannot fit.
    int r = expect_failed_write(p, before, "No space left on device",
                                [&] { write_file_atomic(p.string(), std::string(200000, 'B')); });
    if (r) return r;
    if (mount(nullptr, dir.c_str(), nullptr, MS_REMOUNT | MS_RDONLY, nullptr) != 0) return 5;
    r = expect_failed_write(p, before, "Read-only file system",
                            [&] { write_file_atomic(p.string(), "small"); });
    return r;
  });
  if (rc == 77) GTEST_SKIP() << "cannot mount a tmpfs in a private mount namespace (needs root)";
  EXPECT_EQ(rc, 0);
}

TEST(AtomicFile, StaleTemporariesOfKilledWritersAreRemoved) {
  const fs::path dir = scratch_dir("AtomicFile", "stale");
  const std::string own = ".c.tmp." + std::to_string(getpid());
  for (const char* n : {".last.safetensors.tmp.123", ".a.tmp.x1", "b.tmp.5"})
    std::ofstream(dir / n) << "x";
  std::ofstream(dir / own) << "x";
  EXPECT_EQ(remove_stale_temporaries(dir.string()), 1);
  EXPECT_FALSE(fs::exists(dir / ".last.safetensors.tmp.123"));
  // Not ours (no pid after ".tmp.", no leading dot), and this process's own: kept.
  EXPECT_TRUE(fs::exists(dir / ".a.tmp.x1"));
  EXPECT_TRUE(fs::exists(dir / "b.tmp.5"));
  EXPECT_TRUE(fs::exists(dir / own));
}

// ---------------------------------------------------------------- checkpoint pair

// One Adam step on a fixed random batch: weights, moments and step all change.
void train_one_step(UNet3D& net, Adam& opt, uint32_t seed) {
  Context ctx(Device::CPU);
  std::mt19937 rng(seed);
  Tensor x = Tensor::empty({1, 1, 8, 8, 8});
  for (int64_t i = 0; i < x.numel(); ++i) x.f32()[i] = float(rng() % 100) / 50.f - 1.f;
  Tensor lab = Tensor::empty({1, 8, 8, 8}, DType::U8);
  for (int64_t i = 0; i < lab.numel(); ++i) lab.data<uint8_t>()[i] = uint8_t(rng() % 3);
  const Tensor& lg = net.forward(ctx, x);
  Tensor g = Tensor::empty(lg.shape());
  weighted_cross_entropy(ctx, lg, lab, {1.f, 1.f, 3.f}, g);
  net.zero_grad();
  net.backward(ctx, g);
  opt.step(ctx);
}

bool same_bits(const Tensor& a, const Tensor& b) {
  const Tensor x = a.to(Device::CPU), y = b.to(Device::CPU);
  return x.shape() == y.shape() && std::memcmp(x.raw(), y.raw(), x.nbytes()) == 0;
}

bool same_state(Adam& a, Adam& b) {
  if (a.steps() != b.steps()) return false;
  for (size_t i = 0; i < a.exp_avg().size(); ++i)
    if (!same_bits(a.exp_avg()[i], b.exp_avg()[i]) ||
        !same_bits(a.exp_avg_sq()[i], b.exp_avg_sq()[i]))
      return false;
  return true;
}

// The files of two consecutive saves of one training run: step 1 in dir/one, step 2 in dir/two,
// and the optimisers that were saved, to compare with.
struct TwoSaves {
  fs::path one, two;
  const UNetConfig cfg{1, 3, {4, 8}};
  UNet3D net{cfg, Device::CPU, 11};
  Adam adam{net.parameters(), AdamConfig{1e-3f}};
  UNet3D net1{cfg, Device::CPU, 0};  // copies of the state at step 1
  Adam adam1{net1.parameters(), AdamConfig{1e-3f}};
  explicit TwoSaves(const std::string& name) {
    const fs::path dir = scratch_dir("CheckpointPair", name);
    one = dir / "one", two = dir / "two";
    fs::create_directories(one);
    fs::create_directories(two);
    train_one_step(net, adam, 1);
    save_checkpoint((one / "last.safetensors").string(), net.parameters(), {}, &adam);
    load_checkpoint((one / "last.safetensors").string(), net1.parameters(), &adam1);
    train_one_step(net, adam, 2);
    save_checkpoint((two / "last.safetensors").string(), net.parameters(), {}, &adam);
  }
};

TEST(CheckpointPair, SaveLeavesNoPendingState) {
  TwoSaves s("clean");
  EXPECT_TRUE(fs::exists(s.two / "last.optim.safetensors"));
  EXPECT_FALSE(fs::exists(s.two / "last.optim.safetensors.next"));
  EXPECT_EQ(temporaries(s.two), 0);
}

TEST(CheckpointPair, KilledAfterTheWeightsTakesThePendingState) {
  TwoSaves s("after_weights");
  // The second save killed between committing the weights and renaming the state: new
  // weights, the old state under the companion name, the new one pending.
  fs::copy_file(s.two / "last.safetensors", s.one / "last.safetensors",
                fs::copy_options::overwrite_existing);
  fs::copy_file(s.two / "last.optim.safetensors", s.one / "last.optim.safetensors.next");
  UNet3D net(s.cfg, Device::CPU, 0);
  Adam adam(net.parameters(), AdamConfig{1e-3f});
  load_checkpoint((s.one / "last.safetensors").string(), net.parameters(), &adam);
  EXPECT_TRUE(same_state(adam, s.adam));  // the step-2 state
  // The load finished the interrupted save.
  EXPECT_FALSE(fs::exists(s.one / "last.optim.safetensors.next"));
  EXPECT_EQ(read_all(s.one / "last.optim.safetensors"), read_all(s.two / "last.optim.safetensors"));
}

TEST(CheckpointPair, KilledBeforeTheWeightsKeepsTheOldPair) {
  TwoSaves s("before_weights");
  // The second save killed after writing the pending state, before the weights.
  fs::copy_file(s.two / "last.optim.safetensors", s.one / "last.optim.safetensors.next");
  UNet3D net(s.cfg, Device::CPU, 0);
  Adam adam(net.parameters(), AdamConfig{1e-3f});
  load_checkpoint((s.one / "last.safetensors").string(), net.parameters(), &adam);
  EXPECT_TRUE(same_state(adam, s.adam1));  // the step-1 state that belongs to the weights
  for (size_t i = 0; i < net.parameters().size(); ++i)
    EXPECT_TRUE(same_bits(net.parameters()[i]->value, s.net1.parameters()[i]->value));
}

TEST(CheckpointPair, MismatchedPairIsRefused) {
  TwoSaves s("mismatch");
  // Weights of step 1 next to a state of step 2 and nothing pending: no state belongs to them.
  fs::copy_file(s.two / "last.optim.safetensors", s.one / "last.optim.safetensors",
                fs::copy_options::overwrite_existing);
  UNet3D net(s.cfg, Device::CPU, 0);
  Adam adam(net.parameters(), AdamConfig{1e-3f});
  try {
    load_checkpoint((s.one / "last.safetensors").string(), net.parameters(), &adam);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("optimiser step 1"), std::string::npos) << m;
    EXPECT_NE(m.find("(step 2)"), std::string::npos) << m;
  }
}

}  // namespace
