#include "cuseg/engine/optim.h"

#include <cmath>

#include "cuseg/engine/backend_ops.h"

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
  run_op(ctx, op::AdamStep{params_, m_, v_, c});
  // The same pass wrote every bf16 copy from its updated master.
  for (Param* p : params_)
    if (p->copy.defined()) p->copy_stale = false;
}

}  // namespace cuseg
