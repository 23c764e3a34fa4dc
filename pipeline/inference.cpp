// Preprocessing + inverse, grid inference and model loading (see inference.h).
#include "cuseg/pipeline/inference.h"

#include <algorithm>
#include <cstring>
#include <filesystem>

#include "cuseg/core/check.h"
#include "cuseg/core/clock.h"
#include "cuseg/data/transforms.h"
#include "cuseg/kernels/conv3d.h"

namespace fs = std::filesystem;

namespace cuseg {

using data::Geometry;
using data::Image;
using data::Index3;
using data::LabelMap;

namespace {
float min_value(const Image& img) {
  return img.v.empty() ? 0.f : *std::min_element(img.v.begin(), img.v.end());
}
}  // namespace

void StageTimes::add(const std::string& name, double seconds) {
  for (auto& s : stages)
    if (s.first == name) {
      s.second += seconds;
      return;
    }
  stages.emplace_back(name, seconds);
}
double StageTimes::total() const {
  double t = 0;
  for (const auto& s : stages) t += s.second;
  return t;
}

Preprocessed preprocess(const RunConfig& cfg, const Image& image, const LabelMap* label,
                        const Index3* patch) {
  Preprocessed p;
  if (label) {
    std::string why;
    CUSEG_REQUIRE(data::same_grid(image.geo, label->geo, &why),
                  "image and label grids differ: " << why);
  }
  // 1. Orientation: a pure permutation/flip, exactly invertible.
  p.reorientation = data::plan_reorientation(image.geo, cfg.orientation);
  p.image = data::reorient(image, p.reorientation);
  if (label) p.label = data::reorient(*label, p.reorientation);
  const float minimum = min_value(p.image);
  const float pad = cfg.pad_with_minimum ? minimum : cfg.pad_value;

  // 2. In-plane resample to a fixed size (same field of view), as the reference's
  //    256x256 dataset was made; skipped when the volume already has that size.
  if (cfg.resample_inplane[0] > 0) {
    const auto& s = p.image.geo.size;
    if (s[0] != cfg.resample_inplane[0] || s[1] != cfg.resample_inplane[1]) {
      p.resampled = true;
      p.before_resample = p.image.geo;
      const Geometry g = data::resized_geometry(
          p.image.geo, {cfg.resample_inplane[0], cfg.resample_inplane[1], s[2]});
      p.image = data::resample_to(p.image, g, data::Interp::Linear, minimum);
      if (label) p.label = data::resample_to(p.label, g, data::Interp::Nearest, uint8_t(0));
    }
  }
  // 3. CropOrPad (centre, torchio split).
  if (cfg.crop_or_pad[0] > 0 && p.image.geo.size != cfg.crop_or_pad) {
    p.cropped = true;
    p.before_crop = p.image.geo;
    p.image = data::crop_or_pad(p.image, cfg.crop_or_pad, pad);
    if (label) p.label = data::crop_or_pad(p.label, cfg.crop_or_pad, uint8_t(0));
  }
  // 4. Intensity: optional HU window, then RescaleIntensity with percentile cut-offs.
  if (cfg.clip) data::clamp(p.image, cfg.clip_lo, cfg.clip_hi);
  data::rescale_intensity(p.image, cfg.rescale_lo, cfg.rescale_hi, cfg.percentile_lo,
                          cfg.percentile_hi);
  // 5. Inference only: at least one patch per axis (padded with the normalised minimum).
  if (patch) {
    bool need = false;
    for (int a = 0; a < 3; ++a) need |= p.image.geo.size[size_t(a)] < (*patch)[size_t(a)];
    if (need) {
      p.padded_to_patch = true;
      p.before_patch_pad = p.image.geo;
      data::pad_to_patch(p.image, label ? &p.label : nullptr, *patch, cfg.rescale_lo);
    }
  }
  return p;
}

LabelMap restore_geometry(const Preprocessed& p, const LabelMap& model_grid) {
  LabelMap m = model_grid;
  if (p.padded_to_patch) m = data::crop_or_pad_inverse(m, p.before_patch_pad, uint8_t(0));
  if (p.cropped) m = data::crop_or_pad_inverse(m, p.before_crop, uint8_t(0));
  if (p.resampled) m = data::resample_to(m, p.before_resample, data::Interp::Nearest, uint8_t(0));
  m = data::reorient_back(m, p.reorientation);
  // The undo steps restore the geometry verbatim; pin it exactly (no floating drift).
  m.geo = p.reorientation.original;
  return m;
}

GridOptions grid_options(const RunConfig& cfg) {
  GridOptions o;
  o.patch = cfg.infer_patch;
  o.overlap = cfg.overlap;
  o.batch = cfg.infer_batch;
  o.mode = parse_mode(cfg.mode);
  return o;
}

LabelMap predict_volume(UNet3D& net, Context& ctx, const Image& image, const GridOptions& opt,
                        StageTimes* times) {
  const Index3 patch = opt.patch;
  const Index3 overlap{opt.overlap, opt.overlap, opt.overlap};
  const auto locs = data::grid_locations(image.geo.size, patch, overlap);
  const int classes = net.config().classes;
  data::GridAggregator agg(image.geo, classes, patch, overlap, opt.mode);
  const int64_t pv = int64_t(patch[0]) * patch[1] * patch[2];
  const int n = std::max(1, std::min<int>(opt.batch, int(locs.size())));
  // Fixed batch shape (the last batch is zero-filled) so activation buffers are planned once.
  Tensor host = Tensor::zeros({n, 1, patch[2], patch[1], patch[0]});
  Tensor dev =
      net.device() == Device::CPU ? host : Tensor::empty(host.shape(), DType::F32, net.device());
  double t_net = 0, t_agg = 0;
  for (size_t b = 0; b < locs.size(); b += size_t(n)) {
    const int cnt = int(std::min<size_t>(size_t(n), locs.size() - b));
    const double t0 = now_s();
    for (int q = 0; q < n; ++q) {
      float* dst = host.f32() + q * pv;
      if (q >= cnt) {
        std::fill(dst, dst + pv, 0.f);
        continue;
      }
      const Index3& ini = locs[b + size_t(q)];
      for (int k = 0; k < patch[2]; ++k)
        for (int j = 0; j < patch[1]; ++j) {
          const int64_t src = image.geo.index(ini[0], ini[1] + j, ini[2] + k);
          std::memcpy(dst + (int64_t(k) * patch[1] + j) * patch[0], image.v.data() + src,
                      sizeof(float) * size_t(patch[0]));
        }
    }
    if (net.device() != Device::CPU) dev.copy_from(host);
    const Tensor& logits = net.forward(ctx, dev);
    Tensor out = logits.device() == Device::CPU ? logits : logits.to(Device::CPU);
    ctx.synchronize();
    const double t1 = now_s();
    agg.add(out.f32(), cnt, &locs[b]);
    const double t2 = now_s();
    t_net += t1 - t0;
    t_agg += t2 - t1;
  }
  const double t3 = now_s();
  LabelMap m = agg.argmax();
  t_agg += now_s() - t3;
  if (times) {
    times->add("network", t_net);
    times->add("aggregate", t_agg);
  }
  return m;
}

size_t inference_bytes(const Context& ctx, const UNetConfig& net, const data::Index3& patch,
                       int batch) {
  const size_t workspace_bytes =
      ctx.device() == Device::CUDA ? ctx.options().workspace_budget_bytes : kConvColumnBudget;
  const Shape in = {batch, net.in_channels, patch[2], patch[1], patch[0]};
  const size_t input = size_t(shape_numel(in)) * sizeof(float);
  return size_t(unet_parameter_count(net)) * sizeof(float) + unet_forward_bytes(net, in) + input +
         workspace_bytes;
}

GridOptions fit_to_memory(const Context& ctx, const UNetConfig& net, const data::Index3& volume,
                          GridOptions opt, size_t budget_bytes, bool* whole) {
  *whole = false;
  if (budget_bytes == 0) return opt;
  const int div = 1 << (int(net.filters.size()) - 1);
  data::Index3 all;
  for (int a = 0; a < 3; ++a) {
    const int v = std::max(volume[size_t(a)], opt.patch[size_t(a)]);
    all[size_t(a)] = (v + div - 1) / div * div;
  }
  if (inference_bytes(ctx, net, all, 1) <= budget_bytes) {
    *whole = true;
    opt.patch = all;
    opt.batch = 1;
    opt.overlap = 0;
    return opt;
  }
  int best = 0;
  for (int n = 1; n <= 64; ++n)
    if (inference_bytes(ctx, net, opt.patch, n) <= budget_bytes) best = n;
  if (best == 0)
    CUSEG_THROW("--max-memory " << to_mib(budget_bytes) << " MiB is below what one " << opt.patch[0]
                                << "x" << opt.patch[1] << "x" << opt.patch[2] << " patch needs ("
                                << to_mib(inference_bytes(ctx, net, opt.patch, 1)) << " MiB)");
  opt.batch = best;
  return opt;
}

LoadedModel load_model(const std::string& path, Device dev) {
  std::string file = path;
  if (fs::is_directory(path)) {
    const fs::path best = fs::path(path) / "best.safetensors";
    const fs::path last = fs::path(path) / "last.safetensors";
    if (fs::exists(best))
      file = best.string();
    else if (fs::exists(last))
      file = last.string();
    else
      CUSEG_THROW(path << ": no best.safetensors or last.safetensors in this run folder");
  } else if (!fs::exists(path)) {
    CUSEG_THROW(path << ": no such checkpoint file or run folder");
  }
  Metadata meta;
  read_safetensors(file, &meta);  // validates the file and gives us the metadata
  auto it = meta.find(kConfigKey);
  if (it == meta.end())
    CUSEG_THROW(file << ": checkpoint has no '" << kConfigKey
                     << "' metadata (not written by engine_train?)");
  LoadedModel m;
  m.cfg = parse_config(it->second, file + " (stored config)");
  m.net = std::make_unique<UNet3D>(m.cfg.model, dev, m.cfg.seed);
  m.meta = load_checkpoint(file, m.net->parameters());
  m.checkpoint = file;
  return m;
}

}  // namespace cuseg
