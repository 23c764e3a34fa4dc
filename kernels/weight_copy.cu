// CUDA twin of kernels/weight_copy_cpu.cpp: one thread per master element, offsets from the
// shared FilterMap; the accumulation is one float add per element (no FMA to contract), so the
// result is bit-identical to the CPU.
#include "cuseg/core/check.h"
#include "cuseg/kernels/cuda_launch.cuh"
#include "cuseg/kernels/weight_copy.h"

namespace cuseg {

namespace {
template <class S, class D>
__global__ void filter_copy_kernel(const S* __restrict__ src, FilterMap sm, D* __restrict__ dst,
                                   FilterMap dm, bool acc, int64_t n) {
  CUSEG_GRID_STRIDE(i, n) {
    const float v = to_float(src[sm.of_linear(i)]);
    D& d = dst[dm.of_linear(i)];
    if (acc)
      store(d, to_float(d) + v);
    else
      store(d, v);
  }
}

template <class S, class D>
void launch(const FilterRef& src, const FilterRef& dst, bool acc, Stream s) {
  const int64_t n = src.map.count();
  if (n == 0) return;
  filter_copy_kernel<<<grid_for(n), kThreads, 0, cu(s)>>>(static_cast<const S*>(src.p), src.map,
                                                          static_cast<D*>(dst.p), dst.map, acc, n);
  CUSEG_LAUNCH_CHECK();
}
}  // namespace

void filter_copy_cuda(const FilterRef& src, const FilterRef& dst, bool accumulate, Stream s) {
  CUSEG_CHECK(
      src.map.cout == dst.map.cout && src.map.cin == dst.map.cin && src.map.k3 == dst.map.k3,
      "filter_copy: extents differ");
  CUSEG_CHECK(!accumulate || !dst.is_bf16, "filter_copy: accumulation needs a float destination");
  if (src.is_bf16 && dst.is_bf16)
    launch<bf16, bf16>(src, dst, accumulate, s);
  else if (src.is_bf16)
    launch<bf16, float>(src, dst, accumulate, s);
  else if (dst.is_bf16)
    launch<float, bf16>(src, dst, accumulate, s);
  else
    launch<float, float>(src, dst, accumulate, s);
}

}  // namespace cuseg
