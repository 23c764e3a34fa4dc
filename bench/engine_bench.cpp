// engine_bench: end-to-end benchmarks of the engine (see bench/README.md).
//
//   step     one training step of the U-Net (forward, weighted CE, backward, Adam)
//   forward  the forward pass alone (inference timing of one batch of patches)
//   volume   full-volume inference through the product's pipeline (pipeline/inference.h,
//            segment(), what engine_infer runs): time per stage, bytes moved between host
//            and device, peak memory; then the whole volume in one pass when it fits
//   data     training patches/s: the fused patch pipeline on host threads or on the device,
//            or today's PatchQueue chain (phantoms in memory)
//
// Timing rule (the PyTorch peers in bench/peers/ follow the same one): `--warmup` untimed
// iterations first (plans, cuDNN algorithm search, pool fill), then `--iters` timed ones;
// each timed iteration ends with a device synchronisation and is read from a steady host
// clock; we report min / median / mean and derive rates from the median. Peak memory is the
// device pool's peak of live bytes over the timed iterations (reset after warm-up, so it
// includes parameters, optimiser state and planned buffers that stay live), the analogue of
// torch.cuda.max_memory_allocated after torch.cuda.reset_peak_memory_stats. On CPU we also
// give the process peak RSS, which is what the PyTorch CPU peer reports.
//
// Inputs are synthetic (seeded uniform intensities, random labels): `step`, `forward` and
// `volume` need no files and no ITK, so they run on the GPU kit's ITK-less build.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "bench_common.h"
#include "cuseg/core/check.h"
#include "cuseg/data/device_patches.h"
#include "cuseg/data/patch_pipeline.h"
#include "cuseg/data/phantom.h"
#include "cuseg/data/samplers.h"
#include "cuseg/data/transforms.h"
#include "cuseg/engine/comm.h"
#include "cuseg/engine/context.h"
#include "cuseg/engine/memory.h"
#include "cuseg/engine/ops.h"
#include "cuseg/engine/optim.h"
#include "cuseg/engine/precision.h"
#include "cuseg/model/unet3d.h"
#include "cuseg/pipeline/config.h"
#include "cuseg/pipeline/inference.h"
#if CUSEG_HAVE_CUDA
#include <cuda_runtime.h>

#include "cuseg/engine/cuda/cuda_check.h"
#endif

using namespace cuseg;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

struct Summary {
  double min = 0, median = 0, mean = 0, max = 0;
};
Summary summarize(std::vector<double> v) {
  Summary s;
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  s.min = v.front();
  s.max = v.back();
  s.median = v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
  s.mean = std::accumulate(v.begin(), v.end(), 0.0) / double(v.size());
  return s;
}
json to_json(const Summary& s) {
  return {{"min", s.min}, {"median", s.median}, {"mean", s.mean}, {"max", s.max}};
}

std::vector<int> parse_ints(const std::string& csv) {
  std::vector<int> out;
  std::stringstream ss(csv);
  std::string tok;
  while (std::getline(ss, tok, ','))
    if (!tok.empty()) out.push_back(std::stoi(tok));
  return out;
}

std::string join(const std::vector<int>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + std::to_string(v[i]);
  return s;
}

// Options shared by every subcommand.
struct Common {
  std::string device = "auto";
  std::string precision = "fp32";  // fp32 | bf16 (engine/precision.h)
  std::string filters = "32,64,128,256";
  int warmup = 3;
  int iters = 10;
  uint64_t seed = 0;
  std::string json_out;
  std::string command_line;
};

json header(const Common& c, Device dev, const char* what) {
  json j;
  j["tool"] = "engine_bench";
  j["benchmark"] = what;
  j["impl"] = "cuseg";
  j["device"] = json::parse(bench::to_json_string(bench::describe_device(dev)));
  // Every record names the libraries it ran with: cuDNN 9.8-9.10 computed wrong bf16 3-D
  // convolutions (PyTorch issues 163539, 166122); the bf16 parity tests decide, not trust.
  j["libraries"] = gpu_library_versions();
  j["command"] = c.command_line;
  j["timing_rule"] =
      "warmup untimed, then iters timed; each ends with a device sync; host steady clock";
  return j;
}

void emit(const Common& c, const json& j) {
  std::cout << j.dump(2) << std::endl;
  if (!c.json_out.empty()) {
    std::ofstream f(c.json_out);
    CUSEG_CHECK(f.good(), "cannot write " << c.json_out);
    f << j.dump(2) << "\n";
  }
}

json memory_json(Device dev) {
  const MemoryStats st = memory_pool(dev).stats();
  json j = {{"pool_peak_bytes", st.peak},
            {"pool_peak_mib", to_mib(st.peak)},
            {"pool_reserved_bytes", st.reserved},
            {"pool_system_allocations", st.system_allocations},
            {"process_peak_rss_bytes", bench::peak_rss_bytes()},
            {"process_peak_rss_mib", to_mib(bench::peak_rss_bytes())}};
  return j;
}

