// Stateless layer operations with forward and backward, run on the context's backend
// (engine/backend.h: one table of op functions per device; each function here checks its
// arguments once and runs the op of that table).
//
// Conventions (as llm.c): backward functions that produce an input gradient OVERWRITE it;
// parameter gradients ACCUMULATE (+=) so a caller can sum over micro-batches; zero them
// with Tensor::zero(). Activations are 5-D NCDHW float32; any of them may be a channel
// slice (batch-strided view) of a wider tensor, which is how concat is zero-copy.
//
// Two precisions (engine/precision.h), chosen by the activations' dtype: float32 NCDHW runs
// the fp32 ops; bfloat16 channels-last (Tensor::empty_channels_last, channel slices allowed)
// runs the bf16 ops of the mixed-precision path, where convolutions read the bf16 weight copy
// (Param::copy; its bias copy) and write fp32 master-layout weight / bias gradients. Results of
// a bf16 op are the fp32 op's on the bf16 inputs, rounded once to bf16 where they are stored.
// The ReLU backward of the layer below can be fused into the op producing a gradient
// (`relu_mask` arguments: gradient *= (mask > 0)); in fp32 that runs relu_backward after the op.
#pragma once
#include <utility>
#include <vector>

#include "cuseg/engine/context.h"
#include "cuseg/engine/param.h"
#include "cuseg/engine/tensor.h"
#include "cuseg/kernels/affine_patch.h"
#include "cuseg/kernels/crop_or_pad.h"
#include "cuseg/kernels/grid_aggregate.h"
#include "cuseg/kernels/rescale_intensity.h"

