// CUDA twins of kernels/elementwise_cpu.cpp: ReLU forward / backward in place, dst += src,
// and bias + ReLU (the unfused tail of a cuDNN convolution). Every kernel walks the
// n * C*D*H*W elements of a batch-strided volume with a grid-stride loop; the per-element
// maths is the shared relu_fwd / relu_bwd of elementwise.h.
#include "cuseg/kernels/cuda_launch.cuh"
#include "cuseg/kernels/elementwise.h"

namespace cuseg {

namespace {

__global__ void relu_forward_kernel(Vol y, int64_t total) {
  const int64_t per = y.per_batch();
  CUSEG_GRID_STRIDE(i, total) {
    float* p = y.p + vol_offset(i, per, y.sn);
    *p = relu_fwd(*p);
  }
}

__global__ void relu_backward_kernel(Vol y, Vol g, int64_t total) {
  const int64_t per = y.per_batch();
  CUSEG_GRID_STRIDE(i, total) {
    float* pg = g.p + vol_offset(i, per, g.sn);
    *pg = relu_bwd(y.p[vol_offset(i, per, y.sn)], *pg);
  }
}

__global__ void add_inplace_kernel(Vol dst, Vol src, int64_t total) {
  const int64_t per = dst.per_batch();
  CUSEG_GRID_STRIDE(i, total) {
    dst.p[vol_offset(i, per, dst.sn)] += src.p[vol_offset(i, per, src.sn)];
  }
}

// y = relu?(y + b[c]); b may be null (ReLU only). Channel c of element i is (i % per) / dhw.
__global__ void bias_relu_kernel(Vol y, const float* __restrict__ b, bool relu, int64_t total) {
  const int64_t per = y.per_batch(), dhw = y.spatial();
  CUSEG_GRID_STRIDE(i, total) {
    const int64_t r = i % per;
    float* p = y.p + (i / per) * y.sn + r;
    *p = bias_relu(*p, b, int(r / dhw), relu);
  }
}

}  // namespace

void relu_forward_cuda(const Vol& y, Stream s) {
  const int64_t total = int64_t(y.n) * y.per_batch();
  if (total == 0) return;
  relu_forward_kernel<<<grid_for(total), kThreads, 0, cu(s)>>>(y, total);
  CUSEG_LAUNCH_CHECK();
}

void relu_backward_cuda(const Vol& y, const Vol& g, Stream s) {
  const int64_t total = int64_t(y.n) * y.per_batch();
  if (total == 0) return;
  relu_backward_kernel<<<grid_for(total), kThreads, 0, cu(s)>>>(y, g, total);
  CUSEG_LAUNCH_CHECK();
}

void add_inplace_cuda(const Vol& dst, const Vol& src, Stream s) {
  const int64_t total = int64_t(dst.n) * dst.per_batch();
  if (total == 0) return;
  add_inplace_kernel<<<grid_for(total), kThreads, 0, cu(s)>>>(dst, src, total);
  CUSEG_LAUNCH_CHECK();
}

void bias_relu_forward_cuda(const Vol& y, const float* b, bool relu, Stream s) {
  const int64_t total = int64_t(y.n) * y.per_batch();
  if (total == 0 || (!b && !relu)) return;
  bias_relu_kernel<<<grid_for(total), kThreads, 0, cu(s)>>>(y, b, relu, total);
  CUSEG_LAUNCH_CHECK();
}

}  // namespace cuseg