// Useful convolution FLOPs of a U-Net pass (the padding channels of the bf16 path not counted):
// 2 * Cin * Cout * k^3 per output voxel per conv; a training step adds backward-data (not for
// the first conv, whose input needs no gradient) and backward-filter, i.e. 3x minus one.
double unet_conv_flops(const UNetConfig& cfg, int batch, int patch, bool training) {
  const auto& f = cfg.filters;
  const int L = int(f.size());
  double fwd = 0, first = 0;
  for (int l = 0; l < L; ++l) {
    const double vox = double(batch) * std::pow(double(patch >> l), 3);
    const double cin = l == 0 ? cfg.in_channels : f[size_t(l - 1)];
    const double a = 2.0 * cin * f[size_t(l)] * 27 * vox;
    if (l == 0) first = a;
    fwd += a + 2.0 * f[size_t(l)] * f[size_t(l)] * 27 * vox;
    if (l < L - 1)
      fwd += 2.0 * (f[size_t(l + 1)] + f[size_t(l)]) * f[size_t(l)] * 27 * vox +
             2.0 * f[size_t(l)] * f[size_t(l)] * 27 * vox;
  }
  fwd += 2.0 * f[0] * cfg.classes * double(batch) * std::pow(double(patch), 3);
  return training ? 3 * fwd - first : fwd;
}

// FLOP rate and its fraction of the dense bf16 tensor-core peak (CUDA; DeviceInfo).
void rates_json(json& j, const UNetConfig& cfg, int batch, int patch, bool training,
                double median_s, Device dev) {
  const double fl = unet_conv_flops(cfg, batch, patch, training);
  j["conv_flops"] = fl;
  j["tflop_per_s"] = fl / median_s / 1e12;
  const double peak = j["device"].value("peak_bf16_flop_per_s", 0.0);
  if (dev == Device::CUDA && peak > 0) j["pct_of_bf16_peak"] = 100.0 * fl / median_s / peak;
}

// cuDNN graph plans of the context (bf16 path): built / refused (a refused problem ran on a
// fallback and warned once on stderr).
void plans_json(json& j, const Context& ctx) {
  const Context::GraphPlans g = ctx.graph_plans();
  j["cudnn_graph_plans"] = {
      {"built", g.built}, {"refused", g.refused}, {"max_workspace_bytes", g.max_workspace}};
}

// ---------------------------------------------------------------- step
struct StepOpts {
  int batch = 2;
  int patch = 96;
};

int run_step(const Common& c, const StepOpts& o) {
  const Device dev = resolve_device(c.device);
  Context ctx(dev);
  UNetConfig cfg;
  cfg.filters = parse_ints(c.filters);
  const Precision precision = parse_precision(c.precision, "--precision");
  UNet3D model(cfg, dev, c.seed, precision);
  Adam adam(model.parameters(), AdamConfig{});
  const int P = o.patch;
  Tensor x = bench::random_tensor({o.batch, 1, P, P, P}, dev, c.seed + 1);
  Tensor y = bench::random_labels({o.batch, P, P, P}, cfg.classes, dev, c.seed + 2);
  Tensor g;  // d loss / d logits, in the logits' dtype and layout (planned on the first step)
  const std::vector<float> weights = {1.f, 1.f, 3.f};

  std::map<std::string, std::vector<double>> stage;
  std::vector<double> total, losses;
  auto one_step = [&](bool timed) {
    const auto t0 = Clock::now();
    auto t = t0;
    auto lap = [&](const char* name) {
      ctx.synchronize();
      if (timed) stage[name].push_back(seconds_since(t));
      t = Clock::now();
    };
    model.zero_grad();
    lap("zero_grad");
    const Tensor& logits = model.forward(ctx, x);
    lap("forward");
    if (!g.defined()) g = Tensor::zeros_like(logits);
    const double loss = weighted_cross_entropy(ctx, logits, y, weights, g);
    lap("loss");
    model.backward(ctx, g);
    lap("backward");
    adam.step(ctx);
    lap("adam");
    if (timed) {
      total.push_back(seconds_since(t0));
      losses.push_back(loss);
    }
  };
  for (int i = 0; i < c.warmup; ++i) one_step(false);
  ctx.synchronize();
  memory_pool(dev).reset_peak();
  for (int i = 0; i < c.iters; ++i) one_step(true);

  const Summary s = summarize(total);
  json j = header(c, dev, "step");
  j["config"] = {{"batch", o.batch},
                 {"patch", P},
                 {"filters", join(cfg.filters)},
                 {"classes", cfg.classes},
                 {"params", model.num_parameters()},
                 {"class_weights", weights},
                 {"optimizer", "Adam lr 1e-4"},
                 {"warmup", c.warmup},
                 {"iters", c.iters},
                 {"precision", precision_name(precision)}};
  j["step_s"] = to_json(s);
  j["times_s"] = total;
  j["steps_per_s"] = 1.0 / s.median;
  j["patches_per_s"] = o.batch / s.median;
  rates_json(j, cfg, o.batch, P, true, s.median, dev);
  plans_json(j, ctx);
  json st;
  for (auto& kv : stage) st[kv.first] = summarize(kv.second).median;
  j["stage_median_s"] = st;
  j["loss_first"] = losses.empty() ? 0.0 : losses.front();
  j["loss_last"] = losses.empty() ? 0.0 : losses.back();
  j["memory"] = memory_json(dev);
  j["memory"]["activation_bytes"] = model.activation_bytes();
  emit(c, j);
  return 0;
}

