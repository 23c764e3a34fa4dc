// CPU twin / oracle of the bf16 channels-last convolutions (see conv_cl_cpu.h).
#include "cuseg/engine/conv_cl_cpu.h"

#include "cuseg/core/check.h"
#include "cuseg/kernels/bias_grad.h"
#include "cuseg/kernels/channels_last.h"
#include "cuseg/kernels/conv3d.h"
#include "cuseg/kernels/weight_copy.h"

namespace cuseg {

namespace {

void check_cl(const Tensor& t, const char* what) {
  CUSEG_CHECK(t.dtype() == DType::BF16 && t.is_channels_last() && t.device() == Device::CPU,
              what << ": expected a bf16 channels-last CPU tensor, got " << dtype_name(t.dtype())
                   << " " << shape_str(t.shape()) << " strides " << shape_str(t.strides()));
}

Tensor f32_ncdhw(const Tensor& t) {
  Tensor f = Tensor::empty(t.shape(), DType::F32, Device::CPU);
  from_channels_last_cpu(t.cl<const bf16>(), f.vol());
  return f;
}

Tensor f32_filter(const Tensor& w) {
  const int kp = int(w.dim(0)), cp = int(w.dim(1)), k3 = int(w.dim(2) * w.dim(3) * w.dim(4));
  Tensor f = Tensor::empty(w.shape(), DType::F32, Device::CPU);
  filter_copy_cpu(FilterRef{w.raw(), true, filter_map_cl(kp, cp, cp, k3)},
                  FilterRef{f.raw(), false, filter_map_master(kp, cp, k3)}, false);
  return f;
}

Tensor f32_vector(const Tensor& b) {
  const int n = int(b.numel());
  Tensor f = Tensor::empty({n}, DType::F32, Device::CPU);
  filter_copy_cpu(FilterRef{b.raw(), true, filter_map_master(n, 1, 1)},
                  FilterRef{f.raw(), false, filter_map_master(n, 1, 1)}, false);
  return f;
}

Tensor workspace(size_t floats) {
  return floats ? Tensor::empty({int64_t(floats)}, DType::F32, Device::CPU) : Tensor();
}

}  // namespace

void cpu_conv_cl_forward(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& y,
                         bool relu) {
  check_cl(x, "bf16 conv input");
  check_cl(y, "bf16 conv output");
  check_cl(w, "bf16 conv filter copy");
  const Tensor xf = f32_ncdhw(x), wf = f32_filter(w);
  const Tensor bf = b.defined() ? f32_vector(b) : Tensor();
  Tensor yf = Tensor::empty(y.shape(), DType::F32, Device::CPU);
  const int k = int(w.dim(2));
  Tensor ws = workspace(conv3d_cpu_workspace_floats(xf.vol(), k, false));
  conv3d_forward_cpu(xf.vol(), wf.f32(), bf.defined() ? bf.f32() : nullptr, k, yf.vol(), relu,
                     ws.defined() ? ws.f32() : nullptr);
  to_channels_last_cpu(yf.vol(), y.cl<bf16>(), VolCL<const bf16>{});
}

void cpu_conv_cl_backward(const Tensor& x, const Tensor& w, const Tensor& gy, const Tensor& gx,
                          const Tensor& gw, const Tensor& gb, const Tensor& gx_mask) {
  check_cl(x, "bf16 conv input");
  check_cl(gy, "bf16 conv output gradient");
  check_cl(w, "bf16 conv filter copy");
  if (gx.defined()) check_cl(gx, "bf16 conv input gradient");
  if (gx_mask.defined()) check_cl(gx_mask, "bf16 conv ReLU mask");
  const int k = int(w.dim(2));
  const int cp = int(w.dim(1)), k3 = k * k * k;
  if (gb.defined()) {
    CUSEG_CHECK(gb.dtype() == DType::F32 && gb.numel() <= gy.dim(1),
                "bf16 conv bias gradient " << shape_str(gb.shape()));
    bias_grad_cl_cpu(gy.channel_slice(0, gb.numel()).cl<const bf16>(), gb.f32());
  }
  if (!gw.defined() && !gx.defined()) return;
  const Tensor xf = f32_ncdhw(x), gyf = f32_ncdhw(gy), wf = f32_filter(w);
  Tensor gxf = gx.defined() ? Tensor::empty(gx.shape(), DType::F32, Device::CPU) : Tensor();
  Tensor dwf = gw.defined() ? Tensor::zeros(w.shape(), DType::F32, Device::CPU) : Tensor();
  Vol gxv;
  if (gxf.defined()) gxv = gxf.vol();
  Tensor ws = workspace(conv3d_cpu_workspace_floats(xf.vol(), k, gx.defined()));
  // One pass gives both gradients (the bias gradient was done above, from the bf16 gy).
  conv3d_backward_cpu(xf.vol(), wf.f32(), k, gyf.vol(), gxv, dwf.defined() ? dwf.f32() : nullptr,
                      nullptr, ws.defined() ? ws.f32() : nullptr);
  if (gw.defined()) {
    CUSEG_CHECK(gw.dtype() == DType::F32 && gw.is_contiguous() && gw.ndim() == 5 &&
                    gw.dim(0) <= w.dim(0) && gw.dim(1) <= cp && gw.dim(2) == k,
                "bf16 conv weight gradient " << shape_str(gw.shape()) << " for filter copy "
                                             << shape_str(w.shape()));
    const int cout = int(gw.dim(0)), cin = int(gw.dim(1));
    filter_copy_cpu(FilterRef{dwf.raw(), false, filter_map_ncdhw(cout, cin, cp, k3)},
                    FilterRef{gw.raw(), false, filter_map_master(cout, cin, k3)}, true);
  }
  if (gx.defined())
    to_channels_last_cpu(gxf.vol(), gx.cl<bf16>(),
                         gx_mask.defined() ? gx_mask.cl<const bf16>() : VolCL<const bf16>{});
}

}  // namespace cuseg
