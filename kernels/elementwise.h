// Element-wise ops on (possibly batch-strided) volumes: ReLU forward/backward in place,
// dst += src. Forward and backward side by side; the CUDA twins live in elementwise.cu.
#pragma once
#include "cuseg/kernels/common.h"

namespace cuseg {

CUSEG_HD float relu_fwd(float v) {
  return v > 0.f ? v : 0.f;
}
// Gradient through ReLU given its output y (y > 0 <=> input > 0).
CUSEG_HD float relu_bwd(float y, float g) {
  return y > 0.f ? g : 0.f;
}

// Conv epilogue: y + b (b may be null) then ReLU when asked.
CUSEG_HD float bias_relu(float y, const float* b, int c, bool relu) {
  const float v = b ? y + b[c] : y;
  return relu ? relu_fwd(v) : v;
}

void relu_forward_cpu(const Vol& y);
// y = relu?(y + b[c]) for every channel c, in place (the CPU conv's epilogue).
void bias_relu_forward_cpu(const Vol& y, const float* b, bool relu);
void relu_backward_cpu(const Vol& y, const Vol& g);
void add_inplace_cpu(const Vol& dst, const Vol& src);

#if CUSEG_HAVE_CUDA
void relu_forward_cuda(const Vol& y, Stream s);
void relu_backward_cuda(const Vol& y, const Vol& g, Stream s);
void add_inplace_cuda(const Vol& dst, const Vol& src, Stream s);
// y = relu?(y + b[c]) for every channel c (bias + ReLU where not fused into cuDNN).
void bias_relu_forward_cuda(const Vol& y, const float* b, bool relu, Stream s);
#endif

}  // namespace cuseg
