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
//
// Precision (engine/precision.h): fp32 runs NCDHW float32 buffers. bf16 runs bf16
// channels-last buffers and bf16 weight copies (Param::copy) with fp32 masters; the 1-channel
// input and the class head are padded to a multiple of 8 channels with zeros (the padded
// logits are never read; forward() returns the view of the real classes), every filter count
// must be a multiple of 8 (tensor-core convolutions; the zero-copy concat slices then start on
// 16-byte boundaries). The backward fuses each ReLU backward into the op that produces the
// gradient (the convolution's data gradient, the max pool's, the upsample's), in both
// precisions; in fp32 that is the same arithmetic in the same order as separate ReLU ops.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "cuseg/engine/context.h"
#include "cuseg/engine/param.h"
#include "cuseg/engine/precision.h"
#include "cuseg/engine/tensor.h"

namespace cuseg {

struct UNetConfig {
  int in_channels = 1;
  int classes = 3;
  std::vector<int> filters = {32, 64, 128, 256};
};

class UNet3D {
 public:
  UNet3D(const UNetConfig& cfg, Device dev, uint64_t seed = 0,
         Precision precision = Precision::F32);
  ~UNet3D();
  UNet3D(const UNet3D&) = delete;
  UNet3D& operator=(const UNet3D&) = delete;

  const UNetConfig& config() const { return cfg_; }
  Device device() const { return dev_; }
  Precision precision() const { return precision_; }

  // All parameters in PyTorch named_parameters() order.
  std::vector<Param*> parameters();
  int64_t num_parameters() const;
  // PyTorch's default init (kaiming_uniform a=sqrt(5) -> U(+-1/sqrt(fan_in)) for weights,
  // U(+-1/sqrt(fan_in)) for biases), drawn in parameter order from one seeded stream.
  void init(uint64_t seed);
  void zero_grad();
  // After writing parameter values directly (not through Adam or load_checkpoint): the bf16
  // copies are refreshed before the next forward. No-op in fp32.
  void invalidate_weight_copies();

  // x: [N, in_channels, D, H, W] on the model's device (fp32 NCDHW; in bf16 also bf16
  // channels-last). Returns logits [N, classes, D, H, W] (a buffer owned by the model, valid
  // until the next forward): fp32 NCDHW, or in bf16 a bf16 channels-last view of the real
  // classes of the padded head.
  const Tensor& forward(Context& ctx, const Tensor& x);
  // The last forward's logits as fp32 NCDHW [N, classes, D, H, W] (for aggregation and
  // argmax in fp32): the logits themselves in fp32, an exact conversion into a model-owned
  // buffer in bf16.
  const Tensor& logits_f32(Context& ctx);
  // grad_logits: d loss / d logits. Accumulates every parameter's grad. Needs the
  // activations of the last forward (same x). In bf16 pass Tensor::zeros_like(logits) filled
  // by weighted_cross_entropy (its padding channels stay 0 and it is used as it is); any
  // other fp32 or bf16 gradient of the logits' shape is converted first.
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
  Precision precision_;
  std::unique_ptr<Impl> impl_;
};

// Channel counts of the bf16 path's padded input and head: the next multiple of 8.
inline int64_t pad_channels8(int64_t c) {
  return (c + 7) / 8 * 8;
}

// Parameter count of a configuration without building it.
int64_t unet_parameter_count(const UNetConfig& cfg);
// Bytes of the activation buffers forward() plans for an input shape [N, C, D, H, W]
// (inference needs nothing more from the model; training adds about as much again for the
// gradient buffers). Exact: equals activation_bytes() after a forward-only call (plus, with
// f32_logits, a call of logits_f32()).
size_t unet_forward_bytes(const UNetConfig& cfg, const Shape& input,
                          Precision precision = Precision::F32, bool f32_logits = false);
// Largest transient pool bytes a forward() on `device` allocates besides the buffers above and
// the convolution workspace (conv3d_forward_scratch_bytes over the layers; non-zero for the CPU
// bf16 oracle only).
size_t unet_forward_scratch_bytes(const UNetConfig& cfg, const Shape& input, Precision precision,
                                  Device device);
// Bytes the parameters hold: fp32 values and gradients, and in bf16 the padded bf16 copies.
size_t unet_parameter_bytes(const UNetConfig& cfg, Precision precision = Precision::F32);

}  // namespace cuseg
