// CUDA twins of kernels/mirror_cpu.cpp (see mirror.h): one thread per output element
// (mirror) or per voxel (softmax over the channels, accumulated), grid-stride loops; the
// index maths and the per-voxel softmax are mirror.h's shared functions.
#include "cuseg/kernels/cuda_launch.cuh"
#include "cuseg/kernels/mirror.h"

namespace cuseg {

namespace {

__global__ void mirror_kernel(Vol in, Vol out, int axes, int64_t total) {
  const int64_t dhw = in.spatial();
  CUSEG_GRID_STRIDE(i, total) {
    const int64_t nc = i / dhw, r = i % dhw;
    const int n = int(nc / in.c), c = int(nc % in.c);
    const int x = int(r % in.w), y = int(r / in.w % in.h), z = int(r / (int64_t(in.w) * in.h));
    out.at(n, c)[r] = in.at(n, c)[mirror_offset(z, y, x, in.d, in.h, in.w, axes)];
  }
}

__global__ void softmax_mirror_accumulate_kernel(Vol logits, Vol acc, int axes, float scale,
                                                 int64_t total) {
  const int64_t dhw = logits.spatial();
  CUSEG_GRID_STRIDE(i, total) {
    const int n = int(i / dhw);
    const int64_t r = i % dhw;
    const int x = int(r % logits.w), y = int(r / logits.w % logits.h),
              z = int(r / (int64_t(logits.w) * logits.h));
    softmax_add(logits.at(n, 0) + mirror_offset(z, y, x, logits.d, logits.h, logits.w, axes), dhw,
                logits.c, scale, acc.at(n, 0) + r, dhw);
  }
}

}  // namespace

void mirror_cuda(const Vol& in, const Vol& out, int axes, Stream s) {
  const int64_t total = int64_t(in.n) * in.c * in.spatial();
  if (total == 0) return;
  mirror_kernel<<<grid_for(total), kThreads, 0, cu(s)>>>(in, out, axes, total);
  CUSEG_LAUNCH_CHECK();
}

void softmax_mirror_accumulate_cuda(const Vol& logits, const Vol& acc, int axes, float scale,
                                    Stream s) {
  const int64_t total = int64_t(logits.n) * logits.spatial();
  if (total == 0) return;
  softmax_mirror_accumulate_kernel<<<grid_for(total), kThreads, 0, cu(s)>>>(logits, acc, axes,
                                                                            scale, total);
  CUSEG_LAUNCH_CHECK();
}

}  // namespace cuseg
