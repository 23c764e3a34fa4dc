#include <vector>

#include "cuseg/kernels/upsample.h"

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
          for (int xx = 0; xx < y.w; ++xx)
            yc[lin3(z, yy, xx, y.h, y.w)] = upsample_voxel(xc, x.h, x.w, tz[z], ty[yy], tx[xx]);
    }
  }
}

void upsample2x_backward_cpu(const Vol& gy, const Vol& gx) {
  for (int n = 0; n < gx.n; ++n) {
#pragma omp parallel for schedule(static) if (gy.per_batch() >= kOmpMinWork)
    for (int c = 0; c < gx.c; ++c) {
      const float* gyc = gy.at(n, c);
      float* gxc = gx.at(n, c);
      for (int z = 0; z < gx.d; ++z)
        for (int yy = 0; yy < gx.h; ++yy)
          for (int xx = 0; xx < gx.w; ++xx)
            gxc[lin3(z, yy, xx, gx.h, gx.w)] =
                upsample_grad_voxel(gyc, z, yy, xx, gx.d, gx.h, gx.w);
    }
  }
}

}  // namespace cuseg
