#include <algorithm>
#include <vector>

#include "cuseg/kernels/cross_entropy.h"

namespace cuseg {

bool label_histogram_cpu(const uint8_t* labels, int64_t n, int K, int64_t* counts, int* bad) {
  int64_t hist[256] = {0};
  for (int64_t i = 0; i < n; ++i) ++hist[labels[i]];
  for (int k = 0; k < K; ++k) counts[k] = hist[k];
  for (int v = K; v < 256; ++v)
    if (hist[v]) {
      *bad = v;
      return false;
    }
  return true;
}

double cross_entropy_cpu(const CeArgs& a) {
  const Vol& x = a.logits;
  const int64_t dhw = x.spatial();
  const int64_t chunks_per_n = (dhw + kCeChunk - 1) / kCeChunk;
  std::vector<double> partial(size_t(x.n * chunks_per_n), 0.0);
#pragma omp parallel for schedule(static) if (x.n * dhw * x.c >= kOmpMinWork)
  for (int64_t t = 0; t < x.n * chunks_per_n; ++t) {
    const int n = int(t / chunks_per_n);
    const int64_t v0 = (t % chunks_per_n) * kCeChunk, v1 = std::min(dhw, v0 + kCeChunk);
    const float* xn = x.p + n * x.sn;
    float* gn = a.grad.p ? a.grad.p + n * a.grad.sn : nullptr;
    const uint8_t* yn = a.labels + n * dhw;
    double s = 0;
    for (int64_t v = v0; v < v1; ++v) {
      const int y = yn[v];
      s += ce_voxel(xn + v, dhw, x.c, y, a.weights[y], a.gscale, gn ? gn + v : nullptr);
    }
    partial[size_t(t)] = s;
  }
  double total = 0;
  for (double p : partial) total += p;
  return total;
}

double cross_entropy_cl_cpu(const CeArgsCL& a) {
  const VolCL<const bf16>& x = a.logits;
  const int64_t dhw = x.spatial();
  const int64_t chunks_per_n = (dhw + kCeChunk - 1) / kCeChunk;
  std::vector<double> partial(size_t(x.n * chunks_per_n), 0.0);
#pragma omp parallel for schedule(static) if (x.n * dhw * x.c >= kOmpMinWork)
  for (int64_t t = 0; t < x.n * chunks_per_n; ++t) {
    const int n = int(t / chunks_per_n);
    const int64_t v0 = (t % chunks_per_n) * kCeChunk, v1 = std::min(dhw, v0 + kCeChunk);
    const uint8_t* yn = a.labels + n * dhw;
    double s = 0;
    for (int64_t v = v0; v < v1; ++v) {
      const int y = yn[v];
      s += ce_voxel(x.at(n, v), 1, x.c, y, a.weights[y], a.gscale,
                    a.grad.p ? a.grad.at(n, v) : static_cast<bf16*>(nullptr));
    }
    partial[size_t(t)] = s;
  }
  double total = 0;
  for (double p : partial) total += p;
  return total;
}

void argmax_channels_cl_cpu(const VolCL<const bf16>& logits, uint8_t* labels) {
  const int64_t dhw = logits.spatial();
  for (int n = 0; n < logits.n; ++n) {
#pragma omp parallel for schedule(static) if (dhw * logits.c >= kOmpMinWork)
    for (int64_t v = 0; v < dhw; ++v)
      labels[n * dhw + v] = uint8_t(argmax_voxel(logits.at(n, v), 1, logits.c));
  }
}

void argmax_channels_cpu(const Vol& logits, uint8_t* labels) {
  const int64_t dhw = logits.spatial();
  for (int n = 0; n < logits.n; ++n) {
    const float* xn = logits.p + n * logits.sn;
#pragma omp parallel for schedule(static) if (dhw * logits.c >= kOmpMinWork)
    for (int64_t v = 0; v < dhw; ++v)
      labels[n * dhw + v] = uint8_t(argmax_voxel(xn + v, dhw, logits.c));
  }
}

}  // namespace cuseg
