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
