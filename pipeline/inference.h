// The inference pipeline (the only one: engine_infer, engine_bench volume and the trainer's
// validation Dice call it), the preprocessing it shares with training and its exact inverse,
// the memory plan, and loading a trained model with the config stored in its checkpoint.
//
// Preprocessing (RunConfig order): reorient (permutation/flips only) -> in-plane resample ->
// CropOrPad -> optional HU clip -> RescaleIntensity, then (inference) a centred pad to at least
// one patch. Every geometric step records what it needs to be undone, so the mask of
// restore_geometry() lies on exactly the input grid (size, spacing, origin, direction).
//
// Where each step runs (segment()):
//   host:   read -> reorient / resample / crop (preprocess_geometry) ............ HU volume
//   upload: the HU volume, once (the only host -> device copy of volume data)
//   device: min/max -> clip + rescale fused in one pass (kernels/rescale_intensity)
//           for each batch: patches cut by the crop_or_pad kernel straight into the batch
//           tensor (the pad to one patch is folded into the crop offsets, padding with the
//           normalised minimum) -> forward (fp32, or bf16 channels-last whose logits are
//           converted exactly to fp32: UNet3D::logits_f32) -> grid aggregation into fp32
//           per-class sums and weights (kernels/grid_aggregate: crop, average, hann or
//           gaussian)
//           [--tta: forward replaced by 8 mirrored passes whose softmax is averaged, below]
//           finalise (sum / weight) -> argmax
//           [--probabilities: softmax of the aggregated logits; with --tta the aggregate is
//           already probabilities]
//   download: the uint8 mask (the only device -> host copy of volume data without
//           --probabilities; with it, also the float32 class maps)
//   host:   restore_geometry -> mask on the input grid (restore_probabilities for the maps)
//
// Test-time augmentation (GridOptions::tta) as nnU-Net's mirroring: each batch of patches
// goes through the network 8 times, flipped along every subset of the three spatial axes
// (kernels/mirror: axis masks 0..7, 0 = as is); each output is flipped back, turned into
// class probabilities (softmax over the classes) and averaged with weight 1/8 per pass
// (softmax_mirror_accumulate), and these per-patch averages are what the grid aggregation
// weights and sums (nnU-Net v1's order: softmax per pass, then the average; nnU-Net v2
// averages the logits instead). The mask is then the argmax of the aggregated probabilities.
// On the CPU backend the "device" is the host and the same calls run the CPU twins (one code
// path, dispatched per backend by the backend table, engine/ops.h).
#pragma once
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "cuseg/core/transfer_stats.h"
#include "cuseg/data/image.h"
#include "cuseg/data/samplers.h"
#include "cuseg/engine/checkpoint.h"
#include "cuseg/engine/context.h"
#include "cuseg/engine/tensor.h"
#include "cuseg/model/unet3d.h"
#include "cuseg/pipeline/config.h"

