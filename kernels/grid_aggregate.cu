// CUDA twin of kernels/grid_aggregate_cpu.cpp: accumulate patch outputs into a volume
// (crop / average / hann / gaussian), then normalise.
//
// Patches are applied in the order given, one launch per patch, all on one stream: within a
// patch every destination voxel is written by exactly one thread, and launches on a stream
// run in order, so crop mode's "later patch overwrites" and the summation order of average
// and hann modes are the CPU's (deterministic, no atomics). Patch origins are read on the
// device (starts_device); the host only needs the patch extent to size each launch. The
// products and sums use __fmul_rn / __fadd_rn so nvcc cannot contract them into FMAs: crop
// and average are then bit-identical to the CPU. The weights come from the shared
// grid_patch_weight() (products only, nothing to contract): hann from a double cos() rounded to
// float (CUDA's cos is within 2 ulp in double, so the floats agree except in rare rounding
// ties), gaussian from a double exp() rounded to float, then to float16 (CUDA's exp is within
// 1 ulp in double; the float16 rounding makes a difference vanishingly rare, and the parity
// test checks that its shapes have none).
#include "cuseg/core/check.h"
#include "cuseg/kernels/cuda_launch.cuh"
#include "cuseg/kernels/grid_aggregate.h"

namespace cuseg {

namespace {

__global__ void grid_aggregate_patch_kernel(Vol patches, int q, const int* __restrict__ starts,
                                            Vol sum, Vol weight, GridAggregateParams p,
                                            int64_t total) {
  const int pd = patches.d, ph = patches.h, pw = patches.w;
  const int z0 = starts[3 * q], y0 = starts[3 * q + 1], x0 = starts[3 * q + 2];
  int lo0 = 0, lo1 = 0, lo2 = 0, hi0 = pd, hi1 = ph, hi2 = pw;
  if (p.mode == AggregateMode::Crop) {
    lo0 = grid_crop_ini(z0, p.overlap_d);
    lo1 = grid_crop_ini(y0, p.overlap_h);
    lo2 = grid_crop_ini(x0, p.overlap_w);
    hi0 = pd - grid_crop_fin(z0, pd, sum.d, p.overlap_d);
    hi1 = ph - grid_crop_fin(y0, ph, sum.h, p.overlap_h);
    hi2 = pw - grid_crop_fin(x0, pw, sum.w, p.overlap_w);
  }
  // Out-of-volume patches are a caller error; the host checks them when starts are on the
  // host (CPU path). Here, skip them rather than write outside the buffers.
  if (z0 < 0 || y0 < 0 || x0 < 0 || z0 + pd > sum.d || y0 + ph > sum.h || x0 + pw > sum.w) return;
  CUSEG_GRID_STRIDE(i, total) {
    const int x = int(i % pw), y = int((i / pw) % ph), z = int(i / (int64_t(pw) * ph));
    if (z < lo0 || z >= hi0 || y < lo1 || y >= hi1 || x < lo2 || x >= hi2) continue;
    const int64_t dst = lin3(z0 + z, y0 + y, x0 + x, sum.h, sum.w);
    const float w = grid_patch_weight(p, x, y, z, pw, ph, pd);
    for (int c = 0; c < sum.c; ++c) {
      const float v = patches.at(q, c)[i];
      float* s = sum.at(0, c) + dst;
      *s = p.mode == AggregateMode::Crop ? v : __fadd_rn(*s, __fmul_rn(v, w));
    }
    weight.p[dst] = p.mode == AggregateMode::Crop ? 1.f : __fadd_rn(weight.p[dst], w);
  }
}

__global__ void grid_finalize_kernel(Vol sum, Vol weight, Vol out, int64_t total) {
  const int64_t s = sum.spatial();
  CUSEG_GRID_STRIDE(i, total) {
    const int c = int(i / s);
    const int64_t v = i % s;
    const float wv = weight.p[v];
    out.at(0, c)[v] = wv > 0.f ? __fdiv_rn(sum.at(0, c)[v], wv) : 0.f;
  }
}

}  // namespace

void grid_aggregate_cuda(const Vol& patches, const int* starts_device, const Vol& sum,
                         const Vol& weight, const GridAggregateParams& p, Stream s) {
  CUSEG_CHECK(sum.n == 1 && weight.n == 1 && weight.c == 1 && patches.c == sum.c,
              "grid_aggregate: expected sum 1xCxDxHxW, weight 1x1xDxHxW, patches nxC");
  CUSEG_CHECK(weight.d == sum.d && weight.h == sum.h && weight.w == sum.w,
              "grid_aggregate: weight and sum volumes differ");
  CUSEG_CHECK(patches.d <= sum.d && patches.h <= sum.h && patches.w <= sum.w,
              "grid_aggregate: patch larger than the volume");
  CUSEG_CHECK(p.mode != AggregateMode::Gaussian || p.gaussian_floor > 0.f,
              "grid_aggregate: Gaussian mode needs gaussian_floor (grid_aggregate_params)");
  const int64_t total = patches.spatial();
  if (total == 0) return;
  for (int q = 0; q < patches.n; ++q) {
    grid_aggregate_patch_kernel<<<grid_for(total), kThreads, 0, cu(s)>>>(patches, q, starts_device,
                                                                         sum, weight, p, total);
    CUSEG_LAUNCH_CHECK();
  }
}

void grid_aggregate_finalize_cuda(const Vol& sum, const Vol& weight, const Vol& out, Stream s) {
  CUSEG_CHECK(out.c == sum.c && out.d == sum.d && out.h == sum.h && out.w == sum.w,
              "grid_aggregate_finalize: out and sum shapes differ");
  const int64_t total = int64_t(sum.c) * sum.spatial();
  if (total == 0) return;
  grid_finalize_kernel<<<grid_for(total), kThreads, 0, cu(s)>>>(sum, weight, out, total);
  CUSEG_LAUNCH_CHECK();
}

}  // namespace cuseg
