// RescaleIntensity (torchio semantics): clip to [in_min, in_max] (the percentile cut-offs,
// computed by the caller, e.g. data::rescale_intensity), then map linearly to
// [out_min, out_max]. Arithmetic is float32 in torchio's order ((v - in_min) / in_range
// * out_range + out_min) so results match its float32 numpy path. Also serves Clamp / CT
// windows (out range = in range).
#pragma once
#include <cstdint>

#include "cuseg/kernels/common.h"

namespace cuseg {

struct RescaleParams {
  float in_min = 0.f, in_max = 1.f;     // input cut-offs (e.g. HU)
  float out_min = -1.f, out_max = 1.f;  // output range (normalised units)
};

CUSEG_HD float rescale_value(float v, const RescaleParams& p) {
  v = v < p.in_min ? p.in_min : (v > p.in_max ? p.in_max : v);
  const float in_range = p.in_max - p.in_min;
  const float out_range = p.out_max - p.out_min;
  return (v - p.in_min) / in_range * out_range + p.out_min;
}

// out[i] = rescale_value(in[i]); in == out allowed. in_max > in_min is required (checked).
void rescale_intensity_cpu(const float* in, float* out, int64_t n, const RescaleParams& p);
// Device scratch of minmax_cuda for n values: two floats per block of the first pass plus
// the result (kMinmaxMaxBlocks bounds the first pass's grid).
constexpr int kMinmaxMaxBlocks = 1024;
inline size_t minmax_workspace_bytes() {
  return size_t(2 * kMinmaxMaxBlocks + 2) * sizeof(float);
}

#if CUSEG_HAVE_CUDA
void rescale_intensity_cuda(const float* in, float* out, int64_t n, const RescaleParams& p,
                            Stream s);
// Minimum and maximum of n device values (NaN ignored), read back to the host (synchronises).
// Gives RescaleParams::in_min / in_max for percentiles (0, 100).
// workspace: minmax_workspace_bytes() of device memory.
void minmax_cuda(const float* in, int64_t n, float* mn, float* mx, void* workspace,
                 size_t workspace_bytes, Stream s);
#endif

}  // namespace cuseg
