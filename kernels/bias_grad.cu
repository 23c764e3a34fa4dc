// CUDA twin of kernels/bias_grad_cpu.cpp, in the same summation order (bias_grad.h): one thread
// per (chunk, channel) sums its chunk in voxel order (channel fastest across threads: a warp
// reads consecutive channels of a voxel), partials go to the caller's workspace, then one
// thread per channel adds the chunk sums in chunk order and adds the total to gb[c]. All adds
// are single float adds: the CPU's bits.
#include "cuseg/core/check.h"
#include "cuseg/kernels/bias_grad.h"
#include "cuseg/kernels/cuda_launch.cuh"

namespace cuseg {

namespace {

__global__ void bias_grad_partial_kernel(VolCL<const bf16> dy, float* __restrict__ part,
                                         int64_t total) {
  CUSEG_GRID_STRIDE(i, total) {
    const int c = int(i % dy.c);
    const int64_t q = i / dy.c;
    part[i] = bias_grad_chunk_sum(dy, q, c);
  }
}

__global__ void bias_grad_total_kernel(const float* __restrict__ part, int64_t chunks, int c_count,
                                       float* __restrict__ gb) {
  const int c = int(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= c_count) return;
  float t = 0.f;
  for (int64_t q = 0; q < chunks; ++q) t += part[q * c_count + c];
  gb[c] += t;
}

}  // namespace

void bias_grad_cl_cuda(const VolCL<const bf16>& dy, float* gb, void* workspace,
                       size_t workspace_bytes, Stream s) {
  const int64_t chunks = bias_grad_chunks(dy);
  if (chunks == 0 || dy.c == 0) return;
  CUSEG_CHECK(workspace_bytes >= bias_grad_workspace_bytes(dy),
              "bias_grad: workspace " << workspace_bytes << " bytes, needs "
                                      << bias_grad_workspace_bytes(dy));
  float* part = static_cast<float*>(workspace);
  const int64_t total = chunks * dy.c;
  bias_grad_partial_kernel<<<grid_for(total, 1 << 16), kThreads, 0, cu(s)>>>(dy, part, total);
  CUSEG_LAUNCH_CHECK();
  bias_grad_total_kernel<<<unsigned((dy.c + 127) / 128), 128, 0, cu(s)>>>(part, chunks, dy.c, gb);
  CUSEG_LAUNCH_CHECK();
}

}  // namespace cuseg
