// RescaleIntensity (torchio semantics): clip to [in_min, in_max] (the percentile cut-offs,
// computed by the caller, e.g. data::rescale_intensity), then map linearly to
// [out_min, out_max]. Arithmetic is float32 in torchio's order ((v - in_min) / in_range
// * out_range + out_min), every step rounded on its own (numpy does not fuse the last
// multiply-add; mul_rn / add_rn keep nvcc from doing so), so the CPU and the device agree
// bit for bit and both match torchio's float32 numpy path. Also serves Clamp / CT windows
// (out range = in range). A clip to [a, b] followed by RescaleIntensity with cut-offs inside
// [a, b] is this one op with those cut-offs (nested clamps), which is how the inference
// pipeline fuses its clip into the rescale.
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
  return add_rn(mul_rn((v - p.in_min) / in_range, out_range), p.out_min);
}

// out[i] = rescale_value(in[i]); in == out allowed. in_max > in_min is required (checked).
void rescale_intensity_cpu(const float* in, float* out, int64_t n, const RescaleParams& p);
// Minimum and maximum of n values (the cut-offs for percentiles (0, 100)), written to
// out[0] and out[1]. Min and max are exact and order-independent, so the CPU loop and the
// CUDA reduction give the same two numbers (up to the sign of a zero: fminf may return either
// of -0 and +0). NaN is skipped on both sides; all-NaN gives (FLT_MAX, -FLT_MAX).
void minmax_cpu(const float* in, int64_t n, float* out);
// Device scratch of minmax_cuda for n values: two floats per block of the first pass
// (kMinmaxMaxBlocks bounds the first pass's grid).
constexpr int kMinmaxMaxBlocks = 1024;
inline size_t minmax_workspace_bytes() {
  return size_t(2 * kMinmaxMaxBlocks) * sizeof(float);
}

#if CUSEG_HAVE_CUDA
void rescale_intensity_cuda(const float* in, float* out, int64_t n, const RescaleParams& p,
                            Stream s);
// Device twin of minmax_cpu: out (device, 2 floats) receives min and max; asynchronous (the
// caller copies the two values back when it needs them). workspace: minmax_workspace_bytes()
// of device memory.
void minmax_cuda(const float* in, int64_t n, float* out, void* workspace, size_t workspace_bytes,
                 Stream s);
#endif

}  // namespace cuseg
