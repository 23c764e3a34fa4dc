// Preprocessing + inverse, the memory plan, the device-side inference pipeline and model
// loading (see inference.h).
#include "cuseg/pipeline/inference.h"

#include <algorithm>
#include <cstring>
#include <filesystem>

#include "cuseg/core/check.h"
#include "cuseg/core/clock.h"
#include "cuseg/data/transforms.h"
#include "cuseg/engine/memory.h"
#include "cuseg/engine/ops.h"
#include "cuseg/kernels/conv3d.h"
#include "cuseg/kernels/mirror.h"
#include "cuseg/pipeline/probabilities.h"

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
float clamp_to(float v, float lo, float hi) {
  return std::min(hi, std::max(lo, v));  // data::clamp's expression, value for value
}
int64_t numel3(const Index3& s) {
  return int64_t(s[0]) * s[1] * s[2];
}
// A block of the device pool: the request rounded up to the pool's granularity.
size_t pool_block(size_t bytes) {
  return (bytes + MemoryPool::kAlign - 1) / MemoryPool::kAlign * MemoryPool::kAlign;
}

// Times stages when asked: each lap waits for the device, then adds the seconds since the last
// lap to `name`.
class Laps {
 public:
  Laps(Context& ctx, StageTimes* t) : ctx_(ctx), t_(t), last_(t ? now_s() : 0) {}
  void lap(const char* name) {
    if (!t_) return;
    ctx_.synchronize();
    const double now = now_s();
    t_->add(name, now - last_);
    last_ = now;
  }

 private:
  Context& ctx_;
  StageTimes* t_;
  double last_;
};
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

// ---------------------------------------------------------------- preprocessing
Preprocessed preprocess_geometry(const RunConfig& cfg, const Image& image, const LabelMap* label) {
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
  return p;
}

