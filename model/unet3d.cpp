// UNet3D forward/backward over planned buffers. See unet3d.h for the architecture.
//
// Buffers per encoder level l (0-based, L levels, f_l filters):
//   in[l]  : the level's input (x for l = 0, pooled[l-1] otherwise)
//   t1[l]  : ReLU(conv a(in[l]))                        [N, f_l, ...]
//   skip[l]: ReLU(conv b(t1[l])); for l < L-1 a channel slice of cat[l] (zero-copy concat)
//   pooled[l] = maxpool(skip[l])                        (l < L-1)
// Decoder level l (L-2 .. 0): cat[l] = [up(below), skip[l]], dt1[l], dout[l].
// Gradient buffers mirror them (g_*); backward overwrites input gradients and accumulates
// parameter gradients.
//
// bf16 (unet3d.h): every buffer above is bf16 channels-last; xin is the input converted and
// padded to in_pad channels, logits_pad the head's output with classes_pad channels (logits is
// its view [0, classes)). The convolutions read the weight copies (Param::copy): the first
// conv's copy has in_pad input channels, the head's classes_pad output channels, zeros in the
// padding, so the padded channels of every activation stay exactly 0.
#include "cuseg/model/unet3d.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "cuseg/core/check.h"
#include "cuseg/core/random.h"
#include "cuseg/engine/ops.h"

namespace cuseg {

namespace {

struct ConvParams {
  Param w, b;
  int cin = 0, cout = 0, k = 0;
};

struct DoubleConvParams {
  ConvParams a, b;
};

// cin_pad / cout_pad: the channel counts of the bf16 copies (>= cin / cout; used when bf16).
ConvParams make_conv(const std::string& name, int cin, int cout, int k, Device dev,
                     Precision precision, int cin_pad, int cout_pad) {
  ConvParams c;
  c.cin = cin;
  c.cout = cout;
  c.k = k;
  c.w.name = name + ".weight";
  c.w.value = Tensor::zeros({cout, cin, k, k, k}, DType::F32, dev);
  c.w.grad = Tensor::zeros({cout, cin, k, k, k}, DType::F32, dev);
  c.b.name = name + ".bias";
  c.b.value = Tensor::zeros({cout}, DType::F32, dev);
  c.b.grad = Tensor::zeros({cout}, DType::F32, dev);
  if (precision == Precision::BF16) {
    // Channels-last filter [cout_pad, cin_pad, k, k, k]; zero padding, written once here.
    c.w.copy = Tensor::empty_channels_last({cout_pad, cin_pad, k, k, k}, DType::BF16, dev);
    c.w.copy.zero();
    c.w.copy_map = filter_map_cl(cout, cin, cin_pad, k * k * k);
    c.b.copy = Tensor::zeros({cout_pad}, DType::BF16, dev);
    c.b.copy_map = filter_map_master(cout, 1, 1);
  }
  return c;
}

// Weight / bias the convolutions read: the fp32 value, or the bf16 copy.
const Tensor& compute(const Param& p) {
  return p.copy.defined() ? p.copy : p.value;
}

}  // namespace

struct UNet3D::Impl {
  std::vector<DoubleConvParams> enc, dec;  // dec[l] for decoder level l (0..L-2)
  ConvParams final_conv;
  Shape planned;               // input shape the buffers are planned for
  bool grads_planned = false;  // gradient buffers exist only once backward() ran (inference
                               // never pays for them)
  // Activations.
  Tensor x;    // the input the level-0 conv reads (the caller's x, or xin)
  Tensor xin;  // bf16: the input in channels-last bf16, padded to in_pad channels
  std::vector<Tensor> t1, skip, pooled, cat, dt1, dout;
  Tensor logits;      // what forward() returns
  Tensor logits_pad;  // bf16: the head's output, classes_pad channels (logits is a view of it)
  Tensor logits32;    // bf16: fp32 NCDHW logits (logits_f32(), on demand)
  // Gradients.
  std::vector<Tensor> g_t1, g_skip, g_pooled, g_cat, g_dt1, g_dout;
  Tensor g_logits_pad;  // bf16: own head gradient, when the caller's is not usable as it is
  GradReadyHook grad_ready;