namespace cuseg {

// y = x * w + b (3-D convolution, odd kernel k, padding k/2, stride 1), optionally followed
// by ReLU applied in place. w: [Cout, Cin, k, k, k], b: [Cout].
// conv3d_forward_scratch_bytes: pool bytes one call holds for its own duration besides its
// convolution workspace (which the context's budget bounds: the cuDNN workspace, the CPU column
// buffer): on the CPU in bf16 the fp32 copies the oracle widens x, w, b and y into; 0 otherwise
// (the CUDA graph path allocates nothing; its fallbacks, which warn, are not counted).
size_t conv3d_forward_scratch_bytes(Device device, DType dtype, const Shape& x, int64_t cout,
                                    int64_t k);
void conv3d_forward(Context& ctx, const Tensor& x, const Tensor& w, const Tensor& b,
                    const Tensor& y, bool relu);
// gy: gradient w.r.t. the convolution's output (apply relu_backward first when fused).
// Accumulates into gw, gb; overwrites gx when gx is defined, then gx *= (gx_relu_mask > 0)
// when the mask is defined (the ReLU backward of the layer x came from; mask = x there).
void conv3d_backward(Context& ctx, const Tensor& x, const Tensor& w, const Tensor& gy,
                     const Tensor& gx, const Tensor& gw, const Tensor& gb,
                     const Tensor& gx_relu_mask = Tensor());

// The conv epilogue in place: y = relu?(y + b[c]); b [C] or undefined (no bias).
void bias_relu_forward(Context& ctx, const Tensor& y, const Tensor& b, bool relu);

// In-place ReLU on y, and g *= (y > 0) in place.
void relu_forward(Context& ctx, const Tensor& y);
void relu_backward(Context& ctx, const Tensor& y, const Tensor& g);

// MaxPool3d(kernel 2, stride 2), floor for odd extents. Backward routes each output
// gradient to the first maximum of its window (PyTorch's tie rule) and writes zeros
// elsewhere (overwrites gx, including voxels outside any window).
void maxpool3d_forward(Context& ctx, const Tensor& x, const Tensor& y);
// y is the forward output (cuDNN's backward needs it; the CPU recomputes the argmax).
// Then gx += gadd (when defined) and gx *= (x > 0) when relu_mask (x a ReLU output): the
// U-Net's skip level, whose gradient also comes from its concat slice.
void maxpool3d_backward(Context& ctx, const Tensor& x, const Tensor& y, const Tensor& gy,
                        const Tensor& gx, const Tensor& gadd = Tensor(), bool relu_mask = false);

// Trilinear x2 upsampling, align_corners=False. Backward is gather-based (deterministic).
void upsample2x_forward(Context& ctx, const Tensor& x, const Tensor& y);
// gx overwritten, then gx *= (relu_mask > 0) when the mask is defined (mask = the forward input).
void upsample2x_backward(Context& ctx, const Tensor& gy, const Tensor& gx,
                         const Tensor& relu_mask = Tensor());

// dst += src (same shape; either may be a batch-strided view).
void add_inplace(Context& ctx, const Tensor& dst, const Tensor& src);

// Weighted softmax cross-entropy with PyTorch's reduction='mean':
//   loss = sum_n w[y_n] * -log softmax(x_n)[y_n] / sum_n w[y_n]
// over every voxel of the batch. logits [N, K, D, H, W] float32, labels [N, D, H, W] uint8.
// When grad is defined it receives d loss / d logits in the same pass (overwritten).
// bf16 logits (channels-last, e.g. the [0, K) view of the bf16 network's padded head) are read
// as stored, every term in fp32 (double sums); grad is then bf16 in the same layout
// (Tensor::zeros_like(logits)), written in its K channels only.
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

// dst = src between layouts (op::ConvertLayout): fp32 NCDHW -> bf16 channels-last (rounded;
// extra dst channels zeroed: the padded input), bf16 channels-last -> fp32 NCDHW (exact; the
// first dst channels: the real logits), bf16 channels-last -> bf16 channels-last.
void convert(Context& ctx, const Tensor& src, const Tensor& dst);
// p.copy = bf16 of p.value in the copy's layout (p.copy_map); its padding is left as it is.
void refresh_weight_copy(Context& ctx, Param& p);

// Volume ops of the inference path (semantics in the kernel headers named).
// out = CropOrPad of in (kernels/crop_or_pad.h; crop_or_pad_params gives the centred offsets,
// other offsets cut any window). in and out are 5-D and agree in N and C.
void crop_or_pad(Context& ctx, const Tensor& in, const Tensor& out, const CropOrPadParams& p);
// Accumulates patches [n, C, pd, ph, pw] whose origins (z, y, x) are the rows of starts
// ([n, 3] int32, on the context's device) into sum [1, C, D, H, W] and weight [1, 1, D, H, W]
// (kernels/grid_aggregate.h); zero both before the first batch.
void grid_aggregate(Context& ctx, const Tensor& patches, const Tensor& starts, const Tensor& sum,
                    const Tensor& weight, const GridAggregateParams& p);
// out = sum / weight (0 where no patch covered a voxel); out may be sum.
void grid_aggregate_finalize(Context& ctx, const Tensor& sum, const Tensor& weight,
                             const Tensor& out);
// out = clip(in, in_min, in_max) mapped linearly to [out_min, out_max] (kernels/
// rescale_intensity.h); contiguous float32 tensors of equal size, out may be in.
void rescale_intensity(Context& ctx, const Tensor& in, const Tensor& out, const RescaleParams& p);
// (min, max) of a non-empty contiguous float32 tensor, NaN skipped (the RescaleIntensity
// cut-offs for percentiles (0, 100)); on CUDA only the two floats come back (8 bytes).
std::pair<float, float> minmax(Context& ctx, const Tensor& x);

// Test-time augmentation by mirroring (kernels/mirror.h; axes: bit mask kMirrorW | kMirrorH |
// kMirrorD over the spatial axes, 0..7). out = in flipped; acc += scale * softmax over the
// channels of logits flipped (the flip is its own inverse: a mirrored patch's output goes back
// to the patch's orientation). Equal 5-D float32 shapes.
void mirror(Context& ctx, const Tensor& in, const Tensor& out, int axes);
void softmax_mirror_accumulate(Context& ctx, const Tensor& logits, const Tensor& acc, int axes,
                               float scale);

// Training patches (kernels/affine_patch.h; data/patch_pipeline.h builds the arguments). The
// visit's volume and every output live in the context's device memory; on CUDA both run on
// the context's stream. affine_patch_presence: present[l] and witness[3 l ..] per label.
void affine_patch_presence(Context& ctx, const PatchVisit& v, uint8_t* present, int32_t* witness);
// One patch: centre, RandomAffine map, crop, gather into job.image_out / job.label_out.
void affine_patch(Context& ctx, const PatchVisit& v, const PatchJob& job);

}  // namespace cuseg
