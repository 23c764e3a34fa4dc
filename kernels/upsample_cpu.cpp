#include <vector>

#include "kernels/upsample.h"

namespace cuseg {

void upsample2x_forward_cpu(const Vol& x, const Vol& y) {
  std::vector<UpTap> tz(y.d), ty(y.h), tx(y.w);
  for (int o = 0; o < y.d; ++o) tz[o] = upsample_src(o, x.d);
  for (int o = 0; o < y.h; ++o) ty[o] = upsample_src(o, x.h);
  for (int o = 0; o < y.w; ++o) tx[o] = upsample_src(o, x.w);
  for (int n = 0; n < x.n; ++n) {
#pragma omp parallel for schedule(static) if (y.per_batch() >= kOmpMinWork)
    for (int c = 0; c < x.c; ++c) {
      const float* xc = x.at(n, c);
      float* yc = y.at(n, c);
      for (int z = 0; z < y.d; ++z)
        for (int yy = 0; yy < y.h; ++yy)
          for (int xx = 0; xx < y.w; ++xx) {
            const UpTap a = tz[z], b = ty[yy], e = tx[xx];
            auto at = [&](int iz, int iy, int ix) { return xc[lin3(iz, iy, ix, x.h, x.w)]; };
            // Same association order as the CUDA kernel: W, then H, then D.
            const float c00 = (1 - e.l) * at(a.i0, b.i0, e.i0) + e.l * at(a.i0, b.i0, e.i1);
            const float c01 = (1 - e.l) * at(a.i0, b.i1, e.i0) + e.l * at(a.i0, b.i1, e.i1);
            const float c10 = (1 - e.l) * at(a.i1, b.i0, e.i0) + e.l * at(a.i1, b.i0, e.i1);
            const float c11 = (1 - e.l) * at(a.i1, b.i1, e.i0) + e.l * at(a.i1, b.i1, e.i1);
            const float c0 = (1 - b.l) * c00 + b.l * c01;
            const float c1 = (1 - b.l) * c10 + b.l * c11;
            yc[lin3(z, yy, xx, y.h, y.w)] = (1 - a.l) * c0 + a.l * c1;
          }
    }
  }
}

void upsample2x_backward_cpu(const Vol& gy, const Vol& gx) {
  for (int n = 0; n < gx.n; ++n) {
#pragma omp parallel for schedule(static) if (gy.per_batch() >= kOmpMinWork)
    for (int c = 0; c < gx.c; ++c) {
      const float* gyc = gy.at(n, c);
      float* gxc = gx.at(n, c);
      int oz[5], oy[5], ox[5];
      float wz[5], wy[5], wx[5];
      for (int z = 0; z < gx.d; ++z) {
        const int mz = upsample_taps(z, gx.d, oz, wz);
        for (int yy = 0; yy < gx.h; ++yy) {
          const int my = upsample_taps(yy, gx.h, oy, wy);
          for (int xx = 0; xx < gx.w; ++xx) {
            const int mx = upsample_taps(xx, gx.w, ox, wx);
            float acc = 0.f;
            for (int a = 0; a < mz; ++a)
              for (int b = 0; b < my; ++b) {
                float accx = 0.f;
                for (int e = 0; e < mx; ++e) accx += wx[e] * gyc[lin3(oz[a], oy[b], ox[e], gy.h, gy.w)];
                acc += wz[a] * wy[b] * accx;
              }
            gxc[lin3(z, yy, xx, gx.h, gx.w)] = acc;
          }
        }
      }
    }
  }
}

}  // namespace cuseg
