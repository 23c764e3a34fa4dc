// The preprocessing shared by training and inference, its inverse, grid inference over a whole
// volume, and loading a trained model with the config stored inside its checkpoint.
//
// Preprocessing (RunConfig order): reorient (permutation/flips only) -> in-plane resample ->
// CropOrPad -> optional HU clip -> RescaleIntensity. At inference the volume is also padded to
// at least one patch. Every geometric step records what it needs to be undone, so the mask of
// restore_geometry() lies on exactly the input grid (size, spacing, origin, direction).
#pragma once
#include <map>
#include <memory>
#include <string>

#include "cuseg/data/image.h"
#include "cuseg/data/samplers.h"
#include "cuseg/engine/checkpoint.h"
#include "cuseg/engine/context.h"
#include "cuseg/model/unet3d.h"
#include "cuseg/pipeline/config.h"

namespace cuseg {

// Seconds per named stage, in insertion order for printing.
struct StageTimes {
  std::vector<std::pair<std::string, double>> stages;
  void add(const std::string& name, double seconds);
  double total() const;
};

struct Preprocessed {
  data::Image image;     // normalised intensities on the model grid
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

// `patch` (optional): pad the result to at least this size (inference).
Preprocessed preprocess(const RunConfig& cfg, const data::Image& image, const data::LabelMap* label,
                        const data::Index3* patch = nullptr);
// Maps a label map on the model grid back onto the original input grid (nearest neighbour for
// the resampling step, 0 where the input was cropped away).
data::LabelMap restore_geometry(const Preprocessed& p, const data::LabelMap& model_grid);

struct GridOptions {
  data::Index3 patch{96, 96, 96};
  int overlap = 8;
  int batch = 4;
  AggregateMode mode = AggregateMode::Crop;
};
GridOptions grid_options(const RunConfig& cfg);

// Inference under a memory budget (docs/ARCHITECTURE.md, Memory): estimated device bytes of one
// network call = weights + planned forward activations (unet_forward_bytes) + the input batch + the
// convolution workspace (cuDNN budget of the context on CUDA, the column buffer on CPU). When the
// whole preprocessed volume, rounded up to a multiple of 2^(levels-1), fits, it runs in one
// pass (patch = that size, batch 1, no overlap, *whole = true); otherwise the largest patch
// batch (up to 64) that fits is used. Throws when not even one patch fits.
size_t inference_bytes(const Context& ctx, const UNetConfig& net, const data::Index3& patch,
                       int batch);
GridOptions fit_to_memory(const Context& ctx, const UNetConfig& net, const data::Index3& volume,
                          GridOptions opt, size_t budget_bytes, bool* whole);

// GridSampler -> batches -> network -> GridAggregator -> argmax on a preprocessed image (at
// least one patch in every axis). Adds "network" and "aggregate" stages to `times`.
data::LabelMap predict_volume(UNet3D& net, Context& ctx, const data::Image& image,
                              const GridOptions& opt, StageTimes* times = nullptr);

// A model with the run config it was trained with.
struct LoadedModel {
  RunConfig cfg;
  std::unique_ptr<UNet3D> net;
  std::string checkpoint;  // the file actually loaded
  Metadata meta;
};
// `path`: a checkpoint file, or a run folder (best.safetensors, else last.safetensors).
LoadedModel load_model(const std::string& path, Device dev);

// Metadata key holding the resolved config YAML inside checkpoints.
inline const char* kConfigKey = "cuseg.config";

}  // namespace cuseg
