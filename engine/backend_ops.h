// The ops of the backend table (engine/backend.h): one struct per op holding its arguments.
//
// Each struct has kId (its slot in every backend's table), kName (for messages), Result (what
// the op returns) and check(ctx): the op's one shape / dtype / device check, run by run_op()
// before any backend sees the arguments (defined in engine/ops.cpp). Tensor members are
// references: an op struct lives for one call, built at the call site, e.g.
//   run_op(ctx, op::ReluForward{y});
// Semantics and layouts are those of the public functions in engine/ops.h and of the kernel
// headers in kernels/. 5-D tensors are NCDHW float32; any of them may be a channel slice.
#pragma once
#include <cstdint>
#include <utility>
#include <vector>

#include "cuseg/engine/backend.h"
#include "cuseg/engine/param.h"
#include "cuseg/engine/tensor.h"
#include "cuseg/kernels/adam.h"
#include "cuseg/kernels/affine_patch.h"
#include "cuseg/kernels/crop_or_pad.h"
#include "cuseg/kernels/cross_entropy.h"
#include "cuseg/kernels/grid_aggregate.h"
#include "cuseg/kernels/maxpool3d.h"
#include "cuseg/kernels/mirror.h"
#include "cuseg/kernels/rescale_intensity.h"
#include "cuseg/kernels/weight_copy.h"

