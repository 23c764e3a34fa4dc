// CUDA twin of kernels/adam_cpu.cpp: Adam over every parameter tensor in one launch.
//
// Multi-tensor: the tensor list (pointers + sizes, at most kAdamTensorsPerLaunch per launch)
// travels by value in the kernel's parameter space, so a step needs no host-to-device copy
// of the list and no synchronisation. A tensor with a bf16 copy writes it in the same pass
// (adam_element). Each tensor gets a contiguous range of blocks (block
// offsets prefix-summed on the host); a block finds its tensor by a short search. Per
// element the maths is the shared adam_update() of adam.h; nvcc contracts a*b + c into FMAs
// where the CPU rounds twice, so parameters agree with the CPU to a few ulp per step.
#include "cuseg/kernels/adam.h"
#include "cuseg/kernels/cuda_launch.cuh"

namespace cuseg {

namespace {

constexpr int kAdamTensorsPerLaunch = 40;  // 40 * 88 B + offsets: inside 4 KiB of params
constexpr int kAdamElemsPerBlock = kThreads * 8;

struct AdamBatch {
  AdamTensor t[kAdamTensorsPerLaunch];
  int block_start[kAdamTensorsPerLaunch + 1];  // prefix sum of blocks per tensor
  int count;
};

__global__ void adam_kernel(const __grid_constant__ AdamBatch b, AdamCoeffs c) {
  const int blk = blockIdx.x;
  int ti = 0;
  while (ti + 1 < b.count && b.block_start[ti + 1] <= blk) ++ti;
  const AdamTensor& a = b.t[ti];
  const int64_t nb = b.block_start[ti + 1] - b.block_start[ti];
  for (int64_t i = int64_t(blk - b.block_start[ti]) * blockDim.x + threadIdx.x; i < a.n;
       i += nb * blockDim.x)
    adam_element(a, i, c);
}

}  // namespace

void adam_step_cuda(const AdamTensor* tensors, int count, const AdamCoeffs& c, Stream s) {
  for (int first = 0; first < count; first += kAdamTensorsPerLaunch) {
    AdamBatch b{};
    b.count = count - first < kAdamTensorsPerLaunch ? count - first : kAdamTensorsPerLaunch;
    int blocks = 0;
    for (int i = 0; i < b.count; ++i) {
      b.t[i] = tensors[first + i];
      b.block_start[i] = blocks;
      int64_t nb = (b.t[i].n + kAdamElemsPerBlock - 1) / kAdamElemsPerBlock;
      if (nb > 1024) nb = 1024;  // grid-stride beyond
      if (nb < 1) nb = 1;
      blocks += int(nb);
    }
    b.block_start[b.count] = blocks;
    adam_kernel<<<blocks, kThreads, 0, cu(s)>>>(b, c);
    CUSEG_LAUNCH_CHECK();
  }
}

}  // namespace cuseg
