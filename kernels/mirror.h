// Test-time augmentation by mirroring (nnU-Net): the network sees each patch flipped along a
// subset of its spatial axes, each output is flipped back, turned into class probabilities and
// averaged. Two ops:
//  - mirror:                  out = x flipped along the axes in `axes`;
//  - softmax_mirror_accumulate: acc += scale * softmax_C(logits flipped along `axes`),
//    i.e. the output is flipped back (a flip is its own inverse) while it is accumulated.
// `axes` is a bit mask over the spatial axes of NCDHW: kMirrorW (1, x / i), kMirrorH (2, y / j),
// kMirrorD (4, z / k); 0 = identity. The 8 masks 0..7 are nnU-Net's 8 mirrorings of a 3-D
// patch. Softmax over C per voxel: max subtracted, exp, divided by the sum (float32, the
// channel loop in order c = 0..C-1 on both sides; the CPU's and CUDA's expf differ by up to
// 2 ulp (CUDA Programming Guide, maximum ulp error of expf), so the twins agree to a few ulp,
// not bit for bit). Shapes: in/out and logits/acc have equal n, c, d, h, w; acc's n may be
// a batch-strided view like every Vol.
#pragma once
#include <cmath>

#include "cuseg/kernels/common.h"

namespace cuseg {

constexpr int kMirrorW = 1, kMirrorH = 2, kMirrorD = 4;
constexpr int kMirrorAll = 7;

// Source coordinate of destination coordinate v along an axis of extent n.
CUSEG_HD int mirror_coord(int v, int n, bool flip) {
  return flip ? n - 1 - v : v;
}
// Linear source offset (within one D x H x W channel) of destination (z, y, x).
CUSEG_HD int64_t mirror_offset(int z, int y, int x, int d, int h, int w, int axes) {
  return lin3(mirror_coord(z, d, axes & kMirrorD), mirror_coord(y, h, axes & kMirrorH),
              mirror_coord(x, w, axes & kMirrorW), h, w);
}

// Softmax of one voxel's C logits (stride `cs` between channels), scaled and added to acc.
CUSEG_HD void softmax_add(const float* x, int64_t cs, int c, float scale, float* acc,
                          int64_t acc_cs) {
  float m = x[0];
  for (int k = 1; k < c; ++k) m = x[k * cs] > m ? x[k * cs] : m;
  float sum = 0.f;
  for (int k = 0; k < c; ++k) sum += expf(x[k * cs] - m);
  const float f = scale / sum;
  for (int k = 0; k < c; ++k) acc[k * acc_cs] += expf(x[k * cs] - m) * f;
}

void mirror_cpu(const Vol& in, const Vol& out, int axes);
void softmax_mirror_accumulate_cpu(const Vol& logits, const Vol& acc, int axes, float scale);
#if CUSEG_HAVE_CUDA
void mirror_cuda(const Vol& in, const Vol& out, int axes, Stream s);
void softmax_mirror_accumulate_cuda(const Vol& logits, const Vol& acc, int axes, float scale,
                                    Stream s);
#endif

}  // namespace cuseg