namespace cuseg {
namespace op {

// What every op struct declares: its table slot, its name, its result type and check().
#define CUSEG_OP_HEADER(Id, name, Res)       \
  static constexpr OpId kId = OpId::Id;      \
  static constexpr const char* kName = name; \
  using Result = Res;                        \
  void check(const Context& ctx) const

// ---------------------------------------------------------------- layers
// y = conv(x, w) + b, then ReLU when relu. w [Cout, Cin, k, k, k] (odd k), b [Cout] or undefined.
struct Conv3dForward {
  CUSEG_OP_HEADER(Conv3dForward, "conv3d_forward", void);
  const Tensor &x, &w, &b, &y;
  bool relu;
};
// gw += dL/dw, gb += dL/db (each when defined), gx = dL/dx (overwritten, when defined).
struct Conv3dBackward {
  CUSEG_OP_HEADER(Conv3dBackward, "conv3d_backward", void);
  const Tensor &x, &w, &gy, &gx, &gw, &gb;
};
// y = relu?(y + b[c]) in place; b [C] or undefined (the conv epilogue).
struct BiasRelu {
  CUSEG_OP_HEADER(BiasRelu, "bias_relu", void);
  const Tensor &y, &b;
  bool relu;
};
struct ReluForward {  // y = max(y, 0) in place
  CUSEG_OP_HEADER(ReluForward, "relu_forward", void);
  const Tensor& y;
};
struct ReluBackward {  // g *= (y > 0) in place
  CUSEG_OP_HEADER(ReluBackward, "relu_backward", void);
  const Tensor &y, &g;
};
struct MaxPool3dForward {  // kernel 2, stride 2, floor
  CUSEG_OP_HEADER(MaxPool3dForward, "maxpool3d_forward", void);
  const Tensor &x, &y;
};
struct MaxPool3dBackward {  // gx overwritten; y is the forward output
  CUSEG_OP_HEADER(MaxPool3dBackward, "maxpool3d_backward", void);
  const Tensor &x, &y, &gy, &gx;
};
struct Upsample2xForward {  // trilinear x2, align_corners=False
  CUSEG_OP_HEADER(Upsample2xForward, "upsample2x_forward", void);
  const Tensor &x, &y;
};
struct Upsample2xBackward {  // gx overwritten
  CUSEG_OP_HEADER(Upsample2xBackward, "upsample2x_backward", void);
  const Tensor &gy, &gx;
};
struct AddInplace {  // dst += src
  CUSEG_OP_HEADER(AddInplace, "add_inplace", void);
  const Tensor &dst, &src;
};

// ---------------------------------------------------------------- loss
// Class histogram of uint8 labels (any shape, contiguous) into counts[classes] (host array).
// Returns false when a label is >= classes (the first such value in *bad).
struct LabelHistogram {
  CUSEG_OP_HEADER(LabelHistogram, "label_histogram", bool);
  const Tensor& labels;
  int classes;
  int64_t* counts;
  int* bad;
};
// Un-normalised weighted softmax cross-entropy sum_v w[y_v] * (lse_v - x_v[y_v]) over logits
// [N, K, D, H, W] and labels [N, D, H, W] uint8 (valid labels: LabelHistogram first); when grad
// is defined it receives gscale * w[y_v] * (softmax - onehot). weights: K host floats.
struct CrossEntropy {
  CUSEG_OP_HEADER(CrossEntropy, "cross_entropy", double);
  const Tensor &logits, &labels;
  const std::vector<float>& weights;
  float gscale;
  const Tensor& grad;
  // The kernel's arguments, with `weights_on_device` (K floats where the kernel reads them).
  CeArgs kernel_args(const float* weights_on_device) const;
};
// labels [N, D, H, W] uint8 = argmax over the channels of logits (first maximum wins).
struct ArgmaxChannels {
  CUSEG_OP_HEADER(ArgmaxChannels, "argmax_channels", void);
  const Tensor &logits, &labels;
};

// ---------------------------------------------------------------- optimiser
// One Adam update of every parameter (value, grad) with its moments m[i], v[i].
struct AdamStep {
  CUSEG_OP_HEADER(AdamStep, "adam_step", void);
  const std::vector<Param*>& params;
  const std::vector<Tensor>&m, &v;
  AdamCoeffs coeffs;
  // The kernel's per-tensor views (value, grad, m, v, count), in parameter order.
  std::vector<AdamTensor> kernel_tensors() const;
};

// ---------------------------------------------------------------- volumes
// out = crop/pad of in (kernels/crop_or_pad.h); in and out agree in N and C.
struct CropOrPad {
  CUSEG_OP_HEADER(CropOrPad, "crop_or_pad", void);
  const Tensor &in, &out;
  CropOrPadParams params;
};
// Accumulates patches [n, C, pd, ph, pw] at starts [n, 3] int32 (z, y, x; on the context's
// device) into sum [1, C, D, H, W] and weight [1, 1, D, H, W] (kernels/grid_aggregate.h).
struct GridAggregate {
  CUSEG_OP_HEADER(GridAggregate, "grid_aggregate", void);
  const Tensor &patches, &starts, &sum, &weight;
  GridAggregateParams params;
};
// out = sum / weight (0 where weight is 0); out may be sum.
struct GridAggregateFinalize {
  CUSEG_OP_HEADER(GridAggregateFinalize, "grid_aggregate_finalize", void);
  const Tensor &sum, &weight, &out;
};
// out = rescale_value(in) element-wise (kernels/rescale_intensity.h); contiguous float32 of
// equal size, out may be in.
struct RescaleIntensity {
  CUSEG_OP_HEADER(RescaleIntensity, "rescale_intensity", void);
  const Tensor &in, &out;
  RescaleParams params;
};

// ---------------------------------------------------------------- training patches
// For each label of a fused-patch visit (kernels/affine_patch.h): present[l] (uint8) and the
// first admissible centre witness[3l .. 3l + 2] (int32). The visit's volume and both arrays
// are in the context's device memory.
struct AffinePatchPresence {
  CUSEG_OP_HEADER(AffinePatchPresence, "affine_patch_presence", void);
  const PatchVisit& visit;
  uint8_t* present;
  int32_t* witness;
};
// One training patch: centre, RandomAffine map, crop and gather into job.image_out /
// job.label_out (kernels/affine_patch.h), in the context's device memory.
struct AffinePatch {
  CUSEG_OP_HEADER(AffinePatch, "affine_patch", void);
  const PatchVisit& visit;
  const PatchJob& job;
};

// (min, max) of a contiguous float32 tensor, NaN skipped (kernels/rescale_intensity.h: the
// RescaleIntensity cut-offs for percentiles (0, 100)). Returned to the host: on CUDA the
// reduction runs on the device and only the two floats come back.
using MinmaxResult = std::pair<float, float>;  // (min, max); a name: the macro splits at commas
struct Minmax {
  CUSEG_OP_HEADER(Minmax, "minmax", MinmaxResult);
  const Tensor& x;
};

// Test-time augmentation (kernels/mirror.h): out = in flipped along the axes of the bit mask
// `axes` (kMirrorW | kMirrorH | kMirrorD); and acc += scale * softmax over C of logits flipped
// along `axes`. Equal 5-D float32 shapes (either may be a batch-strided view).
struct Mirror {
  CUSEG_OP_HEADER(Mirror, "mirror", void);
  const Tensor &in, &out;
  int axes;
};
struct SoftmaxMirrorAccumulate {
  CUSEG_OP_HEADER(SoftmaxMirrorAccumulate, "softmax_mirror_accumulate", void);
  const Tensor &logits, &acc;
  int axes;
  float scale;
};

// ---------------------------------------------------------------- bf16 channels-last
// The mixed-precision path (engine/precision.h): activations and their gradients are bf16
// channels-last tensors (Tensor::is_channels_last(); channel slices allowed), the convolutions
// read the bf16 weight copies (Param::copy: [Cout_pad, Cin_pad, k, k, k] channels-last, bias
// [Cout_pad]), parameter gradients are the fp32 master-layout ones (accumulated). Semantics:
// engine/cuda/conv_cl.h (convolutions; CPU: engine/conv_cl_cpu.h) and the bf16 sections of
// kernels/maxpool3d.h, upsample.h, cross_entropy.h, channels_last.h, weight_copy.h.
struct Conv3dForwardBf16 {  // y = relu?(conv(x, w) + b)
  CUSEG_OP_HEADER(Conv3dForwardBf16, "conv3d_forward_bf16", void);
  const Tensor &x, &w, &b, &y;
  bool relu;
};
// gx = dgrad [* (gx_mask > 0)] (when gx defined), gw += wgrad, gb += sum(gy) (when defined).
struct Conv3dBackwardBf16 {
  CUSEG_OP_HEADER(Conv3dBackwardBf16, "conv3d_backward_bf16", void);
  const Tensor &x, &w, &gy, &gx, &gw, &gb, &gx_mask;
};
struct MaxPool3dForwardBf16 {
  CUSEG_OP_HEADER(MaxPool3dForwardBf16, "maxpool3d_forward_bf16", void);
  const Tensor &x, &y;
};
// gx = (route(gy) + gadd) * (relu_mask ? x > 0 : 1); gadd may be undefined.
struct MaxPool3dBackwardBf16 {
  CUSEG_OP_HEADER(MaxPool3dBackwardBf16, "maxpool3d_backward_bf16", void);
  const Tensor &x, &gy, &gadd, &gx;
  bool relu_mask;
  MaxPoolClBackward kernel_args() const;
};
struct Upsample2xForwardBf16 {
  CUSEG_OP_HEADER(Upsample2xForwardBf16, "upsample2x_forward_bf16", void);
  const Tensor &x, &y;
};
// gx = upsample backward of gy [* (mask > 0)]; mask may be undefined.
struct Upsample2xBackwardBf16 {
  CUSEG_OP_HEADER(Upsample2xBackwardBf16, "upsample2x_backward_bf16", void);
  const Tensor &gy, &gx, &mask;
};
// As CrossEntropy, logits and grad bf16 channels-last (grad's other channels untouched).
struct CrossEntropyBf16 {
  CUSEG_OP_HEADER(CrossEntropyBf16, "cross_entropy_bf16", double);
  const Tensor &logits, &labels;
  const std::vector<float>& weights;
  float gscale;
  const Tensor& grad;
  CeArgsCL kernel_args(const float* weights_on_device) const;
};
struct ArgmaxChannelsBf16 {
  CUSEG_OP_HEADER(ArgmaxChannelsBf16, "argmax_channels_bf16", void);
  const Tensor &logits, &labels;
};
// dst = src across layouts: fp32 NCDHW -> bf16 channels-last (rounded; dst channels past
// src's zeroed), bf16 channels-last -> fp32 NCDHW (the first dst.c channels, exact), bf16
// channels-last -> bf16 channels-last (zero padding as the first case).
struct ConvertLayout {
  CUSEG_OP_HEADER(ConvertLayout, "convert_layout", void);
  const Tensor &src, &dst;
};
// dst[dst_map(co, ci, s)] (=|+=) src[src_map(co, ci, s)] over src_map's extents, float or bf16
// (kernels/weight_copy.h): the bf16 weight copies and the weight-gradient accumulation.
struct FilterCopy {
  CUSEG_OP_HEADER(FilterCopy, "filter_copy", void);
  const Tensor& src;
  FilterMap src_map;
  const Tensor& dst;
  FilterMap dst_map;
  bool accumulate;
};

#undef CUSEG_OP_HEADER

}  // namespace op
}  // namespace cuseg
