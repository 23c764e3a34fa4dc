// Crash-safe training, end to end through engine_train (subprocesses) on a tiny phantom run:
//  - soak: SIGKILL at random moments, --resume after each; the final weights, optimiser state,
//    best checkpoint and metrics equal an uninterrupted run's bit for bit;
//  - a file-size limit (RLIMIT_FSIZE) while saving a checkpoint, and (root only: a tmpfs in a
//    private mount namespace) a full disk and a read-only run folder: a clear error, the
//    previous checkpoint intact, and a later --resume finishes the same run;
//  - a NaN/Inf loss stops training naming the step and the batch's cases (or, with
//    train.nonfinite_loss: skip, the batch is skipped without an update);
//  - --resume on a folder without a checkpoint starts a new run with a warning.
// CPU, about 40 s on 2 cores, most of it the soak (CUSEG_SOAK_KILLS kills, default 10;
// CUSEG_SOAK_SEED repeats a failing soak's kill times).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "cuseg/engine/checkpoint.h"
#include "test_util.h"

namespace fs = std::filesystem;
using json = nlohmann::json;
using namespace cuseg;

namespace {

const std::string kTrain = CUSEG_BINARY_DIR "/apps/engine_train";
// Each ctest process works in its own folder (tests of this file may run in parallel).
const fs::path kWork =
    fs::path(CUSEG_BINARY_DIR) / "e2e_work" / ("crash_pid" + std::to_string(getpid()));

std::string read_all(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

struct Result {
  int rc = -1;      // exit status; 128 + signal when killed
  std::string out;  // stdout + stderr
};

// Starts engine_train with `args`, stdout and stderr to `log`; with `fsize` > 0 under that
// file-size limit (bytes per file).
pid_t spawn(const std::vector<std::string>& args, const fs::path& log, rlim_t fsize = 0) {
  std::vector<std::string> all = {kTrain};
  all.insert(all.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : all) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::fflush(stdout);
  const pid_t pid = fork();
  if (pid == 0) {
    const int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    if (fsize > 0) {
      rlimit lim{};
      getrlimit(RLIMIT_FSIZE, &lim);
      lim.rlim_cur = fsize;
      setrlimit(RLIMIT_FSIZE, &lim);
    }
    execv(argv[0], argv.data());
    _exit(127);
  }
  return pid;
}

int wait_rc(pid_t pid) {
  int st = 0;
  waitpid(pid, &st, 0);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

Result train(const std::vector<std::string>& args, const std::string& name, rlim_t fsize = 0) {
  const fs::path log = kWork / (name + ".out");
  Result r;
  r.rc = wait_rc(spawn(args, log, fsize));
  r.out = read_all(log);
  return r;
}

// Tensor name -> bytes (metadata such as elapsed time left out).
std::map<std::string, std::string> tensors(const fs::path& file) {
  std::map<std::string, std::string> m;
  for (const auto& nt : read_safetensors(file.string())) {
    const char* b = static_cast<const char*>(nt.tensor.raw());
    m[nt.name] = std::string(b, b + nt.tensor.nbytes());
  }
  return m;
}

// The run's numbers: every metrics record without its timing fields.
std::vector<json> numbers(const fs::path& metrics) {
  std::vector<json> v;
  std::ifstream f(metrics);
  for (std::string line; std::getline(f, line);) {
    json j = json::parse(line);
    for (const char* k : {"seconds", "peak_mib", "patches_per_s", "data_wait", "data_wait_s"})
      j.erase(k);
    v.push_back(j);
  }
  return v;
}

void expect_same_run(const fs::path& a, const fs::path& b) {
  for (const char* f : {"last.safetensors", "last.optim.safetensors", "best.safetensors"})
    EXPECT_TRUE(tensors(a / f) == tensors(b / f)) << f << " differs: " << a << " vs " << b;
  EXPECT_EQ(numbers(a / "metrics.jsonl"), numbers(b / "metrics.jsonl"));
}

int temporaries(const fs::path& dir) {
  int n = 0;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    const std::string s = e.path().filename().string();
    if (s[0] == '.' && s.find(".tmp.") != std::string::npos) ++n;
  }
  return n;
}

// Waits until engine_train `pid` has logged its "model:" line (data and validation set ready,
// training about to start) to `log`; false when it exited first or 120 s passed.
bool started_training(const fs::path& log, pid_t pid) {
  for (int i = 0; i < 12000; ++i) {
    if (read_all(log).find("\nmodel: ") != std::string::npos) return true;
    siginfo_t info{};  // exited? (WNOWAIT: left for wait_rc to collect)
    if (waitid(P_PID, id_t(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid == pid)
      return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

int count(const std::string& s, const std::string& what) {
  int n = 0;
  for (size_t p = s.find(what); p != std::string::npos; p = s.find(what, p + 1)) ++n;
  return n;
}

class TrainingCrash : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    std::error_code ec;
    fs::remove_all(kWork, ec);
    fs::create_directories(kWork);
    // The e2e tiny run (test_util.h), CPU, previews off (their PNGs would dominate the size
    // of the run folder in the disk tests); the soak turns them on.
    TinyRunConfig c;
    c.phantom_dir = (kWork / "phantom").string();
    c.preview_every = 0;
    c.device = "cpu";
    config_ = write_tiny_run_config(kWork / "tiny.yaml", c);
  }
  static void TearDownTestSuite() {
    if (::testing::UnitTest::GetInstance()->Passed()) {
      std::error_code ec;
      fs::remove_all(kWork, ec);
    }
  }
  // Runs shared by the tests, made on first use (ctest runs each test in its own process):
  // "reference", the uninterrupted 2-epoch run, and "epoch1", the same run stopped after
  // epoch 1. False when the run failed (its output is printed).
  static bool made(const std::string& name) {
    static std::map<std::string, bool> done;
    const auto it = done.find(name);
    if (it != done.end()) return it->second;
    std::vector<std::string> a = {"-c", config_, "-o", (kWork / name).string()};
    if (name == "epoch1") a.insert(a.end(), {"--set", "train.epochs=1"});
    const Result r = train(a, name);
    if (r.rc != 0) std::printf("%s\n", r.out.c_str());
    return done[name] = r.rc == 0;
  }
  // A copy of the run stopped after epoch 1 (its checkpoint is the "previous" one).
  static fs::path after_epoch1(const std::string& name) {
    const fs::path d = kWork / name;
    fs::copy(kWork / "epoch1", d, fs::copy_options::recursive);
    return d;
  }
  static std::string config_;
};
std::string TrainingCrash::config_;

TEST_F(TrainingCrash, SigkillAtRandomMomentsThenResumeGivesTheSameBits) {
  // 6 epochs with previews: 6 checkpoints and 6 PNGs to be killed in the middle of.
  const std::vector<std::string> set = {"--set", "train.epochs=6", "--set",
                                        "train.preview_every=1"};
  auto args = [&](const fs::path& dir, bool resume) {
    std::vector<std::string> a = {"-c", config_, "-o", dir.string()};
    if (resume) a.push_back("--resume");  // with -c: a fresh start when no checkpoint exists
    a.insert(a.end(), set.begin(), set.end());
    return a;
  };
  using clock = std::chrono::steady_clock;
  auto seconds = [](clock::time_point a) {
    return std::chrono::duration<double>(clock::now() - a).count();
  };
  // The reference run, timed: its start-up (up to the "model:" line, after the data and the
  // validation set are ready) and its training (6 epochs).
  const auto t0 = clock::now();
  const pid_t ref_pid = spawn(args(kWork / "soak_reference", false), kWork / "soak_reference.out");
  const double startup = started_training(kWork / "soak_reference.out", ref_pid) ? seconds(t0) : 0;
  ASSERT_EQ(wait_rc(ref_pid), 0) << read_all(kWork / "soak_reference.out");
  const double epoch_s = (seconds(t0) - startup) / 6;

  const char* kills_env = std::getenv("CUSEG_SOAK_KILLS");
  const char* seed_env = std::getenv("CUSEG_SOAK_SEED");
  const int kills = kills_env ? std::atoi(kills_env) : 10;
  const uint64_t seed = seed_env ? std::stoull(seed_env) : std::random_device{}();
  std::mt19937_64 rng(seed);
  // Every fourth kill lands at a random moment of start-up (reading the config, the split, the
  // data, the checkpoint); the others at a random moment within 1.5 epochs after training
  // started: in a step, validation, a preview, the metrics or a checkpoint write. A session
  // then lives 0.75 epochs of training on average, so the run advances across the kills.
  std::uniform_real_distribution<double> in_startup(0.0, startup), in_training(0.0, 1.5 * epoch_s);
  const fs::path dir = kWork / "soak";
  std::printf(
      "soak: %d kills, seed %llu (CUSEG_SOAK_SEED); reference: start-up %.2f s, %.2f s "
      "per epoch\n",
      kills, (unsigned long long)seed, startup, epoch_s);
  int landed = 0;
  for (int k = 0; k < kills; ++k) {
    const fs::path log = kWork / ("soak_" + std::to_string(k) + ".out");
    const auto ts = clock::now();
    const pid_t pid = spawn(args(dir, true), log);
    const bool early = k % 4 == 3;
    const double extra = early ? in_startup(rng) : in_training(rng);
    if (!early) started_training(log, pid);
    std::this_thread::sleep_for(std::chrono::duration<double>(extra));
    kill(pid, SIGKILL);
    const int rc = wait_rc(pid);
    // What the session had got to (its last log line) when it was killed.
    const std::string out = read_all(log);
    const size_t nl = out.find_last_of('\n', out.size() > 1 ? out.size() - 2 : 0);
    std::printf(
        "kill %d after %.2f s: rc %d, last line: %s", k + 1, seconds(ts), rc,
        out.empty() ? "(none)\n" : out.substr(nl == std::string::npos ? 0 : nl + 1).c_str());
    ASSERT_TRUE(rc == 128 + SIGKILL || rc == 0) << out;  // 0: it finished before the kill
    landed += rc == 128 + SIGKILL;
  }
  const Result fin = train(args(dir, true), "soak_final");
  ASSERT_EQ(fin.rc, 0) << fin.out;
  expect_same_run(kWork / "soak_reference", dir);
  EXPECT_EQ(temporaries(dir), 0);
  int pngs = 0;
  for (const auto& e : fs::directory_iterator(dir / "previews"))
    pngs += e.path().extension() == ".png";
  EXPECT_EQ(pngs, 6);
  std::printf("soak: %d of %d kills hit a running session; %.1f s in all\n", landed, kills,
              seconds(t0));
}

TEST_F(TrainingCrash, FileSizeLimitStopsWithTheCheckpointIntact) {
  ASSERT_TRUE(made("epoch1"));
  ASSERT_TRUE(made("reference"));
  const fs::path dir = after_epoch1("fsize");
  const std::string last = read_all(dir / "last.safetensors");
  const std::string state = read_all(dir / "last.optim.safetensors");
  // 16 KiB per file: config, log, metrics and curves fit; the 4,907-parameter weights
  // (19.6 kB) and the optimiser state (39 kB) do not.
  const Result r =
      train({"--resume", "-o", dir.string(), "--set", "train.epochs=2"}, "fsize", 16 << 10);
  EXPECT_EQ(r.rc, 1) << r.out;
  EXPECT_NE(r.out.find("cannot save the checkpoint after epoch 2"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("File too large"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("last.safetensors (after epoch 1, global step 5), is left as it was"),
            std::string::npos)
      << r.out;
  EXPECT_EQ(read_all(dir / "last.safetensors"), last);
  EXPECT_EQ(read_all(dir / "last.optim.safetensors"), state);
  EXPECT_EQ(temporaries(dir), 0);
  // Room again: the run continues and ends as the uninterrupted one.
  const Result again = train({"--resume", "-o", dir.string(), "--set", "train.epochs=2"}, "fsize2");
  ASSERT_EQ(again.rc, 0) << again.out;
  expect_same_run(kWork / "reference", dir);
}

TEST_F(TrainingCrash, FullDiskAndReadOnlyFolderStopWithTheCheckpointIntact) {
  ASSERT_TRUE(made("epoch1"));
  const fs::path mnt = kWork / "tmpfs";
  fs::create_directories(mnt);
  const std::string last = read_all(kWork / "epoch1" / "last.safetensors");
  std::fflush(stdout);
  const pid_t pid = fork();
  if (pid == 0) {
    // A private mount namespace: the tmpfs disappears with this child, whatever happens. The
    // engine_train processes it starts inherit it. Exit 77: not possible here.
    if (unshare(CLONE_NEWNS) != 0 || mount("none", "/", nullptr, MS_REC | MS_PRIVATE, nullptr) ||
        mount("tmpfs", mnt.c_str(), "tmpfs", 0, "size=1m"))
      _exit(77);
    const fs::path dir = mnt / "run";
    fs::copy(kWork / "epoch1", dir, fs::copy_options::recursive);
    // Fill the disk up to 32 KiB: the run's small files still fit, the optimiser state
    // (39 kB) does not.
    struct statvfs v {};
    statvfs(mnt.c_str(), &v);
    const size_t fill = size_t(v.f_bavail) * v.f_frsize - (32 << 10);
    {
      std::ofstream filler(mnt / "filler", std::ios::binary);
      const std::string mib(1 << 20, 'x');
      for (size_t n = 0; n < fill; n += mib.size())
        filler.write(mib.data(), std::streamsize(std::min(mib.size(), fill - n)));
    }
    int bad = 0;
    Result full = train({"--resume", "-o", dir.string(), "--set", "train.epochs=2"}, "full");
    if (full.rc != 1 || full.out.find("No space left on device") == std::string::npos ||
        full.out.find("cannot save the checkpoint after epoch 2") == std::string::npos ||
        full.out.find("is left as it was") == std::string::npos)
      bad |= 1;
    if (read_all(dir / "last.safetensors") != last) bad |= 2;
    if (temporaries(dir) != 0) bad |= 4;
    if (mount(nullptr, mnt.c_str(), nullptr, MS_REMOUNT | MS_RDONLY, nullptr) != 0) _exit(70);
    Result ro = train({"--resume", "-o", dir.string(), "--set", "train.epochs=2"}, "readonly");
    if (ro.rc != 1 || ro.out.find("Read-only file system") == std::string::npos) bad |= 8;
    if (read_all(dir / "last.safetensors") != last) bad |= 16;
    _exit(bad);
  }
  const int rc = wait_rc(pid);
  if (rc == 77) GTEST_SKIP() << "cannot mount a tmpfs in a private mount namespace (needs root)";
  EXPECT_EQ(rc, 0) << "bits: 1 full-disk message, 2 checkpoint changed by the full disk, "
                      "4 temporary left, 8 read-only message, 16 checkpoint changed when "
                      "read-only\nfull disk:\n"
                   << read_all(kWork / "full.out") << "\nread-only:\n"
                   << read_all(kWork / "readonly.out");
}

TEST_F(TrainingCrash, NonFiniteLossStopsNamingStepAndCases) {
  ASSERT_TRUE(made("epoch1"));
  const fs::path dir = after_epoch1("nan");
  const std::string last = read_all(dir / "last.safetensors");
  // lr 1e30: the first step of epoch 2 (global 6) makes the weights ~1e30, so the next
  // forward pass overflows float32 and the loss of global step 7 is not finite.
  const Result r = train(
      {"--resume", "-o", dir.string(), "--set", "train.epochs=2", "--set", "train.lr=1e30"}, "nan");
  EXPECT_EQ(r.rc, 1) << r.out;
  const std::regex what(
      "training stopped: loss is (-?nan|-?inf) at global step 7 \\(epoch 2, step 2 of 5\\); "
      "the batch's cases: liver_[0-9]+, liver_[0-9]+\\. the last good checkpoint, \\S+ "
      "\\(after epoch 1, global step 5\\), is left as it was");
  EXPECT_TRUE(std::regex_search(r.out, what)) << r.out;
  EXPECT_EQ(read_all(dir / "last.safetensors"), last);
  EXPECT_NE(read_all(dir / "train.log").find("training stopped: loss is"), std::string::npos);
}

TEST_F(TrainingCrash, NonFiniteLossSkipsTheBatchWhenConfigured) {
  ASSERT_TRUE(made("epoch1"));
  const std::vector<std::string> diverge = {"--set", "train.epochs=2", "--set", "train.lr=1e30"};
  // The state after global step 6, the last finite one (a Ctrl-C-style stop saves it).
  const fs::path six = after_epoch1("skip_six");
  std::vector<std::string> a = {"--resume", "-o", six.string(), "--stop-after-steps", "6"};
  a.insert(a.end(), diverge.begin(), diverge.end());
  ASSERT_EQ(train(a, "skip_six").rc, 130);
  const fs::path dir = after_epoch1("skip");
  a = {"--resume", "-o", dir.string(), "--set", "train.nonfinite_loss=skip"};
  a.insert(a.end(), diverge.begin(), diverge.end());
  const Result r = train(a, "skip");
  ASSERT_EQ(r.rc, 0) << r.out;
  // Steps 7..10 of epoch 2 are skipped, each named with its cases; none updates the weights.
  EXPECT_EQ(count(r.out, "warning: skipped the batch: loss is"), 4) << r.out;
  for (int s = 7; s <= 10; ++s)
    EXPECT_NE(r.out.find("at global step " + std::to_string(s) + " (epoch 2, step " +
                         std::to_string(s - 5) + " of 5); the batch's cases: liver_"),
              std::string::npos)
        << s;
  EXPECT_TRUE(tensors(dir / "last.safetensors") == tensors(six / "last.safetensors"));
  EXPECT_TRUE(tensors(dir / "last.optim.safetensors") == tensors(six / "last.optim.safetensors"));
  const auto rec = numbers(dir / "metrics.jsonl").back();
  EXPECT_EQ(rec["type"], "epoch");
  EXPECT_EQ(rec["skipped_batches"], 4);
}

TEST_F(TrainingCrash, ResumeWithoutCheckpointStartsANewRun) {
  ASSERT_TRUE(made("reference"));
  // A missing folder and no config: nothing to start from.
  Result r = train({"--resume", "-o", (kWork / "missing").string()}, "missing");
  EXPECT_EQ(r.rc, 1) << r.out;
  EXPECT_NE(r.out.find("nothing to resume (no last.safetensors)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("give -c CONFIG"), std::string::npos) << r.out;
  // A missing folder with -c: a new run, with a warning.
  const fs::path fresh = kWork / "fresh";
  r = train({"--resume", "-c", config_, "-o", fresh.string()}, "fresh");
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_NE(r.out.find("warning: --resume: " + fresh.string() +
                       " holds no checkpoint (last.safetensors) to continue; starting a new run"),
            std::string::npos)
      << r.out;
  expect_same_run(kWork / "reference", fresh);
  // A run killed before its first checkpoint: its config.yaml, a record and a temporary file.
  const fs::path killed = kWork / "killed";
  fs::create_directories(killed);
  fs::copy_file(kWork / "reference" / "config.yaml", killed / "config.yaml");
  std::ofstream(killed / "metrics.jsonl") << R"({"type": "train", "step": 3, "epoch": 1})"
                                          << "\n";
  std::ofstream(killed / ".last.optim.safetensors.next.tmp.99999999") << "partial";
  r = train({"--resume", "-o", killed.string()}, "killed");
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_NE(r.out.find("starting a new run from " + (killed / "config.yaml").string()),
            std::string::npos)
      << r.out;
  EXPECT_EQ(temporaries(killed), 0);
  expect_same_run(kWork / "reference", killed);
}

}  // namespace
