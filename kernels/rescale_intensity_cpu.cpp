// CPU reference of rescale_intensity (see rescale_intensity.h).
#include <cfloat>

#include "cuseg/core/check.h"
#include "cuseg/kernels/rescale_intensity.h"

namespace cuseg {

void rescale_intensity_cpu(const float* in, float* out, int64_t n, const RescaleParams& p) {
  CUSEG_CHECK(p.in_max > p.in_min,
              "rescale_intensity: empty input range [" << p.in_min << ", " << p.in_max << "]");
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) out[i] = rescale_value(in[i], p);
}

void minmax_cpu(const float* in, int64_t n, float* out) {
  CUSEG_CHECK(n > 0, "minmax of an empty array");
  // Same start as the CUDA reduction; a NaN fails both comparisons and is skipped.
  float mn = FLT_MAX, mx = -FLT_MAX;
  for (int64_t i = 0; i < n; ++i) {
    if (in[i] < mn) mn = in[i];
    if (in[i] > mx) mx = in[i];
  }
  out[0] = mn;
  out[1] = mx;
}

}  // namespace cuseg
