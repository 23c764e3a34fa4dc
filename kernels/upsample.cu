// CUDA twin of kernels/upsample_cpu.cpp: trilinear x2 (align_corners=False).
// Forward: one thread per output voxel, taps from the shared upsample_src(), blended W, then
// H, then D (the CPU's association order). Backward: gather, one thread per input voxel,
// candidates from the shared upsample_taps() in the CPU's loop order, so every input
// gradient is one fixed sum (deterministic, no atomics). nvcc may contract a*b + c into an
// FMA where the CPU rounds twice: results agree to a few ulp, exactly for small integers
// (weights are multiples of 1/4).
#include "cuseg/kernels/cuda_launch.cuh"
#include "cuseg/kernels/upsample.h"

namespace cuseg {

namespace {

__global__ void upsample2x_forward_kernel(Vol x, Vol y, int64_t total) {
  const int64_t sp = y.spatial();
  CUSEG_GRID_STRIDE(i, total) {
    const int64_t nc = i / sp, r = i % sp;
    const int n = int(nc / y.c), c = int(nc % y.c);
    const int xx = int(r % y.w), yy = int((r / y.w) % y.h), z = int(r / (int64_t(y.w) * y.h));
    const UpTap a = upsample_src(z, x.d), b = upsample_src(yy, x.h), e = upsample_src(xx, x.w);
    y.at(n, c)[r] = upsample_voxel(x.at(n, c), x.h, x.w, a, b, e);
  }
}

__global__ void upsample2x_backward_kernel(Vol gy, Vol gx, int64_t total) {
  const int64_t sp = gx.spatial();
  CUSEG_GRID_STRIDE(i, total) {
    const int64_t nc = i / sp, r = i % sp;
    const int n = int(nc / gx.c), c = int(nc % gx.c);
    const int xx = int(r % gx.w), yy = int((r / gx.w) % gx.h), z = int(r / (int64_t(gx.w) * gx.h));
    gx.at(n, c)[r] = upsample_grad_voxel(gy.at(n, c), z, yy, xx, gx.d, gx.h, gx.w);
  }
}

}  // namespace

void upsample2x_forward_cuda(const Vol& x, const Vol& y, Stream s) {
  const int64_t total = int64_t(y.n) * y.c * y.spatial();
  if (total == 0) return;
  upsample2x_forward_kernel<<<grid_for(total), kThreads, 0, cu(s)>>>(x, y, total);
  CUSEG_LAUNCH_CHECK();
}

void upsample2x_backward_cuda(const Vol& gy, const Vol& gx, Stream s) {
  const int64_t total = int64_t(gx.n) * gx.c * gx.spatial();
  if (total == 0) return;
  upsample2x_backward_kernel<<<grid_for(total), kThreads, 0, cu(s)>>>(gy, gx, total);
  CUSEG_LAUNCH_CHECK();
}

}  // namespace cuseg

// ---- bf16 channels-last twins of upsample2x_cl_*_cpu: one thread per output (forward) or input
// (backward) element, channel fastest; values from the shared upsample_voxel_cl /
// upsample_grad_voxel_cl (mul_rn / add_rn: the CPU's bits).
namespace cuseg {

namespace {

__global__ void upsample2x_cl_forward_kernel(VolCL<const bf16> x, VolCL<bf16> y, int64_t total) {
  const int64_t out = y.spatial();
  CUSEG_GRID_STRIDE(i, total) {
    const int c = int(i % y.c);
    const int64_t nv = i / y.c;
    const int n = int(nv / out);
    const int64_t v = nv % out;
    const int xx = int(v % y.w), yy = int((v / y.w) % y.h), z = int(v / (int64_t(y.w) * y.h));
    const UpTap a = upsample_src(z, x.d), b = upsample_src(yy, x.h), e = upsample_src(xx, x.w);
    y.at(n, v)[c] = to_bf16(upsample_voxel_cl(x.at(n, 0) + c, x.h, x.w, x.cs, a, b, e));
  }
}

__global__ void upsample2x_cl_backward_kernel(VolCL<const bf16> gy, VolCL<bf16> gx,
                                              VolCL<const bf16> mask, int64_t total) {
  const int64_t dhw = gx.spatial();
  CUSEG_GRID_STRIDE(i, total) {
    const int c = int(i % gx.c);
    const int64_t nv = i / gx.c;
    const int n = int(nv / dhw);
    const int64_t v = nv % dhw;
    const int xx = int(v % gx.w), yy = int((v / gx.w) % gx.h), z = int(v / (int64_t(gx.w) * gx.h));
    float g = upsample_grad_voxel_cl(gy.at(n, 0) + c, gy.cs, z, yy, xx, gx.d, gx.h, gx.w);
    if (mask.p && !(to_float(mask.at(n, v)[c]) > 0.f)) g = 0.f;
    gx.at(n, v)[c] = to_bf16(g);
  }
}

}  // namespace

void upsample2x_cl_forward_cuda(const VolCL<const bf16>& x, const VolCL<bf16>& y, Stream s) {
  const int64_t total = int64_t(y.n) * y.spatial() * y.c;
  if (total == 0) return;
  upsample2x_cl_forward_kernel<<<grid_for(total), kThreads, 0, cu(s)>>>(x, y, total);
  CUSEG_LAUNCH_CHECK();
}

void upsample2x_cl_backward_cuda(const VolCL<const bf16>& gy, const VolCL<bf16>& gx,
                                 const VolCL<const bf16>& mask, Stream s) {
  const int64_t total = int64_t(gx.n) * gx.spatial() * gx.c;
  if (total == 0) return;
  upsample2x_cl_backward_kernel<<<grid_for(total), kThreads, 0, cu(s)>>>(gy, gx, mask, total);
  CUSEG_LAUNCH_CHECK();
}

}  // namespace cuseg
