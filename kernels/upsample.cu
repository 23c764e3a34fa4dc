// CUDA twin of kernels/upsample_cpu.cpp: trilinear x2 (align_corners=False).
// Forward: one thread per output voxel, taps from the shared upsample_src(), blended W, then
// H, then D (the CPU's association order). Backward: gather, one thread per input voxel,
// candidates from the shared upsample_taps() in the CPU's loop order, so every input
// gradient is one fixed sum (deterministic, no atomics). nvcc may contract a*b + c into an
// FMA where the CPU rounds twice: results agree to a few ulp, exactly for small integers
// (weights are multiples of 1/4).
#include "kernels/cuda_launch.cuh"
#include "kernels/upsample.h"

namespace cuseg {

namespace {

__global__ void upsample2x_forward_kernel(Vol x, Vol y, int64_t total) {
  const int64_t sp = y.spatial();
  CUSEG_GRID_STRIDE(i, total) {
    const int64_t nc = i / sp, r = i % sp;
    const int n = int(nc / y.c), c = int(nc % y.c);
    const int xx = int(r % y.w), yy = int((r / y.w) % y.h), z = int(r / (int64_t(y.w) * y.h));
    const UpTap a = upsample_src(z, x.d), b = upsample_src(yy, x.h), e = upsample_src(xx, x.w);
    const float* xc = x.at(n, c);
    auto at = [&](int iz, int iy, int ix) { return xc[lin3(iz, iy, ix, x.h, x.w)]; };
    const float c00 = (1 - e.l) * at(a.i0, b.i0, e.i0) + e.l * at(a.i0, b.i0, e.i1);
    const float c01 = (1 - e.l) * at(a.i0, b.i1, e.i0) + e.l * at(a.i0, b.i1, e.i1);
    const float c10 = (1 - e.l) * at(a.i1, b.i0, e.i0) + e.l * at(a.i1, b.i0, e.i1);
    const float c11 = (1 - e.l) * at(a.i1, b.i1, e.i0) + e.l * at(a.i1, b.i1, e.i1);
    const float c0 = (1 - b.l) * c00 + b.l * c01;
    const float c1 = (1 - b.l) * c10 + b.l * c11;
    y.at(n, c)[r] = (1 - a.l) * c0 + a.l * c1;
  }
}

__global__ void upsample2x_backward_kernel(Vol gy, Vol gx, int64_t total) {
  const int64_t sp = gx.spatial();
  CUSEG_GRID_STRIDE(i, total) {
    const int64_t nc = i / sp, r = i % sp;
    const int n = int(nc / gx.c), c = int(nc % gx.c);
    const int xx = int(r % gx.w), yy = int((r / gx.w) % gx.h), z = int(r / (int64_t(gx.w) * gx.h));
    int oz[5], oy[5], ox[5];
    float wz[5], wy[5], wx[5];
    const int mz = upsample_taps(z, gx.d, oz, wz);
    const int my = upsample_taps(yy, gx.h, oy, wy);
    const int mx = upsample_taps(xx, gx.w, ox, wx);
    const float* gyc = gy.at(n, c);
    float acc = 0.f;
    for (int a = 0; a < mz; ++a)
      for (int b = 0; b < my; ++b) {
        float accx = 0.f;
        for (int e = 0; e < mx; ++e) accx += wx[e] * gyc[lin3(oz[a], oy[b], ox[e], gy.h, gy.w)];
        acc += wz[a] * wy[b] * accx;
      }
    gx.at(n, c)[r] = acc;
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