  size_t bytes() const {
    size_t s = 0;
    for (auto* v : {&t1, &pooled, &cat, &dt1, &dout, &g_pooled, &g_cat, &g_dt1, &g_dout})
      for (auto& t : *v)
        if (t.defined()) s += t.nbytes();
    // skip[l] is a view into cat[l] and g_skip[l] / g_t1[l] alias g_dout[l] / g_dt1[l], except
    // at the deepest level, where they own their memory.
    for (auto* v : {&skip, &g_skip, &g_t1})
      if (!v->empty() && v->back().defined()) s += v->back().nbytes();
    // In bf16 logits is a view of logits_pad.
    const Tensor& head = logits_pad.defined() ? logits_pad : logits;
    for (const Tensor* t : {&head, &xin, &logits32, &g_logits_pad})
      if (t->defined()) s += t->nbytes();
    return s;
  }
};

size_t unet_forward_bytes(const UNetConfig& cfg, const Shape& input, Precision precision,
                          bool f32_logits) {
  // Mirrors the plan in UNet3D::forward: per level t1 + (cat + pooled + dt1 + dout) or, at
  // the deepest level, its own skip buffer; then the logits (bf16: the padded head, the padded
  // input copy, and the fp32 logits when asked).
  const auto& f = cfg.filters;
  const int L = int(f.size());
  const int64_t N = input[0];
  const bool bf16 = precision == Precision::BF16;
  const int64_t vox0 = input[2] * input[3] * input[4];
  const size_t es = bf16 ? 2 : 4;
  int64_t floats = N * (bf16 ? pad_channels8(cfg.classes) : cfg.classes) * vox0;
  if (bf16) floats += N * pad_channels8(cfg.in_channels) * vox0;
  for (int l = 0; l < L; ++l) {
    const int64_t s = int64_t(1) << l;
    const int64_t vox = (input[2] / s) * (input[3] / s) * (input[4] / s);
    if (l < L - 1)
      floats += N * vox * (f[l] + (f[l + 1] + f[l]) + f[l] + f[l]) + N * (vox / 8) * f[l];
    else
      floats += N * vox * 2 * f[l];
  }
  size_t bytes = size_t(floats) * es;
  if (bf16 && f32_logits) bytes += size_t(N * cfg.classes * vox0) * sizeof(float);
  return bytes;
}

size_t unet_forward_scratch_bytes(const UNetConfig& cfg, const Shape& input, Precision precision,
                                  Device device) {
  const bool bf16 = precision == Precision::BF16;
  const DType dt = bf16 ? DType::BF16 : DType::F32;
  const auto& f = cfg.filters;
  const int L = int(f.size());
  size_t most = 0;
  auto conv = [&](int l, int64_t cin, int64_t cout, int64_t k) {
    const int64_t s = int64_t(1) << l;
    const Shape x = {input[0], cin, input[2] / s, input[3] / s, input[4] / s};
    most = std::max(most, conv3d_forward_scratch_bytes(device, dt, x, cout, k));
  };
  for (int l = 0; l < L; ++l) {
    conv(l, l == 0 ? (bf16 ? pad_channels8(cfg.in_channels) : cfg.in_channels) : f[l - 1], f[l], 3);
    conv(l, f[l], f[l], 3);
    if (l < L - 1) {
      conv(l, f[l + 1] + f[l], f[l], 3);  // decoder level l
    }
  }
  conv(0, f[0], bf16 ? pad_channels8(cfg.classes) : cfg.classes, 1);
  return most;
}

size_t unet_parameter_bytes(const UNetConfig& cfg, Precision precision) {
  // fp32 value + fp32 gradient of every parameter.
  size_t bytes = size_t(unet_parameter_count(cfg)) * 2 * sizeof(float);
  if (precision == Precision::BF16) {
    // The padded bf16 copies: only the first conv's input and the head's output are padded.
    const auto& f = cfg.filters;
    const int64_t in_pad = pad_channels8(cfg.in_channels), out_pad = pad_channels8(cfg.classes);
    int64_t n = 0;
    auto conv = [&](int64_t cin, int64_t cout, int64_t k) { n += cout * cin * k * k * k + cout; };
    for (size_t l = 0; l < f.size(); ++l) {
      conv(l == 0 ? in_pad : f[l - 1], f[l], 3);
      conv(f[l], f[l], 3);
    }
    for (size_t l = 0; l + 1 < f.size(); ++l) {
      conv(f[l + 1] + f[l], f[l], 3);
      conv(f[l], f[l], 3);
    }
    conv(f[0], out_pad, 1);
    bytes += size_t(n) * 2;
  }
  return bytes;
}

int64_t unet_parameter_count(const UNetConfig& cfg) {
  auto conv = [](int64_t cin, int64_t cout, int64_t k) { return cout * cin * k * k * k + cout; };
  const auto& f = cfg.filters;
  int64_t n = 0;
  for (size_t l = 0; l < f.size(); ++l) {
    const int64_t cin = l == 0 ? cfg.in_channels : f[l - 1];
    n += conv(cin, f[l], 3) + conv(f[l], f[l], 3);
  }
  for (size_t l = 0; l + 1 < f.size(); ++l)
    n += conv(f[l + 1] + f[l], f[l], 3) + conv(f[l], f[l], 3);
  return n + conv(f[0], cfg.classes, 1);
}

UNet3D::UNet3D(const UNetConfig& cfg, Device dev, uint64_t seed, Precision precision)
    : cfg_(cfg), dev_(dev), precision_(precision), impl_(new Impl) {
  CUSEG_CHECK(cfg.filters.size() >= 1 && cfg.in_channels >= 1 && cfg.classes >= 2,
              "UNet3D: need >= 1 level, >= 1 input channel, >= 2 classes");
  const int L = int(cfg.filters.size());
  const auto& f = cfg.filters;
  const bool bf16 = precision == Precision::BF16;
  if (bf16)
    for (int c : f)
      CUSEG_REQUIRE(c % 8 == 0,
                    "model.filters: precision bf16 needs every filter count to be a "
                    "multiple of 8 (channels-last tensor-core convolutions), got "
                        << c);
  const int in_pad = bf16 ? int(pad_channels8(cfg.in_channels)) : cfg.in_channels;
  const int out_pad = bf16 ? int(pad_channels8(cfg.classes)) : cfg.classes;
  auto layer = [](int i) { return "layer" + std::to_string(i); };
  auto conv = [&](const std::string& name, int cin, int cout, int k, int cin_pad, int cout_pad) {
    return make_conv(name, cin, cout, k, dev, precision, cin_pad, cout_pad);
  };
  for (int l = 0; l < L; ++l) {
    const int cin = l == 0 ? cfg.in_channels : f[l - 1];
    DoubleConvParams d;
    d.a = conv(layer(l + 1) + ".step.0", cin, f[l], 3, l == 0 ? in_pad : cin, f[l]);
    d.b = conv(layer(l + 1) + ".step.2", f[l], f[l], 3, f[l], f[l]);
    impl_->enc.push_back(std::move(d));
  }
  impl_->dec.resize(size_t(std::max(0, L - 1)));
  for (int l = L - 2; l >= 0; --l) {
    const int num = 2 * L - 1 - l;  // deepest decoder level gets layer L+1
    impl_->dec[l].a = conv(layer(num) + ".step.0", f[l + 1] + f[l], f[l], 3, f[l + 1] + f[l], f[l]);
    impl_->dec[l].b = conv(layer(num) + ".step.2", f[l], f[l], 3, f[l], f[l]);
  }
  impl_->final_conv = conv(layer(2 * L), f[0], cfg.classes, 1, f[0], out_pad);
  init(seed);
}

UNet3D::~UNet3D() = default;

std::vector<Param*> UNet3D::parameters() {
  std::vector<Param*> ps;
  auto add = [&](ConvParams& c) {
    ps.push_back(&c.w);
    ps.push_back(&c.b);
  };
  for (auto& d : impl_->enc) {
    add(d.a);
    add(d.b);
  }
  for (int l = int(impl_->dec.size()) - 1; l >= 0; --l) {  // layer L+1 first
    add(impl_->dec[l].a);
    add(impl_->dec[l].b);
  }
  add(impl_->final_conv);
  return ps;
}

int64_t UNet3D::num_parameters() const {
  return unet_parameter_count(cfg_);
}

void UNet3D::init(uint64_t seed) {
  // One 64-bit Mersenne Twister stream over all parameters in order; each draw maps the
  // top 24 bits to [0, 1) so the sequence is identical on every platform.
  Rng rng(seed);
  auto uniform = [&](float bound) { return (2.f * uniform01_f24(rng) - 1.f) * bound; };
  // fan_in of the conv a parameter belongs to: Cin * k^3. parameters() lists each conv's
  // weight right before its bias, so a bias takes the fan-in of the weight before it.
  int64_t fan_in = 0;
  std::string conv;  // name of the conv whose weight came last ("layer1.step.0")
  for (Param* p : parameters()) {
    const Shape& s = p->value.shape();
    const std::string owner = p->name.substr(0, p->name.rfind('.'));
    if (s.size() == 5) {
      fan_in = s[1] * s[2] * s[3] * s[4];
      conv = owner;
    } else {
      CUSEG_CHECK(owner == conv && fan_in > 0,
                  "UNet3D::init: bias " << p->name << " does not follow its weight");
    }
    const float bound = 1.f / std::sqrt(float(fan_in));
    Tensor h = Tensor::empty(s, DType::F32, Device::CPU);
    for (int64_t i = 0; i < h.numel(); ++i) h.f32()[i] = uniform(bound);
    p->value.copy_from(h);
  }
  zero_grad();
  invalidate_weight_copies();
}

void UNet3D::zero_grad() {
  for (Param* p : parameters()) p->grad.zero();
}

void UNet3D::invalidate_weight_copies() {
  for (Param* p : parameters()) p->copy_stale = true;
}

void UNet3D::set_grad_ready_hook(GradReadyHook hook) {
  impl_->grad_ready = std::move(hook);
}

size_t UNet3D::activation_bytes() const {
  return impl_->bytes();
}

const Tensor& UNet3D::forward(Context& ctx, const Tensor& x) {
  Impl& m = *impl_;
  const int L = int(cfg_.filters.size());
  const auto& f = cfg_.filters;
  const bool bf16 = precision_ == Precision::BF16;
  CUSEG_CHECK(x.ndim() == 5 && x.dim(1) == cfg_.in_channels,
              "UNet3D input " << shape_str(x.shape()) << ", expected [N, " << cfg_.in_channels
                              << ", D, H, W]");
  const int64_t div = int64_t(1) << (L - 1);
  CUSEG_CHECK(
      x.dim(2) % div == 0 && x.dim(3) % div == 0 && x.dim(4) % div == 0,
      "UNet3D input " << shape_str(x.shape()) << ": spatial extents must be divisible by " << div);
  const int64_t N = x.dim(0);
  auto level_shape = [&](int l, int64_t c) -> Shape {
    const int64_t sc = int64_t(1) << l;
    return {N, c, x.dim(2) / sc, x.dim(3) / sc, x.dim(4) / sc};
  };
  // fp32: NCDHW float32; bf16: channels-last bf16.
  auto buffer = [&](const Shape& s) {
    return bf16 ? Tensor::empty_channels_last(s, DType::BF16, dev_)
                : Tensor::empty(s, DType::F32, dev_);
  };
  if (m.planned != x.shape()) {  // plan activation buffers once per input shape
    m.planned = x.shape();
    m.grads_planned = false;  // gradient buffers are planned by the first backward()
    for (auto* v : {&m.t1, &m.skip, &m.pooled, &m.cat, &m.dt1, &m.dout, &m.g_t1, &m.g_skip,
                    &m.g_pooled, &m.g_cat, &m.g_dt1, &m.g_dout}) {
      v->clear();
      v->resize(size_t(L));
    }
    m.xin = m.logits_pad = m.logits32 = m.g_logits_pad = Tensor();
    for (int l = 0; l < L; ++l) {
      const Shape sh = level_shape(l, f[l]);
      m.t1[l] = buffer(sh);
      if (l < L - 1) {
        const Shape cs = level_shape(l, f[l + 1] + f[l]);
        m.cat[l] = buffer(cs);
        m.skip[l] = m.cat[l].channel_slice(f[l + 1], f[l + 1] + f[l]);
        m.pooled[l] = buffer(level_shape(l + 1, f[l]));
        m.dt1[l] = buffer(sh);
        m.dout[l] = buffer(sh);
      } else {
        m.skip[l] = buffer(sh);
      }
    }
    if (bf16) {
      m.xin = buffer(level_shape(0, pad_channels8(cfg_.in_channels)));
      m.logits_pad = buffer(level_shape(0, pad_channels8(cfg_.classes)));
      m.logits = m.logits_pad.channel_slice(0, cfg_.classes);
    } else {
      m.logits = buffer(level_shape(0, cfg_.classes));
    }
  }
  if (bf16) {
    // Weight copies written by anything but Adam (init, a checkpoint, a broadcast) first.
    for (Param* p : parameters())
      if (p->copy_stale) {
        refresh_weight_copy(ctx, *p);
        p->copy_stale = false;
      }
    convert(ctx, x, m.xin);  // fp32 (or bf16) -> bf16 channels-last, padding channels 0
    m.x = m.xin;
  } else {
    m.x = x;
  }
  const Tensor& head = bf16 ? m.logits_pad : m.logits;
  for (int l = 0; l < L; ++l) {
    const Tensor& in = l == 0 ? m.x : m.pooled[l - 1];
    auto& p = m.enc[l];
    conv3d_forward(ctx, in, compute(p.a.w), compute(p.a.b), m.t1[l], true);
    conv3d_forward(ctx, m.t1[l], compute(p.b.w), compute(p.b.b), m.skip[l], true);
    if (l < L - 1) maxpool3d_forward(ctx, m.skip[l], m.pooled[l]);
  }
  for (int l = L - 2; l >= 0; --l) {
    const Tensor& below = l == L - 2 ? m.skip[L - 1] : m.dout[l + 1];
    upsample2x_forward(ctx, below, m.cat[l].channel_slice(0, f[l + 1]));
    auto& p = m.dec[l];
    conv3d_forward(ctx, m.cat[l], compute(p.a.w), compute(p.a.b), m.dt1[l], true);
    conv3d_forward(ctx, m.dt1[l], compute(p.b.w), compute(p.b.b), m.dout[l], true);
  }
  const Tensor& top = L == 1 ? m.skip[0] : m.dout[0];
  conv3d_forward(ctx, top, compute(m.final_conv.w), compute(m.final_conv.b), head, false);
  return m.logits;
}

const Tensor& UNet3D::logits_f32(Context& ctx) {
  Impl& m = *impl_;
  CUSEG_CHECK(m.logits.defined(), "UNet3D::logits_f32 before any forward");
  if (precision_ == Precision::F32) return m.logits;
  if (!m.logits32.defined()) m.logits32 = Tensor::empty(m.logits.shape(), DType::F32, dev_);
  convert(ctx, m.logits, m.logits32);
  return m.logits32;
}

void UNet3D::backward(Context& ctx, const Tensor& grad_logits) {
  Impl& m = *impl_;
  CUSEG_CHECK(m.logits.defined() && grad_logits.shape() == m.logits.shape(),
              "UNet3D::backward: gradient " << shape_str(grad_logits.shape())
                                            << " does not match the last forward");
  const int L = int(cfg_.filters.size());
  const auto& f = cfg_.filters;
  const bool bf16 = precision_ == Precision::BF16;
  auto buffer = [&](const Shape& s) {
    return bf16 ? Tensor::empty_channels_last(s, DType::BF16, dev_)
                : Tensor::empty(s, DType::F32, dev_);
  };
  if (!m.grads_planned) {
    // Decoder level l's gradients (g_dout, g_dt1) are dead before encoder level l's
    // (g_skip, g_t1) are first written, and they have the same shape [N, f_l, ...]: one
    // buffer serves both (saves 2 f_l channels per level).
    for (int l = 0; l < L; ++l) {
      if (l < L - 1) {
        m.g_cat[l] = buffer(m.cat[l].shape());
        m.g_pooled[l] = buffer(m.pooled[l].shape());
        m.g_dt1[l] = buffer(m.dt1[l].shape());
        m.g_dout[l] = buffer(m.dout[l].shape());
        m.g_t1[l] = m.g_dt1[l];
        m.g_skip[l] = m.g_dout[l];
      } else {
        m.g_t1[l] = buffer(m.t1[l].shape());
        m.g_skip[l] = buffer(m.t1[l].shape());
      }
    }
    m.grads_planned = true;
  }
  // The head's gradient as its conv reads it: fp32 as given; bf16 with all classes_pad
  // channels. A bf16 channels-last gradient laid out like the logits (Tensor::zeros_like) is
  // widened in place; anything else is converted into an own zero-padded buffer.
  Tensor g_head = grad_logits;
  if (bf16) {
    const Shape padded = m.logits_pad.shape();
    if (grad_logits.dtype() == DType::BF16 && grad_logits.strides() == m.logits.strides()) {
      g_head = grad_logits.as_shape(padded);
    } else {
      if (!m.g_logits_pad.defined()) {
        m.g_logits_pad = buffer(padded);
        m.g_logits_pad.zero();
      }
      convert(ctx, grad_logits, m.g_logits_pad.channel_slice(0, cfg_.classes));
      g_head = m.g_logits_pad;
    }
  }
  // Convolution backward: accumulates the weight and bias gradients, writes gx (when given)
  // with the ReLU backward of gx's layer fused in (mask = that layer's ReLU output).
  auto conv_bwd = [&](const Tensor& in, ConvParams& c, const Tensor& gy, const Tensor& gx,
                      const Tensor& gx_relu_mask) {
    conv3d_backward(ctx, in, compute(c.w), gy, gx, c.w.grad, c.b.grad, gx_relu_mask);
    if (m.grad_ready) {
      m.grad_ready(ctx, c.w);
      m.grad_ready(ctx, c.b);
    }
  };
  // Final 1x1 conv; its input is a ReLU output.
  const Tensor& top = L == 1 ? m.skip[0] : m.dout[0];
  const Tensor& g_top = L == 1 ? m.g_skip[0] : m.g_dout[0];
  conv_bwd(top, m.final_conv, g_head, g_top, top);
  // Decoder, top (l = 0) down to the deepest level. g_dout[l] arrives with its ReLU backward
  // applied.
  for (int l = 0; l <= L - 2; ++l) {
    auto& p = m.dec[l];
    conv_bwd(m.dt1[l], p.b, m.g_dout[l], m.g_dt1[l], m.dt1[l]);
    conv_bwd(m.cat[l], p.a, m.g_dt1[l], m.g_cat[l], Tensor());  // cat is no ReLU output
    const bool deepest = l == L - 2;
    const Tensor& below = deepest ? m.skip[L - 1] : m.dout[l + 1];
    const Tensor& g_below = deepest ? m.g_skip[L - 1] : m.g_dout[l + 1];
    upsample2x_backward(ctx, m.g_cat[l].channel_slice(0, f[l + 1]), g_below, below);
  }
  // Encoder, deepest first. g_skip[L-1] arrives with its ReLU backward applied (upsample's, or
  // the head's when L == 1); the other levels sum the pooled path and the concat slice first.
  for (int l = L - 1; l >= 0; --l) {
    auto& p = m.enc[l];
    if (l < L - 1)
      maxpool3d_backward(ctx, m.skip[l], m.pooled[l], m.g_pooled[l], m.g_skip[l],
                         m.g_cat[l].channel_slice(f[l + 1], f[l + 1] + f[l]), true);
    conv_bwd(m.t1[l], p.b, m.g_skip[l], m.g_t1[l], m.t1[l]);
    const Tensor& in = l == 0 ? m.x : m.pooled[l - 1];
    conv_bwd(in, p.a, m.g_t1[l], l == 0 ? Tensor() : m.g_pooled[l - 1], Tensor());
  }
}

}  // namespace cuseg
