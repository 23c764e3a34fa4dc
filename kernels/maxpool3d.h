// MaxPool3d(kernel 2, stride 2, no padding), floor for odd extents (the last plane/row/
// column of an odd extent belongs to no window). The fp32 CUDA path is cuDNN (engine/cuda);
// its tie rule must match this one in the parity test. The bf16 channels-last pair below has
// its own CUDA kernels (kernels/maxpool3d.cu).
#pragma once
#include "cuseg/kernels/bf16.h"
#include "cuseg/kernels/common.h"

namespace cuseg {

// Offset (0..7, z-major then y then x) of the maximum of the 2x2x2 window whose corner is
// `base`, neighbours sz / sy / sx elements apart along z / y / x (packed NCDHW channel: h*w,
// w, 1; channels-last: h*w*cs, w*cs, cs), PyTorch's rule (`v > best || isnan(v)` while
// scanning): the first maximum in scan order wins ties, and NaN propagates — a window holding
// a NaN answers its last NaN, so the pooled value is NaN (the fp32 cuDNN path runs with
// CUDNN_PROPAGATE_NAN to match). T: float or bf16 (kernels/bf16.h).
CUSEG_HD int64_t maxpool_tap(int t, int64_t sz, int64_t sy, int64_t sx) {
  return (t >> 2) * sz + ((t >> 1) & 1) * sy + (t & 1) * sx;
}
template <class T>
CUSEG_HD int maxpool_argmax_strided(const T* base, int64_t sz, int64_t sy, int64_t sx) {
  int best = 0;
  float bv = to_float(base[0]);
  for (int t = 1; t < 8; ++t) {
    const float v = to_float(base[maxpool_tap(t, sz, sy, sx)]);
    if (v > bv || v != v) {
      bv = v;
      best = t;
    }
  }
  return best;
}
// The same in a packed D x H x W channel.
CUSEG_HD int maxpool_argmax(const float* base, int h, int w) {
  return maxpool_argmax_strided(base, int64_t(h) * w, w, 1);
}

void maxpool3d_forward_cpu(const Vol& x, const Vol& y);
// gx overwritten: gradient at each window's argmax, zero elsewhere.
void maxpool3d_backward_cpu(const Vol& x, const Vol& gy, const Vol& gx);

// ---- bf16 channels-last (NDHWC) twin pair (CPU here, CUDA in maxpool3d.cu): the pooling of
// the mixed-precision path, where no cuDNN call is used. Forward selects a stored value (no
// rounding). The backward of the U-Net's skip level is fused: the gradient reaching skip[l] is
// the routed pooling gradient plus the gradient of its concat slice, and skip[l] is a ReLU
// output, so
//   gx(v) = [ gy(window of v) if v is that window's first maximum, else 0 ] + gadd(v),
//   times (x(v) > 0) when relu_mask (the ReLU backward, mask = the pooling input itself),
// summed in fp32 and rounded once to bf16. gadd is optional (p == nullptr); voxels outside
// every window (odd extents) get gadd (masked) or 0. x and gadd may be channel slices (strided
// views); the same function computes every value on both sides: bit-identical results.
struct MaxPoolClBackward {
  VolCL<const bf16> x;     // forward input (N, C, D, H, W)
  VolCL<const bf16> gy;    // gradient of the output (N, C, D/2, H/2, W/2)
  VolCL<const bf16> gadd;  // optional extra gradient of x (p == nullptr: none)
  VolCL<bf16> gx;          // overwritten
  bool relu_mask = false;
};

// gx at voxel (z, y, x) channel c of batch element n (see MaxPoolClBackward).
CUSEG_HD bf16 maxpool_cl_grad(const MaxPoolClBackward& a, int n, int c, int z, int y, int x) {
  const int64_t v = lin3(z, y, x, a.x.h, a.x.w);
  float g = 0.f;
  const int zo = z >> 1, yo = y >> 1, xo = x >> 1;
  if (zo < a.gy.d && yo < a.gy.h && xo < a.gy.w) {
    const int64_t sx = a.x.cs, sy = sx * a.x.w, sz = sy * a.x.h;
    const bf16* base = a.x.at(n, lin3(2 * zo, 2 * yo, 2 * xo, a.x.h, a.x.w)) + c;
    const int t = ((z & 1) << 2) | ((y & 1) << 1) | (x & 1);
    if (maxpool_argmax_strided(base, sz, sy, sx) == t)
      g = to_float(a.gy.at(n, lin3(zo, yo, xo, a.gy.h, a.gy.w))[c]);
  }
  if (a.gadd.p) g = add_rn(g, to_float(a.gadd.at(n, v)[c]));
  if (a.relu_mask && !(to_float(a.x.at(n, v)[c]) > 0.f)) g = 0.f;
  return to_bf16(g);
}

void maxpool3d_cl_forward_cpu(const VolCL<const bf16>& x, const VolCL<bf16>& y);
void maxpool3d_cl_backward_cpu(const MaxPoolClBackward& a);
#if CUSEG_HAVE_CUDA
void maxpool3d_cl_forward_cuda(const VolCL<const bf16>& x, const VolCL<bf16>& y, Stream s);
void maxpool3d_cl_backward_cuda(const MaxPoolClBackward& a, Stream s);
#endif

}  // namespace cuseg
