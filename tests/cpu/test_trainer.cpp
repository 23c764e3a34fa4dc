// The trainer's extension points (pipeline/trainer.h, TrainHooks), in process on a tiny phantom
// run (6 cases 32x32x16, 16^3 patches, a 2-level net; about a second per run on 2 cores).
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "cuseg/engine/checkpoint.h"
#include "cuseg/model/unet3d.h"
#include "cuseg/pipeline/config.h"
#include "cuseg/pipeline/trainer.h"
#include "test_util.h"

namespace fs = std::filesystem;
using namespace cuseg;

namespace {

std::string tiny_config(const fs::path& dir) {
  const std::string yaml = R"(data:
  dir: )" + (dir / "phantom").string() +
                           R"(
  phantom: {generate: true, cases: 6, size: [32, 32, 16], seed: 5}
  val_fraction: 0.2
preprocess:
  resample_inplane: null
  crop_or_pad: null
  pad_value: minimum
  clip: [-250, 250]
sampler:
  patch: [16, 16, 16]
queue: {max_length: 4, samples_per_volume: 2, num_workers: 1}
model:
  filters: [4, 8]
train:
  epochs: 2
  batch_size: 2
  lr: 3.0e-3
  dice_every: 0
  preview_every: 0
  log_every: 100
  threads: 2
inference:
  patch: [16, 16, 16]
  overlap: 4
)";
  const fs::path p = dir / "tiny.yaml";
  std::ofstream(p) << yaml;
  return p.string();
}

std::map<std::string, std::vector<char>> weight_bytes(const std::string& checkpoint) {
  std::map<std::string, std::vector<char>> m;
  for (const auto& nt : read_safetensors(checkpoint)) {
    const char* b = static_cast<const char*>(nt.tensor.raw());
    m[nt.name] = std::vector<char>(b, b + nt.tensor.nbytes());
  }
  return m;
}

TEST(TrainHooks, AfterBackwardSitsBetweenBackwardAndTheOptimiserStep) {
  CUSEG_REQUIRE_FILE_IO();
  const fs::path dir = scratch_dir("TrainHooks", "after_backward");
  TrainOptions opt;
  opt.config_path = tiny_config(dir);
  opt.run_dir = (dir / "run").string();
  opt.overrides = {"train.device=cpu", "train.epochs=1"};
  int calls = 0;
  size_t params_seen = 0;
  // Zero gradients reach Adam as zero first and second moments, so its update
  // lr * m / (sqrt(v) + eps) is exactly 0: the weights must stay the initial ones bit for bit.
  // Had the hook run anywhere else (before backward, after the step) they would move.
  opt.hooks.after_backward = [&](Context&, const std::vector<Param*>& params) {
    ++calls;
    params_seen = params.size();
    for (Param* p : params) {
      ASSERT_TRUE(p->grad.defined());
      std::memset(p->grad.raw(), 0, p->grad.nbytes());
    }
  };
  ASSERT_EQ(run_training(opt), 0);
  const RunConfig cfg = load_config(opt.config_path, opt.overrides);
  UNet3D init(cfg.model, Device::CPU, cfg.seed);
  EXPECT_EQ(params_seen, init.parameters().size());
  // 5 training cases (6, one held for validation) x 2 patches per volume / batch 2 = 5 steps.
  EXPECT_EQ(calls, 5);
  const fs::path init_ckpt = dir / "init.safetensors";
  save_checkpoint(init_ckpt.string(), init.parameters(), {});
  EXPECT_TRUE(weight_bytes(init_ckpt.string()) == weight_bytes(opt.run_dir + "/last.safetensors"));
}

TEST(TrainHooks, OnBestCheckpointRunsWhenBestChanges) {
  CUSEG_REQUIRE_FILE_IO();
  const fs::path dir = scratch_dir("TrainHooks", "on_best");
  TrainOptions opt;
  opt.config_path = tiny_config(dir);
  opt.run_dir = (dir / "run").string();
  opt.overrides = {"train.device=cpu", "train.epochs=3"};
  std::vector<int> best_epochs;
  opt.hooks.on_best_checkpoint = [&](const BestCheckpoint& b) {
    best_epochs.push_back(b.epoch);
    // The hook sees the file it is told about, already holding this epoch's weights.
    Metadata meta;
    read_safetensors(b.path, &meta);
    EXPECT_EQ(meta.at("cuseg.epoch"), std::to_string(b.epoch));
    // ... and the first validation case with a prediction on its grid.
    EXPECT_EQ(b.prediction.geo.size, b.volume.image.geo.size);
    EXPECT_FALSE(b.case_id.empty());
    EXPECT_EQ(b.run_dir, opt.run_dir);
  };
  ASSERT_EQ(run_training(opt), 0);
  std::vector<int> expected;
  std::ifstream f(opt.run_dir + "/metrics.jsonl");
  for (std::string line; std::getline(f, line);) {
    const auto j = nlohmann::json::parse(line);
    if (j["type"] == "epoch" && j["best"].get<bool>()) expected.push_back(j["epoch"].get<int>());
  }
  ASSERT_FALSE(expected.empty());
  EXPECT_EQ(best_epochs, expected);
}

}  // namespace

// Deterministic mode (README, "Crash safety and determinism"): on the CPU the same config,
// seed and thread count give the same bits. Two runs in one process, compared byte for byte:
// weights, optimiser state, best checkpoint and every loss in metrics.jsonl.
TEST(Determinism, TwoCpuRunsGiveTheSameBits) {
  CUSEG_REQUIRE_FILE_IO();
  const fs::path dir = scratch_dir("Determinism", "cpu");
  const std::string config = tiny_config(dir);
  std::vector<std::string> losses[2];
  std::map<std::string, std::vector<char>> last[2], state[2], best[2];
  for (int r = 0; r < 2; ++r) {
    TrainOptions opt;
    opt.config_path = config;
    opt.run_dir = (dir / ("run" + std::to_string(r))).string();
    opt.overrides = {"train.device=cpu", "train.log_every=1"};
    ASSERT_EQ(run_training(opt), 0);
    last[r] = weight_bytes(opt.run_dir + "/last.safetensors");
    state[r] = weight_bytes(opt.run_dir + "/last.optim.safetensors");
    best[r] = weight_bytes(opt.run_dir + "/best.safetensors");
    std::ifstream f(opt.run_dir + "/metrics.jsonl");
    for (std::string line; std::getline(f, line);) {
      const auto j = nlohmann::json::parse(line);
      losses[r].push_back(j.contains("last_loss") ? j["last_loss"].dump() : j["val_loss"].dump());
    }
  }
  EXPECT_TRUE(last[0] == last[1]);
  EXPECT_TRUE(state[0] == state[1]);
  EXPECT_TRUE(best[0] == best[1]);
  ASSERT_EQ(losses[0].size(), 12u);  // 2 x (5 steps + 1 epoch record)
  EXPECT_EQ(losses[0], losses[1]);
}
