// cuDNN-backed layers (conv3d forward / backward-data / backward-filter, fused bias + ReLU
// where supported; max pooling). Tensors are 5-D NCDHW float32; batch-strided views are
// described to cuDNN through strides. Algorithms/plans are chosen once per shape and
// cached in the context's CudnnCache; workspace is bounded by the context's budget.
#pragma once
#include <vector>

#include "cuseg/engine/conv_algo.h"
#include "cuseg/engine/cuda/cuda_context.h"
#include "cuseg/engine/tensor.h"

namespace cuseg {

void cudnn_conv3d_forward(CudaContext& ctx, const Tensor& x, const Tensor& w, const Tensor& b,
                          const Tensor& y, bool relu);
void cudnn_conv3d_backward(CudaContext& ctx, const Tensor& x, const Tensor& w, const Tensor& gy,
                           const Tensor& gx, const Tensor& gw, const Tensor& gb);
void cudnn_maxpool3d_forward(CudaContext& ctx, const Tensor& x, const Tensor& y);
void cudnn_maxpool3d_backward(CudaContext& ctx, const Tensor& x, const Tensor& y, const Tensor& gy,
                              const Tensor& gx);
// The algorithms each convolution problem of this context ran (engine/conv_algo.h).
std::vector<ConvAlgoUse> cudnn_conv_algorithms_used(CudaContext& ctx);

}  // namespace cuseg
