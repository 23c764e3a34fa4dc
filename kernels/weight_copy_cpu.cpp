#include "cuseg/core/check.h"
#include "cuseg/kernels/weight_copy.h"

namespace cuseg {

namespace {
template <class S, class D>
void copy_loop(const S* src, const FilterMap& sm, D* dst, const FilterMap& dm, bool acc) {
  const int64_t n = sm.count();
#pragma omp parallel for schedule(static) if (n >= kOmpMinWork)
  for (int64_t i = 0; i < n; ++i) {
    const float v = to_float(src[sm.of_linear(i)]);
    D& d = dst[dm.of_linear(i)];
    if (acc)
      store(d, to_float(d) + v);
    else
      store(d, v);
  }
}
}  // namespace

void filter_copy_cpu(const FilterRef& src, const FilterRef& dst, bool accumulate) {
  CUSEG_CHECK(
      src.map.cout == dst.map.cout && src.map.cin == dst.map.cin && src.map.k3 == dst.map.k3,
      "filter_copy: extents differ");
  CUSEG_CHECK(!accumulate || !dst.is_bf16, "filter_copy: accumulation needs a float destination");
  if (src.is_bf16 && dst.is_bf16)
    copy_loop(static_cast<const bf16*>(src.p), src.map, static_cast<bf16*>(dst.p), dst.map,
              accumulate);
  else if (src.is_bf16)
    copy_loop(static_cast<const bf16*>(src.p), src.map, static_cast<float*>(dst.p), dst.map,
              accumulate);
  else if (dst.is_bf16)
    copy_loop(static_cast<const float*>(src.p), src.map, static_cast<bf16*>(dst.p), dst.map,
              accumulate);
  else
    copy_loop(static_cast<const float*>(src.p), src.map, static_cast<float*>(dst.p), dst.map,
              accumulate);
}

}  // namespace cuseg
