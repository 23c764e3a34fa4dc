// CUDA twin of kernels/channels_last_cpu.cpp. One thread per (batch element, voxel, channel),
// channel fastest: consecutive threads write consecutive channels of a voxel (coalesced
// channels-last writes); the channels-first side is read / written with a stride of D*H*W
// between channels, which costs bandwidth only where C is large (the legacy fallback), not at
// the network's edges (1 input channel, 3 logits). Values: the shared to_cl_value (one RNE).
#include "cuseg/core/check.h"
#include "cuseg/kernels/channels_last.h"
#include "cuseg/kernels/cuda_launch.cuh"

namespace cuseg {

namespace {

__global__ void to_cl_kernel(Vol src, VolCL<bf16> dst, VolCL<const bf16> mask, int64_t total) {
  const int64_t dhw = dst.spatial();
  CUSEG_GRID_STRIDE(i, total) {
    const int c = int(i % dst.c);
    const int64_t nv = i / dst.c;
    const int n = int(nv / dhw);
    const int64_t v = nv % dhw;
    bf16 out = to_bf16(0.f);
    if (c < src.c) out = to_cl_value(src.at(n, c)[v], mask.p ? mask.at(n, v) + c : nullptr);
    dst.at(n, v)[c] = out;
  }
}

__global__ void from_cl_kernel(VolCL<const bf16> src, Vol dst, int64_t total) {
  const int64_t dhw = src.spatial();
  CUSEG_GRID_STRIDE(i, total) {
    const int c = int(i % dst.c);
    const int64_t nv = i / dst.c;
    const int n = int(nv / dhw);
    const int64_t v = nv % dhw;
    dst.at(n, c)[v] = to_float(src.at(n, v)[c]);
  }
}

__global__ void copy_cl_kernel(VolCL<const bf16> src, VolCL<bf16> dst, int64_t total) {
  const int64_t dhw = src.spatial();
  CUSEG_GRID_STRIDE(i, total) {
    const int c = int(i % dst.c);
    const int64_t nv = i / dst.c;
    const int n = int(nv / dhw);
    const int64_t v = nv % dhw;
    dst.at(n, v)[c] = c < src.c ? src.at(n, v)[c] : to_bf16(0.f);
  }
}

void same_grid(int n0, int d0, int h0, int w0, int n1, int d1, int h1, int w1, const char* what) {
  CUSEG_CHECK(n0 == n1 && d0 == d1 && h0 == h1 && w0 == w1, what << ": grids differ");
}

}  // namespace

void to_channels_last_cuda(const Vol& src, const VolCL<bf16>& dst, const VolCL<const bf16>& mask,
                           Stream s) {
  same_grid(src.n, src.d, src.h, src.w, dst.n, dst.d, dst.h, dst.w, "to_channels_last");
  CUSEG_CHECK(src.c <= dst.c, "to_channels_last: " << src.c << " channels into " << dst.c);
  const int64_t total = int64_t(dst.n) * dst.spatial() * dst.c;
  if (total == 0) return;
  to_cl_kernel<<<grid_for(total), kThreads, 0, cu(s)>>>(src, dst, mask, total);
  CUSEG_LAUNCH_CHECK();
}

void from_channels_last_cuda(const VolCL<const bf16>& src, const Vol& dst, Stream s) {
  same_grid(src.n, src.d, src.h, src.w, dst.n, dst.d, dst.h, dst.w, "from_channels_last");
  CUSEG_CHECK(dst.c <= src.c, "from_channels_last: " << dst.c << " channels from " << src.c);
  const int64_t total = int64_t(dst.n) * dst.spatial() * dst.c;
  if (total == 0) return;
  from_cl_kernel<<<grid_for(total), kThreads, 0, cu(s)>>>(src, dst, total);
  CUSEG_LAUNCH_CHECK();
}

void copy_channels_last_cuda(const VolCL<const bf16>& src, const VolCL<bf16>& dst, Stream s) {
  same_grid(src.n, src.d, src.h, src.w, dst.n, dst.d, dst.h, dst.w, "copy_channels_last");
  CUSEG_CHECK(src.c <= dst.c, "copy_channels_last: " << src.c << " channels into " << dst.c);
  const int64_t total = int64_t(dst.n) * dst.spatial() * dst.c;
  if (total == 0) return;
  copy_cl_kernel<<<grid_for(total), kThreads, 0, cu(s)>>>(src, dst, total);
  CUSEG_LAUNCH_CHECK();
}

}  // namespace cuseg
