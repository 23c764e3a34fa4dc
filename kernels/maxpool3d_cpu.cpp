#include <algorithm>

#include "cuseg/kernels/maxpool3d.h"

namespace cuseg {

void maxpool3d_forward_cpu(const Vol& x, const Vol& y) {
  for (int n = 0; n < x.n; ++n) {
#pragma omp parallel for schedule(static) if (x.per_batch() >= kOmpMinWork)
    for (int c = 0; c < x.c; ++c) {
      const float* xc = x.at(n, c);
      float* yc = y.at(n, c);
      for (int z = 0; z < y.d; ++z)
        for (int yy = 0; yy < y.h; ++yy)
          for (int xx = 0; xx < y.w; ++xx) {
            const float* base = xc + lin3(2 * z, 2 * yy, 2 * xx, x.h, x.w);
            const int t = maxpool_argmax(base, x.h, x.w);
            yc[lin3(z, yy, xx, y.h, y.w)] = base[lin3(t >> 2, (t >> 1) & 1, t & 1, x.h, x.w)];
          }
    }
  }
}

void maxpool3d_backward_cpu(const Vol& x, const Vol& gy, const Vol& gx) {
  for (int n = 0; n < x.n; ++n) {
#pragma omp parallel for schedule(static) if (x.per_batch() >= kOmpMinWork)
    for (int c = 0; c < x.c; ++c) {
      const float* xc = x.at(n, c);
      const float* gyc = gy.at(n, c);
      float* gxc = gx.at(n, c);
      std::fill(gxc, gxc + x.spatial(), 0.f);
      for (int z = 0; z < gy.d; ++z)
        for (int yy = 0; yy < gy.h; ++yy)
          for (int xx = 0; xx < gy.w; ++xx) {
            const int64_t off = lin3(2 * z, 2 * yy, 2 * xx, x.h, x.w);
            const int t = maxpool_argmax(xc + off, x.h, x.w);
            gxc[off + lin3(t >> 2, (t >> 1) & 1, t & 1, x.h, x.w)] =
                gyc[lin3(z, yy, xx, gy.h, gy.w)];
          }
    }
  }
}

}  // namespace cuseg

namespace cuseg {

void maxpool3d_cl_forward_cpu(const VolCL<const bf16>& x, const VolCL<bf16>& y) {
  const int64_t sx = x.cs, sy = sx * x.w, sz = sy * x.h;
  const int64_t out = y.spatial();
  for (int n = 0; n < x.n; ++n) {
#pragma omp parallel for schedule(static) if (out * y.c >= kOmpMinWork)
    for (int64_t v = 0; v < out; ++v) {
      const int xo = int(v % y.w), yo = int((v / y.w) % y.h), zo = int(v / (int64_t(y.w) * y.h));
      const bf16* base = x.at(n, lin3(2 * zo, 2 * yo, 2 * xo, x.h, x.w));
      bf16* o = y.at(n, v);
      for (int c = 0; c < y.c; ++c)
        o[c] = base[c + maxpool_tap(maxpool_argmax_strided(base + c, sz, sy, sx), sz, sy, sx)];
    }
  }
}

void maxpool3d_cl_backward_cpu(const MaxPoolClBackward& a) {
  const VolCL<bf16>& gx = a.gx;
  const int64_t dhw = gx.spatial();
  for (int n = 0; n < gx.n; ++n) {
#pragma omp parallel for schedule(static) if (dhw * gx.c >= kOmpMinWork)
    for (int64_t v = 0; v < dhw; ++v) {
      const int xx = int(v % gx.w), yy = int((v / gx.w) % gx.h),
                z = int(v / (int64_t(gx.w) * gx.h));
      bf16* o = gx.at(n, v);
      for (int c = 0; c < gx.c; ++c) o[c] = maxpool_cl_grad(a, n, c, z, yy, xx);
    }
  }
}

}  // namespace cuseg
