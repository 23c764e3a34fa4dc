// Stateless layer operations with forward and backward, dispatched on the tensors' device.
//
// Conventions (as llm.c): backward functions that produce an input gradient OVERWRITE it;
// parameter gradients ACCUMULATE (+=) so a caller can sum over micro-batches; zero them
// with Tensor::zero(). Activations are 5-D NCDHW float32; any of them may be a channel
// slice (batch-strided view) of a wider tensor, which is how concat is zero-copy.
#pragma once
#include <vector>

#include "cuseg/engine/context.h"
#include "cuseg/engine/tensor.h"

namespace cuseg {

// y = x * w + b (3-D convolution, odd kernel k, padding k/2, stride 1), optionally followed
// by ReLU applied in place. w: [Cout, Cin, k, k, k], b: [Cout].
void conv3d_forward(Context& ctx, const Tensor& x, const Tensor& w, const Tensor& b,
                    const Tensor& y, bool relu);
// gy: gradient w.r.t. the convolution's output (apply relu_backward first when fused).
// Accumulates into gw, gb; overwrites gx when gx is defined.
void conv3d_backward(Context& ctx, const Tensor& x, const Tensor& w, const Tensor& gy,
                     const Tensor& gx, const Tensor& gw, const Tensor& gb);

// In-place ReLU on y, and g *= (y > 0) in place.
void relu_forward(Context& ctx, const Tensor& y);
void relu_backward(Context& ctx, const Tensor& y, const Tensor& g);

// MaxPool3d(kernel 2, stride 2), floor for odd extents. Backward routes each output
// gradient to the first maximum of its window (PyTorch's tie rule) and writes zeros
// elsewhere (overwrites gx, including voxels outside any window).
void maxpool3d_forward(Context& ctx, const Tensor& x, const Tensor& y);
// y is the forward output (cuDNN's backward needs it; the CPU recomputes the argmax).
void maxpool3d_backward(Context& ctx, const Tensor& x, const Tensor& y, const Tensor& gy,
                        const Tensor& gx);

// Trilinear x2 upsampling, align_corners=False. Backward is gather-based (deterministic).
void upsample2x_forward(Context& ctx, const Tensor& x, const Tensor& y);
void upsample2x_backward(Context& ctx, const Tensor& gy, const Tensor& gx);

// dst += src (same shape; either may be a batch-strided view).
void add_inplace(Context& ctx, const Tensor& dst, const Tensor& src);

// Weighted softmax cross-entropy with PyTorch's reduction='mean':
//   loss = sum_n w[y_n] * -log softmax(x_n)[y_n] / sum_n w[y_n]
// over every voxel of the batch. logits [N, K, D, H, W] float32, labels [N, D, H, W] uint8.
// When grad is defined it receives d loss / d logits in the same pass (overwritten).
// Returns the loss (accumulated in double on the CPU; deterministic on every backend).
// `normaliser` > 0 replaces this batch's own sum_n w[y_n] (data-parallel training passes the
// sum over every rank's batch, so that N ranks with batch b compute the same loss and
// gradient as one rank with batch N*b; see class_weight_sum).
double weighted_cross_entropy(Context& ctx, const Tensor& logits, const Tensor& labels,
                              const std::vector<float>& class_weights, const Tensor& grad,
                              double normaliser = 0);
// sum_n class_weights[labels_n] over every voxel of labels [N, D, H, W] uint8: the
// normaliser of weighted_cross_entropy (from a class histogram; throws on a label value >=
// class_weights.size()).
double class_weight_sum(Context& ctx, const Tensor& labels,
                        const std::vector<float>& class_weights);

// Per-voxel argmax over channels: logits [N, K, D, H, W] -> labels [N, D, H, W] uint8.
void argmax_channels(Context& ctx, const Tensor& logits, const Tensor& labels);

}  // namespace cuseg
