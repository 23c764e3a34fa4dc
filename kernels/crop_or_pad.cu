// CUDA twin of kernels/crop_or_pad_cpu.cpp: crop and pad in one kernel, one thread per
// output voxel, source index from the shared crop_or_pad_src() (pad_value outside). A pure
// copy: bit-identical to the CPU.
#include "cuseg/core/check.h"
#include "cuseg/kernels/crop_or_pad.h"
#include "cuseg/kernels/cuda_launch.cuh"

namespace cuseg {

namespace {

__global__ void crop_or_pad_kernel(Vol in, Vol out, CropOrPadParams p, int64_t total) {
  const int64_t sp = out.spatial();
  CUSEG_GRID_STRIDE(i, total) {
    const int64_t nc = i / sp, r = i % sp;
    const int n = int(nc / out.c), c = int(nc % out.c);
    const int x = int(r % out.w), y = int((r / out.w) % out.h),
              z = int(r / (int64_t(out.w) * out.h));
    const int sz = crop_or_pad_src(z, p.oz, in.d);
    const int sy = crop_or_pad_src(y, p.oy, in.h);
    const int sx = crop_or_pad_src(x, p.ox, in.w);
    out.at(n, c)[r] =
        (sz < 0 || sy < 0 || sx < 0) ? p.pad_value : in.at(n, c)[lin3(sz, sy, sx, in.h, in.w)];
  }
}

}  // namespace

void crop_or_pad_cuda(const Vol& in, const Vol& out, const CropOrPadParams& p, Stream s) {
  CUSEG_CHECK(in.n == out.n && in.c == out.c, "crop_or_pad: batch/channels differ");
  const int64_t total = int64_t(out.n) * out.c * out.spatial();
  if (total == 0) return;
  crop_or_pad_kernel<<<grid_for(total), kThreads, 0, cu(s)>>>(in, out, p, total);
  CUSEG_LAUNCH_CHECK();
}

}  // namespace cuseg
