// Adam update, element-wise, in the exact operation order of torch.optim.Adam's
// single-tensor path (so CPU results match PyTorch to rounding):
//   m = m + (1 - b1) * (g - m)            (lerp)
//   v = v * b2 + (1 - b2) * g * g
//   p = p - step_size * m / (sqrt(v) / sqrt_bc2 + eps)
// with step_size = lr / (1 - b1^t) and sqrt_bc2 = sqrt(1 - b2^t) computed in double on the
// host. The CUDA version updates every parameter tensor in one launch (multi-tensor).
#pragma once
#include <cmath>
#include <cstdint>

#include "cuseg/kernels/common.h"

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
};

void adam_step_cpu(const AdamTensor* tensors, int count, const AdamCoeffs& c);
#if CUSEG_HAVE_CUDA
void adam_step_cuda(const AdamTensor* tensors, int count, const AdamCoeffs& c, Stream s);
#endif

}  // namespace cuseg