// ---------------------------------------------------------------- forward
int run_forward(const Common& c, const StepOpts& o) {
  const Device dev = resolve_device(c.device);
  Context ctx(dev);
  UNetConfig cfg;
  cfg.filters = parse_ints(c.filters);
  const Precision precision = parse_precision(c.precision, "--precision");
  UNet3D model(cfg, dev, c.seed, precision);
  const int P = o.patch;
  Tensor x = bench::random_tensor({o.batch, 1, P, P, P}, dev, c.seed + 1);
  std::vector<double> times;
  for (int i = 0; i < c.warmup + c.iters; ++i) {
    if (i == c.warmup) memory_pool(dev).reset_peak();
    const auto t0 = Clock::now();
    model.forward(ctx, x);
    ctx.synchronize();
    if (i >= c.warmup) times.push_back(seconds_since(t0));
  }
  const Summary s = summarize(times);
  json j = header(c, dev, "forward");
  j["config"] = {{"batch", o.batch},
                 {"patch", P},
                 {"filters", join(cfg.filters)},
                 {"params", model.num_parameters()},
                 {"warmup", c.warmup},
                 {"iters", c.iters},
                 {"precision", precision_name(precision)}};
  j["forward_s"] = to_json(s);
  j["times_s"] = times;
  j["patches_per_s"] = o.batch / s.median;
  rates_json(j, cfg, o.batch, P, false, s.median, dev);
  plans_json(j, ctx);
  j["memory"] = memory_json(dev);
  j["memory"]["activation_bytes"] = model.activation_bytes();
  j["note"] =
      "the engine's forward plans activation AND gradient buffers (training layout); "
      "there is no inference-only plan yet";
  emit(c, j);
  return 0;
}

// ---------------------------------------------------------------- volume
// The product's inference pipeline (pipeline/inference.h, segment()), the very function
// engine_infer calls per case, on a synthetic CT held in memory (no file I/O).
struct VolumeOpts {
  std::vector<int> size = {256, 256, 200};  // (i, j, k) = (W, H, D), as the reference recipe
  int patch = 96;
  int overlap = 8;
  int batch = 4;
  std::string mode = "crop";
  std::string whole = "auto";
  double max_memory_mib = 0;  // 0: CUDA free memory x 0.9; CPU: whole pass off unless given
};

double device_free_mib(Device dev) {
#if CUSEG_HAVE_CUDA
  if (dev == Device::CUDA) {
    size_t free_b = 0, total_b = 0;
    CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
    return to_mib(free_b);
  }
#endif
  (void)dev;
  return 0;
}

json transfers_json(const TransferStats& t) {
  return {{"host_to_device_bytes", t.host_to_device_bytes},
          {"device_to_host_bytes", t.device_to_host_bytes},
          {"host_to_device_copies", t.host_to_device_copies},
          {"device_to_host_copies", t.device_to_host_copies}};
}

json plan_json(const InferencePlan& p) {
  return {{"whole_volume", p.whole_volume},
          {"patch", {p.grid.patch[0], p.grid.patch[1], p.grid.patch[2]}},
          {"overlap", p.grid.overlap},
          {"batch", p.grid.batch},
          {"mode", mode_name(p.grid.mode)},
          {"precision", precision_name(p.precision)},
          {"patches", p.patches},
          {"padded_grid", {p.padded[0], p.padded[1], p.padded[2]}},
          {"budget_mib", to_mib(p.budget_bytes)},
          {"estimated_mib", to_mib(p.estimated_bytes)}};
}

// Runs segment() `warmup` untimed then `iters` timed times; the pool's peak is reset after
// warm-up. Fills volume_s, times_s, stage_median_s, transfers (of one call: every call moves
// the same bytes), plan and memory.
json time_segment(const Common& c, Context& ctx, UNet3D& model, const RunConfig& cfg,
                  const data::Image& ct, const SegmentOptions& so, int warmup) {
  std::map<std::string, std::vector<double>> stage;
  std::vector<double> total;
  Segmentation last;
  for (int i = 0; i < warmup + c.iters; ++i) {
    if (i == warmup) {
      ctx.synchronize();
      memory_pool(ctx.device()).reset_peak();
    }
    const auto t0 = Clock::now();
    Segmentation s = segment(model, ctx, cfg, ct, so);  // ends with the mask's download
    const double dt = seconds_since(t0);
    if (i >= warmup) {
      total.push_back(dt);
      for (const auto& kv : s.times.stages) stage[kv.first].push_back(kv.second);
    }
    last = std::move(s);
  }
  json j;
  j["volume_s"] = to_json(summarize(total));
  j["times_s"] = total;
  json st;
  for (auto& kv : stage) st[kv.first] = summarize(kv.second).median;
  j["stage_median_s"] = st;
  j["transfers"] = transfers_json(last.transfers);
  j["plan"] = plan_json(last.plan);
  j["memory"] = memory_json(ctx.device());
  j["memory"]["activation_bytes"] = model.activation_bytes();
  j["memory"]["estimated_bytes"] = last.plan.estimated_bytes;
  return j;
}

