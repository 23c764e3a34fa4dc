// The CPU twin of the bf16 channels-last convolutions (engine/cuda/conv_cl.h), and with it the
// CPU oracle of the mixed-precision path: the same op in fp32 with every tensor the GPU stores in
// bf16 rounded to bf16. The bf16 operands are widened to fp32 channels-first copies (exact), the
// fp32 CPU convolution runs (kernels/conv3d.h: im2col + SGEMM, fp32 accumulation; bias + ReLU in
// fp32), and the result is rounded once to bf16 (RNE; the ReLU mask of the backward applied in
// fp32 first), where the GPU's graph stores bf16. The weight gradient stays fp32 (the graph's dw
// is fp32), the bias gradient is kernels/bias_grad.h's fixed-order fp32 sum (bit-identical to
// the GPU's).
// Operands and conventions as engine/cuda/conv_cl.h.
#pragma once
#include "cuseg/engine/tensor.h"

namespace cuseg {

void cpu_conv_cl_forward(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& y,
                         bool relu);
void cpu_conv_cl_backward(const Tensor& x, const Tensor& w, const Tensor& gy, const Tensor& gx,
                          const Tensor& gw, const Tensor& gb, const Tensor& gx_mask);

}  // namespace cuseg
