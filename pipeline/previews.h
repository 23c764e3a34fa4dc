// Step 6 of a training run: pictures. Every train.preview_every epochs (and at the last one) a
// PNG panel of the first validation case: CT | reference | prediction on the most informative
// axial slice, RUN_DIR/previews/epoch_<NNN>_<case>_z<k>.png.
//
// Pictures made when the best checkpoint changes belong to the on_best_checkpoint step of the
// trainer (trainer.h, TrainHooks; run_training calls it right after best.safetensors is
// written), so they always show the weights in best.safetensors.
#pragma once
#include <string>

#include "cuseg/pipeline/config.h"
#include "cuseg/pipeline/inference.h"

namespace cuseg {

// Writes the panel for `volume` (case `case_id`) and its predicted mask; returns the path.
std::string write_epoch_preview(const RunConfig& cfg, const Preprocessed& volume,
                                const std::string& case_id, const data::LabelMap& prediction,
                                int epoch, const std::string& previews_dir);

}  // namespace cuseg
