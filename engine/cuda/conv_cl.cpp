// bf16 channels-last convolutions on CUDA: cuDNN graph, packed-copy retry, legacy fp32 fallback
// (see conv_cl.h).
#include "cuseg/engine/cuda/conv_cl.h"

#include <cstdio>
#include <mutex>
#include <set>
#include <sstream>
#include <string>

#include "cuseg/core/check.h"
#include "cuseg/engine/cuda/cuda_check.h"
#include "cuseg/engine/cuda/cudnn_graph.h"
#include "cuseg/engine/cuda/cudnn_ops.h"
#include "cuseg/kernels/bias_grad.h"
#include "cuseg/kernels/channels_last.h"
#include "cuseg/kernels/weight_copy.h"

namespace cuseg {

namespace {

Stream stream_of(CudaContext& ctx) {
  return reinterpret_cast<Stream>(ctx.stream());
}

// One warning per (problem, way).
void warn_once(const std::string& problem, const std::string& why, const char* way) {
  static std::mutex mu;
  static std::set<std::string> seen;
  std::lock_guard<std::mutex> lock(mu);
  if (!seen.insert(problem + "|" + way).second) return;
  std::fprintf(stderr, "cuseg: warning: cuDNN refused the bf16 graph for %s (%s); running it %s\n",
               problem.c_str(), why.c_str(), way);
}

std::string describe(const char* op, const Tensor& in, const Tensor& out, int64_t k) {
  std::ostringstream os;
  os << op << " " << shape_str(in.shape()) << " -> " << out.dim(1) << " channels, k " << k;
  if (!in.is_dense() || !out.is_dense()) os << " (channel-slice operand)";
  return os.str();
}

bool packed(const Tensor& t) {
  return !t.defined() || t.is_dense();
}

// A packed channels-last copy of a (possibly sliced) bf16 tensor; the tensor itself when packed.
Tensor packed_copy(CudaContext& ctx, const Tensor& t) {
  if (packed(t)) return t;
  Tensor p = Tensor::empty_channels_last(t.shape(), DType::BF16, Device::CUDA);
  copy_channels_last_cuda(t.cl<const bf16>(), p.cl<bf16>(), stream_of(ctx));
  return p;
}

// A packed tensor to compute an output into, for an output that is a slice.
Tensor packed_like(const Tensor& t) {
  return packed(t) ? t : Tensor::empty_channels_last(t.shape(), DType::BF16, Device::CUDA);
}

void copy_back(CudaContext& ctx, const Tensor& computed, const Tensor& dst) {
  if (computed.raw() == dst.raw()) return;
  copy_channels_last_cuda(computed.cl<const bf16>(), dst.cl<bf16>(), stream_of(ctx));
}

// fp32 channels-first copy of a bf16 channels-last tensor (exact).
Tensor f32_ncdhw(CudaContext& ctx, const Tensor& t) {
  Tensor f = Tensor::empty(t.shape(), DType::F32, Device::CUDA);
  from_channels_last_cuda(t.cl<const bf16>(), f.vol(), stream_of(ctx));
  return f;
}

// fp32 [Kp, Cp, k, k, k] (channels-first) from the bf16 channels-last filter copy (exact).
Tensor f32_filter(CudaContext& ctx, const Tensor& w) {
  const int kp = int(w.dim(0)), cp = int(w.dim(1)), k3 = int(w.dim(2) * w.dim(3) * w.dim(4));
  Tensor f = Tensor::empty(w.shape(), DType::F32, Device::CUDA);
  filter_copy_cuda(FilterRef{w.raw(), true, filter_map_cl(kp, cp, cp, k3)},
                   FilterRef{f.raw(), false, filter_map_master(kp, cp, k3)}, false, stream_of(ctx));
  return f;
}

Tensor f32_vector(CudaContext& ctx, const Tensor& b) {
  const int n = int(b.numel());
  Tensor f = Tensor::empty({n}, DType::F32, Device::CUDA);
  filter_copy_cuda(FilterRef{b.raw(), true, filter_map_master(n, 1, 1)},
                   FilterRef{f.raw(), false, filter_map_master(n, 1, 1)}, false, stream_of(ctx));
  return f;
}

void check_cl(const Tensor& t, const char* what) {
  CUSEG_CHECK(t.dtype() == DType::BF16 && t.is_channels_last() && t.device() == Device::CUDA,
              what << ": expected a bf16 channels-last CUDA tensor, got " << dtype_name(t.dtype())
                   << " " << shape_str(t.shape()) << " strides " << shape_str(t.strides()));
}

}  // namespace

void cuda_conv_cl_forward(CudaContext& ctx, const Tensor& x, const Tensor& w, const Tensor& b,
                          const Tensor& y, bool relu) {
  check_cl(x, "bf16 conv input");
  check_cl(y, "bf16 conv output");
  check_cl(w, "bf16 conv filter copy");
  std::string why;
  // 1. The graph as it is.
  if (graph_conv_forward(ctx, x, w, b, y, relu, &why) == GraphOutcome::Ran) return;
  const std::string problem = describe("forward", x, y, w.dim(2));
  // 2. Packed copies of sliced operands.
  if (!packed(x) || !packed(y)) {
    const Tensor xp = packed_copy(ctx, x), yp = packed_like(y);
    std::string why2;
    if (graph_conv_forward(ctx, xp, w, b, yp, relu, &why2) == GraphOutcome::Ran) {
      warn_once(problem, why, "on packed copies of its channel-slice operands");
      copy_back(ctx, yp, y);
      return;
    }
    why += "; packed: " + why2;
  }
  // 3. Legacy fp32.
  warn_once(problem, why, "on the legacy fp32 cuDNN convolution");
  const Tensor xf = f32_ncdhw(ctx, x), wf = f32_filter(ctx, w);
  const Tensor bf = b.defined() ? f32_vector(ctx, b) : Tensor();
  Tensor yf = Tensor::empty(y.shape(), DType::F32, Device::CUDA);
  cudnn_conv3d_forward(ctx, xf, wf, bf, yf, relu);
  to_channels_last_cuda(yf.vol(), y.cl<bf16>(), VolCL<const bf16>{}, stream_of(ctx));
}

void cuda_conv_cl_backward(CudaContext& ctx, const Tensor& x, const Tensor& w, const Tensor& gy,
                           const Tensor& gx, const Tensor& gw, const Tensor& gb,
                           const Tensor& gx_mask) {
  check_cl(x, "bf16 conv input");
  check_cl(gy, "bf16 conv output gradient");
  check_cl(w, "bf16 conv filter copy");
  if (gx.defined()) check_cl(gx, "bf16 conv input gradient");
  if (gx_mask.defined()) check_cl(gx_mask, "bf16 conv ReLU mask");
  const int64_t k = w.dim(2);
  const int kp = int(w.dim(0)), cp = int(w.dim(1)), k3 = int(k * k * k);
  const Stream s = stream_of(ctx);

  // Bias gradient: our deterministic reduction over the first Cout channels of gy.
  if (gb.defined()) {
    CUSEG_CHECK(gb.dtype() == DType::F32 && gb.numel() <= gy.dim(1),
                "bf16 conv bias gradient " << shape_str(gb.shape()));
    const Tensor g = gy.channel_slice(0, gb.numel());
    const VolCL<const bf16> gv = g.cl<const bf16>();
    Tensor ws = Tensor::empty({int64_t(bias_grad_workspace_bytes(gv))}, DType::U8, Device::CUDA);
    bias_grad_cl_cuda(gv, gb.f32(), ws.raw(), ws.nbytes(), s);
  }

  // Weight gradient: dw of the padded filter, then accumulated into the master-layout gw.
  if (gw.defined()) {
    CUSEG_CHECK(gw.dtype() == DType::F32 && gw.is_contiguous() && gw.ndim() == 5 &&
                    gw.dim(0) <= kp && gw.dim(1) <= cp && gw.dim(2) == k,
                "bf16 conv weight gradient " << shape_str(gw.shape()) << " for filter copy "
                                             << shape_str(w.shape()));
    const int cout = int(gw.dim(0)), cin = int(gw.dim(1));
    const FilterRef master{gw.raw(), false, filter_map_master(cout, cin, k3)};
    const std::string problem = describe("backward-filter", x, gy, k);
    std::string why, why2;
    bool done = false;
    for (const DType dt : {DType::F32, DType::BF16}) {
      Tensor dw = Tensor::empty_channels_last(w.shape(), dt, Device::CUDA);
      std::string w1;
      if (graph_conv_backward_filter(ctx, x, gy, dw, &w1) == GraphOutcome::Ran) {
        if (dt == DType::BF16) warn_once(problem, why, "with a bf16 weight gradient");
        filter_copy_cuda(FilterRef{dw.raw(), dt == DType::BF16, filter_map_cl(cout, cin, cp, k3)},
                         master, true, s);
        done = true;
        break;
      }
      why += (why.empty() ? "" : "; bf16 dw: ") + w1;
    }
    if (!done && (!packed(x) || !packed(gy))) {
      const Tensor xp = packed_copy(ctx, x), gyp = packed_copy(ctx, gy);
      Tensor dw = Tensor::empty_channels_last(w.shape(), DType::F32, Device::CUDA);
      if (graph_conv_backward_filter(ctx, xp, gyp, dw, &why2) == GraphOutcome::Ran) {
        warn_once(problem, why, "on packed copies of its channel-slice operands");
        filter_copy_cuda(FilterRef{dw.raw(), false, filter_map_cl(cout, cin, cp, k3)}, master, true,
                         s);
        done = true;
      } else {
        why += "; packed: " + why2;
      }
    }
    if (!done) {
      warn_once(problem, why, "on the legacy fp32 cuDNN convolution");
      const Tensor xf = f32_ncdhw(ctx, x), gyf = f32_ncdhw(ctx, gy);
      // The legacy call accumulates (beta = 1): start from zero. w is only read for its shape.
      Tensor dwf = Tensor::zeros(w.shape(), DType::F32, Device::CUDA);
      cudnn_conv3d_backward(ctx, xf, dwf, gyf, Tensor(), dwf, Tensor());
      filter_copy_cuda(FilterRef{dwf.raw(), false, filter_map_ncdhw(cout, cin, cp, k3)}, master,
                       true, s);
    }
  }

  // Input gradient (+ the ReLU backward of the layer below).
  if (gx.defined()) {
    const std::string problem = describe("backward-data", gy, gx, k);
    std::string why;
    if (graph_conv_backward_data(ctx, w, gy, gx_mask, gx, &why) == GraphOutcome::Ran) return;
    if (!packed(gy) || !packed(gx) || !packed(gx_mask)) {
      const Tensor gyp = packed_copy(ctx, gy), gxp = packed_like(gx);
      const Tensor mp = gx_mask.defined() ? packed_copy(ctx, gx_mask) : Tensor();
      std::string why2;
      if (graph_conv_backward_data(ctx, w, gyp, mp, gxp, &why2) == GraphOutcome::Ran) {
        warn_once(problem, why, "on packed copies of its channel-slice operands");
        copy_back(ctx, gxp, gx);
        return;
      }
      why += "; packed: " + why2;
    }
    warn_once(problem, why, "on the legacy fp32 cuDNN convolution");
    const Tensor gyf = f32_ncdhw(ctx, gy), wf = f32_filter(ctx, w);
    Tensor gxf = Tensor::empty(gx.shape(), DType::F32, Device::CUDA);
    // x only gives the legacy call its shape here (no weight gradient is asked).
    cudnn_conv3d_backward(ctx, gxf, wf, gyf, gxf, Tensor(), Tensor());
    to_channels_last_cuda(gxf.vol(), gx.cl<bf16>(),
                          gx_mask.defined() ? gx_mask.cl<const bf16>() : VolCL<const bf16>{}, s);
  }
  if (sync_debug()) CUDA_CHECK(cudaStreamSynchronize(ctx.stream()));
}

}  // namespace cuseg
