// bf16 channels-last convolutions on CUDA (the mixed-precision path's conv layers), with their
// fallbacks. Only included by code built with CUSEG_HAVE_CUDA.
//
// Operands (engine/ops.h, conv3d_forward / conv3d_backward with bf16 tensors): x, y, gy, gx and
// the ReLU mask are bf16 channels-last [N, C, D, H, W] (channel slices allowed), w is the bf16
// channels-last filter copy [Cout_pad, Cin_pad, k, k, k] (Param::copy), b its bf16 bias copy
// [Cout_pad]; the weight and bias gradients are the fp32 master-layout gradients
// [Cout, Cin, k, k, k] and [Cout] (Cout <= Cout_pad, Cin <= Cin_pad: the padding channels are
// not part of the model), accumulated.
//
// Each problem runs the first way that works, tried in this order and remembered per problem:
//  1. the cuDNN graph on the operands as they are (engine/cuda/cudnn_graph.h);
//  2. when an operand is a channel slice (the skip connections of the zero-copy concat) and
//     cuDNN refused 1: the same graph on packed copies of the sliced operands (an output slice
//     is computed packed and copied in). Cost: one extra read + write of each sliced operand
//     (2 x 2 bytes x channels per voxel), e.g. 2 x 113 MB for the level-1 skip (32 channels,
//     batch 2, 96^3) -- about 70 us at 3.3 TB/s, per direction and level;
//  3. the legacy fp32 cuDNN op (engine/cuda/cudnn_ops.h) on fp32 channels-first copies of the
//     operands (exact: bf16 -> fp32), its result rounded to bf16 (bias + ReLU, or the ReLU mask,
//     applied in fp32 before the rounding): the numerics of the CPU oracle, at fp32 speed.
// A problem that leaves 1 prints one warning naming the problem, cuDNN's reason and the way
// taken. The weight gradient takes the graph's fp32 dw when cuDNN offers it, else a bf16 dw
// (one more rounding; the parity tolerance covers both).
#pragma once
#include "cuseg/engine/cuda/cuda_context.h"
#include "cuseg/engine/tensor.h"

namespace cuseg {

void cuda_conv_cl_forward(CudaContext& ctx, const Tensor& x, const Tensor& w, const Tensor& b,
                          const Tensor& y, bool relu);
// gx (when defined) = dgrad(gy, w) [* (gx_mask > 0)]; gw += wgrad(x, gy); gb += sum(gy).
void cuda_conv_cl_backward(CudaContext& ctx, const Tensor& x, const Tensor& w, const Tensor& gy,
                           const Tensor& gx, const Tensor& gw, const Tensor& gb,
                           const Tensor& gx_mask);

}  // namespace cuseg
