// Conversions between the fp32 channels-first layout (NCDHW float, kernels/common.h Vol) and the
// bf16 channels-last layout of the mixed-precision path (NDHWC bf16, VolCL), and copies between
// channels-last views. Used at the edges of the bf16 network (the fp32 input patch in, the
// logits out for fp32 aggregation), by the CPU twins of the bf16 convolutions (which compute in
// fp32 on the rounded values), and by the legacy fp32 fallback of a refused cuDNN graph.
//
//   to_channels_last:   dst(n, c, v) = to_bf16(src(n, c, v)), times the ReLU mask when given
//                       (0 where mask(n, c, v) <= 0 or NaN: relu_bwd of kernels/elementwise.h),
//                       for c < src.c; channels src.c .. dst.c-1 (padding) are set to 0.
//   from_channels_last: dst(n, c, v) = src(n, c, v) (exact) for c < dst.c <= src.c.
//   copy_channels_last: dst(n, c, v) = src(n, c, v) for c < src.c <= dst.c, channels src.c ..
//                       dst.c-1 set to 0; bf16 to bf16, any voxel strides (a channel slice to a
//                       packed tensor or back; a 1-channel input to its 8-channel padded form).
// Every element is one rounding of one value: CPU and CUDA give the same bits.
#pragma once
#include "cuseg/kernels/bf16.h"
#include "cuseg/kernels/common.h"

namespace cuseg {

// The value written at (c, masked by m): relu_bwd semantics, then RNE.
CUSEG_HD bf16 to_cl_value(float v, const bf16* m) {
  if (m && !(to_float(*m) > 0.f)) return to_bf16(0.f);
  return to_bf16(v);
}

void to_channels_last_cpu(const Vol& src, const VolCL<bf16>& dst, const VolCL<const bf16>& mask);
void from_channels_last_cpu(const VolCL<const bf16>& src, const Vol& dst);
void copy_channels_last_cpu(const VolCL<const bf16>& src, const VolCL<bf16>& dst);
#if CUSEG_HAVE_CUDA
void to_channels_last_cuda(const Vol& src, const VolCL<bf16>& dst, const VolCL<const bf16>& mask,
                           Stream s);
void from_channels_last_cuda(const VolCL<const bf16>& src, const Vol& dst, Stream s);
void copy_channels_last_cuda(const VolCL<const bf16>& src, const VolCL<bf16>& dst, Stream s);
#endif

}  // namespace cuseg