int run_volume(const Common& c, const VolumeOpts& o) {
  const Device dev = resolve_device(c.device);
  Context ctx(dev);
  CUSEG_CHECK(o.size.size() == 3, "--size takes three extents (i j k)");
  // The model grid is the volume itself: no resample / crop (the reference's 256x256x200 needs
  // none), intensities rescaled from min/max to [-1, 1] on the device, as the recipe does.
  RunConfig cfg;
  cfg.model.filters = parse_ints(c.filters);
  cfg.resample_inplane = {0, 0};
  cfg.crop_or_pad = {0, 0, 0};
  const Precision precision = parse_precision(c.precision, "--precision");
  cfg.precision = cfg.infer_precision = precision;
  UNet3D model(cfg.model, dev, c.seed, precision);
  // Synthetic CT in HU (seeded uniform in [-1024, 3071)), RAS so reorientation is a copy.
  data::Image ct;
  ct.geo.size = {o.size[0], o.size[1], o.size[2]};
  ct.geo.direction = {-1, 0, 0, 0, -1, 0, 0, 0, 1};  // LPS+ world: i -> R, j -> A, k -> S
  {
    Tensor hu = bench::random_tensor({ct.geo.numel()}, Device::CPU, c.seed + 3, -1024.f, 3071.f);
    ct.v.assign(hu.f32(), hu.f32() + hu.numel());
  }
  SegmentOptions so;
  so.grid.patch = {o.patch, o.patch, o.patch};
  so.grid.overlap = o.overlap;
  so.grid.batch = o.batch;
  so.grid.mode = parse_mode(o.mode);

  json j = header(c, dev, "volume");
  j["config"] = {{"size_ijk", o.size},
                 {"patch", o.patch},
                 {"overlap", o.overlap},
                 {"batch", o.batch},
                 {"mode", o.mode},
                 {"filters", join(cfg.model.filters)},
                 {"params", model.num_parameters()},
                 {"warmup", c.warmup},
                 {"iters", c.iters},
                 {"precision", precision_name(precision)},
                 {"pipeline",
                  "pipeline/inference.h segment(), the function engine_infer runs per case: "
                  "host reorientation copy, one upload, min/max + rescale, patches cut into the "
                  "batch by crop_or_pad, forward (bf16: logits converted exactly to fp32), "
                  "fp32 grid_aggregate, argmax on the device, uint8 mask download; bytes moved "
                  "are counted at the copies"}};
  const json grid = time_segment(c, ctx, model, cfg, ct, so, c.warmup);
  for (auto it = grid.begin(); it != grid.end(); ++it) j[it.key()] = it.value();

  // The whole volume in one pass, when the plan under the budget says it fits.
  double budget = o.max_memory_mib;
  if (budget <= 0 && dev == Device::CUDA)
    budget = 0.9 * (device_free_mib(dev) + to_mib(memory_pool(dev).stats().reserved));
  json wj = {{"budget_mib", budget}};
  SegmentOptions wo = so;
  wo.max_memory_bytes = o.whole == "on" ? std::numeric_limits<size_t>::max()
                                        : size_t(std::max(0.0, budget) * 1024.0 * 1024.0);
  if (o.whole == "off") {
    wj["skipped"] = "--whole off";
  } else if (wo.max_memory_bytes == 0) {
    wj["skipped"] = "no budget (CPU: give --max-memory or --whole on)";
  } else {
    const InferencePlan plan =
        plan_inference(ctx, cfg.model, precision, ct.geo.size, wo.grid, wo.max_memory_bytes);
    wj["estimated_mib"] = to_mib(plan.estimated_bytes);
    if (!plan.whole_volume) {
      wj["skipped"] = "the whole volume does not fit the budget (--max-memory)";
    } else {
      // The patch plan's buffers go back to the system before the whole-volume plan.
      memory_pool(dev).release_cached();
      const json w = time_segment(c, ctx, model, cfg, ct, wo, c.warmup > 0 ? 1 : 0);
      for (auto it = w.begin(); it != w.end(); ++it) wj[it.key()] = it.value();
    }
  }
  j["whole_volume"] = wj;
  emit(c, j);
  return 0;
}

// ---------------------------------------------------------------- data
struct DataOpts {
  std::vector<int> size = {256, 256, 200};
  int subjects = 3;
  int workers = 2;
  int patch = 96;
  int patches = 40;
  int warmup_patches = 10;
  int batch = 2;
  std::string pipeline = "host";  // host | device | queue
  std::string storage = "i16";
  double budget_mib = 0;
  std::string dump_dir;
};

// The reference recipe's sampling settings (docs/ARCHITECTURE.md): queue 40 / 5, patch 96^3,
// LabelSampler {0: .2, 1: .3, 2: .5}, RandomAffine(scales 0.9-1.1, degrees 10).
const std::map<int, double> kBenchProbs = {{0, 0.2}, {1, 0.3}, {2, 0.5}};

// The subjects every pipeline starts from: phantoms (in memory), preprocessed once as the
// trainer does (CropOrPad(256, 256, 200) padded with -1024 HU, RescaleIntensity(-1, 1)).
std::vector<data::Subject> bench_subjects(const Common& c, const DataOpts& o, double* gen_s) {
  std::vector<data::Subject> subs;
  const auto tg = Clock::now();
  const std::array<int, 3> target{256, 256, 200};
  for (int s = 0; s < o.subjects; ++s) {
    data::PhantomConfig pc;
    pc.size = {o.size[0], o.size[1], o.size[2]};
    pc.seed = c.seed;
    data::PhantomCase pcase = data::make_phantom(pc, s);
    data::Subject sub;
    sub.id = "phantom_" + std::to_string(s);
    sub.image = data::crop_or_pad(pcase.ct, target, -1024.f);
    sub.label = data::crop_or_pad(pcase.label, target, uint8_t(0));
    data::rescale_intensity(sub.image, -1.f, 1.f);
    subs.push_back(std::move(sub));
  }
  *gen_s = seconds_since(tg);
  return subs;
}

