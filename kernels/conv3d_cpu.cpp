// Conv3d CPU reference. See conv3d.h. Index conventions: output (z, y, x) reads input
// (z + kz - p, y + ky - p, x + kx - p), p = k / 2, zero outside.
#include <cblas.h>

#include <algorithm>

#include "cuseg/kernels/conv3d.h"
#include "cuseg/kernels/elementwise.h"

namespace cuseg {

namespace {

int slab_depth(int rows, const Vol& v) {
  const size_t plane = size_t(rows) * v.h * v.w * sizeof(float);
  return int(std::max<size_t>(1, std::min<size_t>(size_t(v.d), kConvColumnBudget / plane)));
}

// col[r][(z - z0) * H * W + y * W + x] for output planes z in [z0, z0 + dz).
void im2col(const float* x, int cin, int d, int h, int w, int k, int z0, int dz, float* col) {
  const int p = k / 2;
  const int rows = cin * k * k * k;
  const int64_t hw = int64_t(h) * w;
#pragma omp parallel for schedule(static) if (int64_t(rows) * dz * hw >= kOmpMinWork)
  for (int r = 0; r < rows; ++r) {
    const int kx = r % k, ky = (r / k) % k, kz = (r / (k * k)) % k, ci = r / (k * k * k);
    const float* xc = x + int64_t(ci) * d * hw;
    float* dst = col + int64_t(r) * dz * hw;
    for (int zz = 0; zz < dz; ++zz) {
      const int iz = z0 + zz + kz - p;
      for (int yy = 0; yy < h; ++yy) {
        const int iy = yy + ky - p;
        float* row = dst + zz * hw + int64_t(yy) * w;
        if (iz < 0 || iz >= d || iy < 0 || iy >= h) {
          std::fill(row, row + w, 0.f);
          continue;
        }
        // A row is the input row shifted by kx - p with zeros past either edge: one
        // contiguous copy plus two short fills (the per-element branch cost 4x).
        const float* src = xc + lin3(iz, iy, 0, h, w);
        const int x0 = std::max(0, p - kx), x1 = std::min(w, w + p - kx);
        std::fill(row, row + x0, 0.f);
        std::copy(src + x0 + kx - p, src + x1 + kx - p, row + x0);
        std::fill(row + x1, row + w, 0.f);
      }
    }
  }
}

// gx[ci] += col2im(gcol) for output planes [z0, z0 + dz). Parallel over input channels: each
// thread owns the rows of one channel, so there are no write conflicts.
void col2im_add(const float* gcol, int cin, int d, int h, int w, int k, int z0, int dz, float* gx) {
  const int p = k / 2;
  const int64_t hw = int64_t(h) * w;
#pragma omp parallel for schedule(static) if (int64_t(cin) * k * k * k * dz * hw >= kOmpMinWork)
  for (int ci = 0; ci < cin; ++ci) {
    float* gxc = gx + int64_t(ci) * d * hw;
    for (int kz = 0; kz < k; ++kz)
      for (int ky = 0; ky < k; ++ky)
        for (int kx = 0; kx < k; ++kx) {
          const float* src = gcol + int64_t(conv_row(ci, kz, ky, kx, k)) * dz * hw;
          for (int zz = 0; zz < dz; ++zz) {
            const int iz = z0 + zz + kz - p;
            if (iz < 0 || iz >= d) continue;
            for (int yy = 0; yy < h; ++yy) {
              const int iy = yy + ky - p;
              if (iy < 0 || iy >= h) continue;
              const float* s = src + zz * hw + int64_t(yy) * w;
              float* dst = gxc + lin3(iz, iy, 0, h, w);
              const int x0 = std::max(0, p - kx), x1 = std::min(w, w + p - kx);
              for (int xx = x0; xx < x1; ++xx) dst[xx + kx - p] += s[xx];
            }
          }
        }
  }
}

// The column matrix [Cin*k^3][dz*H*W] of output planes [z0, z0 + dz) of one batch element
// xn, and its leading dimension: a 1x1 conv reads the input itself (ld = D*H*W).
const float* slab_columns(const float* xn, const Vol& x, int k, int z0, int dz, float* col,
                          int64_t* ld) {
  const int64_t hw = int64_t(x.h) * x.w;
  if (k == 1) {
    *ld = x.spatial();
    return xn + z0 * hw;
  }
  im2col(xn, x.c, x.d, x.h, x.w, k, z0, dz, col);
  *ld = dz * hw;
  return col;
}

}  // namespace

size_t conv3d_cpu_workspace_floats(const Vol& x, int k, bool backward_gx) {
  if (k == 1) return 0;  // a 1x1 conv reads its input directly
  const int rows = x.c * k * k * k;
  const size_t col = size_t(rows) * slab_depth(rows, x) * size_t(x.h) * x.w;
  return backward_gx ? 2 * col : col;
}

void conv3d_forward_cpu(const Vol& x, const float* w, const float* b, int k, const Vol& y,
                        bool relu, float* workspace) {
  const int rows = x.c * k * k * k;
  const int64_t hw = int64_t(x.h) * x.w, dhw = x.spatial();
  const int dz_max = k == 1 ? x.d : slab_depth(rows, x);
  float* col = workspace;
  for (int n = 0; n < x.n; ++n) {
    const float* xn = x.p + n * x.sn;
    float* yn = y.p + n * y.sn;
    for (int z0 = 0; z0 < x.d; z0 += dz_max) {
      const int dz = std::min(dz_max, x.d - z0);
      int64_t ldb;
      const float* B = slab_columns(xn, x, k, z0, dz, col, &ldb);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, y.c, int(dz * hw), rows, 1.f, w, rows,
                  B, int(ldb), 0.f, yn + z0 * hw, int(dhw));
    }
  }
  bias_relu_forward_cpu(y, b, relu);
}

