// CUDA twin of kernels/rescale_intensity_cpu.cpp, plus the min / max reduction that gives
// percentiles (0, 100) on the device. Min and max are order-independent, so the two-pass
// reduction (block partials, then one block) is exact and deterministic.
#include <cfloat>

#include "cuseg/core/check.h"
#include "cuseg/kernels/cuda_launch.cuh"
#include "cuseg/kernels/rescale_intensity.h"

namespace cuseg {

namespace {

__global__ void rescale_kernel(const float* __restrict__ in, float* out, int64_t n,
                               RescaleParams p) {
  CUSEG_GRID_STRIDE(i, n) {
    out[i] = rescale_value(in[i], p);
  }
}

// Tree reduction of each thread's (mn, mx) over the block (kThreads threads); thread 0
// writes out[0] = min, out[1] = max.
__device__ void block_minmax(float mn, float mx, float* out) {
  __shared__ float smn[kThreads], smx[kThreads];
  smn[threadIdx.x] = mn;
  smx[threadIdx.x] = mx;
  __syncthreads();
  for (int off = kThreads / 2; off > 0; off >>= 1) {
    if (int(threadIdx.x) < off) {
      smn[threadIdx.x] = fminf(smn[threadIdx.x], smn[threadIdx.x + off]);
      smx[threadIdx.x] = fmaxf(smx[threadIdx.x], smx[threadIdx.x + off]);
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    out[0] = smn[0];
    out[1] = smx[0];
  }
}

// in: n values; out: 2 * gridDim.x partials (min, max). NaN is ignored (fminf/fmaxf).
__global__ void minmax_kernel(const float* __restrict__ in, int64_t n, float* __restrict__ out) {
  float mn = FLT_MAX, mx = -FLT_MAX;
  CUSEG_GRID_STRIDE(i, n) {
    mn = fminf(mn, in[i]);
    mx = fmaxf(mx, in[i]);
  }
  block_minmax(mn, mx, out + 2 * blockIdx.x);
}

__global__ void minmax_final_kernel(const float* __restrict__ part, int blocks,
                                    float* __restrict__ out) {
  float mn = FLT_MAX, mx = -FLT_MAX;
  for (int i = threadIdx.x; i < blocks; i += blockDim.x) {
    mn = fminf(mn, part[2 * i]);
    mx = fmaxf(mx, part[2 * i + 1]);
  }
  block_minmax(mn, mx, out);
}

}  // namespace

void rescale_intensity_cuda(const float* in, float* out, int64_t n, const RescaleParams& p,
                            Stream s) {
  CUSEG_CHECK(p.in_max > p.in_min,
              "rescale_intensity: empty input range [" << p.in_min << ", " << p.in_max << "]");
  if (n == 0) return;
  rescale_kernel<<<grid_for(n), kThreads, 0, cu(s)>>>(in, out, n, p);
  CUSEG_LAUNCH_CHECK();
}

void minmax_cuda(const float* in, int64_t n, float* out, void* workspace, size_t workspace_bytes,
                 Stream s) {
  CUSEG_CHECK(n > 0, "minmax of an empty array");
  CUSEG_CHECK(
      workspace_bytes >= minmax_workspace_bytes(),
      "minmax: workspace " << workspace_bytes << " bytes, needs " << minmax_workspace_bytes());
  const unsigned blocks = grid_for(n, kMinmaxMaxBlocks);
  float* part = static_cast<float*>(workspace);
  minmax_kernel<<<blocks, kThreads, 0, cu(s)>>>(in, n, part);
  CUSEG_LAUNCH_CHECK();
  minmax_final_kernel<<<1, kThreads, 0, cu(s)>>>(part, int(blocks), out);
  CUSEG_LAUNCH_CHECK();
}

}  // namespace cuseg