// --dump-subjects DIR: the preprocessed subjects as raw files for the torchio peer
// (bench/peers/data_torchio.py): subject_<n>_image.f32 and subject_<n>_label.u8 (i fastest)
// and subjects.json with the grid (size, spacing, origin and direction in ITK's LPS).
int dump_subjects(const std::vector<data::Subject>& subs, const std::string& dir) {
  std::filesystem::create_directories(dir);
  json meta = json::array();
  for (size_t s = 0; s < subs.size(); ++s) {
    const auto& sub = subs[s];
    const std::string stem = dir + "/subject_" + std::to_string(s);
    std::ofstream fi(stem + "_image.f32", std::ios::binary),
        fl(stem + "_label.u8", std::ios::binary);
    fi.write(reinterpret_cast<const char*>(sub.image.v.data()),
             std::streamsize(sub.image.v.size() * sizeof(float)));
    fl.write(reinterpret_cast<const char*>(sub.label.v.data()),
             std::streamsize(sub.label.v.size()));
    CUSEG_CHECK(fi.good() && fl.good(), "cannot write " << stem << "_*");
    const data::Geometry& g = sub.image.geo;
    meta.push_back({{"id", sub.id},
                    {"image", "subject_" + std::to_string(s) + "_image.f32"},
                    {"label", "subject_" + std::to_string(s) + "_label.u8"},
                    {"size_ijk", g.size},
                    {"spacing", g.spacing},
                    {"origin_lps", g.origin},
                    {"direction_lps_rowmajor", g.direction}});
  }
  std::ofstream f(dir + "/subjects.json");
  f << json{{"layout", "i fastest (NIfTI i, j, k); image float32 normalised, label uint8"},
            {"subjects", meta}}
           .dump(2)
    << "\n";
  CUSEG_CHECK(f.good(), "cannot write " << dir << "/subjects.json");
  std::printf("wrote %zu subjects to %s\n", subs.size(), dir.c_str());
  return 0;
}