void conv3d_backward_cpu(const Vol& x, const float* w, int k, const Vol& gy, const Vol& gx,
                         float* gw, float* gb, float* workspace) {
  const int rows = x.c * k * k * k;
  const int64_t hw = int64_t(x.h) * x.w, dhw = x.spatial();
  const int dz_max = k == 1 ? x.d : slab_depth(rows, x);
  float* col = workspace;
  // Used only when gx is wanted and k > 1; a 1x1 conv gets no workspace (null, never offset).
  float* gcol = workspace ? workspace + size_t(rows) * dz_max * hw : nullptr;
  for (int n = 0; n < x.n; ++n) {
    const float* xn = x.p + n * x.sn;
    const float* gyn = gy.p + n * gy.sn;
    if (gb) {
      for (int co = 0; co < gy.c; ++co) {
        double s = 0;  // double: dhw can be ~1e6 terms
        const float* g = gyn + co * dhw;
        for (int64_t i = 0; i < dhw; ++i) s += g[i];
        gb[co] += float(s);
      }
    }
    float* gxn = gx.p ? gx.p + n * gx.sn : nullptr;
    if (gxn && k != 1)
      for (int ci = 0; ci < gx.c; ++ci) std::fill(gxn + ci * dhw, gxn + (ci + 1) * dhw, 0.f);
    for (int z0 = 0; z0 < x.d; z0 += dz_max) {
      const int dz = std::min(dz_max, x.d - z0);
      const float* A = gyn + z0 * hw;  // [Cout][dz*hw], ld dhw
      int64_t ldc;
      const float* C = slab_columns(xn, x, k, z0, dz, col, &ldc);
      if (gw)  // gw[Cout][rows] += gy[Cout][dz*hw] * col[rows][dz*hw]^T
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, gy.c, rows, int(dz * hw), 1.f, A,
                    int(dhw), C, int(ldc), 1.f, gw, rows);
      if (gxn) {
        if (k == 1) {  // gx[Cin][dz*hw] = w^T[Cin][Cout] * gy[Cout][dz*hw]
          cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, rows, int(dz * hw), gy.c, 1.f, w,
                      rows, A, int(dhw), 0.f, gxn + z0 * hw, int(dhw));
        } else {
          cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, rows, int(dz * hw), gy.c, 1.f, w,
                      rows, A, int(dhw), 0.f, gcol, int(dz * hw));
          col2im_add(gcol, x.c, x.d, x.h, x.w, k, z0, dz, gxn);
        }
      }
    }
  }
}

}  // namespace cuseg
