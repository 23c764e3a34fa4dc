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

#if defined(__CUDACC__)
#define CUSEG_HD __host__ __device__ __forceinline__
#else
#define CUSEG_HD inline
#endif

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

// Linear index of (z, y, x) in a packed D x H x W volume.
CUSEG_HD int64_t lin3(int z, int y, int x, int h, int w) {
  return (int64_t(z) * h + y) * w + x;
}

}  // namespace cuseg