int run_data(const Common& c, const DataOpts& o) {
  CUSEG_REQUIRE(o.pipeline == "host" || o.pipeline == "device" || o.pipeline == "queue",
                "--pipeline: expected host, device or queue, got '" << o.pipeline << "'");
  CUSEG_REQUIRE(o.batch > 0 && o.patches % o.batch == 0 && o.warmup_patches % o.batch == 0,
                "--patches and --warmup-patches must be multiples of --batch " << o.batch);
  double gen_s = 0;
  std::vector<data::Subject> subs = bench_subjects(c, o, &gen_s);
  if (!o.dump_dir.empty()) return dump_subjects(subs, o.dump_dir);
  const data::Index3 psize{o.patch, o.patch, o.patch};
  const Device dev = o.pipeline == "device" ? Device::CUDA : Device::CPU;
  if (dev == Device::CUDA)
    CUSEG_REQUIRE(cuda_available(), "--pipeline device: no CUDA device answers");
  json j = header(c, dev, "data");
  const int64_t voxels = int64_t(o.patch) * o.patch * o.patch;
  std::vector<double> times;  // per batch
  data::PatchSpec spec;
  spec.patch = psize;
  spec.label_probabilities = kBenchProbs;
  spec.storage = data::parse_patch_storage(o.storage, "--storage");
  spec.patch_pad_value = -1.f;
  data::PatchOrder order;
  order.num_subjects = o.subjects;
  order.samples_per_volume = 5;
  order.max_length = 40;
  order.seed = c.seed;
  const auto tp = Clock::now();
  double prepare_s = 0;
  json stats;
  if (o.pipeline == "queue") {
    // Today's chain: per visit, RandomAffine on the whole volume, then LabelSampler, in the
    // threaded PatchQueue (the preprocessed volumes are the same as above).
    auto load = [&](int s, std::mt19937_64& rng) {
      data::Subject sub = subs[size_t(s)];
      data::random_affine(sub.image, sub.label, data::RandomAffineConfig{}, rng);
      return sub;
    };
    auto sample = [&](const data::Subject& sub, int count, std::mt19937_64& rng) {
      data::LabelSampler ls(psize, kBenchProbs);
      ls.prepare(sub.label);
      std::vector<data::Patch> out;
      for (int q = 0; q < count; ++q)
        out.push_back(data::extract_patch(sub.image, &sub.label, ls.sample(rng), psize));
      return out;
    };
    data::QueueConfig qc;
    qc.num_workers = o.workers;
    qc.seed = c.seed;
    data::PatchQueue queue(o.subjects, load, sample, qc);
    for (int i = 0; i < o.warmup_patches; ++i) queue.next();
    for (int i = 0; i < o.patches; i += o.batch) {
      const auto t0 = Clock::now();
      for (int b = 0; b < o.batch; ++b) queue.next();
      times.push_back(seconds_since(t0));
    }
    stats = queue.stats().summary();
  } else {
    std::vector<std::shared_ptr<const data::PatchSubject>> ps;
    for (const auto& sub : subs)
      ps.push_back(std::make_shared<const data::PatchSubject>(
          data::make_patch_subject(sub.id, sub.image, sub.label, spec)));
    subs.clear();
    prepare_s = seconds_since(tp);
    if (o.pipeline == "host") {
      data::HostPatchPipeline pipe([&](int s) { return ps[size_t(s)]; }, spec, order, o.workers);
      std::vector<float> img(size_t(o.batch * voxels));
      std::vector<uint8_t> lab(img.size());
      pipe.seek(0, 0);
      for (int i = 0; i < o.warmup_patches; i += o.batch)
        pipe.next(o.batch, img.data(), lab.data());
      for (int i = 0; i < o.patches; i += o.batch) {
        const auto t0 = Clock::now();
        pipe.next(o.batch, img.data(), lab.data());
        times.push_back(seconds_since(t0));
      }
      stats = pipe.stats().summary();
    } else {
      Context ctx(Device::CUDA);
      const size_t budget = size_t(o.budget_mib * 1024 * 1024);
      data::DevicePatchPipeline pipe(ps, spec, order, ctx, budget);
      ps.clear();
      Tensor img = Tensor::empty({o.batch, 1, o.patch, o.patch, o.patch}, DType::F32, dev);
      Tensor lab = Tensor::empty({o.batch, o.patch, o.patch, o.patch}, DType::U8, dev);
      pipe.seek(0, 0);
      for (int i = 0; i < o.warmup_patches; i += o.batch)
        pipe.next(o.batch, img.raw(), lab.data<uint8_t>());
      ctx.synchronize();
      memory_pool(dev).reset_peak();
      for (int i = 0; i < o.patches; i += o.batch) {
        const auto t0 = Clock::now();
        pipe.next(o.batch, img.raw(), lab.data<uint8_t>());
        ctx.synchronize();
        times.push_back(seconds_since(t0));
      }
      stats = pipe.stats().summary();
      const data::DevicePatchInfo info = pipe.info();
      j["device_data"] = {{"summary", info.summary()},
                          {"resident_subjects", info.resident_subjects},
                          {"streamed_subjects", info.streamed_subjects},
                          {"resident_bytes", info.resident_bytes},
                          {"staging_bytes", info.staging_bytes},
                          {"pinned_host_bytes", info.pinned_bytes},
                          {"device_bytes", info.resident_bytes + info.staging_bytes},
                          {"budget_bytes", info.budget_bytes}};
    }
  }
  double total = 0;
  for (double t : times) total += t;
  j["config"] = {
      {"pipeline", o.pipeline},
      {"phantom_size_ijk", o.size},
      {"subjects", o.subjects},
      {"workers", o.workers},
      {"patch", o.patch},
      {"batch", o.batch},
      {"patches_timed", o.patches},
      {"warmup_patches", o.warmup_patches},
      {"queue", "max_length 40, samples_per_volume 5"},
      {"storage", o.pipeline == "queue" ? "f32 (whole volumes)" : o.storage},
      {"preprocessing",
       "once per subject: CropOrPad(256,256,200, pad -1024) + RescaleIntensity(-1,1)"},
      {"per_visit",
       "RandomAffine(0.9-1.1, 10 deg, pad: image minimum) + LabelSampler{0:.2,1:.3,2:.5}"},
      {"excluded", "file reading (subjects are in memory); phantom generation"}};
  j["phantom_generation_s"] = gen_s;
  j["prepare_s"] = prepare_s;
  j["patches_per_s"] = o.patches / total;
  j["elapsed_s"] = total;
  j["batch_s"] = to_json(summarize(times));
  j["stats"] = stats;
  j["memory"] = memory_json(dev);
  emit(c, j);
  return 0;
}

}  // namespace

// ---------------------------------------------------------------- dist
// Data-parallel training step across the ranks of an MPI or torchrun-style launch (world size
// 1 without one): forward, the global class-weight normaliser (one small allreduce), backward
// with bucketed gradient averaging overlapping it, Adam. Then, per gradient bucket, the time of
// a blocking average-allreduce of that bucket's size alone. Rank 0 prints the JSON.
struct DistOpts {
  int batch = 1;  // per rank
  int patch = 64;
  double bucket_mib = 25;
  double timeout_s = 300;
  // "auto": a communicator only for world size > 1; "always": also for one rank (a single
  // GPU exercising and timing the NCCL path in the GPU check kit).
  std::string comm = "auto";
};

