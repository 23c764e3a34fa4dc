// Run configuration: one YAML file (configs/liver.yaml, configs/demo.yaml) describing data,
// preprocessing, augmentation, sampling, network, training and inference.
//
// Strictness: the built-in schema (default_config_yaml(), every key with its default) is the
// list of valid keys. A key that the schema does not have, or a value of the wrong type, is an
// error naming the key and the file (or "--set" for command-line overrides). Keys left out
// keep their defaults, so a config only states what differs. The resolved config (defaults +
// file + overrides) is what a run saves next to its checkpoints and inside them.
//
// Units and axes: sizes and patch shapes are voxels in index order (i, j, k) = (x, y, z) of
// the RAS-reoriented volume, as torchio's (W, H, D) tuples; intensities are HU until
// rescale_intensity.
#pragma once
#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "cuseg/data/samplers.h"
#include "cuseg/data/transforms.h"
#include "cuseg/engine/precision.h"
#include "cuseg/model/unet3d.h"

namespace cuseg {

struct RunConfig {
  std::string source;         // where it was read from (file path or "checkpoint:...")
  std::string resolved_yaml;  // the full resolved YAML text

  // data
  std::string data_dir;
  bool phantom_generate = false;  // write the synthetic dataset when data_dir is missing
  int phantom_cases = 24;
  std::array<int, 3> phantom_size{128, 128, 64};
  uint64_t phantom_seed = 0;
  double val_fraction = 0.11;
  uint64_t split_seed = 0;
  int classes = 3;
  bool cache = true;              // keep preprocessed training volumes in memory (host pipeline)
  std::string pipeline = "auto";  // training patches: auto | device | host
  std::string storage = "i16";    // training volume storage: i16 | bf16 | f32
  double device_budget_mib = 0;   // device memory for resident volumes (0: 40% of the device)

  // preprocess (applied in this order, inverted in reverse order at inference)
  std::string orientation = "RAS";
  std::array<int, 2> resample_inplane{0, 0};  // 0,0 = off; no-op when already this size
  std::array<int, 3> crop_or_pad{0, 0, 0};    // 0,0,0 = off
  bool pad_with_minimum = false;              // pad value: the image minimum ...
  float pad_value = 0.f;                      // ... or this HU value
  bool clip = false;                          // clip to [clip_lo, clip_hi] HU first
  float clip_lo = -1024.f, clip_hi = 3071.f;
  float rescale_lo = -1.f, rescale_hi = 1.f;
  double percentile_lo = 0.0, percentile_hi = 100.0;

  // augment
  bool random_affine = true;
  data::RandomAffineConfig affine;

  // sampler + queue
  data::Index3 patch{96, 96, 96};
  std::map<int, double> label_probabilities{{0, 0.2}, {1, 0.3}, {2, 0.5}};
  data::QueueConfig queue;

  // model
  UNetConfig model;

  // train
  int epochs = 100;
  int batch_size = 2;
  float lr = 1e-4f;
  std::vector<float> class_weights{1.f, 1.f, 3.f};
  int val_patches_per_volume = 5;
  int dice_every = 5;     // epochs between whole-volume validation Dice (0 = never)
  int preview_every = 1;  // epochs between preview PNGs (0 = never)
  int log_every = 10;     // steps between progress lines / metrics records
  uint64_t seed = 0;
  std::string device = "auto";
  int threads = 0;            // OpenMP threads for the CPU backend (0 = all cores)
  bool deterministic = true;  // ContextOptions::deterministic (bitwise repeatable CUDA runs)
  // A batch whose loss is NaN/Inf: "stop" (error naming the step and the batch's cases; the
  // last good checkpoint stays) or "skip" (no backward, no update; logged and counted).
  std::string nonfinite_loss = "stop";

  // distributed (pipeline/distributed.h)
  double dist_timeout_s = 600;           // bound on one collective before every rank is stopped
  double dist_bucket_mib = 25;           // gradient bucket size
  Precision precision = Precision::F32;  // train.precision (engine/precision.h)

  // inference
  data::Index3 infer_patch{96, 96, 96};
  int overlap = 8;
  int infer_batch = 4;
  std::string mode = "crop";  // crop | average | hann (torchio GridAggregator overlap_mode) |
                              // gaussian (nnU-Net's importance weighting, kernels/grid_aggregate.h)
  Precision infer_precision = Precision::F32;  // inference.precision (null: train.precision)
};

// The schema: every valid key with its default value and a comment.
const std::string& default_config_yaml();

// Reads a YAML file, applies "a.b=value" overrides, validates and resolves. Throws cuseg::Error
// naming the file (or --set) and the key on any problem.
RunConfig load_config(const std::string& path, const std::vector<std::string>& overrides = {});
// The same from YAML text (a checkpoint's stored config); `origin` names it in errors.
RunConfig parse_config(const std::string& yaml_text, const std::string& origin,
                       const std::vector<std::string>& overrides = {});

AggregateMode parse_mode(const std::string& s);  // throws listing the known modes
const char* mode_name(AggregateMode m);          // the config spelling

}  // namespace cuseg
