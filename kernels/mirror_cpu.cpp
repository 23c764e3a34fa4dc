// CPU twins of kernels/mirror.cu (see mirror.h).
#include "cuseg/kernels/mirror.h"

namespace cuseg {

void mirror_cpu(const Vol& in, const Vol& out, int axes) {
  const int64_t dhw = in.spatial();
  for (int n = 0; n < in.n; ++n)
    for (int c = 0; c < in.c; ++c) {
      const float* src = in.at(n, c);
      float* dst = out.at(n, c);
#pragma omp parallel for schedule(static) if (dhw >= kOmpMinWork)
      for (int z = 0; z < in.d; ++z)
        for (int y = 0; y < in.h; ++y)
          for (int x = 0; x < in.w; ++x)
            dst[lin3(z, y, x, in.h, in.w)] = src[mirror_offset(z, y, x, in.d, in.h, in.w, axes)];
    }
}

void softmax_mirror_accumulate_cpu(const Vol& logits, const Vol& acc, int axes, float scale) {
  const int64_t dhw = logits.spatial();
  for (int n = 0; n < logits.n; ++n) {
    const float* src = logits.at(n, 0);
    float* dst = acc.at(n, 0);
#pragma omp parallel for schedule(static) if (dhw * logits.c >= kOmpMinWork)
    for (int z = 0; z < logits.d; ++z)
      for (int y = 0; y < logits.h; ++y)
        for (int x = 0; x < logits.w; ++x)
          softmax_add(src + mirror_offset(z, y, x, logits.d, logits.h, logits.w, axes), dhw,
                      logits.c, scale, dst + lin3(z, y, x, logits.h, logits.w), dhw);
  }
}

}  // namespace cuseg