int run_dist(const Common& c, const DistOpts& o) {
  const DistEnv env = detect_dist_env();
  Device dev = resolve_device(c.device);
  if (dev == Device::CUDA && env.distributed()) select_cuda_device(env.local_rank);
  Context ctx(dev);
  std::unique_ptr<Communicator> comm;
  if (env.distributed() || o.comm == "always") {
    DistEnv e = env;
    if (!e.distributed() && e.launcher == "none") {  // one rank talking to itself
      e.launcher = "env";
      e.master_addr = "127.0.0.1";
      e.master_port = 29500;
    }
    comm = make_communicator(ctx, e, CommOptions{o.timeout_s});
  }
  const int W = env.world_size;
  UNetConfig cfg;
  cfg.filters = parse_ints(c.filters);
  const Precision precision = parse_precision(c.precision, "--precision");
  UNet3D model(cfg, dev, c.seed, precision);
  Adam adam(model.parameters(), AdamConfig{});
  std::unique_ptr<GradientSync> sync;
  if (comm) {
    broadcast_parameters(*comm, model.parameters());
    sync = std::make_unique<GradientSync>(*comm, model.parameters(),
                                          size_t(o.bucket_mib * 1024 * 1024));
    model.set_grad_ready_hook([&](Context& cx, const Param& p) { sync->mark_ready(cx, &p); });
  }
  const int P = o.patch;
  // Each rank its own batch (seeded by rank), as each rank draws its own patches.
  Tensor x = bench::random_tensor({o.batch, 1, P, P, P}, dev, c.seed + 1 + 7919 * env.rank);
  Tensor y =
      bench::random_labels({o.batch, P, P, P}, cfg.classes, dev, c.seed + 2 + 7919 * env.rank);
  Tensor g;  // d loss / d logits, in the logits' dtype and layout (planned on the first step)
  const std::vector<float> weights = {1.f, 1.f, 3.f};

  std::map<std::string, std::vector<double>> stage;
  std::vector<double> total;
  auto one_step = [&](bool timed) {
    const auto t0 = Clock::now();
    auto t = t0;
    auto lap = [&](const char* name) {
      ctx.synchronize();
      if (timed) stage[name].push_back(seconds_since(t));
      t = Clock::now();
    };
    const Tensor& logits = model.forward(ctx, x);
    lap("forward");
    if (!g.defined()) g = Tensor::zeros_like(logits);
    double norm = class_weight_sum(ctx, y, weights);
    if (comm) {
      comm->allreduce_host(&norm, 1, ReduceOp::Sum);
      norm /= double(W);  // average-allreduce of the gradients divides by W again
    }
    weighted_cross_entropy(ctx, logits, y, weights, g, norm);
    lap("loss");
    model.zero_grad();
    if (sync) sync->begin();
    model.backward(ctx, g);
    lap("backward");
    if (sync) sync->finish(ctx);
    lap("gradient_sync_wait");
    adam.step(ctx);
    lap("adam");
    if (timed) total.push_back(seconds_since(t0));
  };
  for (int i = 0; i < c.warmup; ++i) one_step(false);
  ctx.synchronize();
  memory_pool(dev).reset_peak();
  for (int i = 0; i < c.iters; ++i) one_step(true);

  json buckets = json::array();
  if (sync) {
    for (int b = 0; b < sync->buckets(); ++b) {
      const size_t n = sync->bucket_floats(b);
      Tensor buf = Tensor::zeros({int64_t(n)}, DType::F32, dev);
      std::vector<double> ts;
      for (int i = 0; i < c.warmup + c.iters; ++i) {
        comm->barrier();
        const auto t0 = Clock::now();
        comm->allreduce(buf.f32(), n, ReduceOp::Average);
        ctx.synchronize();
        if (i >= c.warmup) ts.push_back(seconds_since(t0));
      }
      const double med = summarize(ts).median;
      // Ring allreduce "bus bandwidth" convention (nccl-tests): 2 (W-1)/W bytes per byte.
      buckets.push_back({{"bucket", b},
                         {"floats", n},
                         {"mib", double(n) * 4 / (1 << 20)},
                         {"allreduce_s", to_json(summarize(ts))},
                         {"bus_gb_per_s", 2.0 * (W - 1) / W * double(n) * 4 / med / 1e9}});
    }
  }
  if (env.rank != 0) return 0;
  const Summary s = summarize(total);
  json j = header(c, dev, "dist");
  j["config"] = {{"world_size", W},
                 {"launcher", env.launcher},
                 {"backend", comm ? comm->backend() : "none"},
                 {"batch_per_rank", o.batch},
                 {"global_batch", o.batch * W},
                 {"patch", P},
                 {"filters", join(cfg.filters)},
                 {"params", model.num_parameters()},
                 {"bucket_mib", o.bucket_mib},
                 {"precision", precision_name(precision)},
                 {"warmup", c.warmup},
                 {"iters", c.iters},
                 {"OMP_NUM_THREADS",
                  std::getenv("OMP_NUM_THREADS") ? std::getenv("OMP_NUM_THREADS") : "unset"}};
  j["step_s"] = to_json(s);
  j["patches_per_s"] = o.batch * W / s.median;
  json st;
  for (auto& kv : stage) st[kv.first] = summarize(kv.second).median;
  j["stage_median_s"] = st;
  j["buckets"] = buckets;
  j["memory"] = memory_json(dev);
  emit(c, j);
  return 0;
}

