// Class probabilities on the input's grid (`engine_infer --probabilities`, as nnU-Net's
// --save_probabilities): the per-class maps the network produced on the model grid (the
// softmax aggregated over patches, averaged over the mirrorings with --tta) taken back through
// the exact inverse of preprocess()'s geometric steps, in reverse order:
//   patch padding removed -> CropOrPad undone (voxels that were cropped away get the
//   background's certainty: p = 1 for class 0, 0 for the others) -> in-plane resampling
//   undone with LINEAR interpolation (probabilities are continuous; the mask uses nearest
//   neighbour) -> reorientation undone (a pure permutation / flip) -> the input's geometry
//   pinned exactly.
// Linear interpolation and the background fill keep every voxel's probabilities summing to
// 1 (up to float rounding). Where no resampling is undone, argmax of the result equals
// restore_geometry() of the model grid's argmax voxel for voxel.
#pragma once
#include <vector>

#include "cuseg/data/image.h"
#include "cuseg/pipeline/inference.h"

namespace cuseg {

// model_grid[c]: class c's probabilities on p.image's grid (the model grid).
std::vector<data::Image> restore_probabilities(const Preprocessed& p,
                                               const std::vector<data::Image>& model_grid);

// Voxel-wise argmax over classes (first maximum wins), on the maps' grid.
data::LabelMap argmax_classes(const std::vector<data::Image>& classes);

}  // namespace cuseg
