// Distributed runs as a user starts them (mpirun, the ranks oversubscribing this machine's
// cores): data-parallel training gives the single-process result, resumes on another world
// size, and any failure stops every rank within the stated timeout, with a message, instead of
// hanging.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "cuseg/engine/checkpoint.h"
#include "test_util.h"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

const std::string kTrain = CUSEG_BINARY_DIR "/apps/engine_train";
const fs::path kWork =
    fs::path(CUSEG_BINARY_DIR) / "e2e_work" / ("dist_pid" + std::to_string(getpid()));

using Result = CommandResult;
Result run(const std::string& cmd) {
  return run_command(cmd);
}

std::string mpirun(int ranks) {
  return std::string(
             "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 ") +
         CUSEG_MPIEXEC + " -np " + std::to_string(ranks) + " --oversubscribe ";
}

#define REQUIRE_MPI() \
  if (std::string(CUSEG_MPIEXEC).empty()) GTEST_SKIP() << "built without MPI"

// The e2e tiny run (test_util.h): a loss record every step, no Dice or previews (validation
// loss only), one thread per rank.
std::string tiny_config() {
  TinyRunConfig c;
  c.phantom_dir = (kWork / "phantom").string();
  c.epochs = 200;
  c.dice_every = 0;
  c.preview_every = 0;
  c.threads = 1;
  return write_tiny_run_config(kWork / "tiny.yaml", c);
}

std::string train_cmd(const std::string& run, const std::string& extra) {
  return kTrain + " -c " + tiny_config() + " -o " + (kWork / run).string() +
         " --device cpu --overwrite " + extra;
}

std::map<int64_t, double> step_losses(const std::string& run) {
  std::map<int64_t, double> m;
  std::ifstream f(kWork / run / "metrics.jsonl");
  std::string line;
  while (std::getline(f, line)) {
    const json j = json::parse(line);
    if (j["type"] == "train") m[j["step"].get<int64_t>()] = j["last_loss"].get<double>();
  }
  return m;
}

// Largest |a - b| over every tensor of two safetensors files (same names and shapes).
double max_tensor_diff(const fs::path& a, const fs::path& b) {
  const auto ta = cuseg::read_safetensors(a.string()), tb = cuseg::read_safetensors(b.string());
  EXPECT_EQ(ta.size(), tb.size());
  double d = 0;
  for (size_t i = 0; i < ta.size() && i < tb.size(); ++i) {
    EXPECT_EQ(ta[i].name, tb[i].name);
    EXPECT_EQ(ta[i].tensor.shape(), tb[i].tensor.shape());
    for (int64_t k = 0; k < ta[i].tensor.numel(); ++k)
      d = std::max(d, std::fabs(double(ta[i].tensor.f32()[k]) - double(tb[i].tensor.f32()[k])));
  }
  return d;
}

// Tolerances of the equivalence tests. The two runs see the same patches and compute the same
// normaliser and gradient scale exactly (W = 2 is a power of two); what differs is only the
// order of float summation in each weight gradient (one batch-2 reduction vs two batch-1
// reductions added by the allreduce). Adam's step is lr x (a normalised ratio of order 1), so
// a relative gradient perturbation rho moves a weight by at most about lr x rho per step. With
// rho <= 1e-4 (fp32 reordering of sums of ~10^4 terms, with room for cancellation) over 10
// steps at lr 3e-3: |dw| <= 10 x 3e-3 x 1e-4 = 3e-6. Losses, which depend on the weights
// smoothly, agree to the same relative order: 1e-6. (Measured here: weights within 4.5e-8,
// losses within 1.6e-9.)
constexpr double kWeightTol = 3e-6;
constexpr double kLossRelTol = 1e-6;

void expect_same_losses(const std::map<int64_t, double>& a, const std::map<int64_t, double>& b,
                        int64_t first, int64_t last) {
  for (int64_t s = first; s <= last; ++s) {
    ASSERT_TRUE(a.count(s) && b.count(s)) << "step " << s;
    EXPECT_NEAR(a.at(s), b.at(s), kLossRelTol * std::fabs(a.at(s))) << "step " << s;
  }
}

