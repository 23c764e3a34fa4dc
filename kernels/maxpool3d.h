// MaxPool3d(kernel 2, stride 2, no padding), floor for odd extents (the last plane/row/
// column of an odd extent belongs to no window). The CUDA path is cuDNN (engine/cuda);
// its tie rule must match this one in the parity test.
#pragma once
#include "cuseg/kernels/common.h"

namespace cuseg {

// Offset (0..7, z-major then y then x) of the first maximum of the 2x2x2 window whose
// corner is `base` in a packed D x H x W channel. First in scan order wins ties, as
// PyTorch's CPU kernel (strict > comparison while scanning).
CUSEG_HD int maxpool_argmax(const float* base, int h, int w) {
  int best = 0;
  float bv = base[0];
  for (int t = 1; t < 8; ++t) {
    const float v = base[lin3(t >> 2, (t >> 1) & 1, t & 1, h, w)];
    if (v > bv) {
      bv = v;
      best = t;
    }
  }
  return best;
}

void maxpool3d_forward_cpu(const Vol& x, const Vol& y);
// gx overwritten: gradient at each window's argmax, zero elsewhere.
void maxpool3d_backward_cpu(const Vol& x, const Vol& gy, const Vol& gx);

}  // namespace cuseg
