// CPU reference of grid_aggregate (see grid_aggregate.h). Patches in order; planes in parallel.
#include "cuseg/core/check.h"
#include "cuseg/kernels/grid_aggregate.h"

namespace cuseg {

float gaussian_weight_floor(int pd, int ph, int pw) {
  float floor = 0.f;
  for (int z = 0; z < pd; ++z)
    for (int y = 0; y < ph; ++y)
      for (int x = 0; x < pw; ++x) {
        const float w = gaussian_weight_unclamped(x, y, z, pw, ph, pd);
        if (w > 0.f && (floor == 0.f || w < floor)) floor = w;
      }
  // The centre weighs 10: a patch always has a non-zero weight.
  return floor;
}

GridAggregateParams grid_aggregate_params(AggregateMode mode, int overlap_d, int overlap_h,
                                          int overlap_w, int pd, int ph, int pw) {
  GridAggregateParams p;
  p.mode = mode;
  p.overlap_d = overlap_d;
  p.overlap_h = overlap_h;
  p.overlap_w = overlap_w;
  if (mode == AggregateMode::Gaussian) p.gaussian_floor = gaussian_weight_floor(pd, ph, pw);
  return p;
}

void grid_aggregate_cpu(const Vol& patches, const int* starts, const Vol& sum, const Vol& weight,
                        const GridAggregateParams& p) {
  CUSEG_CHECK(sum.n == 1 && weight.n == 1 && weight.c == 1 && patches.c == sum.c,
              "grid_aggregate: expected sum 1xCxDxHxW, weight 1x1xDxHxW, patches nxC (got sum "
                  << sum.n << "x" << sum.c << ", weight " << weight.n << "x" << weight.c
                  << ", patches " << patches.n << "x" << patches.c << ")");
  CUSEG_CHECK(weight.d == sum.d && weight.h == sum.h && weight.w == sum.w,
              "grid_aggregate: weight and sum volumes differ");
  const int pd = patches.d, ph = patches.h, pw = patches.w;
  CUSEG_CHECK(p.mode != AggregateMode::Gaussian || p.gaussian_floor > 0.f,
              "grid_aggregate: Gaussian mode needs gaussian_floor (grid_aggregate_params)");
  for (int q = 0; q < patches.n; ++q) {
    const int z0 = starts[3 * q], y0 = starts[3 * q + 1], x0 = starts[3 * q + 2];
    CUSEG_CHECK(
        z0 >= 0 && y0 >= 0 && x0 >= 0 && z0 + pd <= sum.d && y0 + ph <= sum.h && x0 + pw <= sum.w,
        "grid_aggregate: patch " << q << " at (" << z0 << "," << y0 << "," << x0 << ") of size "
                                 << pd << "x" << ph << "x" << pw << " leaves the " << sum.d << "x"
                                 << sum.h << "x" << sum.w << " volume");
    int lo[3] = {0, 0, 0}, hi[3] = {pd, ph, pw};
    if (p.mode == AggregateMode::Crop) {
      lo[0] = grid_crop_ini(z0, p.overlap_d);
      lo[1] = grid_crop_ini(y0, p.overlap_h);
      lo[2] = grid_crop_ini(x0, p.overlap_w);
      hi[0] = pd - grid_crop_fin(z0, pd, sum.d, p.overlap_d);
      hi[1] = ph - grid_crop_fin(y0, ph, sum.h, p.overlap_h);
      hi[2] = pw - grid_crop_fin(x0, pw, sum.w, p.overlap_w);
    }
#pragma omp parallel for schedule(static)
    for (int z = lo[0]; z < hi[0]; ++z) {
      for (int y = lo[1]; y < hi[1]; ++y) {
        for (int x = lo[2]; x < hi[2]; ++x) {
          const int64_t dst = lin3(z0 + z, y0 + y, x0 + x, sum.h, sum.w);
          const int64_t src = lin3(z, y, x, ph, pw);
          const float w = grid_patch_weight(p, x, y, z, pw, ph, pd);
          for (int c = 0; c < sum.c; ++c) {
            const float v = patches.at(q, c)[src];
            if (p.mode == AggregateMode::Crop)
              sum.at(0, c)[dst] = v;
            else
              sum.at(0, c)[dst] += v * w;
          }
          if (p.mode == AggregateMode::Crop)
            weight.p[dst] = 1.f;
          else
            weight.p[dst] += w;
        }
      }
    }
  }
}

void grid_aggregate_finalize_cpu(const Vol& sum, const Vol& weight, const Vol& out) {
  CUSEG_CHECK(out.c == sum.c && out.d == sum.d && out.h == sum.h && out.w == sum.w,
              "grid_aggregate_finalize: out and sum shapes differ");
  const int64_t s = sum.spatial();
  for (int c = 0; c < sum.c; ++c) {
    const float* a = sum.at(0, c);
    float* o = out.at(0, c);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < s; ++i) o[i] = weight.p[i] > 0.f ? a[i] / weight.p[i] : 0.f;
  }
}

}  // namespace cuseg
