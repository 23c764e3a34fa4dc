// Step 6 of a training run: pictures. Every train.preview_every epochs (and at the last one) a
// PNG panel of the first validation case: CT | reference | prediction on the most informative
// axial slice, RUN_DIR/previews/epoch_<NNN>_<case>_z<k>.png.
//
// Pictures made when the best checkpoint changes belong to the on_best_checkpoint step of the
// trainer (trainer.h, TrainHooks; run_training calls it right after best.safetensors is
// written), so they always show the weights in best.safetensors: write_best_preview_gif, the
// slice-by-slice GIF of engine_infer --preview x.gif (pipeline/animation.h) for the first
// validation case, RUN_DIR/best_<case>.gif, rewritten at each new best.
#pragma once
#include <string>

#include "cuseg/pipeline/config.h"
#include "cuseg/pipeline/inference.h"
#include "cuseg/pipeline/trainer.h"

namespace cuseg {

// Writes the panel for `volume` (case `case_id`) and its predicted mask; returns the path.
std::string write_epoch_preview(const RunConfig& cfg, const Preprocessed& volume,
                                const std::string& case_id, const data::LabelMap& prediction,
                                int epoch, const std::string& previews_dir);

// Every axial slice of b.volume (model grid, normalised intensities shown over the rescale
// range) with b.prediction overlaid, as one GIF RUN_DIR/best_<case>.gif; returns the path.
std::string write_best_preview_gif(const BestCheckpoint& b);

}  // namespace cuseg
