// Shared by the training-step tests (tests/cuda/test_train_step.cpp, test_bf16_train.cpp) and
// the bf16 model test: a U-Net + Adam + weighted CE step on one device, and the norm-relative
// difference of two tensors.
#pragma once
#include <cmath>
#include <vector>

#include "cuseg/engine/context.h"
#include "cuseg/engine/ops.h"
#include "cuseg/engine/optim.h"
#include "cuseg/model/unet3d.h"

namespace train_step {

using namespace cuseg;

// Class weights of the step tests: background, liver, tumour.
inline const std::vector<float> kClassWeights = {1.f, 1.f, 3.f};

struct Batch {
  Tensor x, y;  // CPU
};

// ||got - ref|| / ||ref|| (||got - ref|| when ref is all zero), over fp32 tensors on any device.
inline double rel_err(const Tensor& ref0, const Tensor& got0) {
  const Tensor ref = ref0.to(Device::CPU), got = got0.to(Device::CPU);
  double num = 0, den = 0;
  for (int64_t i = 0; i < ref.numel(); ++i) {
    const double d = double(got.f32()[i]) - double(ref.f32()[i]);
    num += d * d;
    den += double(ref.f32()[i]) * double(ref.f32()[i]);
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

// A U-Net (seed 7) with Adam on one device.
struct Trainer {
  Context ctx;
  UNet3D net;
  Adam opt;
  Tensor x, y, grad;
  Trainer(Device d, const UNetConfig& cfg, const AdamConfig& ac,
          Precision precision = Precision::F32)
      : ctx(d), net(cfg, d, /*seed=*/7, precision), opt(net.parameters(), ac) {}
  void load(const Batch& b) {
    x = b.x.to(ctx.device());
    y = b.y.to(ctx.device());
  }
  // One step; returns the loss. No host sync in here except inside weighted_cross_entropy.
  double step(bool update = true) {
    net.zero_grad();
    const Tensor& logits = net.forward(ctx, x);
    if (!grad.defined() || grad.shape() != logits.shape()) grad = Tensor::zeros_like(logits);
    const double loss = weighted_cross_entropy(ctx, logits, y, kClassWeights, grad);
    net.backward(ctx, grad);
    if (update) opt.step(ctx);
    return loss;
  }
};

}  // namespace train_step
