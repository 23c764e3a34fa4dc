// Bias gradient of a convolution in the bf16 channels-last path: gb[c] += sum over the batch and
// every voxel of dy(n, c, v), dy being the bf16 gradient of the convolution's output (after the
// ReLU backward), accumulated in fp32 into the fp32 bias gradient (engine convention: parameter
// gradients accumulate).
//
// Fixed summation order, the same on the CPU and the GPU, so the two agree bit for bit: the
// voxels of each batch element are cut into chunks of kBiasGradChunk; each chunk's values are
// added in voxel order (one fp32 accumulator starting at 0); then, per channel, the chunk sums
// are added in (batch, chunk) order to 0, and that total is added to gb[c]. No atomics.
// Accuracy (for the stated order): |error| <= (chunk + chunks) * 2^-24 * sum |dy| (standard
// bound for recursive summation; tests compare CPU and GPU exactly, and the CPU oracle of the
// whole step against fp32 within the derived training bound).
#pragma once
#include <cstddef>
#include <cstdint>

#include "cuseg/kernels/bf16.h"
#include "cuseg/kernels/common.h"

namespace cuseg {

constexpr int64_t kBiasGradChunk = 512;

inline int64_t bias_grad_chunks(const VolCL<const bf16>& dy) {
  return int64_t(dy.n) * ((dy.spatial() + kBiasGradChunk - 1) / kBiasGradChunk);
}
// Device scratch of the CUDA version: one float per (chunk, channel).
inline size_t bias_grad_workspace_bytes(const VolCL<const bf16>& dy) {
  return size_t(bias_grad_chunks(dy)) * size_t(dy.c) * sizeof(float);
}

// Sum of chunk q (q over batch elements then chunks) of channel c, in voxel order.
CUSEG_HD float bias_grad_chunk_sum(const VolCL<const bf16>& dy, int64_t q, int c) {
  const int64_t per = (dy.spatial() + kBiasGradChunk - 1) / kBiasGradChunk;
  const int n = int(q / per);
  const int64_t v0 = (q % per) * kBiasGradChunk;
  const int64_t v1 = v0 + kBiasGradChunk < dy.spatial() ? v0 + kBiasGradChunk : dy.spatial();
  float s = 0.f;
  for (int64_t v = v0; v < v1; ++v) s = add_rn(s, to_float(dy.at(n, v)[c]));
  return s;
}

void bias_grad_cl_cpu(const VolCL<const bf16>& dy, float* gb);
#if CUSEG_HAVE_CUDA
void bias_grad_cl_cuda(const VolCL<const bf16>& dy, float* gb, void* workspace,
                       size_t workspace_bytes, Stream s);
#endif

}  // namespace cuseg
