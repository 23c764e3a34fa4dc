// The CUDA backend table (engine/backend.h), built only with CUSEG_HAVE_CUDA: convolution and
// pooling through cuDNN (engine/cuda/cudnn_ops.cpp), everything else through the hand-written
// kernels of kernels/<op>.cu, all on the context's stream. Device scratch comes from the CUDA
// pool and is handed to the kernels (they never allocate).
#include "cuseg/core/check.h"
#include "cuseg/engine/backend_ops.h"
#include "cuseg/engine/cuda/conv_cl.h"
#include "cuseg/engine/cuda/cuda_context.h"
#include "cuseg/engine/cuda/cudnn_ops.h"
#include "cuseg/kernels/channels_last.h"
#include "cuseg/kernels/cross_entropy.h"
#include "cuseg/kernels/elementwise.h"
#include "cuseg/kernels/upsample.h"

namespace cuseg {

namespace {

Stream stream_of(Context& ctx) {
  return ctx.cuda().stream();
}

// Device scratch bytes for a kernel launcher, from the CUDA pool.
Tensor scratch_bytes(size_t bytes) {
  return Tensor::empty({int64_t(bytes)}, DType::U8, Device::CUDA);
}

void conv3d_forward(Context& ctx, const op::Conv3dForward& a) {
  cudnn_conv3d_forward(ctx.cuda(), a.x, a.w, a.b, a.y, a.relu);
}

void conv3d_backward(Context& ctx, const op::Conv3dBackward& a) {
  cudnn_conv3d_backward(ctx.cuda(), a.x, a.w, a.gy, a.gx, a.gw, a.gb);
}

void bias_relu(Context& ctx, const op::BiasRelu& a) {
  bias_relu_forward_cuda(a.y.vol(), a.b.defined() ? a.b.f32() : nullptr, a.relu, stream_of(ctx));
}

void relu_forward(Context& ctx, const op::ReluForward& a) {
  relu_forward_cuda(a.y.vol(), stream_of(ctx));
}

void relu_backward(Context& ctx, const op::ReluBackward& a) {
  relu_backward_cuda(a.y.vol(), a.g.vol(), stream_of(ctx));
}

void maxpool3d_forward(Context& ctx, const op::MaxPool3dForward& a) {
  cudnn_maxpool3d_forward(ctx.cuda(), a.x, a.y);
}

void maxpool3d_backward(Context& ctx, const op::MaxPool3dBackward& a) {
  cudnn_maxpool3d_backward(ctx.cuda(), a.x, a.y, a.gy, a.gx);
}

void upsample2x_forward(Context& ctx, const op::Upsample2xForward& a) {
  upsample2x_forward_cuda(a.x.vol(), a.y.vol(), stream_of(ctx));
}

void upsample2x_backward(Context& ctx, const op::Upsample2xBackward& a) {
  upsample2x_backward_cuda(a.gy.vol(), a.gx.vol(), stream_of(ctx));
}

void add_inplace(Context& ctx, const op::AddInplace& a) {
  add_inplace_cuda(a.dst.vol(), a.src.vol(), stream_of(ctx));
}

bool label_histogram(Context& ctx, const op::LabelHistogram& a) {
  Tensor ws = scratch_bytes(kLabelHistogramWorkspaceBytes);
  return label_histogram_cuda(a.labels.data<uint8_t>(), a.labels.numel(), a.classes, a.counts,
                              a.bad, ws.raw(), ws.nbytes(), stream_of(ctx));
}

double cross_entropy(Context& ctx, const op::CrossEntropy& a) {
  const int K = int(a.weights.size());
  Tensor w = Tensor::empty({K}, DType::F32, Device::CPU);
  for (int k = 0; k < K; ++k) w.f32()[k] = a.weights[size_t(k)];
  Tensor wd = w.to(Device::CUDA);
  const CeArgs c = a.kernel_args(wd.f32());
  Tensor ws = scratch_bytes(cross_entropy_workspace_bytes(c.logits));
  return cross_entropy_cuda(c, ws.raw(), ws.nbytes(), stream_of(ctx));
}

void argmax_channels(Context& ctx, const op::ArgmaxChannels& a) {
  argmax_channels_cuda(a.logits.vol(), a.labels.data<uint8_t>(), stream_of(ctx));
}

void adam_step(Context& ctx, const op::AdamStep& a) {
  const std::vector<AdamTensor> ts = a.kernel_tensors();
  adam_step_cuda(ts.data(), int(ts.size()), a.coeffs, stream_of(ctx));
}

void crop_or_pad(Context& ctx, const op::CropOrPad& a) {
  crop_or_pad_cuda(a.in.vol(), a.out.vol(), a.params, stream_of(ctx));
}

void grid_aggregate(Context& ctx, const op::GridAggregate& a) {
  grid_aggregate_cuda(a.patches.vol(), a.starts.data<int32_t>(), a.sum.vol(), a.weight.vol(),
                      a.params, stream_of(ctx));
}

void grid_aggregate_finalize(Context& ctx, const op::GridAggregateFinalize& a) {
  grid_aggregate_finalize_cuda(a.sum.vol(), a.weight.vol(), a.out.vol(), stream_of(ctx));
}

void rescale_intensity(Context& ctx, const op::RescaleIntensity& a) {
  rescale_intensity_cuda(a.in.f32(), a.out.f32(), a.in.numel(), a.params, stream_of(ctx));
}

void affine_patch_presence(Context& ctx, const op::AffinePatchPresence& a) {
  affine_patch_presence_cuda(a.visit, a.present, a.witness, stream_of(ctx));
}

void affine_patch(Context& ctx, const op::AffinePatch& a) {
  affine_patch_cuda(a.visit, a.job, stream_of(ctx));
}

std::pair<float, float> minmax(Context& ctx, const op::Minmax& a) {
  Tensor ws = scratch_bytes(minmax_workspace_bytes());
  Tensor out = Tensor::empty({2}, DType::F32, Device::CUDA);
  minmax_cuda(a.x.f32(), a.x.numel(), out.f32(), ws.raw(), ws.nbytes(), stream_of(ctx));
  // A synchronous copy on the legacy default stream, which the context's blocking stream is
  // ordered with (engine/cuda/cuda_context.cpp): it waits for the reduction.
  float r[2];
  out.copy_to_host(r, sizeof(r));
  return {r[0], r[1]};
}

void mirror(Context& ctx, const op::Mirror& a) {
  mirror_cuda(a.in.vol(), a.out.vol(), a.axes, stream_of(ctx));
}

void softmax_mirror_accumulate(Context& ctx, const op::SoftmaxMirrorAccumulate& a) {
  softmax_mirror_accumulate_cuda(a.logits.vol(), a.acc.vol(), a.axes, a.scale, stream_of(ctx));
}

// ---- bf16 channels-last

void conv3d_forward_bf16(Context& ctx, const op::Conv3dForwardBf16& a) {
  cuda_conv_cl_forward(ctx.cuda(), a.x, a.w, a.b, a.y, a.relu);
}

void conv3d_backward_bf16(Context& ctx, const op::Conv3dBackwardBf16& a) {
  cuda_conv_cl_backward(ctx.cuda(), a.x, a.w, a.gy, a.gx, a.gw, a.gb, a.gx_mask);
}

void maxpool3d_forward_bf16(Context& ctx, const op::MaxPool3dForwardBf16& a) {
  maxpool3d_cl_forward_cuda(a.x.cl<const bf16>(), a.y.cl<bf16>(), stream_of(ctx));
}

void maxpool3d_backward_bf16(Context& ctx, const op::MaxPool3dBackwardBf16& a) {
  maxpool3d_cl_backward_cuda(a.kernel_args(), stream_of(ctx));
}

void upsample2x_forward_bf16(Context& ctx, const op::Upsample2xForwardBf16& a) {
  upsample2x_cl_forward_cuda(a.x.cl<const bf16>(), a.y.cl<bf16>(), stream_of(ctx));
}

void upsample2x_backward_bf16(Context& ctx, const op::Upsample2xBackwardBf16& a) {
  upsample2x_cl_backward_cuda(a.gy.cl<const bf16>(), a.gx.cl<bf16>(),
                              a.mask.defined() ? a.mask.cl<const bf16>() : VolCL<const bf16>{},
                              stream_of(ctx));
}

double cross_entropy_bf16(Context& ctx, const op::CrossEntropyBf16& a) {
  const int K = int(a.weights.size());
  Tensor w = Tensor::empty({K}, DType::F32, Device::CPU);
  for (int k = 0; k < K; ++k) w.f32()[k] = a.weights[size_t(k)];
  Tensor wd = w.to(Device::CUDA);
  const CeArgsCL c = a.kernel_args(wd.f32());
  Tensor ws = scratch_bytes(cross_entropy_workspace_bytes(c.logits.n, c.logits.spatial()));
  return cross_entropy_cl_cuda(c, ws.raw(), ws.nbytes(), stream_of(ctx));
}

void argmax_channels_bf16(Context& ctx, const op::ArgmaxChannelsBf16& a) {
  argmax_channels_cl_cuda(a.logits.cl<const bf16>(), a.labels.data<uint8_t>(), stream_of(ctx));
}

void convert_layout(Context& ctx, const op::ConvertLayout& a) {
  if (a.src.dtype() == DType::F32)
    to_channels_last_cuda(a.src.vol(), a.dst.cl<bf16>(), VolCL<const bf16>{}, stream_of(ctx));
  else if (a.dst.dtype() == DType::F32)
    from_channels_last_cuda(a.src.cl<const bf16>(), a.dst.vol(), stream_of(ctx));
  else
    copy_channels_last_cuda(a.src.cl<const bf16>(), a.dst.cl<bf16>(), stream_of(ctx));
}

void filter_copy(Context& ctx, const op::FilterCopy& a) {
  filter_copy_cuda(FilterRef{a.src.raw(), a.src.dtype() == DType::BF16, a.src_map},
                   FilterRef{a.dst.raw(), a.dst.dtype() == DType::BF16, a.dst_map}, a.accumulate,
                   stream_of(ctx));
}

Backend make_cuda_backend() {
  Backend b(Device::CUDA, "cuda");
  b.add<op::Conv3dForward>(conv3d_forward);
  b.add<op::Conv3dBackward>(conv3d_backward);
  b.add<op::BiasRelu>(bias_relu);
  b.add<op::ReluForward>(relu_forward);
  b.add<op::ReluBackward>(relu_backward);
  b.add<op::MaxPool3dForward>(maxpool3d_forward);
  b.add<op::MaxPool3dBackward>(maxpool3d_backward);
  b.add<op::Upsample2xForward>(upsample2x_forward);
  b.add<op::Upsample2xBackward>(upsample2x_backward);
  b.add<op::AddInplace>(add_inplace);
  b.add<op::LabelHistogram>(label_histogram);
  b.add<op::CrossEntropy>(cross_entropy);
  b.add<op::ArgmaxChannels>(argmax_channels);
  b.add<op::AdamStep>(adam_step);
  b.add<op::CropOrPad>(crop_or_pad);
  b.add<op::GridAggregate>(grid_aggregate);
  b.add<op::GridAggregateFinalize>(grid_aggregate_finalize);
  b.add<op::RescaleIntensity>(rescale_intensity);
  b.add<op::AffinePatchPresence>(affine_patch_presence);
  b.add<op::AffinePatch>(affine_patch);
  b.add<op::Minmax>(minmax);
  b.add<op::Mirror>(mirror);
  b.add<op::SoftmaxMirrorAccumulate>(softmax_mirror_accumulate);
  b.add<op::Conv3dForwardBf16>(conv3d_forward_bf16);
  b.add<op::Conv3dBackwardBf16>(conv3d_backward_bf16);
  b.add<op::MaxPool3dForwardBf16>(maxpool3d_forward_bf16);
  b.add<op::MaxPool3dBackwardBf16>(maxpool3d_backward_bf16);
  b.add<op::Upsample2xForwardBf16>(upsample2x_forward_bf16);
  b.add<op::Upsample2xBackwardBf16>(upsample2x_backward_bf16);
  b.add<op::CrossEntropyBf16>(cross_entropy_bf16);
  b.add<op::ArgmaxChannelsBf16>(argmax_channels_bf16);
  b.add<op::ConvertLayout>(convert_layout);
  b.add<op::FilterCopy>(filter_copy);
  return b;
}

}  // namespace

const Backend& cuda_backend() {
  static const Backend b = make_cuda_backend();
  return b;
}

}  // namespace cuseg
