#include "cuseg/core/check.h"
#include "cuseg/kernels/channels_last.h"

namespace cuseg {

namespace {
void check_same_grid(int n0, int d0, int h0, int w0, int n1, int d1, int h1, int w1,
                     const char* what) {
  CUSEG_CHECK(n0 == n1 && d0 == d1 && h0 == h1 && w0 == w1, what << ": grids differ");
}
}  // namespace

void to_channels_last_cpu(const Vol& src, const VolCL<bf16>& dst, const VolCL<const bf16>& mask) {
  check_same_grid(src.n, src.d, src.h, src.w, dst.n, dst.d, dst.h, dst.w, "to_channels_last");
  CUSEG_CHECK(src.c <= dst.c, "to_channels_last: " << src.c << " channels into " << dst.c);
  const int64_t dhw = dst.spatial();
  for (int n = 0; n < dst.n; ++n) {
#pragma omp parallel for schedule(static) if (dhw * dst.c >= kOmpMinWork)
    for (int64_t v = 0; v < dhw; ++v) {
      bf16* o = dst.at(n, v);
      const bf16* m = mask.p ? mask.at(n, v) : nullptr;
      for (int c = 0; c < src.c; ++c) o[c] = to_cl_value(src.at(n, c)[v], m ? m + c : nullptr);
      for (int c = src.c; c < dst.c; ++c) o[c] = to_bf16(0.f);
    }
  }
}

void from_channels_last_cpu(const VolCL<const bf16>& src, const Vol& dst) {
  check_same_grid(src.n, src.d, src.h, src.w, dst.n, dst.d, dst.h, dst.w, "from_channels_last");
  CUSEG_CHECK(dst.c <= src.c, "from_channels_last: " << dst.c << " channels from " << src.c);
  const int64_t dhw = src.spatial();
  for (int n = 0; n < dst.n; ++n)
#pragma omp parallel for schedule(static) if (dhw * dst.c >= kOmpMinWork)
    for (int c = 0; c < dst.c; ++c) {
      float* o = dst.at(n, c);
      for (int64_t v = 0; v < dhw; ++v) o[v] = to_float(src.at(n, v)[c]);
    }
}

void copy_channels_last_cpu(const VolCL<const bf16>& src, const VolCL<bf16>& dst) {
  check_same_grid(src.n, src.d, src.h, src.w, dst.n, dst.d, dst.h, dst.w, "copy_channels_last");
  CUSEG_CHECK(src.c <= dst.c, "copy_channels_last: " << src.c << " channels into " << dst.c);
  const int64_t dhw = src.spatial();
  for (int n = 0; n < dst.n; ++n)
#pragma omp parallel for schedule(static) if (dhw * dst.c >= kOmpMinWork)
    for (int64_t v = 0; v < dhw; ++v) {
      const bf16* s = src.at(n, v);
      bf16* o = dst.at(n, v);
      for (int c = 0; c < src.c; ++c) o[c] = s[c];
      for (int c = src.c; c < dst.c; ++c) o[c] = to_bf16(0.f);
    }
}

}  // namespace cuseg
