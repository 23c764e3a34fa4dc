// Adam update, element-wise, in the exact operation order of torch.optim.Adam's
// single-tensor path (so CPU results match PyTorch to rounding):
//   m = m + (1 - b1) * (g - m)            (lerp)
//   v = v * b2 + (1 - b2) * g * g
//   p = p - step_size * m / (sqrt(v) / sqrt_bc2 + eps)
// with step_size = lr / (1 - b1^t) and sqrt_bc2 = sqrt(1 - b2^t) computed in double on the
// host. The CUDA version updates every parameter tensor in one launch (multi-tensor).
//
// Mixed precision: a tensor may carry a bf16 compute copy (the weights the bf16 convolutions
// read, in their layout: kernels/weight_copy.h). The same pass then writes
// copy[copy_map(i)] = to_bf16(p[i]) right after updating the fp32 master p[i], so the copy never
// lags the master and costs no second pass over the weights.
#pragma once
#include <cmath>
#include <cstdint>

#include "cuseg/kernels/common.h"
#include "cuseg/kernels/weight_copy.h"

namespace cuseg {

struct AdamCoeffs {
  float b1, b2, eps, step_size, sqrt_bc2;
};

CUSEG_HD void adam_update(float& p, float g, float& m, float& v, const AdamCoeffs& c) {
  m = m + (1.f - c.b1) * (g - m);
  v = v * c.b2 + (1.f - c.b2) * g * g;
  p = p - c.step_size * (m / (sqrtf(v) / c.sqrt_bc2 + c.eps));
}

struct AdamTensor {
  float* p;
  const float* g;
  float* m;
  float* v;
  int64_t n;
  bf16* copy = nullptr;  // optional bf16 copy of p, element i at copy_map.of_linear(i)
  FilterMap copy_map{};
};

// Element i of one tensor: the update, then its copy.
CUSEG_HD void adam_element(const AdamTensor& a, int64_t i, const AdamCoeffs& c) {
  float p = a.p[i], m = a.m[i], v = a.v[i];
  adam_update(p, a.g[i], m, v, c);
  a.p[i] = p;
  a.m[i] = m;
  a.v[i] = v;
  if (a.copy) a.copy[a.copy_map.of_linear(i)] = to_bf16(p);
}

void adam_step_cpu(const AdamTensor* tensors, int count, const AdamCoeffs& c);
#if CUSEG_HAVE_CUDA
void adam_step_cuda(const AdamTensor* tensors, int count, const AdamCoeffs& c, Stream s);
#endif

}  // namespace cuseg
