// UNet3D: the reference 3-D U-Net, configurable.
//
//   level l = 1..L (L = filters.size()): DoubleConv(in, f_l) = (Conv3d k3 p1 + ReLU) x 2,
//   MaxPool3d(2) between encoder levels; decoder: trilinear x2 upsample, concat
//   [upsampled, skip] on channels, DoubleConv(f_{l+1} + f_l, f_l); final Conv3d k1 -> classes.
// Parameter names follow the PyTorch reference module: layer1..layerL (encoder),
// layer{L+1}..layer{2L-1} (decoder, deepest first), layer{2L} (final 1x1 conv); DoubleConv
// convs are "layerN.step.0" and "layerN.step.2".
// Default = the reference network: 1 -> 32, 64, 128, 256 -> 3 classes, 5,836,099 params.
//
// Activation buffers are planned once per input shape and reused (gradient buffers only when
// backward() first runs, so inference never allocates them); skip tensors live inside
// the decoder's concat buffers (zero-copy concat). Spatial extents must be divisible by
// 2^(L-1).
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "cuseg/engine/context.h"
#include "cuseg/engine/param.h"
#include "cuseg/engine/tensor.h"

namespace cuseg {

struct UNetConfig {
  int in_channels = 1;
  int classes = 3;
  std::vector<int> filters = {32, 64, 128, 256};
};

class UNet3D {
 public:
  UNet3D(const UNetConfig& cfg, Device dev, uint64_t seed = 0);
  ~UNet3D();
  UNet3D(const UNet3D&) = delete;
  UNet3D& operator=(const UNet3D&) = delete;

  const UNetConfig& config() const { return cfg_; }
  Device device() const { return dev_; }

  // All parameters in PyTorch named_parameters() order.
  std::vector<Param*> parameters();
  int64_t num_parameters() const;
  // PyTorch's default init (kaiming_uniform a=sqrt(5) -> U(+-1/sqrt(fan_in)) for weights,
  // U(+-1/sqrt(fan_in)) for biases), drawn in parameter order from one seeded stream.
  void init(uint64_t seed);
  void zero_grad();

  // x: [N, in_channels, D, H, W] on the model's device. Returns logits [N, classes, D, H, W]
  // (a buffer owned by the model, valid until the next forward).
  const Tensor& forward(Context& ctx, const Tensor& x);
  // grad_logits: d loss / d logits. Accumulates every parameter's grad. Needs the
  // activations of the last forward (same x).
  void backward(Context& ctx, const Tensor& grad_logits);
  // Called during backward() as soon as a parameter's gradient is final for this step (each
  // convolution's weight, then its bias), in the order backward produces them (about the
  // reverse of parameters()). Data-parallel training starts averaging a bucket of gradients
  // across ranks from here while backward goes on. Empty function: no hook.
  using GradReadyHook = std::function<void(Context&, const Param&)>;
  void set_grad_ready_hook(GradReadyHook hook);

  // Bytes held by planned activation buffers (for reports).
  size_t activation_bytes() const;

 private:
  struct Impl;
  UNetConfig cfg_;
  Device dev_;
  std::unique_ptr<Impl> impl_;
};

// Parameter count of a configuration without building it.
int64_t unet_parameter_count(const UNetConfig& cfg);
// Bytes of the activation buffers forward() plans for an input shape [N, C, D, H, W]
// (inference needs nothing more from the model; training adds about as much again for the
// gradient buffers). Exact: equals activation_bytes() after a forward-only call.
size_t unet_forward_bytes(const UNetConfig& cfg, const Shape& input);

}  // namespace cuseg
