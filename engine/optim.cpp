#include "cuseg/engine/optim.h"

#include <cmath>

#include "cuseg/core/check.h"
#include "cuseg/kernels/adam.h"
#if CUSEG_HAVE_CUDA
#include "cuseg/engine/cuda/cuda_context.h"
#endif

namespace cuseg {

Adam::Adam(std::vector<Param*> params, AdamConfig cfg) : params_(std::move(params)), cfg_(cfg) {
  for (Param* p : params_) {
    m_.push_back(Tensor::zeros(p->value.shape(), DType::F32, p->value.device()));
    v_.push_back(Tensor::zeros(p->value.shape(), DType::F32, p->value.device()));
  }
}

void Adam::step(Context& ctx) {
  ++t_;
  AdamCoeffs c;
  c.b1 = cfg_.beta1;
  c.b2 = cfg_.beta2;
  c.eps = cfg_.eps;
  // As PyTorch: bias corrections in double on the host, then used as float scalars.
  const double bc1 = 1.0 - std::pow(double(cfg_.beta1), double(t_));
  const double bc2 = 1.0 - std::pow(double(cfg_.beta2), double(t_));
  c.step_size = float(double(cfg_.lr) / bc1);
  c.sqrt_bc2 = float(std::sqrt(bc2));
  std::vector<AdamTensor> ts;
  for (size_t i = 0; i < params_.size(); ++i) {
    Param* p = params_[i];
    CUSEG_CHECK(p->value.device() == ctx.device(),
                "Adam: parameter " << p->name << " on " << device_name(p->value.device()));
    ts.push_back(
        AdamTensor{p->value.f32(), p->grad.f32(), m_[i].f32(), v_[i].f32(), p->value.numel()});
  }
  if (ctx.device() == Device::CPU) return adam_step_cpu(ts.data(), int(ts.size()), c);
#if CUSEG_HAVE_CUDA
  adam_step_cuda(ts.data(), int(ts.size()), c, ctx.cuda().stream());
#endif
}

}  // namespace cuseg
