// CPU reference of crop_or_pad (see crop_or_pad.h). Plain loops; one OpenMP loop over slices.
#include "cuseg/core/check.h"
#include "cuseg/kernels/crop_or_pad.h"

namespace cuseg {

CropOrPadParams crop_or_pad_params(const Vol& in, const Vol& out, float pad_value) {
  CUSEG_CHECK(in.n == out.n && in.c == out.c, "crop_or_pad: batch/channels differ (in "
                                                  << in.n << "x" << in.c << ", out " << out.n << "x"
                                                  << out.c << ")");
  CropOrPadParams p;
  p.oz = crop_or_pad_offset(in.d, out.d);
  p.oy = crop_or_pad_offset(in.h, out.h);
  p.ox = crop_or_pad_offset(in.w, out.w);
  p.pad_value = pad_value;
  return p;
}

void crop_or_pad_cpu(const Vol& in, const Vol& out, const CropOrPadParams& p) {
  CUSEG_CHECK(in.n == out.n && in.c == out.c, "crop_or_pad: batch/channels differ");
  const int planes = out.n * out.c * out.d;
#pragma omp parallel for schedule(static)
  for (int q = 0; q < planes; ++q) {
    const int z = q % out.d, c = (q / out.d) % out.c, n = q / (out.d * out.c);
    float* dst = out.at(n, c) + lin3(z, 0, 0, out.h, out.w);
    const int sz = crop_or_pad_src(z, p.oz, in.d);
    for (int y = 0; y < out.h; ++y) {
      const int sy = crop_or_pad_src(y, p.oy, in.h);
      for (int x = 0; x < out.w; ++x) {
        const int sx = crop_or_pad_src(x, p.ox, in.w);
        dst[y * out.w + x] =
            (sz < 0 || sy < 0 || sx < 0) ? p.pad_value : in.at(n, c)[lin3(sz, sy, sx, in.h, in.w)];
      }
    }
  }
}

}  // namespace cuseg
