// Convolution weights between the fp32 master layout and the layouts the convolutions read.
//
// The master weights (engine Param::value, what checkpoints store and Adam updates) are fp32
// [Cout][Cin][k3] with k3 = k*k*k spatial taps (z, y, x; x fastest). The bf16 path's cuDNN graphs
// read a bf16 copy in channels-last filter order [Cout_pad][k3][Cin_pad] (KDHWC) whose input and
// output channel counts are padded to a multiple of 8 with zeros; its legacy fallback reads an
// fp32 [Cout_pad][Cin_pad][k3] (NCDHW) one. A FilterMap says where element (co, ci, s) of the
// master lives in such a buffer; the padding is never written by these ops (the owner zeroes it
// once), so padded channels stay exactly 0.
//
// Ops (CPU twin + CUDA):
//   filter_copy(src, dst, accumulate): dst[dst.map(co, ci, s)] (=|+=) src[src.map(co, ci, s)] for
//   every (co, ci, s) of src.map's extents, converting float <-> bf16 (bf16 results rounded RNE,
//   kernels/bf16.h). Used to refresh the bf16 copy from the master, to read a bf16 copy back as
//   fp32 (CPU twins, legacy fallback), and to accumulate a convolution's weight gradient from the
//   layout cuDNN wrote it in into the master-layout fp32 gradient (engine convention: parameter
//   gradients accumulate). Each destination element is written by one thread: deterministic,
//   bit-identical to the CPU.
#pragma once
#include <cstdint>

#include "cuseg/kernels/bf16.h"
#include "cuseg/kernels/common.h"

namespace cuseg {

struct FilterMap {
  int cout = 0, cin = 0, k3 = 1;  // extents of the master tensor
  int64_t s_co = 0, s_ci = 0, s_k = 0;

  // Offset of element (co, ci, s).
  CUSEG_HD int64_t at(int co, int ci, int s) const { return co * s_co + ci * s_ci + s * s_k; }
  // Offset of the element with master linear index i (= (co * cin + ci) * k3 + s).
  CUSEG_HD int64_t of_linear(int64_t i) const {
    const int64_t per = int64_t(cin) * k3;
    const int co = int(i / per);
    const int64_t r = i - co * per;
    return at(co, int(r / k3), int(r % k3));
  }
  int64_t count() const { return int64_t(cout) * cin * k3; }
};

// The master layout itself: [cout][cin][k3] packed.
inline FilterMap filter_map_master(int cout, int cin, int k3) {
  return {cout, cin, k3, int64_t(cin) * k3, k3, 1};
}
// Channels-last filter [cout_pad][k3][cin_pad] (cuDNN KDHWC), extents of the unpadded master.
inline FilterMap filter_map_cl(int cout, int cin, int cin_pad, int k3) {
  return {cout, cin, k3, int64_t(k3) * cin_pad, 1, cin_pad};
}
// Channels-first filter [cout_pad][cin_pad][k3] (cuDNN NCDHW), extents of the unpadded master.
inline FilterMap filter_map_ncdhw(int cout, int cin, int cin_pad, int k3) {
  return {cout, cin, k3, int64_t(cin_pad) * k3, k3, 1};
}

struct FilterRef {
  void* p = nullptr;
  bool is_bf16 = false;  // element type: bf16 or float
  FilterMap map;
};

// See the file comment. dst.map must have src.map's extents; accumulate needs a float dst.
void filter_copy_cpu(const FilterRef& src, const FilterRef& dst, bool accumulate);
#if CUSEG_HAVE_CUDA
void filter_copy_cuda(const FilterRef& src, const FilterRef& dst, bool accumulate, Stream s);
#endif

}  // namespace cuseg
