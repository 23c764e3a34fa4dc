#include <vector>

#include "cuseg/kernels/bias_grad.h"

namespace cuseg {

void bias_grad_cl_cpu(const VolCL<const bf16>& dy, float* gb) {
  const int64_t chunks = bias_grad_chunks(dy);
  std::vector<float> part(size_t(chunks) * size_t(dy.c));
#pragma omp parallel for schedule(static) if (chunks * kBiasGradChunk * dy.c >= kOmpMinWork)
  for (int64_t q = 0; q < chunks; ++q)
    for (int c = 0; c < dy.c; ++c)
      part[size_t(q) * size_t(dy.c) + size_t(c)] = bias_grad_chunk_sum(dy, q, c);
  for (int c = 0; c < dy.c; ++c) {
    float t = 0.f;
    for (int64_t q = 0; q < chunks; ++q) t += part[size_t(q) * size_t(dy.c) + size_t(c)];
    gb[c] += t;
  }
}

}  // namespace cuseg
