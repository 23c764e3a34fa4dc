// Step 5 of a training run: validation after every epoch. The loss on the fixed validation
// patches (training.data.h, ValidationSet) decides the best checkpoint, as in the reference
// recipe; whole-volume Dice (grid inference on the preprocessed grid, the inference settings
// of the config) is measured every train.dice_every epochs and at the last epoch.
#pragma once
#include <cmath>
#include <vector>

#include "cuseg/engine/context.h"
#include "cuseg/model/unet3d.h"
#include "cuseg/pipeline/config.h"
#include "cuseg/pipeline/training_data.h"

namespace cuseg {

struct ValidationResult {
  double loss = NAN;                           // mean over the validation batches
  double dice_liver = NAN, dice_tumour = NAN;  // mean over volumes; NaN when not measured
  data::LabelMap first_prediction;  // of volumes[0] when Dice was measured (for the preview)
};

// With several ranks (`dist`, may be null for one process), volumes and batches are dealt out
// round-robin and the sums allreduced: every rank returns the same loss and Dice, and
// first_prediction is filled on rank 0 (which owns volume 0).
class TrainDist;
ValidationResult validate(UNet3D& net, Context& ctx, const RunConfig& cfg, const ValidationSet& val,
                          bool with_dice, TrainDist* dist = nullptr);

// Grid inference on one preprocessed volume, the mask on that volume's grid.
data::LabelMap predict_preprocessed(UNet3D& net, Context& ctx, const RunConfig& cfg,
                                    const Preprocessed& p);

}  // namespace cuseg
