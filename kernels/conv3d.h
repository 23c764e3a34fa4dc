// Conv3d, CPU reference: odd cubic kernel k, padding k/2, stride 1, bias.
// im2col over slabs of output depth planes + OpenBLAS SGEMM; the slab depth is chosen so
// the column buffer stays under kConvColumnBudget bytes (a full 96^3 im2col of 96 channels
// would need 9 GiB). The CUDA path is cuDNN (engine/cuda), not a hand-written kernel.
// Weights: [Cout][Cin][k][k][k] packed (row-major [Cout][Cin*k^3]).
#pragma once
#include <cstddef>

#include "cuseg/kernels/common.h"

namespace cuseg {

constexpr size_t kConvColumnBudget = size_t(64) << 20;

// Column-row index r of (ci, kz, ky, kx) and the input coordinate it reads for an output
// coordinate; shared by im2col and col2im so the two cannot disagree.
CUSEG_HD int conv_row(int ci, int kz, int ky, int kx, int k) {
  return ((ci * k + kz) * k + ky) * k + kx;
}

// Scratch floats the CPU conv needs for input x (column buffer, plus the column-gradient
// buffer in backward when gx is wanted). The caller provides it (engine/ops.cpp takes it from
// the CPU pool, so it is reused across calls and shows in peak memory: allocating 64 MiB per
// call cost page faults and zeroing worth ~15% of a training step).
size_t conv3d_cpu_workspace_floats(const Vol& x, int k, bool backward_gx);

// y (N x Cout x D x H x W) = conv(x) + b; optional ReLU in place.
void conv3d_forward_cpu(const Vol& x, const float* w, const float* b, int k, const Vol& y,
                        bool relu, float* workspace);
// gw += dL/dw, gb += dL/db; gx (may be null p) = dL/dx (overwritten).
void conv3d_backward_cpu(const Vol& x, const float* w, int k, const Vol& gy, const Vol& gx,
                         float* gw, float* gb, float* workspace);

}  // namespace cuseg
