// Layer ops: shape checks, then dispatch to the CPU reference kernels or the CUDA backend.
#include "cuseg/engine/ops.h"

#include <cmath>

#include "cuseg/core/check.h"
#include "cuseg/kernels/adam.h"
#include "cuseg/kernels/conv3d.h"
#include "cuseg/kernels/cross_entropy.h"
#include "cuseg/kernels/elementwise.h"
#include "cuseg/kernels/maxpool3d.h"
#include "cuseg/kernels/upsample.h"
#if CUSEG_HAVE_CUDA
#include "cuseg/engine/cuda/cuda_context.h"
#include "cuseg/engine/cuda/cudnn_ops.h"
#endif

namespace cuseg {

namespace {

void same_device(Context& ctx, std::initializer_list<const Tensor*> ts) {
  for (const Tensor* t : ts)
    if (t->defined())
      CUSEG_CHECK(t->device() == ctx.device(), "tensor on " << device_name(t->device())
                                                            << ", context on "
                                                            << device_name(ctx.device()));
}

void same_shape(const Tensor& a, const Tensor& b, const char* what) {
  CUSEG_CHECK(a.shape() == b.shape(),
              what << ": shape " << shape_str(a.shape()) << " vs " << shape_str(b.shape()));
}

// Scratch for a CPU kernel, from the CPU pool: the same sizes recur every step, so after the
// first step these come from the pool's cache (no page faults, counted in peak memory).
Tensor cpu_workspace(size_t floats) {
  return floats ? Tensor::empty({int64_t(floats)}, DType::F32, Device::CPU) : Tensor();
}

// Device scratch bytes for a kernel launcher (kernels take their workspace from the caller).
Tensor scratch_bytes(size_t bytes, Device dev) {
  return Tensor::empty({int64_t(bytes)}, DType::U8, dev);
}

#if CUSEG_HAVE_CUDA
Stream stream_of(Context& ctx) {
  return ctx.cuda().stream();
}
#endif

}  // namespace

void conv3d_forward(Context& ctx, const Tensor& x, const Tensor& w, const Tensor& b,
                    const Tensor& y, bool relu) {
  same_device(ctx, {&x, &w, &b, &y});
  CUSEG_CHECK(w.ndim() == 5 && w.dim(1) == x.dim(1) && w.dim(2) == w.dim(3) &&
                  w.dim(3) == w.dim(4) && w.dim(2) % 2 == 1,
              "conv3d weight " << shape_str(w.shape()) << " for input " << shape_str(x.shape()));
  CUSEG_CHECK(y.dim(0) == x.dim(0) && y.dim(1) == w.dim(0) && y.dim(2) == x.dim(2) &&
                  y.dim(3) == x.dim(3) && y.dim(4) == x.dim(4),
              "conv3d output " << shape_str(y.shape()) << " for input " << shape_str(x.shape()));
  CUSEG_CHECK(!b.defined() || b.numel() == w.dim(0), "conv3d bias " << shape_str(b.shape()));
  if (ctx.device() == Device::CPU) {
    const Vol xv = x.vol();
    Tensor ws = cpu_workspace(conv3d_cpu_workspace_floats(xv, int(w.dim(2)), false));
    conv3d_forward_cpu(xv, w.f32(), b.defined() ? b.f32() : nullptr, int(w.dim(2)), y.vol(), relu,
                       ws.defined() ? ws.f32() : nullptr);
    return;
  }
#if CUSEG_HAVE_CUDA
  cudnn_conv3d_forward(ctx.cuda(), x, w, b, y, relu);
#endif
}

void conv3d_backward(Context& ctx, const Tensor& x, const Tensor& w, const Tensor& gy,
                     const Tensor& gx, const Tensor& gw, const Tensor& gb) {
  same_device(ctx, {&x, &w, &gy, &gx, &gw, &gb});
  CUSEG_CHECK(gy.dim(1) == w.dim(0), "conv3d grad " << shape_str(gy.shape()));
  if (gx.defined()) same_shape(gx, x, "conv3d grad input");
  if (gw.defined()) same_shape(gw, w, "conv3d grad weight");
  if (ctx.device() == Device::CPU) {
    Vol gxv;
    if (gx.defined()) gxv = gx.vol();
    const Vol xv = x.vol();
    Tensor ws = cpu_workspace(conv3d_cpu_workspace_floats(xv, int(w.dim(2)), gx.defined()));
    conv3d_backward_cpu(xv, w.f32(), int(w.dim(2)), gy.vol(), gxv,
                        gw.defined() ? gw.f32() : nullptr, gb.defined() ? gb.f32() : nullptr,
                        ws.defined() ? ws.f32() : nullptr);
    return;
  }
#if CUSEG_HAVE_CUDA
  cudnn_conv3d_backward(ctx.cuda(), x, w, gy, gx, gw, gb);
#endif
}

void relu_forward(Context& ctx, const Tensor& y) {
  same_device(ctx, {&y});
  if (ctx.device() == Device::CPU) return relu_forward_cpu(y.vol());
#if CUSEG_HAVE_CUDA
  relu_forward_cuda(y.vol(), stream_of(ctx));
#endif
}

void relu_backward(Context& ctx, const Tensor& y, const Tensor& g) {
  same_device(ctx, {&y, &g});
  same_shape(y, g, "relu backward");
  if (ctx.device() == Device::CPU) return relu_backward_cpu(y.vol(), g.vol());
#if CUSEG_HAVE_CUDA
  relu_backward_cuda(y.vol(), g.vol(), stream_of(ctx));
#endif
}

void maxpool3d_forward(Context& ctx, const Tensor& x, const Tensor& y) {
  same_device(ctx, {&x, &y});
  CUSEG_CHECK(y.dim(0) == x.dim(0) && y.dim(1) == x.dim(1) && y.dim(2) == x.dim(2) / 2 &&
                  y.dim(3) == x.dim(3) / 2 && y.dim(4) == x.dim(4) / 2,
              "maxpool output " << shape_str(y.shape()) << " for input " << shape_str(x.shape()));
  if (ctx.device() == Device::CPU) return maxpool3d_forward_cpu(x.vol(), y.vol());
#if CUSEG_HAVE_CUDA
  cudnn_maxpool3d_forward(ctx.cuda(), x, y);
#endif
}

void maxpool3d_backward(Context& ctx, const Tensor& x, const Tensor& y, const Tensor& gy,
                        const Tensor& gx) {
  same_device(ctx, {&x, &y, &gy, &gx});
  same_shape(gx, x, "maxpool grad input");
  same_shape(gy, y, "maxpool grad output");
  if (ctx.device() == Device::CPU) return maxpool3d_backward_cpu(x.vol(), gy.vol(), gx.vol());
#if CUSEG_HAVE_CUDA
  cudnn_maxpool3d_backward(ctx.cuda(), x, y, gy, gx);
#endif
}

void upsample2x_forward(Context& ctx, const Tensor& x, const Tensor& y) {
  same_device(ctx, {&x, &y});
  CUSEG_CHECK(y.dim(0) == x.dim(0) && y.dim(1) == x.dim(1) && y.dim(2) == 2 * x.dim(2) &&
                  y.dim(3) == 2 * x.dim(3) && y.dim(4) == 2 * x.dim(4),
              "upsample output " << shape_str(y.shape()) << " for input " << shape_str(x.shape()));
  if (ctx.device() == Device::CPU) return upsample2x_forward_cpu(x.vol(), y.vol());
#if CUSEG_HAVE_CUDA
  upsample2x_forward_cuda(x.vol(), y.vol(), stream_of(ctx));
#endif
}

void upsample2x_backward(Context& ctx, const Tensor& gy, const Tensor& gx) {
  same_device(ctx, {&gy, &gx});
  CUSEG_CHECK(
      gy.dim(2) == 2 * gx.dim(2) && gy.dim(3) == 2 * gx.dim(3) && gy.dim(4) == 2 * gx.dim(4),
      "upsample grads " << shape_str(gy.shape()) << " / " << shape_str(gx.shape()));
  if (ctx.device() == Device::CPU) return upsample2x_backward_cpu(gy.vol(), gx.vol());
#if CUSEG_HAVE_CUDA
  upsample2x_backward_cuda(gy.vol(), gx.vol(), stream_of(ctx));
#endif
}

void add_inplace(Context& ctx, const Tensor& dst, const Tensor& src) {
  same_device(ctx, {&dst, &src});
  same_shape(dst, src, "add");
  if (ctx.device() == Device::CPU) return add_inplace_cpu(dst.vol(), src.vol());
#if CUSEG_HAVE_CUDA
  add_inplace_cuda(dst.vol(), src.vol(), stream_of(ctx));
#endif
}

double class_weight_sum(Context& ctx, const Tensor& labels,
                        const std::vector<float>& class_weights) {
  same_device(ctx, {&labels});
  const int K = int(class_weights.size());
  CUSEG_CHECK(K >= 1 && K <= kCeMaxClasses, "cross-entropy: " << K << " class weights");
  CUSEG_CHECK(labels.dtype() == DType::U8 && labels.is_contiguous(),
              "cross-entropy labels " << shape_str(labels.shape()) << " ("
                                      << dtype_name(labels.dtype()) << ")");
  int64_t counts[kCeMaxClasses] = {0};
  int bad = -1;
  const uint8_t* lab = labels.data<uint8_t>();
  bool ok;
  if (ctx.device() == Device::CPU) {
    ok = label_histogram_cpu(lab, labels.numel(), K, counts, &bad);
  } else {
#if CUSEG_HAVE_CUDA
    Tensor ws = scratch_bytes(kLabelHistogramWorkspaceBytes, Device::CUDA);
    ok = label_histogram_cuda(lab, labels.numel(), K, counts, &bad, ws.raw(), ws.nbytes(),
                              stream_of(ctx));
#else
    ok = false;
#endif
  }
  CUSEG_CHECK(ok, "cross-entropy: label value " << bad << " >= number of classes " << K);
  double wsum = 0;
  for (int k = 0; k < K; ++k) wsum += double(class_weights[k]) * double(counts[k]);
  return wsum;
}

double weighted_cross_entropy(Context& ctx, const Tensor& logits, const Tensor& labels,
                              const std::vector<float>& class_weights, const Tensor& grad,
                              double normaliser) {
  same_device(ctx, {&logits, &labels, &grad});
  const int K = int(logits.dim(1));
  CUSEG_CHECK(K <= kCeMaxClasses && int(class_weights.size()) == K,
              "cross-entropy: " << K << " classes, " << class_weights.size() << " weights");
  CUSEG_CHECK(labels.dtype() == DType::U8 && labels.is_contiguous() && labels.ndim() == 4 &&
                  labels.dim(0) == logits.dim(0) && labels.dim(1) == logits.dim(2) &&
                  labels.dim(2) == logits.dim(3) && labels.dim(3) == logits.dim(4),
              "cross-entropy labels " << shape_str(labels.shape()) << " ("
                                      << dtype_name(labels.dtype()) << ") for logits "
                                      << shape_str(logits.shape()));
  if (grad.defined()) same_shape(grad, logits, "cross-entropy grad");
  // The histogram also validates the labels; a caller-given normaliser was computed by
  // class_weight_sum on these labels (which validated them).
  const double wsum = normaliser > 0 ? normaliser : class_weight_sum(ctx, labels, class_weights);
  CUSEG_CHECK(wsum > 0, "cross-entropy: total class weight of the batch is zero");
  const uint8_t* lab = labels.data<uint8_t>();
  CeArgs a;
  a.logits = logits.vol();
  a.labels = lab;
  a.gscale = float(1.0 / wsum);
  if (grad.defined()) a.grad = grad.vol();
  double sum = 0;
  if (ctx.device() == Device::CPU) {
    a.weights = class_weights.data();
    sum = cross_entropy_cpu(a);
  } else {
#if CUSEG_HAVE_CUDA
    Tensor w = Tensor::empty({K}, DType::F32, Device::CPU);
    for (int k = 0; k < K; ++k) w.f32()[k] = class_weights[k];
    Tensor wd = w.to(Device::CUDA);
    a.weights = wd.f32();
    Tensor ws = scratch_bytes(cross_entropy_workspace_bytes(a.logits), Device::CUDA);
    sum = cross_entropy_cuda(a, ws.raw(), ws.nbytes(), stream_of(ctx));
#endif
  }
  return sum / wsum;
}

void argmax_channels(Context& ctx, const Tensor& logits, const Tensor& labels) {
  same_device(ctx, {&logits, &labels});
  CUSEG_CHECK(
      labels.dtype() == DType::U8 && labels.numel() * logits.dim(1) == logits.numel(),
      "argmax labels " << shape_str(labels.shape()) << " for " << shape_str(logits.shape()));
  if (ctx.device() == Device::CPU) return argmax_channels_cpu(logits.vol(), labels.data<uint8_t>());
#if CUSEG_HAVE_CUDA
  argmax_channels_cuda(logits.vol(), labels.data<uint8_t>(), stream_of(ctx));
#endif
}

}  // namespace cuseg
