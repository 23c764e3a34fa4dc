// CropOrPad (torchio semantics, centred): per axis, diff = |target - size| is split
// ini = ceil(diff / 2) at the start and fin = floor(diff / 2) at the end, cropping when the
// volume is larger than the target and padding (with `pad_value`) when smaller.
// Layout: NCDHW, W fastest (kernels/common.h); the i/j/k axes of a data::Volume are W/H/D.
// The inverse (restoring the original extent) is crop_or_pad back to the original size: the
// same centre rule puts every kept voxel back where it came from (see crop_or_pad_offset).
#pragma once
#include "cuseg/kernels/common.h"

namespace cuseg {

// Signed source offset along one axis: src = dst + offset. Cropping (size > target) gives
// +ceil((size - target) / 2); padding gives -ceil((target - size) / 2).
CUSEG_HD int crop_or_pad_offset(int size, int target) {
  return size >= target ? (size - target + 1) / 2 : -((target - size + 1) / 2);
}

// Source index along one axis for destination index `dst`, or -1 when it falls in padding.
CUSEG_HD int crop_or_pad_src(int dst, int offset, int size) {
  const int s = dst + offset;
  return (s >= 0 && s < size) ? s : -1;
}

// out[n, c, z, y, x] = in[n, c, z + oz, y + oy, x + ox] or pad_value outside `in`.
// in and out must agree in n and c; offsets come from crop_or_pad_offset per axis.
struct CropOrPadParams {
  int oz = 0, oy = 0, ox = 0;
  float pad_value = 0.f;
};
CropOrPadParams crop_or_pad_params(const Vol& in, const Vol& out, float pad_value);
void crop_or_pad_cpu(const Vol& in, const Vol& out, const CropOrPadParams& p);
#if CUSEG_HAVE_CUDA
void crop_or_pad_cuda(const Vol& in, const Vol& out, const CropOrPadParams& p, Stream s);
#endif

}  // namespace cuseg
