// GridAggregator (torchio semantics): accumulate network outputs of grid patches into a
// full volume. Modes:
//  - Crop:    each patch writes (assignment, in patch order) its inner region: overlap/2 voxels
//             are dropped on every side that does not touch the volume border.
//  - Average: sum of patches / number of patches covering a voxel.
//  - Hann:    patches weighted by the separable window hann(size + 2)[1:-1] per axis, divided
//             by the sum of weights (torchio's _get_hann_window).
// Layout: NCDHW, W fastest. `patches` is n patches x C channels x (pd, ph, pw); `starts` holds
// n x 3 ints (z, y, x) = (k, j, i) patch origins in the volume. `sum` is 1 x C x D x H x W and
// `weight` 1 x 1 x D x H x W, both zeroed by the caller before the first call; finalize divides.
// Patches are applied one after another in the order given (deterministic; a CUDA version
// must keep the order for Crop, where later patches overwrite earlier ones).
#pragma once
#include <cmath>

#include "cuseg/kernels/common.h"

namespace cuseg {

enum class AggregateMode { Crop, Average, Hann };

// torch.hann_window(size + 2, periodic=False)[1:-1][n] = 0.5 - 0.5 cos(2 pi (n + 1) / (size + 1)).
// Computed in double and rounded to float (torch computes it in float32: ~1 ulp apart).
CUSEG_HD float hann_weight(int n, int size) {
  return float(0.5 - 0.5 * cos(6.283185307179586476925 * double(n + 1) / double(size + 1)));
}

// Crop mode: voxels dropped at the start / end of a patch along one axis. Half the overlap on
// inner sides, none where the patch touches the volume border (torchio _crop_patch).
CUSEG_HD int grid_crop_ini(int start, int overlap) {
  return start == 0 ? 0 : overlap / 2;
}
CUSEG_HD int grid_crop_fin(int start, int patch, int size, int overlap) {
  return start + patch == size ? 0 : overlap / 2;
}

struct GridAggregateParams {
  AggregateMode mode = AggregateMode::Hann;
  int overlap_d = 0, overlap_h = 0, overlap_w = 0;  // voxels, as given to the grid sampler
};

void grid_aggregate_cpu(const Vol& patches, const int* starts, const Vol& sum, const Vol& weight,
                        const GridAggregateParams& p);
// out = sum / weight (0 where no patch covered a voxel); out may alias sum.
void grid_aggregate_finalize_cpu(const Vol& sum, const Vol& weight, const Vol& out);
#if CUSEG_HAVE_CUDA
void grid_aggregate_cuda(const Vol& patches, const int* starts_device, const Vol& sum,
                         const Vol& weight, const GridAggregateParams& p, Stream s);
void grid_aggregate_finalize_cuda(const Vol& sum, const Vol& weight, const Vol& out, Stream s);
#endif

}  // namespace cuseg