TEST(Dist, ProbeRunsOnTwoRanks) {
  REQUIRE_MPI();
  const Result r = run(mpirun(2) + CUSEG_DIST_PROBE + " ok 30");
  EXPECT_EQ(r.rc, 0) << r.out;
  EXPECT_NE(r.out.find("probe: rank 1 done (sum 2)"), std::string::npos) << r.out;
}

TEST(Dist, TwoRanksOfBatchOneEqualOneRankOfBatchTwo) {
  REQUIRE_MPI();
  // 10 steps = 2 epochs (with a validation and checkpoints in between), then "Ctrl-C".
  const Result a = run(train_cmd("one", "--dist none --stop-after-steps 10"));
  ASSERT_EQ(a.rc, 130) << a.out;
  const Result b =
      run(mpirun(2) + train_cmd("two", "--set train.batch_size=1 --stop-after-steps 10"));
  ASSERT_NE(b.out.find("distributed: 2 ranks (mpirun, mpi), batch 1 per rank = 2 per step"),
            std::string::npos)
      << b.out;
  ASSERT_NE(b.out.find("interrupted at epoch 2 step 5"), std::string::npos) << b.out;
  expect_same_losses(step_losses("one"), step_losses("two"), 1, 10);
  EXPECT_LE(max_tensor_diff(kWork / "one/last.safetensors", kWork / "two/last.safetensors"),
            kWeightTol);
  // Adam's moments (exp_avg ~ gradients, exp_avg_sq ~ their squares) follow the same way.
  EXPECT_LE(
      max_tensor_diff(kWork / "one/last.optim.safetensors", kWork / "two/last.optim.safetensors"),
      kWeightTol);
  // Rank 0 alone wrote the log: one header line, not one per rank.
  std::ifstream log(kWork / "two/train.log");
  std::stringstream ss;
  ss << log.rdbuf();
  const std::string text = ss.str();
  size_t count = 0;
  for (size_t p = text.find("engine_train: new run"); p != std::string::npos;
       p = text.find("engine_train: new run", p + 1))
    ++count;
  EXPECT_EQ(count, 1u) << text;
}

TEST(Dist, TwoRankRunResumesOnOneRank) {
  REQUIRE_MPI();
  const Result a = run(train_cmd("ref", "--dist none --stop-after-steps 10"));
  ASSERT_EQ(a.rc, 130) << a.out;
  // 3 steps on 2 ranks (6 patches into epoch 1), then the rest on one rank with batch 2.
  const Result b =
      run(mpirun(2) + train_cmd("moved", "--set train.batch_size=1 --stop-after-steps 3"));
  ASSERT_NE(b.out.find("interrupted at epoch 1 step 3"), std::string::npos) << b.out;
  const Result c = run(kTrain + " --resume -o " + (kWork / "moved").string() +
                       " --dist none --set train.batch_size=2 --stop-after-steps 10");
  ASSERT_EQ(c.rc, 130) << c.out;
  EXPECT_NE(c.out.find("resuming a run of 2 rank(s) on 1: position 6 patches into the epoch"),
            std::string::npos)
      << c.out;
  expect_same_losses(step_losses("ref"), step_losses("moved"), 1, 10);
  EXPECT_LE(max_tensor_diff(kWork / "ref/last.safetensors", kWork / "moved/last.safetensors"),
            kWeightTol);
}

