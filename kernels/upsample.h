// Trilinear x2 upsampling, align_corners=False (PyTorch / torchio semantics), separable over
// D, H, W. For output index o along an axis of input extent n:
//   src = max(0, (o + 0.5) / 2 - 0.5); i0 = floor(src); i1 = min(i0 + 1, n - 1); l = src - i0
//   out = (1 - l) * in[i0] + l * in[i1]
// Backward is gather-based: each input voxel sums the weighted gradients of the output
// voxels that read it (deterministic, no atomics). Along one axis, input i is read only by
// outputs o in [2i - 2, 2i + 2], so upsample_taps() enumerates at most 5 candidates.
#pragma once
#include "kernels/common.h"

namespace cuseg {

struct UpTap {
  int i0, i1;
  float l;
};

CUSEG_HD UpTap upsample_src(int o, int n) {
  float src = (o + 0.5f) * 0.5f - 0.5f;
  if (src < 0.f) src = 0.f;
  UpTap t;
  t.i0 = int(src);  // src >= 0, so truncation is floor
  t.i1 = t.i0 + 1 < n ? t.i0 + 1 : n - 1;
  t.l = src - float(t.i0);
  return t;
}

// Weight with which output o (of extent 2n) reads input i; 0 when it does not.
CUSEG_HD float upsample_weight(int o, int i, int n) {
  const UpTap t = upsample_src(o, n);
  float wgt = 0.f;
  if (t.i0 == i) wgt += 1.f - t.l;
  if (t.i1 == i) wgt += t.l;
  return wgt;
}

// Collects (output index, weight) pairs that read input i; returns how many (<= 5).
CUSEG_HD int upsample_taps(int i, int n, int* outs, float* wts) {
  int m = 0;
  for (int o = 2 * i - 2; o <= 2 * i + 2; ++o) {
    if (o < 0 || o >= 2 * n) continue;
    const float wgt = upsample_weight(o, i, n);
    if (wgt != 0.f) { outs[m] = o; wts[m] = wgt; ++m; }
  }
  return m;
}

// y: N x C x 2D x 2H x 2W.
void upsample2x_forward_cpu(const Vol& x, const Vol& y);
void upsample2x_backward_cpu(const Vol& gy, const Vol& gx);

#if CUSEG_HAVE_CUDA
void upsample2x_forward_cuda(const Vol& x, const Vol& y, Stream s);
void upsample2x_backward_cuda(const Vol& gy, const Vol& gx, Stream s);
#endif

}  // namespace cuseg
