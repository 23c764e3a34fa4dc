// GridAggregator (torchio semantics): accumulate network outputs of grid patches into a
// full volume. Modes:
//  - Crop:    each patch writes (assignment, in patch order) its inner region: overlap/2 voxels
//             are dropped on every side that does not touch the volume border.
//  - Average: sum of patches / number of patches covering a voxel.
//  - Hann:    patches weighted by the separable window hann(size + 2)[1:-1] per axis, divided
//             by the sum of weights (torchio's _get_hann_window).
//  - Gaussian: nnU-Net's importance weighting (nnunetv2 compute_gaussian as its predictor calls
//             it), divided by the sum of weights. See gaussian_weight() for the exact definition.
// Layout: NCDHW, W fastest. `patches` is n patches x C channels x (pd, ph, pw); `starts` holds
// n x 3 ints (z, y, x) = (k, j, i) patch origins in the volume. `sum` is 1 x C x D x H x W and
// `weight` 1 x 1 x D x H x W, both zeroed by the caller before the first call; finalize divides.
// Patches are applied one after another in the order given (deterministic; a CUDA version
// must keep the order for Crop, where later patches overwrite earlier ones).
#pragma once
#include <cmath>

#include "cuseg/kernels/common.h"

namespace cuseg {

enum class AggregateMode { Crop, Average, Hann, Gaussian };

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

// ---------------------------------------------------------------- Gaussian (nnU-Net)
// nnU-Net v2 (nnunetv2/inference/sliding_window_prediction.py, compute_gaussian, called by
// the predictor with sigma_scale 1/8 and value_scaling_factor 10):
//   1. a unit impulse at the patch centre c_a = patch_a // 2 is filtered with a Gaussian of
//      sigma_a = patch_a / 8 per axis (scipy gaussian_filter, float64, truncate 4: its radius
//      int(4 sigma + 0.5) >= patch / 2 reaches every voxel of the patch, so nothing is cut);
//      that is prod_a exp(-(x_a - c_a)^2 / (2 sigma_a^2)) times constants,
//   2. divided by its maximum (the centre) and multiplied by 10,
//   3. stored as float16 (torch casts float64 -> float32 -> float16, round to nearest even),
//   4. voxels that became 0 in float16 (the corners: at |x_a - c_a| = patch_a / 2 the value
//      is 10 exp(-24) = 3.8e-10, below float16's smallest subnormal 2^-24) get the smallest
//      non-zero value of the map, so no voxel of a patch has weight 0.
// The weights below are exactly those float16 values (checked against scipy + torch for
// several shapes, tests/reference/gaussian_ref.json); aggregation then runs in float32
// (nnU-Net accumulates in float16 on the GPU; we do not copy that). The value scaling does not
// change the normalised result except through step 3 and 4, which it shifts.
constexpr double kGaussianSigmaScale = 1.0 / 8.0;
constexpr double kGaussianValueScale = 10.0;

// Rounds a non-negative float to the nearest float16 value, ties to even (IEEE conversion),
// returned as a float. Normal float16 numbers keep 11 significant bits; below 2^-14 the
// float16 spacing is the subnormal step 2^-24. Valid up to float16's maximum 65504.
CUSEG_HD float round_to_float16(float v) {
  if (v < 6.103515625e-05f) return rintf(v * 16777216.f) * 5.9604644775390625e-08f;
  int e = 0;
  const float m = frexpf(v, &e);  // v = m 2^e, m in [0.5, 1)
  return ldexpf(rintf(m * 2048.f), e - 11);
}
// Exponent sum_a (x_a - c_a)^2 / sigma_a^2 of one patch voxel (double; divisions and sums only,
// so nothing can be contracted into an FMA and both sides round alike).
CUSEG_HD double gaussian_exponent(int x, int y, int z, int pw, int ph, int pd) {
  const double dx = double(x - pw / 2), dy = double(y - ph / 2), dz = double(z - pd / 2);
  const double sx = double(pw) * kGaussianSigmaScale, sy = double(ph) * kGaussianSigmaScale,
               sz = double(pd) * kGaussianSigmaScale;
  return (dz * dz) / (sz * sz) + (dy * dy) / (sy * sy) + (dx * dx) / (sx * sx);
}
// Steps 2-3 from e = exp(-exponent / 2): float16(float32(10 e)).
CUSEG_HD float gaussian_from_exp(double e) {
  return round_to_float16(float(kGaussianValueScale * e));
}
// The weight of patch voxel (x, y, z) before step 4 (0 in the corners of every patch).
CUSEG_HD float gaussian_weight_unclamped(int x, int y, int z, int pw, int ph, int pd) {
  return gaussian_from_exp(exp(-0.5 * gaussian_exponent(x, y, z, pw, ph, pd)));
}
// Step 4: `floor` is the smallest non-zero unclamped weight of the patch shape
// (gaussian_weight_floor), so max() replaces exactly the zeros.
CUSEG_HD float gaussian_weight(int x, int y, int z, int pw, int ph, int pd, float floor) {
  const float w = gaussian_weight_unclamped(x, y, z, pw, ph, pd);
  return w > floor ? w : floor;
}
// Smallest non-zero gaussian_weight_unclamped over a pd x ph x pw patch (host; a pass over
// the patch, done once per patch shape).
float gaussian_weight_floor(int pd, int ph, int pw);

struct GridAggregateParams {
  AggregateMode mode = AggregateMode::Hann;
  int overlap_d = 0, overlap_h = 0, overlap_w = 0;  // voxels, as given to the grid sampler
  float gaussian_floor = 0.f;  // Gaussian mode: gaussian_weight_floor of the patch shape
};
// Params for a pd x ph x pw patch (fills gaussian_floor in Gaussian mode).
GridAggregateParams grid_aggregate_params(AggregateMode mode, int overlap_d, int overlap_h,
                                          int overlap_w, int pd, int ph, int pw);

// Weight of patch voxel (x, y, z) of a pd x ph x pw patch in Average, Hann or Gaussian mode
// (Crop assigns instead). Hann multiplies in torchio's order ((w_x * w_y) * w_z); products
// only, so no FMA contraction on either side.
CUSEG_HD float grid_patch_weight(const GridAggregateParams& p, int x, int y, int z, int pw, int ph,
                                 int pd) {
  if (p.mode == AggregateMode::Hann)
    return hann_weight(x, pw) * hann_weight(y, ph) * hann_weight(z, pd);
  if (p.mode == AggregateMode::Gaussian)
    return gaussian_weight(x, y, z, pw, ph, pd, p.gaussian_floor);
  return 1.f;
}

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