// bf16 (the CPU bf16 oracle) under two ranks: the averaged gradients are fp32 and the weights
// broadcast at the start mark the bf16 copies stale, so 2 ranks of batch 1 follow 1 rank of
// batch 2 as in fp32, up to what the bf16 weight copies add. Step 1 runs on identical weights
// and patches: its loss agrees to kLossRelTol as in fp32 (per-sample arithmetic is the same,
// only the double loss sum is ordered differently). Afterwards the fp32 masters differ by the
// summation order of the gradients (<= 3e-6 over 10 steps, above); Adam rounds each master to
// its bf16 copy, and a master within that distance of a rounding midpoint lands on the
// neighbouring bf16 value, one bf16 ulp (2^-8 relative) away. Bound stated, not derived (how
// many copies flip depends on the trajectory): losses of steps 2-10 within 1e-3 relative,
// masters within 1e-4 (an ulp flip of a weight moves its gradient, hence its Adam step, by an
// amount of order lr = 3e-3 per step at most; 1e-4 allows a few such steps on a few weights).
// Measured 2026-12-01: losses within 1.9e-16, masters within 8.2e-8 (no copy flipped).
TEST(Dist, Bf16TwoRanksFollowOneRank) {
  REQUIRE_MPI();
  const std::string bf16 = " --precision bf16 --set model.filters=[8,16]";
  const Result a = run(train_cmd("one16", "--dist none --stop-after-steps 10" + bf16));
  ASSERT_EQ(a.rc, 130) << a.out;
  const Result b =
      run(mpirun(2) + train_cmd("two16", "--set train.batch_size=1 --stop-after-steps 10" + bf16));
  ASSERT_NE(b.out.find("distributed: 2 ranks (mpirun, mpi), batch 1 per rank = 2 per step"),
            std::string::npos)
      << b.out;
  ASSERT_NE(b.out.find("precision bf16"), std::string::npos) << b.out;
  ASSERT_NE(b.out.find("interrupted at epoch 2 step 5"), std::string::npos) << b.out;
  const auto la = step_losses("one16"), lb = step_losses("two16");
  expect_same_losses(la, lb, 1, 1);
  double worst = 0;
  for (int64_t s = 2; s <= 10; ++s) {
    ASSERT_TRUE(la.count(s) && lb.count(s)) << "step " << s;
    worst = std::max(worst, std::fabs(la.at(s) - lb.at(s)) / std::fabs(la.at(s)));
  }
  const double dw =
      max_tensor_diff(kWork / "one16/last.safetensors", kWork / "two16/last.safetensors");
  std::printf("bf16, 2 ranks vs 1: worst loss difference %.2e (steps 2-10), masters %.2e\n", worst,
              dw);
  EXPECT_LE(worst, 1e-3);
  EXPECT_LE(dw, 1e-4);
}

Result cuseg_pgrep(const std::string& run) {
  return ::run("pgrep -f '^" + kTrain + " .* -o " + (kWork / run).string() + " '");
}

// Starts a 2-rank training in the background; returns the shell's pid file path and the log.
struct Background {
  fs::path log, rc;
};
Background start_background(const std::string& run, const std::string& extra) {
  Background bg{kWork / (run + ".log"), kWork / (run + ".rc")};
  fs::remove(bg.rc);
  const std::string cmd = "(" + mpirun(2) + train_cmd(run, extra) + " > " + bg.log.string() +
                          " 2>&1; echo $? > " + bg.rc.string() + ") &";
  EXPECT_EQ(std::system(cmd.c_str()), 0);
  return bg;
}