Preprocessed preprocess(const RunConfig& cfg, const Image& image, const LabelMap* label,
                        const Index3* patch) {
  Preprocessed p = preprocess_geometry(cfg, image, label);
  // 4. Intensity: optional HU window, then RescaleIntensity with percentile cut-offs.
  if (cfg.clip) data::clamp(p.image, cfg.clip_lo, cfg.clip_hi);
  data::rescale_intensity(p.image, cfg.rescale_lo, cfg.rescale_hi, cfg.percentile_lo,
                          cfg.percentile_hi);
  // 5. Optionally at least one patch per axis (padded with the normalised minimum).
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

IntensitySpec intensity_spec(const RunConfig& cfg) {
  IntensitySpec s;
  s.clip = cfg.clip;
  s.clip_lo = cfg.clip_lo;
  s.clip_hi = cfg.clip_hi;
  s.percentile_lo = cfg.percentile_lo;
  s.percentile_hi = cfg.percentile_hi;
  s.out_lo = cfg.rescale_lo;
  s.out_hi = cfg.rescale_hi;
  return s;
}

// ---------------------------------------------------------------- grid and memory plan
GridOptions grid_options(const RunConfig& cfg) {
  GridOptions o;
  o.patch = cfg.infer_patch;
  o.overlap = cfg.overlap;
  o.batch = cfg.infer_batch;
  o.mode = parse_mode(cfg.mode);
  return o;
}

Index3 padded_grid(const Index3& model_grid, const Index3& patch) {
  Index3 p;
  for (size_t a = 0; a < 3; ++a) p[a] = std::max(model_grid[a], patch[a]);
  return p;
}

namespace {
// Patches per network call: the configured batch, at most the number of grid positions.
int batch_size(const GridOptions& g, size_t patches) {
  return std::max(1, std::min<int>(g.batch, int(patches)));
}
}  // namespace

size_t inference_bytes(const Context& ctx, const UNetConfig& net, Precision precision,
                       const Index3& model_grid, const GridOptions& grid, bool probabilities) {
  const Index3 padded = padded_grid(model_grid, grid.patch);
  const size_t patches =
      data::grid_locations(padded, grid.patch, {grid.overlap, grid.overlap, grid.overlap}).size();
  const int n = batch_size(grid, patches);
  const Shape in = {n, net.in_channels, grid.patch[2], grid.patch[1], grid.patch[0]};
  const bool bf16 = precision == Precision::BF16;
  const size_t round_up = MemoryPool::kAlign - 1;  // at most this much per pool block
  // Network: the parameters and their gradient buffers (UNet3D allocates both when it is
  // built; bf16 adds one padded bf16 copy per parameter tensor): its 4 levels - 1 convolutions
  // (2 per encoder and per decoder level, the final 1x1) hold a weight and a bias tensor each,
  // every tensor rounded up to a pool block.
  const size_t param_tensors = 2 * (4 * net.filters.size() - 1);
  const size_t params =
      unet_parameter_bytes(net, precision) + (bf16 ? 3 : 2) * param_tensors * round_up;
  // The planned activations (in bf16 with the fp32 logits the aggregation reads), each buffer
  // rounded up to a pool block: t1, cat, pooled, dt1, dout per level above the deepest, t1 and
  // the skip buffer at the deepest, the head (bf16: also the padded input and the fp32 logits).
  const size_t activation_buffers = 5 * (net.filters.size() - 1) + 2 + 1 + (bf16 ? 2 : 0);
  const size_t activations = unet_forward_bytes(net, in, precision, bf16) +
                             activation_buffers * round_up +
                             unet_forward_scratch_bytes(net, in, precision, ctx.device());
  // The convolution workspace at its cap.
  const size_t workspace_bytes =
      ctx.device() == Device::CUDA ? ctx.options().workspace_budget_bytes : kConvColumnBudget;
  const size_t network = params + activations + workspace_bytes;
  // Pipeline buffers (VolumePredictor), each one pool block; fp32 in both precisions.
  const size_t vox = size_t(numel3(padded));
  const size_t pipeline = pool_block(size_t(numel3(model_grid)) * sizeof(float)) +  // volume
                          pool_block(size_t(shape_numel(in)) * sizeof(float)) +     // batch
                          pool_block(patches * 3 * sizeof(int32_t)) +               // origins
                          pool_block(vox * size_t(net.classes) * sizeof(float)) +   // sums
                          pool_block(vox * sizeof(float)) +                         // weights
                          pool_block(vox) +                                         // mask
                          pool_block(minmax_workspace_bytes()) + pool_block(2 * sizeof(float));
  // Test-time mirroring: the mirrored batch and the per-patch averaged probabilities.
  const size_t tta = grid.tta ? pool_block(size_t(shape_numel(in)) * sizeof(float)) +
                                    pool_block(size_t(shape_numel(in)) / size_t(net.in_channels) *
                                               size_t(net.classes) * sizeof(float))
                              : 0;
  // probabilities() without tta: the softmax of the scores, a second C x padded-grid tensor.
  const size_t probs =
      probabilities && !grid.tta ? pool_block(vox * size_t(net.classes) * sizeof(float)) : 0;
  return network + pipeline + tta + probs;
}

InferencePlan plan_inference(const Context& ctx, const UNetConfig& net, Precision precision,
                             const Index3& model_grid, const GridOptions& grid, size_t budget_bytes,
                             bool probabilities) {
  InferencePlan plan;
  plan.grid = grid;
  plan.budget_bytes = budget_bytes;
  plan.precision = precision;
  plan.model_grid = model_grid;
  if (budget_bytes > 0) {
    const int div = 1 << (int(net.filters.size()) - 1);
    GridOptions whole = grid;
    for (size_t a = 0; a < 3; ++a) {
      const int v = std::max(model_grid[a], grid.patch[a]);
      whole.patch[a] = (v + div - 1) / div * div;
    }
    whole.batch = 1;
    whole.overlap = 0;
    if (inference_bytes(ctx, net, precision, model_grid, whole, probabilities) <= budget_bytes) {
      plan.whole_volume = true;
      plan.grid = whole;
    } else {
      int best = 0;
      for (int n = 1; n <= 64; ++n) {
        GridOptions g = grid;
        g.batch = n;
        if (inference_bytes(ctx, net, precision, model_grid, g, probabilities) <= budget_bytes)
          best = n;
      }
      GridOptions one = grid;
      one.batch = 1;
      if (best == 0)
        CUSEG_THROW("--max-memory "
                    << to_mib(budget_bytes) << " MiB is below what one " << grid.patch[0] << "x"
                    << grid.patch[1] << "x" << grid.patch[2] << " patch needs ("
                    << to_mib(inference_bytes(ctx, net, precision, model_grid, one, probabilities))
                    << " MiB)");
      plan.grid.batch = best;
    }
  }
  plan.padded = padded_grid(model_grid, plan.grid.patch);
  plan.patches = int(data::grid_locations(plan.padded, plan.grid.patch,
                                          {plan.grid.overlap, plan.grid.overlap, plan.grid.overlap})
                         .size());
  plan.estimated_bytes = inference_bytes(ctx, net, precision, model_grid, plan.grid, probabilities);
  return plan;
}

// ---------------------------------------------------------------- VolumePredictor
struct VolumePredictor::Impl {
  UNet3D& net;
  Context& ctx;
  GridOptions grid;
  GridAggregateParams agg;
  Geometry padded_geo;
  Index3 pad_offset{0, 0, 0};  // unpadded index = padded index + pad_offset (<= 0)
  float pad_value = 0.f;
  std::vector<Index3> locs;
  Tensor volume;  // [1, 1, D, H, W] model grid, normalised
  Tensor batch;   // [n, 1, pd, ph, pw]
  Tensor starts;  // [patches, 3] int32 (z, y, x)
  Tensor sum;     // [1, C, PD, PH, PW] padded grid; scores after finalise
  Tensor weight;  // [1, 1, PD, PH, PW]
  Tensor labels;  // [1, PD, PH, PW] uint8
  // tta only: the batch flipped ([n, 1, pd, ph, pw]) and the per-patch mirror-averaged
  // softmax ([n, C, pd, ph, pw]) that is aggregated in place of the logits.
  Tensor mirrored, patch_probs;
  bool finalised = false;

  Impl(UNet3D& n, Context& c, const GridOptions& g) : net(n), ctx(c), grid(g) {}
};

VolumePredictor::VolumePredictor(UNet3D& net, Context& ctx, const GridOptions& grid)
    : impl_(std::make_unique<Impl>(net, ctx, grid)) {
  CUSEG_CHECK(net.device() == ctx.device(), "model on " << device_name(net.device())
                                                        << ", context on "
                                                        << device_name(ctx.device()));
  const Index3& p = grid.patch;
  impl_->agg =
      grid_aggregate_params(grid.mode, grid.overlap, grid.overlap, grid.overlap, p[2], p[1], p[0]);
}

VolumePredictor::~VolumePredictor() = default;

void VolumePredictor::load(const Image& image, const IntensitySpec* intensity, float pad_value,
                           StageTimes* times) {
  Impl& m = *impl_;
  const Device dev = m.ctx.device();
  const Index3& s = image.geo.size;
  const Index3& patch = m.grid.patch;
  CUSEG_CHECK(int64_t(image.v.size()) == numel3(s) && numel3(s) > 0,
              "VolumePredictor: image of " << image.v.size() << " voxels for size " << s[0] << "x"
                                           << s[1] << "x" << s[2]);
  Laps laps(m.ctx, times);
  // Geometry of the padded grid and the patch origins on it.
  const Index3 padded = padded_grid(s, patch);
  m.padded_geo = data::crop_or_pad_geometry(image.geo, padded);
  for (size_t a = 0; a < 3; ++a) m.pad_offset[a] = crop_or_pad_offset(s[a], padded[a]);
  m.pad_value = pad_value;
  m.locs = data::grid_locations(padded, patch, {m.grid.overlap, m.grid.overlap, m.grid.overlap});
  const int n = batch_size(m.grid, m.locs.size());

  // Release the previous volume's buffers before allocating this one's.
  m.volume = m.batch = m.starts = m.sum = m.weight = m.labels = m.mirrored = m.patch_probs =
      Tensor();
  m.finalised = false;

  // Upload: the volume and the patch origins (z, y, x), once.
  m.volume = Tensor::empty({1, 1, s[2], s[1], s[0]}, DType::F32, dev);
  m.volume.copy_from_host(image.v.data(), image.v.size() * sizeof(float));
  std::vector<int32_t> st(m.locs.size() * 3);
  for (size_t q = 0; q < m.locs.size(); ++q) {
    st[3 * q] = m.locs[q][2];
    st[3 * q + 1] = m.locs[q][1];
    st[3 * q + 2] = m.locs[q][0];
  }
  m.starts = Tensor::empty({int64_t(m.locs.size()), 3}, DType::I32, dev);
  m.starts.copy_from_host(st.data(), st.size() * sizeof(int32_t));
  laps.lap("upload");

  // Normalise on the device: one pass. Clipping to [a, b] and then to cut-offs that lie in
  // [a, b] is clipping to the cut-offs (kernels/rescale_intensity.h), so the clip is folded
  // into the rescale, and min/max of the clipped volume is the clipped min/max (clamping is
  // monotone): the result is value for value that of data::clamp + data::rescale_intensity.
  if (intensity) {
    const IntensitySpec& in = *intensity;
    CUSEG_CHECK(in.percentile_lo < in.percentile_hi,
                "rescale: percentiles must be increasing, got (" << in.percentile_lo << ", "
                                                                 << in.percentile_hi << ")");
    RescaleParams rp;
    rp.out_min = in.out_lo;
    rp.out_max = in.out_hi;
    if (in.percentile_lo == 0.0 && in.percentile_hi == 100.0) {
      const auto mm = minmax(m.ctx, m.volume);  // 8 bytes come back
      rp.in_min = mm.first;
      rp.in_max = mm.second;
      if (in.clip) {
        rp.in_min = clamp_to(rp.in_min, in.clip_lo, in.clip_hi);
        rp.in_max = clamp_to(rp.in_max, in.clip_lo, in.clip_hi);
      }
    } else {
      // Other percentiles need an order statistic (a selection over the whole volume). The
      // host still holds the volume it just uploaded, so they are taken there, on the clipped
      // values, exactly as data::rescale_intensity does; the rescale itself runs on the device.
      // (The reference recipe and both configs use (0, 100).)
      std::vector<float> v = image.v;
      if (in.clip)
        for (float& x : v) x = clamp_to(x, in.clip_lo, in.clip_hi);
      rp.in_min = float(data::percentile(v, in.percentile_lo));
      rp.in_max = float(data::percentile(v, in.percentile_hi));
    }
    if (rp.in_max > rp.in_min) {
      rescale_intensity(m.ctx, m.volume, m.volume, rp);
    } else if (in.clip) {
      // Constant after clipping: data::rescale_intensity leaves the clipped values, which are
      // all rp.in_min here.
      m.volume.fill(rp.in_min);
    }  // constant without clip: unchanged
    laps.lap("normalise");
  }

  // Device buffers of the grid pass.
  const int classes = m.net.config().classes;
  m.batch = Tensor::empty({n, 1, patch[2], patch[1], patch[0]}, DType::F32, dev);
  m.sum = Tensor::empty({1, classes, padded[2], padded[1], padded[0]}, DType::F32, dev);
  m.weight = Tensor::empty({1, 1, padded[2], padded[1], padded[0]}, DType::F32, dev);
  m.labels = Tensor::empty({1, padded[2], padded[1], padded[0]}, DType::U8, dev);
  if (m.grid.tta) {
    m.mirrored = Tensor::empty(m.batch.shape(), DType::F32, dev);
    m.patch_probs = Tensor::empty({n, classes, patch[2], patch[1], patch[0]}, DType::F32, dev);
  }
}

const Tensor& VolumePredictor::volume() const {
  CUSEG_CHECK(impl_->volume.defined(), "VolumePredictor: no volume loaded");
  return impl_->volume;
}

void VolumePredictor::run(StageTimes* times) {
  Impl& m = *impl_;
  CUSEG_CHECK(m.volume.defined(), "VolumePredictor::run before load");
  Laps laps(m.ctx, times);
  const int n = int(m.batch.dim(0));
  const int64_t np = int64_t(m.locs.size());
  m.sum.zero();
  m.weight.zero();
  for (int64_t b = 0; b < np; b += n) {
    const int cnt = int(std::min<int64_t>(n, np - b));
    // Fixed batch shape (activation buffers are planned once); unused slots are zeros.
    if (cnt < n) m.batch.zero();
    for (int q = 0; q < cnt; ++q) {
      const Index3& l = m.locs[size_t(b + q)];
      CropOrPadParams p;
      p.oz = l[2] + m.pad_offset[2];
      p.oy = l[1] + m.pad_offset[1];
      p.ox = l[0] + m.pad_offset[0];
      p.pad_value = m.pad_value;
      crop_or_pad(m.ctx, m.volume, m.batch.batch_slice(q, q + 1), p);
    }
    laps.lap("crop");
    if (!m.grid.tta) {
      m.net.forward(m.ctx, m.batch);
      // fp32 aggregation in both precisions: the logits themselves in fp32, in bf16 an exact
      // conversion of the bf16 channels-last logits into a model-owned fp32 NCDHW buffer.
      const Tensor& logits = m.net.logits_f32(m.ctx);
      laps.lap("network");
      grid_aggregate(m.ctx, logits.batch_slice(0, cnt), m.starts.batch_slice(b, b + cnt), m.sum,
                     m.weight, m.agg);
    } else {
      // nnU-Net's 8 mirrorings: pass `axes` sees the patches flipped along the axes of the
      // mask; its logits (fp32 NCDHW in both precisions, as above) are flipped back, softmaxed
      // and added with weight 1/8 (passes in mask order 0..7, the same order on every
      // backend).
      m.patch_probs.zero();
      for (int axes = 0; axes <= kMirrorAll; ++axes) {
        if (axes != 0) mirror(m.ctx, m.batch, m.mirrored, axes);
        laps.lap("mirror");
        m.net.forward(m.ctx, axes == 0 ? m.batch : m.mirrored);
        const Tensor& logits = m.net.logits_f32(m.ctx);
        laps.lap("network");
        softmax_mirror_accumulate(m.ctx, logits, m.patch_probs, axes, 1.f / float(kMirrorAll + 1));
        laps.lap("softmax");
      }
      grid_aggregate(m.ctx, m.patch_probs.batch_slice(0, cnt), m.starts.batch_slice(b, b + cnt),
                     m.sum, m.weight, m.agg);
    }
    laps.lap("aggregate");
  }
  grid_aggregate_finalize(m.ctx, m.sum, m.weight, m.sum);
  m.finalised = true;
  laps.lap("aggregate");
}

const Tensor& VolumePredictor::scores() const {
  CUSEG_CHECK(impl_->finalised, "VolumePredictor::scores before run");
  return impl_->sum;
}

LabelMap VolumePredictor::mask(StageTimes* times) {
  Impl& m = *impl_;
  CUSEG_CHECK(m.finalised, "VolumePredictor::mask before run");
  Laps laps(m.ctx, times);
  argmax_channels(m.ctx, m.sum, m.labels);
  laps.lap("argmax");
  LabelMap out = LabelMap::make(m.padded_geo);
  m.labels.copy_to_host(out.v.data(), out.v.size());
  laps.lap("download");
  return out;
}

std::vector<Image> VolumePredictor::probabilities(StageTimes* times) {
  Impl& m = *impl_;
  CUSEG_CHECK(m.finalised, "VolumePredictor::probabilities before run");
  Laps laps(m.ctx, times);
  Tensor probs = m.sum;  // with tta: already the aggregated probabilities
  if (!m.grid.tta) {
    // Softmax over the classes of the aggregated logits: the mirror-accumulate op with no
    // flip and weight 1 into a zeroed tensor.
    probs = Tensor::zeros(m.sum.shape(), DType::F32, m.ctx.device());
    softmax_mirror_accumulate(m.ctx, m.sum, probs, 0, 1.f);
    laps.lap("softmax");
  }
  // One copy per class straight into its map: [1, C, D, H, W] seen as C rows of one channel.
  const Shape& sh = probs.shape();
  const Tensor rows = probs.reshape({sh[1], 1, sh[2], sh[3], sh[4]});
  std::vector<Image> out;
  for (int64_t c = 0; c < sh[1]; ++c) {
    Image im = Image::make(m.padded_geo);
    rows.batch_slice(c, c + 1).copy_to_host(im.v.data(), im.v.size() * sizeof(float));
    out.push_back(std::move(im));
  }
  laps.lap("download");
  return out;
}

const Geometry& VolumePredictor::padded_geometry() const {
  return impl_->padded_geo;
}
const std::vector<Index3>& VolumePredictor::locations() const {
  return impl_->locs;
}

LabelMap predict_volume(UNet3D& net, Context& ctx, const Image& image, const GridOptions& opt,
                        StageTimes* times) {
  for (size_t a = 0; a < 3; ++a)
    CUSEG_CHECK(image.geo.size[a] >= opt.patch[a],
                "predict_volume: image smaller than the patch (pad it first: pad_to_patch)");
  VolumePredictor vp(net, ctx, opt);
  vp.load(image, nullptr, 0.f, times);
  vp.run(times);
  LabelMap m = vp.mask(times);
  m.geo = image.geo;  // no padding: the image's own grid
  return m;
}

// ---------------------------------------------------------------- one CT
Segmentation segment(UNet3D& net, Context& ctx, const RunConfig& cfg, const Image& ct,
                     const SegmentOptions& opt) {
  Segmentation out;
  const TransferStats before = transfer_stats();
  double t0 = now_s();
  Preprocessed pre = preprocess_geometry(cfg, ct, nullptr);
  out.plan = plan_inference(ctx, net.config(), net.precision(), pre.image.geo.size, opt.grid,
                            opt.max_memory_bytes, opt.probabilities);
  out.times.add("preprocess", now_s() - t0);

  const IntensitySpec intensity = intensity_spec(cfg);
  VolumePredictor vp(net, ctx, out.plan.grid);
  vp.load(pre.image, &intensity, cfg.rescale_lo, &out.times);
  vp.run(&out.times);
  const LabelMap model_mask = vp.mask(&out.times);
  std::vector<Image> model_probabilities;
  if (opt.probabilities) model_probabilities = vp.probabilities(&out.times);

  t0 = now_s();
  if (model_mask.geo.size != pre.image.geo.size) {
    pre.padded_to_patch = true;
    pre.before_patch_pad = pre.image.geo;
  }
  // The host volume is no longer needed; its geometry becomes the grid the network's outputs
  // lie on (the padded grid), which is where the undo record starts.
  pre.image = Image();
  pre.image.geo = model_mask.geo;
  out.mask = restore_geometry(pre, model_mask);
  if (opt.probabilities) out.probabilities = restore_probabilities(pre, model_probabilities);
  out.times.add("restore", now_s() - t0);
  out.transfers = transfer_stats() - before;
  return out;
}

// ---------------------------------------------------------------- models
LoadedModel load_model(const std::string& path, Device dev, std::optional<Precision> precision) {
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
  m.precision = precision.value_or(m.cfg.infer_precision);
  m.net = std::make_unique<UNet3D>(m.cfg.model, dev, m.cfg.seed, m.precision);
  m.meta = load_checkpoint(file, m.net->parameters());
  m.checkpoint = file;
  return m;
}

}  // namespace cuseg
