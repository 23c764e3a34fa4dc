// Trilinear x2 upsampling, align_corners=False (PyTorch / torchio semantics), separable over
// D, H, W. For output index o along an axis of input extent n:
//   src = max(0, (o + 0.5) / 2 - 0.5); i0 = floor(src); i1 = min(i0 + 1, n - 1); l = src - i0
//   out = (1 - l) * in[i0] + l * in[i1]
// Backward is gather-based: each input voxel sums the weighted gradients of the output
// voxels that read it (deterministic, no atomics). Along one axis, input i is read only by
// outputs o in [2i - 2, 2i + 2], so upsample_taps() enumerates at most 5 candidates.
#pragma once
#include "cuseg/kernels/bf16.h"
#include "cuseg/kernels/common.h"

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
    if (wgt != 0.f) {
      outs[m] = o;
      wts[m] = wgt;
      ++m;
    }
  }
  return m;
}

// One output voxel from input channel xc (packed d x h x w, only h and w needed for
// indexing) given the per-axis taps; interpolates along W, then H, then D.
CUSEG_HD float upsample_voxel(const float* xc, int h, int w, const UpTap& a, const UpTap& b,
                              const UpTap& e) {
  const float c00 =
      (1 - e.l) * xc[lin3(a.i0, b.i0, e.i0, h, w)] + e.l * xc[lin3(a.i0, b.i0, e.i1, h, w)];
  const float c01 =
      (1 - e.l) * xc[lin3(a.i0, b.i1, e.i0, h, w)] + e.l * xc[lin3(a.i0, b.i1, e.i1, h, w)];
  const float c10 =
      (1 - e.l) * xc[lin3(a.i1, b.i0, e.i0, h, w)] + e.l * xc[lin3(a.i1, b.i0, e.i1, h, w)];
  const float c11 =
      (1 - e.l) * xc[lin3(a.i1, b.i1, e.i0, h, w)] + e.l * xc[lin3(a.i1, b.i1, e.i1, h, w)];
  const float c0 = (1 - b.l) * c00 + b.l * c01;
  const float c1 = (1 - b.l) * c10 + b.l * c11;
  return (1 - a.l) * c0 + a.l * c1;
}

// Gradient of input voxel (z, y, x) of an input channel of extent d x h x w, gathered from
// the output-gradient channel gyc (packed 2d x 2h x 2w).
CUSEG_HD float upsample_grad_voxel(const float* gyc, int z, int y, int x, int d, int h, int w) {
  int oz[5], oy[5], ox[5];
  float wz[5], wy[5], wx[5];
  const int mz = upsample_taps(z, d, oz, wz);
  const int my = upsample_taps(y, h, oy, wy);
  const int mx = upsample_taps(x, w, ox, wx);
  float acc = 0.f;
  for (int a = 0; a < mz; ++a)
    for (int b = 0; b < my; ++b) {
      float accx = 0.f;
      for (int e = 0; e < mx; ++e) accx += wx[e] * gyc[lin3(oz[a], oy[b], ox[e], 2 * h, 2 * w)];
      acc += wz[a] * wy[b] * accx;
    }
  return acc;
}

// y: N x C x 2D x 2H x 2W.
void upsample2x_forward_cpu(const Vol& x, const Vol& y);
void upsample2x_backward_cpu(const Vol& gy, const Vol& gx);

// ---- bf16 channels-last (NDHWC) pair (CPU here, CUDA in upsample.cu): the upsampling of the
// mixed-precision path. Same taps and the same association order as above (W, then H, then D),
// in fp32 with every multiply and add rounded separately (mul_rn / add_rn: no FMA contraction on
// the device), then one RNE rounding to bf16: the CPU and CUDA results are bit-identical.
// Forward: y may be a channel slice of the decoder's concat buffer (strided view; zero-copy
// concat). Backward (gather, deterministic): gy may be such a slice; when relu_mask, the result
// is multiplied by (x > 0), x being the forward input (a ReLU output in the U-Net): the ReLU
// backward of the level below, fused.
CUSEG_HD float lerp_rn(float a, float b, float l) {
  return add_rn(mul_rn(1.f - l, a), mul_rn(l, b));
}

// One output value of channel c (pointer to channel c of voxel 0 of a batch element, voxel
// stride cs).
template <class T>
CUSEG_HD float upsample_voxel_cl(const T* xc, int h, int w, int64_t cs, const UpTap& a,
                                 const UpTap& b, const UpTap& e) {
  auto at = [&](int z, int y, int x) { return to_float(xc[lin3(z, y, x, h, w) * cs]); };
  const float c00 = lerp_rn(at(a.i0, b.i0, e.i0), at(a.i0, b.i0, e.i1), e.l);
  const float c01 = lerp_rn(at(a.i0, b.i1, e.i0), at(a.i0, b.i1, e.i1), e.l);
  const float c10 = lerp_rn(at(a.i1, b.i0, e.i0), at(a.i1, b.i0, e.i1), e.l);
  const float c11 = lerp_rn(at(a.i1, b.i1, e.i0), at(a.i1, b.i1, e.i1), e.l);
  return lerp_rn(lerp_rn(c00, c01, b.l), lerp_rn(c10, c11, b.l), a.l);
}

// Gradient of input voxel (z, y, x) of an input of extent d x h x w from output-gradient
// channel gyc (voxel stride cs), in upsample_grad_voxel's order.
template <class T>
CUSEG_HD float upsample_grad_voxel_cl(const T* gyc, int64_t cs, int z, int y, int x, int d, int h,
                                      int w) {
  int oz[5], oy[5], ox[5];
  float wz[5], wy[5], wx[5];
  const int mz = upsample_taps(z, d, oz, wz);
  const int my = upsample_taps(y, h, oy, wy);
  const int mx = upsample_taps(x, w, ox, wx);
  float acc = 0.f;
  for (int a = 0; a < mz; ++a)
    for (int b = 0; b < my; ++b) {
      float accx = 0.f;
      for (int e = 0; e < mx; ++e)
        accx = add_rn(accx,
                      mul_rn(wx[e], to_float(gyc[lin3(oz[a], oy[b], ox[e], 2 * h, 2 * w) * cs])));
      acc = add_rn(acc, mul_rn(mul_rn(wz[a], wy[b]), accx));
    }
  return acc;
}

void upsample2x_cl_forward_cpu(const VolCL<const bf16>& x, const VolCL<bf16>& y);
// gx overwritten; mask: the forward input x when relu_mask, else p == nullptr.
void upsample2x_cl_backward_cpu(const VolCL<const bf16>& gy, const VolCL<bf16>& gx,
                                const VolCL<const bf16>& mask);

#if CUSEG_HAVE_CUDA
void upsample2x_forward_cuda(const Vol& x, const Vol& y, Stream s);
void upsample2x_backward_cuda(const Vol& gy, const Vol& gx, Stream s);
void upsample2x_cl_forward_cuda(const VolCL<const bf16>& x, const VolCL<bf16>& y, Stream s);
void upsample2x_cl_backward_cuda(const VolCL<const bf16>& gy, const VolCL<bf16>& gx,
                                 const VolCL<const bf16>& mask, Stream s);
#endif

}  // namespace cuseg
