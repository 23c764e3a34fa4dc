// CUDA twin of the bf16 channels-last max pooling in kernels/maxpool3d_cpu.cpp (the fp32 path
// pools with cuDNN, engine/cuda/cudnn_ops.cpp). One thread per output element (forward) or per
// input element (backward), channel fastest so a warp reads consecutive channels of a voxel.
// The argmax and the fused backward value come from the shared maxpool_argmax_strided() and
// maxpool_cl_grad() of maxpool3d.h: bit-identical to the CPU (a selection, one fp32 add done
// with __fadd_rn, one RNE rounding). The backward recomputes each window's argmax for each of
// its 8 inputs (the 8 reads hit L1); no atomics, deterministic.
#include "cuseg/core/check.h"
#include "cuseg/kernels/cuda_launch.cuh"
#include "cuseg/kernels/maxpool3d.h"

namespace cuseg {

namespace {

__global__ void maxpool_cl_forward_kernel(VolCL<const bf16> x, VolCL<bf16> y, int64_t total) {
  const int64_t sx = x.cs, sy = sx * x.w, sz = sy * x.h;
  const int64_t out = y.spatial();
  CUSEG_GRID_STRIDE(i, total) {
    const int c = int(i % y.c);
    const int64_t nv = i / y.c;
    const int n = int(nv / out);
    const int64_t v = nv % out;
    const int xo = int(v % y.w), yo = int((v / y.w) % y.h), zo = int(v / (int64_t(y.w) * y.h));
    const bf16* base = x.at(n, lin3(2 * zo, 2 * yo, 2 * xo, x.h, x.w)) + c;
    y.at(n, v)[c] = base[maxpool_tap(maxpool_argmax_strided(base, sz, sy, sx), sz, sy, sx)];
  }
}

__global__ void maxpool_cl_backward_kernel(MaxPoolClBackward a, int64_t total) {
  const VolCL<bf16>& gx = a.gx;
  const int64_t dhw = gx.spatial();
  CUSEG_GRID_STRIDE(i, total) {
    const int c = int(i % gx.c);
    const int64_t nv = i / gx.c;
    const int n = int(nv / dhw);
    const int64_t v = nv % dhw;
    const int xx = int(v % gx.w), yy = int((v / gx.w) % gx.h), z = int(v / (int64_t(gx.w) * gx.h));
    gx.at(n, v)[c] = maxpool_cl_grad(a, n, c, z, yy, xx);
  }
}

}  // namespace

void maxpool3d_cl_forward_cuda(const VolCL<const bf16>& x, const VolCL<bf16>& y, Stream s) {
  const int64_t total = int64_t(y.n) * y.spatial() * y.c;
  if (total == 0) return;
  maxpool_cl_forward_kernel<<<grid_for(total), kThreads, 0, cu(s)>>>(x, y, total);
  CUSEG_LAUNCH_CHECK();
}

void maxpool3d_cl_backward_cuda(const MaxPoolClBackward& a, Stream s) {
  const int64_t total = int64_t(a.gx.n) * a.gx.spatial() * a.gx.c;
  if (total == 0) return;
  maxpool_cl_backward_kernel<<<grid_for(total), kThreads, 0, cu(s)>>>(a, total);
  CUSEG_LAUNCH_CHECK();
}

}  // namespace cuseg