namespace cuseg {

// Seconds per named stage, in insertion order for printing.
struct StageTimes {
  std::vector<std::pair<std::string, double>> stages;
  void add(const std::string& name, double seconds);
  double total() const;
};

// ---------------------------------------------------------------- preprocessing
struct Preprocessed {
  data::Image image;     // model grid: HU after preprocess_geometry, normalised after preprocess
  data::LabelMap label;  // same grid (empty v when no label was given)
  // Undo record, applied in reverse order by restore_geometry().
  data::Reorientation reorientation;
  bool resampled = false;
  data::Geometry before_resample;
  bool cropped = false;
  data::Geometry before_crop;
  bool padded_to_patch = false;
  data::Geometry before_patch_pad;
};

// The geometric steps alone (reorient, resample, CropOrPad): the image stays in HU.
Preprocessed preprocess_geometry(const RunConfig& cfg, const data::Image& image,
                                 const data::LabelMap* label);
// Everything on the host (training): preprocess_geometry, clip, RescaleIntensity, and with
// `patch` a pad to at least this size (with cfg.rescale_lo).
Preprocessed preprocess(const RunConfig& cfg, const data::Image& image, const data::LabelMap* label,
                        const data::Index3* patch = nullptr);
// Maps a label map on the model grid back onto the original input grid (nearest neighbour for
// the resampling step, 0 where the input was cropped away).
data::LabelMap restore_geometry(const Preprocessed& p, const data::LabelMap& model_grid);

// The intensity steps of a RunConfig: optional clip to [clip_lo, clip_hi] HU, then
// RescaleIntensity from the percentile cut-offs (of the clipped values) to [out_lo, out_hi].
struct IntensitySpec {
  bool clip = false;
  float clip_lo = 0.f, clip_hi = 0.f;
  double percentile_lo = 0.0, percentile_hi = 100.0;
  float out_lo = -1.f, out_hi = 1.f;
};
IntensitySpec intensity_spec(const RunConfig& cfg);

// ---------------------------------------------------------------- grid and memory plan
struct GridOptions {
  data::Index3 patch{96, 96, 96};
  int overlap = 8;
  int batch = 4;
  AggregateMode mode = AggregateMode::Crop;
  // nnU-Net's test-time mirroring: 8 network passes per patch (see the file comment); the
  // aggregated scores are then class probabilities, not logits.
  bool tta = false;
};
GridOptions grid_options(const RunConfig& cfg);

// Size of the grid the network sees: the model grid padded (centred) to at least one patch.
data::Index3 padded_grid(const data::Index3& model_grid, const data::Index3& patch);

// Device memory of one inference (docs/ARCHITECTURE.md, Memory) for a network running in
// `precision` (engine/precision.h), in the device pool's own accounting (every block rounded
// up to its 512-byte granularity):
//   network: weights and their gradient buffers (UNet3D allocates both; in bf16 also the padded
//            bf16 weight copies, unet_parameter_bytes) + planned forward activations for the
//            batch in the precision's dtype and layout (unet_forward_bytes; in bf16 with the
//            padded input, the padded head and the fp32 logits the aggregation reads) + the
//            convolution workspace at its cap (cuDNN budget on CUDA, column buffer on CPU) +
//            the largest transient of one convolution call (the CPU bf16 oracle's fp32
//            copies, unet_forward_scratch_bytes; 0 otherwise);
//   pipeline: the uploaded volume (model grid, float32), the batch tensor (float32 in both
//            precisions), the patch origins, the per-class sums and weights on the padded grid
//            (float32: aggregation is fp32 in both precisions), the uint8 mask, the min/max
//            scratch; with grid.tta the mirrored batch and the per-patch averaged
//            probabilities ([batch, classes, patch], float32); with `probabilities` (and
//            without tta) the softmax of the scores on the padded grid (float32, per class).
// Everything is counted as live at once, so this bounds the pool's peak from above; its slack
// is the part of the convolution workspace the chosen algorithms leave unused. Not counted: on
// CUDA, the transient packed copies a bf16 convolution makes when cuDNN refuses a graph on its
// channel-slice operands, and the fp32 copies of the legacy fallback (one warning names each).
size_t inference_bytes(const Context& ctx, const UNetConfig& net, Precision precision,
                       const data::Index3& model_grid, const GridOptions& grid,
                       bool probabilities = false);

struct InferencePlan {
  GridOptions grid;                      // what runs
  bool whole_volume = false;             // one network call over the whole padded volume
  size_t budget_bytes = 0;               // 0: no budget, the grid as configured
  size_t estimated_bytes = 0;            // inference_bytes() of this plan
  Precision precision = Precision::F32;  // the network's compute precision
  data::Index3 model_grid{0, 0, 0}, padded{0, 0, 0};
  int patches = 0;  // grid positions
};
// Under a budget (`--max-memory`): when the whole volume, padded to one patch and rounded up to
// a multiple of 2^(levels-1), fits, one pass (patch = that size, batch 1, no overlap);
// otherwise the largest patch batch (up to 64) that fits. Throws when not even one patch
// fits. budget_bytes 0: the grid as given.
// `probabilities`: the plan also holds the class maps of VolumePredictor::probabilities().
InferencePlan plan_inference(const Context& ctx, const UNetConfig& net, Precision precision,
                             const data::Index3& model_grid, const GridOptions& grid,
                             size_t budget_bytes, bool probabilities = false);

// ---------------------------------------------------------------- the device-side pipeline
// One volume on the model grid, from upload to mask. Holds the device buffers between the
// calls, so a caller can look at (or add to) the aggregated per-class scores before the
// argmax (test-time augmentation, probability maps):
//   VolumePredictor vp(net, ctx, grid);
//   vp.load(volume, &intensity, pad_value);   // upload + normalise, once
//   vp.run();                                  // grid -> forward -> aggregate (repeatable)
//   const Tensor& s = vp.scores();             // [1, C, D, H, W] on the device
//   data::LabelMap m = vp.mask();              // argmax on the device, uint8 back
//   auto p = vp.probabilities();               // optional: the class maps, float32 back
// With `times`, each stage ends with a device synchronisation and is timed ("upload",
// "normalise", "crop", "network", "aggregate", "argmax", "download"; with tta also "mirror"
// and "softmax"; probabilities() adds "softmax" without tta and "download"); without, nothing
// waits that does not have to.
class VolumePredictor {
 public:
  VolumePredictor(UNet3D& net, Context& ctx, const GridOptions& grid);
  ~VolumePredictor();
  VolumePredictor(const VolumePredictor&) = delete;
  VolumePredictor& operator=(const VolumePredictor&) = delete;