int main(int argc, char** argv) {
  CLI::App app{"cuseg end-to-end benchmarks (training step, full-volume inference, data)"};
  app.require_subcommand(1);
  Common c;
  for (int i = 0; i < argc; ++i) c.command_line += (i ? " " : "") + std::string(argv[i]);
  auto add_common = [&](CLI::App* s) {
    s->add_option("--device", c.device, "auto | cuda | cpu")->capture_default_str();
    s->add_option("--filters", c.filters, "U-Net filters per level, comma separated")
        ->capture_default_str();
    s->add_option("--warmup", c.warmup, "untimed iterations first")->capture_default_str();
    s->add_option("--iters", c.iters, "timed iterations")->capture_default_str();
    s->add_option("--seed", c.seed, "seed of weights and synthetic inputs")->capture_default_str();
    s->add_option("--precision", c.precision,
                  "fp32 | bf16 (bf16: channels-last bf16 activations and weight copies on cuDNN "
                  "graphs, fp32 master weights; on the CPU the bf16 oracle)")
        ->check(CLI::IsMember({"fp32", "bf16"}))
        ->capture_default_str();
    s->add_option("--json", c.json_out, "also write the JSON result to this file");
  };
  StepOpts so;
  auto* step =
      app.add_subcommand("step", "one training step: forward, weighted CE (1,1,3), backward, Adam");
  add_common(step);
  step->add_option("--batch", so.batch, "patches per step")->capture_default_str();
  step->add_option("--patch", so.patch, "cubic patch edge (voxels)")->capture_default_str();

  StepOpts fo;
  fo.batch = 1;
  auto* fwd = app.add_subcommand("forward", "forward pass of one batch of patches");
  add_common(fwd);
  fwd->add_option("--batch", fo.batch, "patches per batch")->capture_default_str();
  fwd->add_option("--patch", fo.patch, "cubic patch edge (voxels)")->capture_default_str();

  VolumeOpts vo;
  auto* volume =
      app.add_subcommand("volume", "full-volume grid inference (+ whole-volume pass when it fits)");
  add_common(volume);
  volume->add_option("--size", vo.size, "volume extents i j k (W H D)")
      ->expected(3)
      ->capture_default_str();
  volume->add_option("--patch", vo.patch, "grid patch edge")->capture_default_str();
  volume->add_option("--overlap", vo.overlap, "grid overlap (even)")->capture_default_str();
  volume->add_option("--batch", vo.batch, "patches per forward")->capture_default_str();
  volume->add_option("--mode", vo.mode, "aggregation: crop | average | hann | gaussian")
      ->capture_default_str()
      ->check(CLI::IsMember({"crop", "average", "hann", "gaussian"}));
  volume
      ->add_option("--whole", vo.whole,
                   "whole-volume pass: auto (when it fits the budget) | on | off")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "on", "off"}));
  volume
      ->add_option("--max-memory", vo.max_memory_mib,
                   "MiB budget of the whole-volume plan (0: CUDA 90% of free; CPU: off)")
      ->capture_default_str();

  DataOpts dopt;
  auto* dat = app.add_subcommand(
      "data", "training patches/s: fused pipeline (host threads or device) or today's queue");
  add_common(dat);
  dat->add_option("--pipeline", dopt.pipeline,
                  "host (fused gather on worker threads) | device (CUDA kernels, volumes on the "
                  "device) | queue (whole-volume RandomAffine + LabelSampler in PatchQueue)")
      ->capture_default_str();
  dat->add_option("--size", dopt.size, "phantom extents i j k")->expected(3)->capture_default_str();
  dat->add_option("--subjects", dopt.subjects, "phantom subjects")->capture_default_str();
  dat->add_option("--workers", dopt.workers, "worker threads (host, queue)")->capture_default_str();
  dat->add_option("--patch", dopt.patch, "cubic patch edge")->capture_default_str();
  dat->add_option("--batch", dopt.batch, "patches per request (the training batch)")
      ->capture_default_str();
  dat->add_option("--patches", dopt.patches, "timed patches")->capture_default_str();
  dat->add_option("--warmup-patches", dopt.warmup_patches, "untimed patches first")
      ->capture_default_str();
  dat->add_option("--storage", dopt.storage, "volume storage: i16 | bf16 | f32")
      ->capture_default_str();
  dat->add_option("--budget-mib", dopt.budget_mib,
                  "device: MiB for resident volumes (0: 40% of device memory); less streams")
      ->capture_default_str();
  dat->add_option("--dump-subjects", dopt.dump_dir,
                  "write the preprocessed subjects for the torchio peer into DIR and exit");

  DistOpts dso;
  auto* dst = app.add_subcommand(
      "dist", "data-parallel step under mpirun/srun/torchrun-style ranks + allreduce per bucket");
  add_common(dst);
  dst->add_option("--batch", dso.batch, "patches per rank per step")->capture_default_str();
  dst->add_option("--patch", dso.patch, "cubic patch edge (voxels)")->capture_default_str();
  dst->add_option("--bucket-mib", dso.bucket_mib, "gradient bucket size (MiB)")
      ->capture_default_str();
  dst->add_option("--timeout", dso.timeout_s, "collective timeout (s)")->capture_default_str();
  dst->add_option("--comm", dso.comm, "auto: communicator for world size > 1; always: also 1")
      ->check(CLI::IsMember({"auto", "always"}))
      ->capture_default_str();

  CLI11_PARSE(app, argc, argv);
  try {
    if (dst->parsed()) return run_dist(c, dso);
    if (step->parsed()) return run_step(c, so);
    if (fwd->parsed()) return run_forward(c, fo);
    if (volume->parsed()) return run_volume(c, vo);
    if (dat->parsed()) return run_data(c, dopt);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "engine_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
