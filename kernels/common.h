// Shared conventions for every op in kernels/.
//
// - Volumes are NCDHW, W fastest. C, D, H and W are packed; the batch stride `sn` may be
//   larger than C*D*H*W: a channel slice of a wider tensor (zero-copy concat) is a Vol
//   whose sn is that wider tensor's C*D*H*W.
// - Each op <op> has <op>.h (this kind of header: params, shape checks, launcher
//   declarations, no CUDA types), <op>_cpu.cpp (plain loops, OpenMP) and <op>.cu
//   (kernels + launchers, only in CUDA builds). Index maths used by both sides lives in
//   CUSEG_HD inline functions in the op's header so the two cannot drift.
// - CUDA launchers take a `Stream` (cudaStream_t without including CUDA headers).
#pragma once
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "cuseg/core/host_device.h"

struct CUstream_st;  // cudaStream_t is CUstream_st*

namespace cuseg {

using Stream = CUstream_st*;

// CPU twins open an OpenMP parallel region only above this many elements of work: below it,
// fork/join and barrier costs exceed the work (a tiny U-Net step ran 4x slower with them).
constexpr int64_t kOmpMinWork = 32768;

// A batch of 3-D multi-channel volumes (float). See the file comment for the layout.
struct Vol {
  float* p = nullptr;
  int n = 0, c = 0, d = 0, h = 0, w = 0;
  int64_t sn = 0;  // batch stride in elements (>= c*d*h*w)

  CUSEG_HD int64_t spatial() const { return int64_t(d) * h * w; }
  CUSEG_HD int64_t per_batch() const { return int64_t(c) * d * h * w; }
  CUSEG_HD float* at(int ni, int ci) const { return p + ni * sn + int64_t(ci) * d * h * w; }
};

// A batch of 3-D multi-channel volumes in channels-last order (NDHWC, C fastest), the layout
// of the bf16 path: element (n, c, z, y, x) lives at p[n * sn + ((z * h + y) * w + x) * cs + c].
// cs (voxel stride, >= c) is the channel count of the buffer the view lies in: a channel slice
// [c0, c0 + c) of a wider channels-last tensor (zero-copy concat) has p at channel c0 and the
// wider tensor's channel count as cs. T is float or bf16 (kernels/bf16.h), const or not.
template <class T>
struct VolCL {
  T* p = nullptr;
  int n = 0, c = 0, d = 0, h = 0, w = 0;
  int64_t cs = 0;  // elements between neighbouring voxels (>= c)
  int64_t sn = 0;  // elements between batch elements (>= d*h*w*cs)

  CUSEG_HD int64_t spatial() const { return int64_t(d) * h * w; }
  // Offset of voxel v (linear z, y, x index) of batch element ni.
  CUSEG_HD int64_t off(int ni, int64_t v) const { return ni * sn + v * cs; }
  CUSEG_HD T* at(int ni, int64_t v) const { return p + off(ni, v); }
  // A read-only view of the same elements.
  template <class U = T, std::enable_if_t<!std::is_const<U>::value, int> = 0>
  CUSEG_HD operator VolCL<const U>() const {
    VolCL<const U> r;
    r.p = p;
    r.n = n, r.c = c, r.d = d, r.h = h, r.w = w;
    r.cs = cs, r.sn = sn;
    return r;
  }
};

// Float product and sum each rounded on its own. nvcc contracts `a * b + c` into one fused
// multiply-add (one rounding) by default; the host build rounds twice (x86-64 without -mfma,
// and GCC in ISO mode, -std=c++17, does not contract). Ops whose CPU twin must match the
// device bit for bit spell such expressions with these.
CUSEG_HD float mul_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
CUSEG_HD float add_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}

// Linear index of (z, y, x) in a packed D x H x W volume.
CUSEG_HD int64_t lin3(int z, int y, int x, int h, int w) {
  return (int64_t(z) * h + y) * w + x;
}

}  // namespace cuseg
