// Launch helpers shared by the kernels/*.cu files (CUDA builds only; not a public header).
// Element-wise kernels use a grid-stride loop over 64-bit indices with a grid capped at a
// few waves of the device, so one launch covers any size (96^3 x 32 channels x batch 2 is
// 56 M elements) without one block per 256 elements.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "cuseg/core/cuda_check.h"
#include "cuseg/kernels/common.h"

namespace cuseg {

constexpr int kThreads = 256;

inline cudaStream_t cu(Stream s) {
  return reinterpret_cast<cudaStream_t>(s);
}

// Blocks for n elements at kThreads per block, capped (grid-stride loops do the rest).
inline unsigned grid_for(int64_t n, int64_t cap = 4096) {
  int64_t b = (n + kThreads - 1) / kThreads;
  if (b < 1) b = 1;
  return unsigned(b < cap ? b : cap);
}

// Element i of a batch-strided volume, i in [0, n * per_batch).
__device__ __forceinline__ int64_t vol_offset(int64_t i, int64_t per, int64_t sn) {
  return (i / per) * sn + i % per;
}

#define CUSEG_GRID_STRIDE(i, n)                                             \
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); \
       i += int64_t(gridDim.x) * blockDim.x)

}  // namespace cuseg