  // Uploads `volume` (host, model grid, i fastest) once. With `intensity` the volume holds HU
  // and is clipped + rescaled on the device (cut-offs: min/max on the device, or other
  // percentiles on the host, see the .cpp); without, it is used as it is (already
  // normalised). `pad_value` fills the centred pad to one patch per axis.
  void load(const data::Image& volume, const IntensitySpec* intensity, float pad_value,
            StageTimes* times = nullptr);
  // The normalised volume on the device, [1, 1, D, H, W] on the (unpadded) model grid.
  const Tensor& volume() const;
  // Grid pass over the loaded volume: zeroes the per-class sums and weights, then per batch
  // cuts the patches, runs the network (8 mirrored passes with grid.tta) and aggregates;
  // finalises (sum / weight).
  void run(StageTimes* times = nullptr);
  // The aggregated per-class scores, float32 [1, C, D, H, W] on the padded grid, on the
  // device; valid until the next load() or run(). Without tta the weighted mean of the
  // patches' logits; with tta the weighted mean of the patches' mirror-averaged softmax
  // (class probabilities, summing to 1 per voxel up to float rounding).
  const Tensor& scores() const;
  // Per-voxel argmax of scores() (first maximum on ties) on the device; the uint8 mask is the
  // only volume that comes back. Geometry: padded_geometry().
  data::LabelMap mask(StageTimes* times = nullptr);
  // Class probabilities per voxel on the padded grid (padded_geometry()), one float32 map per
  // class, back on the host: softmax over the classes of scores() (computed on the device into
  // a temporary [1, C, D, H, W] tensor by softmax_mirror_accumulate with no flip), or with
  // tta scores() itself (already probabilities). Their argmax is mask() except where two
  // classes' values are equal after float rounding.
  std::vector<data::Image> probabilities(StageTimes* times = nullptr);

  const data::Geometry& padded_geometry() const;
  const std::vector<data::Index3>& locations() const;  // patch origins (i, j, k), padded grid

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The trainer's validation: grid inference of an already normalised image whose extent is at
// least one patch per axis; the mask on the image's grid.
data::LabelMap predict_volume(UNet3D& net, Context& ctx, const data::Image& image,
                              const GridOptions& opt, StageTimes* times = nullptr);

// ---------------------------------------------------------------- one CT, end to end
struct SegmentOptions {
  GridOptions grid;             // the model's inference settings with any overrides (tta)
  size_t max_memory_bytes = 0;  // 0: no budget
  bool probabilities = false;   // also return the class probabilities on the input grid
};
struct Segmentation {
  data::LabelMap mask;  // uint8 on exactly the input grid (0 background, 1 liver, 2 tumour)
  // With SegmentOptions::probabilities: one map per class on exactly the input grid
  // (VolumePredictor::probabilities() taken back by restore_probabilities(),
  // pipeline/probabilities.h); empty otherwise.
  std::vector<data::Image> probabilities;
  InferencePlan plan;
  StageTimes times;         // "preprocess", the device stages above, "restore"
  TransferStats transfers;  // host <-> device bytes moved by this call (counted at the copies)
};
// preprocess_geometry (host) -> plan -> VolumePredictor (device) -> restore_geometry (host).
Segmentation segment(UNet3D& net, Context& ctx, const RunConfig& cfg, const data::Image& ct,
                     const SegmentOptions& opt);

// ---------------------------------------------------------------- models
// A model with the run config it was trained with.
struct LoadedModel {
  RunConfig cfg;
  std::unique_ptr<UNet3D> net;
  std::string checkpoint;  // the file actually loaded
  Metadata meta;
  Precision precision = Precision::F32;  // the network's compute precision
};
// `path`: a checkpoint file, or a run folder (best.safetensors, else last.safetensors).
// precision: the network's compute precision (engine/precision.h); unset: the checkpoint's
// config (inference.precision, else train.precision). The weights are the fp32 checkpoint
// either way.
LoadedModel load_model(const std::string& path, Device dev,
                       std::optional<Precision> precision = std::nullopt);

// Metadata key holding the resolved config YAML inside checkpoints.
inline const char* kConfigKey = "cuseg.config";

}  // namespace cuseg
