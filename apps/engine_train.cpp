// engine_train: train the 3-D U-Net from a YAML config (configs/demo.yaml, configs/liver.yaml).
// Thin: parse flags, install the Ctrl-C handler, call run_training() (model/trainer.cpp).
#include <CLI/CLI.hpp>
#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>

#include "cuseg/pipeline/config.h"
#include "cuseg/pipeline/previews.h"
#include "cuseg/pipeline/trainer.h"

namespace {
std::atomic<bool> g_stop{false};
extern "C" void on_sigint(int) {
  g_stop.store(true);
  std::signal(SIGINT, SIG_DFL);  // a second Ctrl-C ends the process at once
}
// YAML single-quoted scalar, so paths with ':' or '#' survive --set parsing.
std::string yaml_quoted(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("''") : std::string(1, c);
  return q + "'";
}
}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "engine_train: train the cuseg 3-D U-Net (liver + liver tumour CT segmentation).\n"
      "Writes RUN_DIR/{config.yaml, train.log, metrics.jsonl, curves.svg, previews/, "
      "best_<case>.gif (slice-by-slice preview of a validation case at each new best), "
      "last.safetensors, best.safetensors, splits.json}. Ctrl-C saves a checkpoint; "
      "--resume continues it.\n"
      "Example: engine_train -c configs/demo.yaml -o runs/demo"};
  cuseg::TrainOptions opt;
  std::string data_dir, device, precision;
  long long seed = -1;
  bool print_config = false;
  app.add_option("-c,--config", opt.config_path,
                 "YAML run config (required for a new run; --resume uses RUN_DIR/config.yaml)");
  app.add_option("-d,--data", data_dir, "dataset folder (overrides data.dir)");
  app.add_option("-o,--output", opt.run_dir, "run folder")->capture_default_str();
  app.add_option("--device", device,
                 "auto | cuda | cpu (overrides train.device; default: the "
                 "config's, auto = CUDA when a device answers)")
      ->check(CLI::IsMember({"auto", "cuda", "cpu"}));
  app.add_option("--precision", precision,
                 "fp32 | bf16 (overrides train.precision; bf16 = bf16 channels-last activations "
                 "and weight copies on cuDNN graphs, fp32 master weights and Adam state)")
      ->check(CLI::IsMember({"fp32", "bf16"}));
  app.add_flag("--resume", opt.resume,
               "continue RUN_DIR/last.safetensors (optimiser, step, epoch and patch-stream "
               "state); without a checkpoint there, start a new run (warning) from -c or "
               "RUN_DIR/config.yaml");
  app.add_flag("--overwrite", opt.overwrite,
               "start a new run in a RUN_DIR that already holds one (deletes its checkpoints)");
  app.add_option("--seed", seed, "random seed (overrides train.seed)");
  app.add_option("--set", opt.overrides,
                 "override a config key, repeatable: --set train.lr=3e-4 --set "
                 "sampler.patch=[64,64,64]");
  app.add_option("--stop-after-steps", opt.stop_after_steps,
                 "testing aid: behave as on Ctrl-C after N optimiser steps (global count)")
      ->capture_default_str();
  app.add_option("--dist", opt.dist,
                 "auto: data-parallel over the ranks of an mpirun / srun / torchrun-style "
                 "launch (one process without one); none: one process")
      ->check(CLI::IsMember({"auto", "none"}))
      ->capture_default_str();
  app.add_flag("--print-default-config", print_config,
               "print every config key with its default and exit");
  app.get_option("--set")->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  CLI11_PARSE(app, argc, argv);
  if (print_config) {
    std::printf("%s", cuseg::default_config_yaml().c_str());
    return 0;
  }
  if (!data_dir.empty()) opt.overrides.push_back("data.dir=" + yaml_quoted(data_dir));
  if (!device.empty()) opt.overrides.push_back("train.device=" + device);
  if (!precision.empty()) opt.overrides.push_back("train.precision=" + precision);
  if (seed >= 0) opt.overrides.push_back("train.seed=" + std::to_string(seed));
  if (opt.config_path.empty() && !opt.resume) {
    std::fprintf(stderr,
                 "engine_train: -c CONFIG is required (try -c configs/demo.yaml), or "
                 "--resume -o RUN_DIR\n");
    return 2;
  }
#if CUSEG_HAVE_GIF
  // Each new best checkpoint: the slice-by-slice GIF of the first validation case.
  opt.hooks.on_best_checkpoint = [](const cuseg::BestCheckpoint& b) {
    cuseg::write_best_preview_gif(b);
  };
#endif
  opt.stop = &g_stop;
  std::signal(SIGINT, on_sigint);
  std::signal(SIGTERM, on_sigint);
  // Over a file-size limit (ulimit -f) a write then fails with EFBIG, which the trainer reports
  // like a full disk (previous checkpoint intact), instead of the process being killed.
  std::signal(SIGXFSZ, SIG_IGN);
  try {
    return cuseg::run_training(opt);
  } catch (const std::exception& e) {
    // In a distributed run every rank may report; say which one.
    const char* rank = std::getenv("OMPI_COMM_WORLD_RANK");
    if (!rank) rank = std::getenv("SLURM_PROCID");
    if (!rank) rank = std::getenv("RANK");
    if (rank && opt.dist != "none")
      std::fprintf(stderr, "engine_train: rank %s: error: %s\n", rank, e.what());
    else
      std::fprintf(stderr, "engine_train: error: %s\n", e.what());
    return 1;
  }
}
