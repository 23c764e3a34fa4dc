// The CPU backend: the reference implementation of every op in the table (engine/backend.h),
// always built. Each function turns the checked op arguments into the kernel's views and
// calls the CPU twin in kernels/<op>_cpu.cpp; scratch memory comes from the CPU pool.
#include "cuseg/core/check.h"
#include "cuseg/engine/backend_ops.h"
#include "cuseg/engine/conv_cl_cpu.h"
#include "cuseg/kernels/channels_last.h"
#include "cuseg/kernels/conv3d.h"
#include "cuseg/kernels/cross_entropy.h"
#include "cuseg/kernels/elementwise.h"
#include "cuseg/kernels/maxpool3d.h"
#include "cuseg/kernels/upsample.h"

namespace cuseg {

namespace {

// Scratch for a CPU kernel, from the CPU pool: the same sizes recur every step, so after the
// first step these come from the pool's cache (no page faults, counted in peak memory).
Tensor cpu_workspace(size_t floats) {
  return floats ? Tensor::empty({int64_t(floats)}, DType::F32, Device::CPU) : Tensor();
}

const float* f32_or_null(const Tensor& t) {
  return t.defined() ? t.f32() : nullptr;
}

void conv3d_forward(Context&, const op::Conv3dForward& a) {
  const Vol xv = a.x.vol();
  const int k = int(a.w.dim(2));
  Tensor ws = cpu_workspace(conv3d_cpu_workspace_floats(xv, k, false));
  conv3d_forward_cpu(xv, a.w.f32(), f32_or_null(a.b), k, a.y.vol(), a.relu,
                     ws.defined() ? ws.f32() : nullptr);
}

void conv3d_backward(Context&, const op::Conv3dBackward& a) {
  Vol gxv;
  if (a.gx.defined()) gxv = a.gx.vol();
  const Vol xv = a.x.vol();
  const int k = int(a.w.dim(2));
  Tensor ws = cpu_workspace(conv3d_cpu_workspace_floats(xv, k, a.gx.defined()));
  conv3d_backward_cpu(xv, a.w.f32(), k, a.gy.vol(), gxv, a.gw.defined() ? a.gw.f32() : nullptr,
                      a.gb.defined() ? a.gb.f32() : nullptr, ws.defined() ? ws.f32() : nullptr);
}

void bias_relu(Context&, const op::BiasRelu& a) {
  bias_relu_forward_cpu(a.y.vol(), f32_or_null(a.b), a.relu);
}

void relu_forward(Context&, const op::ReluForward& a) {
  relu_forward_cpu(a.y.vol());
}

void relu_backward(Context&, const op::ReluBackward& a) {
  relu_backward_cpu(a.y.vol(), a.g.vol());
}

void maxpool3d_forward(Context&, const op::MaxPool3dForward& a) {
  maxpool3d_forward_cpu(a.x.vol(), a.y.vol());
}

void maxpool3d_backward(Context&, const op::MaxPool3dBackward& a) {
  maxpool3d_backward_cpu(a.x.vol(), a.gy.vol(), a.gx.vol());
}

void upsample2x_forward(Context&, const op::Upsample2xForward& a) {
  upsample2x_forward_cpu(a.x.vol(), a.y.vol());
}

void upsample2x_backward(Context&, const op::Upsample2xBackward& a) {
  upsample2x_backward_cpu(a.gy.vol(), a.gx.vol());
}

void add_inplace(Context&, const op::AddInplace& a) {
  add_inplace_cpu(a.dst.vol(), a.src.vol());
}

bool label_histogram(Context&, const op::LabelHistogram& a) {
  return label_histogram_cpu(a.labels.data<uint8_t>(), a.labels.numel(), a.classes, a.counts,
                             a.bad);
}

double cross_entropy(Context&, const op::CrossEntropy& a) {
  return cross_entropy_cpu(a.kernel_args(a.weights.data()));
}

void argmax_channels(Context&, const op::ArgmaxChannels& a) {
  argmax_channels_cpu(a.logits.vol(), a.labels.data<uint8_t>());
}

void adam_step(Context&, const op::AdamStep& a) {
  const std::vector<AdamTensor> ts = a.kernel_tensors();
  adam_step_cpu(ts.data(), int(ts.size()), a.coeffs);
}

void crop_or_pad(Context&, const op::CropOrPad& a) {
  crop_or_pad_cpu(a.in.vol(), a.out.vol(), a.params);
}

void grid_aggregate(Context&, const op::GridAggregate& a) {
  grid_aggregate_cpu(a.patches.vol(), a.starts.data<int32_t>(), a.sum.vol(), a.weight.vol(),
                     a.params);
}

void grid_aggregate_finalize(Context&, const op::GridAggregateFinalize& a) {
  grid_aggregate_finalize_cpu(a.sum.vol(), a.weight.vol(), a.out.vol());
}

void rescale_intensity(Context&, const op::RescaleIntensity& a) {
  rescale_intensity_cpu(a.in.f32(), a.out.f32(), a.in.numel(), a.params);
}

void affine_patch_presence(Context&, const op::AffinePatchPresence& a) {
  affine_patch_presence_cpu(a.visit, a.present, a.witness);
}

void affine_patch(Context&, const op::AffinePatch& a) {
  affine_patch_cpu(a.visit, a.job);
}

std::pair<float, float> minmax(Context&, const op::Minmax& a) {
  float r[2];
  minmax_cpu(a.x.f32(), a.x.numel(), r);
  return {r[0], r[1]};
}

void mirror(Context&, const op::Mirror& a) {
  mirror_cpu(a.in.vol(), a.out.vol(), a.axes);
}

void softmax_mirror_accumulate(Context&, const op::SoftmaxMirrorAccumulate& a) {
  softmax_mirror_accumulate_cpu(a.logits.vol(), a.acc.vol(), a.axes, a.scale);
}

// ---- bf16 channels-last: the CPU twins, i.e. the bf16 oracle.

void conv3d_forward_bf16(Context&, const op::Conv3dForwardBf16& a) {
  cpu_conv_cl_forward(a.x, a.w, a.b, a.y, a.relu);
}

void conv3d_backward_bf16(Context&, const op::Conv3dBackwardBf16& a) {
  cpu_conv_cl_backward(a.x, a.w, a.gy, a.gx, a.gw, a.gb, a.gx_mask);
}

void maxpool3d_forward_bf16(Context&, const op::MaxPool3dForwardBf16& a) {
  maxpool3d_cl_forward_cpu(a.x.cl<const bf16>(), a.y.cl<bf16>());
}

void maxpool3d_backward_bf16(Context&, const op::MaxPool3dBackwardBf16& a) {
  maxpool3d_cl_backward_cpu(a.kernel_args());
}

void upsample2x_forward_bf16(Context&, const op::Upsample2xForwardBf16& a) {
  upsample2x_cl_forward_cpu(a.x.cl<const bf16>(), a.y.cl<bf16>());
}

void upsample2x_backward_bf16(Context&, const op::Upsample2xBackwardBf16& a) {
  upsample2x_cl_backward_cpu(a.gy.cl<const bf16>(), a.gx.cl<bf16>(),
                             a.mask.defined() ? a.mask.cl<const bf16>() : VolCL<const bf16>{});
}

double cross_entropy_bf16(Context&, const op::CrossEntropyBf16& a) {
  return cross_entropy_cl_cpu(a.kernel_args(a.weights.data()));
}

void argmax_channels_bf16(Context&, const op::ArgmaxChannelsBf16& a) {
  argmax_channels_cl_cpu(a.logits.cl<const bf16>(), a.labels.data<uint8_t>());
}

void convert_layout(Context&, const op::ConvertLayout& a) {
  if (a.src.dtype() == DType::F32)
    to_channels_last_cpu(a.src.vol(), a.dst.cl<bf16>(), VolCL<const bf16>{});
  else if (a.dst.dtype() == DType::F32)
    from_channels_last_cpu(a.src.cl<const bf16>(), a.dst.vol());
  else
    copy_channels_last_cpu(a.src.cl<const bf16>(), a.dst.cl<bf16>());
}

void filter_copy(Context&, const op::FilterCopy& a) {
  filter_copy_cpu(FilterRef{a.src.raw(), a.src.dtype() == DType::BF16, a.src_map},
                  FilterRef{a.dst.raw(), a.dst.dtype() == DType::BF16, a.dst_map}, a.accumulate);
}

Backend make_cpu_backend() {
  Backend b(Device::CPU, "cpu");
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

const Backend& cpu_backend() {
  static const Backend b = make_cpu_backend();
  return b;
}

}  // namespace cuseg
