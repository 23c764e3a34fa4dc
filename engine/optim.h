// Adam, as torch.optim.Adam (defaults, no weight decay, no amsgrad):
//   m = b1 m + (1-b1) g ; v = b2 v + (1-b2) g^2 ; t counts from 1
//   p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
// One launch updates every parameter on CUDA (multi-tensor).
#pragma once
#include <cstdint>
#include <vector>

#include "cuseg/engine/context.h"
#include "cuseg/engine/param.h"

namespace cuseg {

struct AdamConfig {
  float lr = 1e-4f;
  float beta1 = 0.9f;
  float beta2 = 0.999f;
  float eps = 1e-8f;
};

class Adam {
 public:
  Adam(std::vector<Param*> params, AdamConfig cfg);
  void step(Context& ctx);
  int64_t steps() const { return t_; }
  void set_steps(int64_t t) { t_ = t; }
  AdamConfig& config() { return cfg_; }
  const std::vector<Param*>& params() const { return params_; }
  // First and second moments, one per parameter, same order as params().
  std::vector<Tensor>& exp_avg() { return m_; }
  std::vector<Tensor>& exp_avg_sq() { return v_; }

 private:
  std::vector<Param*> params_;
  AdamConfig cfg_;
  std::vector<Tensor> m_, v_;
  int64_t t_ = 0;
};

}  // namespace cuseg