std::string read_all(const fs::path& p) {
  std::ifstream f(p);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Waits until `pred` holds, up to `seconds`.
template <class Pred>
bool wait_for(Pred pred, double seconds) {
  const auto t0 = std::chrono::steady_clock::now();
  while (!pred()) {
    if (std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() > seconds)
      return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return true;
}

// The pids of the training ranks of run `run` (command lines start with the binary's path;
// mpirun's own starts with the launcher), in ascending order.
std::vector<int> rank_pids(const std::string& run) {
  const Result r = cuseg_pgrep(run);
  std::vector<int> pids;
  std::istringstream is(r.out);
  int p;
  while (is >> p) pids.push_back(p);
  return pids;
}

TEST(Dist, AKilledRankStopsEveryRank) {
  REQUIRE_MPI();
  const Background bg = start_background("killed", "--set train.batch_size=1");
  ASSERT_TRUE(
      wait_for([&] { return read_all(bg.log).find("(global 3)") != std::string::npos; }, 120))
      << read_all(bg.log);
  const auto pids = rank_pids("killed");
  ASSERT_EQ(pids.size(), 2u);
  const auto t0 = std::chrono::steady_clock::now();
  kill(pids[1], SIGKILL);
  // The launcher sees the death and ends the job; the collective timeout is the backstop.
  ASSERT_TRUE(wait_for([&] { return fs::exists(bg.rc) && fs::file_size(bg.rc) > 0; }, 60))
      << read_all(bg.log);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_NE(std::stoi(read_all(bg.rc)), 0) << read_all(bg.log);
  EXPECT_LT(s, 30.0) << read_all(bg.log);
  EXPECT_NE(read_all(bg.log).find("exited on signal 9"), std::string::npos) << read_all(bg.log);
}

TEST(Dist, AStoppedRankTimesOutAndStopsEveryRank) {
  REQUIRE_MPI();
  // A rank that hangs without dying (SIGSTOP): nothing tells the launcher; rank 0's collective
  // times out after dist.timeout_s = 3 s and ends the job.
  const Background bg =
      start_background("stopped", "--set train.batch_size=1 --set dist.timeout_s=3");
  ASSERT_TRUE(
      wait_for([&] { return read_all(bg.log).find("(global 3)") != std::string::npos; }, 120))
      << read_all(bg.log);
  const auto pids = rank_pids("stopped");
  ASSERT_EQ(pids.size(), 2u);
  kill(pids[1], SIGSTOP);
  ASSERT_TRUE(wait_for([&] { return fs::exists(bg.rc) && fs::file_size(bg.rc) > 0; }, 60))
      << read_all(bg.log);
  const std::string log = read_all(bg.log);
  EXPECT_NE(std::stoi(read_all(bg.rc)), 0) << log;
  EXPECT_NE(log.find("did not complete within 3 s (dist.timeout_s)"), std::string::npos) << log;
  EXPECT_NE(log.find("stopping every rank"), std::string::npos) << log;
  kill(pids[1], SIGKILL);  // in case the launcher left it stopped
}

TEST(Dist, CtrlCStopsEveryRankAndSavesOnce) {
  REQUIRE_MPI();
  const Background bg = start_background("ctrlc", "--set train.batch_size=1");
  ASSERT_TRUE(
      wait_for([&] { return read_all(bg.log).find("(global 3)") != std::string::npos; }, 120))
      << read_all(bg.log);
  // Ctrl-C reaches one rank only (the worst case): the stop request travels with the next
  // step's allreduce, so both ranks stop after the same step and rank 0 saves.
  const auto pids = rank_pids("ctrlc");
  ASSERT_EQ(pids.size(), 2u);
  kill(pids[1], SIGINT);
  ASSERT_TRUE(wait_for([&] { return fs::exists(bg.rc) && fs::file_size(bg.rc) > 0; }, 60))
      << read_all(bg.log);
  const std::string log = read_all(bg.log);
  // "interrupted at epoch E step S" mid-epoch, or "interrupted after epoch E" when the signal
  // came during validation: either way once, by rank 0, with the checkpoint saved.
  const size_t at = log.find("interrupted ");
  EXPECT_NE(at, std::string::npos) << log;
  EXPECT_EQ(log.find("interrupted ", at + 1), std::string::npos) << log;
  EXPECT_NE(std::stoi(read_all(bg.rc)), 0) << log;  // 130 from the ranks (or the launcher's)
  EXPECT_TRUE(fs::exists(kWork / "ctrlc/last.safetensors"));
}

TEST(Dist, CpuRanksNeedAnMpiLauncher) {
  // torchrun-style variables on the CPU: no MPI behind them, so a clear refusal.
  const Result r = run("RANK=0 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=29999 " +
                       train_cmd("torchrun", ""));
  EXPECT_EQ(r.rc, 1) << r.out;
  EXPECT_NE(r.out.find("needs an MPI launcher (mpirun or srun)"), std::string::npos) << r.out;
}

}  // namespace
