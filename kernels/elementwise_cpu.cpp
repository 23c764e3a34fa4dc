#include "cuseg/kernels/elementwise.h"

namespace cuseg {

void relu_forward_cpu(const Vol& y) {
  const int64_t per = y.per_batch();
  for (int n = 0; n < y.n; ++n) {
    float* p = y.p + n * y.sn;
#pragma omp parallel for schedule(static) if (per >= kOmpMinWork)
    for (int64_t i = 0; i < per; ++i) p[i] = relu_fwd(p[i]);
  }
}

void bias_relu_forward_cpu(const Vol& y, const float* b, bool relu) {
  const int64_t dhw = y.spatial();
  for (int n = 0; n < y.n; ++n) {
#pragma omp parallel for schedule(static) if (y.per_batch() >= kOmpMinWork)
    for (int c = 0; c < y.c; ++c) {
      float* yc = y.at(n, c);
      for (int64_t i = 0; i < dhw; ++i) yc[i] = bias_relu(yc[i], b, c, relu);
    }
  }
}

void relu_backward_cpu(const Vol& y, const Vol& g) {
  const int64_t per = y.per_batch();
  for (int n = 0; n < y.n; ++n) {
    const float* py = y.p + n * y.sn;
    float* pg = g.p + n * g.sn;
#pragma omp parallel for schedule(static) if (per >= kOmpMinWork)
    for (int64_t i = 0; i < per; ++i) pg[i] = relu_bwd(py[i], pg[i]);
  }
}

void add_inplace_cpu(const Vol& dst, const Vol& src) {
  const int64_t per = dst.per_batch();
  for (int n = 0; n < dst.n; ++n) {
    float* pd = dst.p + n * dst.sn;
    const float* ps = src.p + n * src.sn;
#pragma omp parallel for schedule(static) if (per >= kOmpMinWork)
    for (int64_t i = 0; i < per; ++i) pd[i] += ps[i];
  }
}

}  // namespace cuseg
