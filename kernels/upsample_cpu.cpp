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

namespace cuseg {

void upsample2x_cl_forward_cpu(const VolCL<const bf16>& x, const VolCL<bf16>& y) {
  const int64_t out = y.spatial();
  for (int n = 0; n < y.n; ++n) {
#pragma omp parallel for schedule(static) if (out * y.c >= kOmpMinWork)
    for (int64_t v = 0; v < out; ++v) {
      const int xx = int(v % y.w), yy = int((v / y.w) % y.h), z = int(v / (int64_t(y.w) * y.h));
      const UpTap a = upsample_src(z, x.d), b = upsample_src(yy, x.h), e = upsample_src(xx, x.w);
      bf16* o = y.at(n, v);
      const bf16* xn = x.at(n, 0);
      for (int c = 0; c < y.c; ++c)
        o[c] = to_bf16(upsample_voxel_cl(xn + c, x.h, x.w, x.cs, a, b, e));
    }
  }
}

void upsample2x_cl_backward_cpu(const VolCL<const bf16>& gy, const VolCL<bf16>& gx,
                                const VolCL<const bf16>& mask) {
  const int64_t dhw = gx.spatial();
  for (int n = 0; n < gx.n; ++n) {
#pragma omp parallel for schedule(static) if (dhw * gx.c >= kOmpMinWork)
    for (int64_t v = 0; v < dhw; ++v) {
      const int xx = int(v % gx.w), yy = int((v / gx.w) % gx.h),
                z = int(v / (int64_t(gx.w) * gx.h));
      bf16* o = gx.at(n, v);
      const bf16* m = mask.p ? mask.at(n, v) : nullptr;
      const bf16* gn = gy.at(n, 0);
      for (int c = 0; c < gx.c; ++c) {
        float g = upsample_grad_voxel_cl(gn + c, gy.cs, z, yy, xx, gx.d, gx.h, gx.w);
        if (m && !(to_float(m[c]) > 0.f)) g = 0.f;
        o[c] = to_bf16(g);
      }
    }
  }
}

}  // namespace cuseg
