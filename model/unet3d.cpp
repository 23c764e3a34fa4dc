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
#include "cuseg/model/unet3d.h"

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

ConvParams make_conv(const std::string& name, int cin, int cout, int k, Device dev) {
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
  return c;
}

}  // namespace

struct UNet3D::Impl {
  std::vector<DoubleConvParams> enc, dec;  // dec[l] for decoder level l (0..L-2)
  ConvParams final_conv;
  Shape planned;               // input shape the buffers are planned for
  bool grads_planned = false;  // gradient buffers exist only once backward() ran (inference
                               // never pays for them)
  // Activations.
  Tensor x;
  std::vector<Tensor> t1, skip, pooled, cat, dt1, dout;
  Tensor logits;
  // Gradients.
  std::vector<Tensor> g_t1, g_skip, g_pooled, g_cat, g_dt1, g_dout;
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
    return s + (logits.defined() ? logits.nbytes() : 0);
  }
};

size_t unet_forward_bytes(const UNetConfig& cfg, const Shape& input) {
  // Mirrors the plan in UNet3D::forward: per level t1 + (cat + pooled + dt1 + dout) or, at
  // the deepest level, its own skip buffer; then the logits.
  const auto& f = cfg.filters;
  const int L = int(f.size());
  const int64_t N = input[0];
  int64_t floats = N * cfg.classes * input[2] * input[3] * input[4];
  for (int l = 0; l < L; ++l) {
    const int64_t s = int64_t(1) << l;
    const int64_t vox = (input[2] / s) * (input[3] / s) * (input[4] / s);
    if (l < L - 1)
      floats += N * vox * (f[l] + (f[l + 1] + f[l]) + f[l] + f[l]) + N * (vox / 8) * f[l];
    else
      floats += N * vox * 2 * f[l];
  }
  return size_t(floats) * sizeof(float);
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

UNet3D::UNet3D(const UNetConfig& cfg, Device dev, uint64_t seed)
    : cfg_(cfg), dev_(dev), impl_(new Impl) {
  CUSEG_CHECK(cfg.filters.size() >= 1 && cfg.in_channels >= 1 && cfg.classes >= 2,
              "UNet3D: need >= 1 level, >= 1 input channel, >= 2 classes");
  const int L = int(cfg.filters.size());
  const auto& f = cfg.filters;
  auto layer = [](int i) { return "layer" + std::to_string(i); };
  for (int l = 0; l < L; ++l) {
    const int cin = l == 0 ? cfg.in_channels : f[l - 1];
    DoubleConvParams d;
    d.a = make_conv(layer(l + 1) + ".step.0", cin, f[l], 3, dev);
    d.b = make_conv(layer(l + 1) + ".step.2", f[l], f[l], 3, dev);
    impl_->enc.push_back(std::move(d));
  }
  impl_->dec.resize(size_t(std::max(0, L - 1)));
  for (int l = L - 2; l >= 0; --l) {
    const int num = 2 * L - 1 - l;  // deepest decoder level gets layer L+1
    impl_->dec[l].a = make_conv(layer(num) + ".step.0", f[l + 1] + f[l], f[l], 3, dev);
    impl_->dec[l].b = make_conv(layer(num) + ".step.2", f[l], f[l], 3, dev);
  }
  impl_->final_conv = make_conv(layer(2 * L), f[0], cfg.classes, 1, dev);
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
}

void UNet3D::zero_grad() {
  for (Param* p : parameters()) p->grad.zero();
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
  if (m.planned != x.shape()) {  // plan activation buffers once per input shape
    m.planned = x.shape();
    m.grads_planned = false;  // gradient buffers are planned by the first backward()
    for (auto* v : {&m.t1, &m.skip, &m.pooled, &m.cat, &m.dt1, &m.dout, &m.g_t1, &m.g_skip,
                    &m.g_pooled, &m.g_cat, &m.g_dt1, &m.g_dout}) {
      v->clear();
      v->resize(size_t(L));
    }
    for (int l = 0; l < L; ++l) {
      const Shape sh = level_shape(l, f[l]);
      m.t1[l] = Tensor::empty(sh, DType::F32, dev_);
      if (l < L - 1) {
        const Shape cs = level_shape(l, f[l + 1] + f[l]);
        m.cat[l] = Tensor::empty(cs, DType::F32, dev_);
        m.skip[l] = m.cat[l].channel_slice(f[l + 1], f[l + 1] + f[l]);
        m.pooled[l] = Tensor::empty(level_shape(l + 1, f[l]), DType::F32, dev_);
        m.dt1[l] = Tensor::empty(sh, DType::F32, dev_);
        m.dout[l] = Tensor::empty(sh, DType::F32, dev_);
      } else {
        m.skip[l] = Tensor::empty(sh, DType::F32, dev_);
      }
    }
    m.logits = Tensor::empty({N, cfg_.classes, x.dim(2), x.dim(3), x.dim(4)}, DType::F32, dev_);
  }
  m.x = x;
  for (int l = 0; l < L; ++l) {
    const Tensor& in = l == 0 ? x : m.pooled[l - 1];
    auto& p = m.enc[l];
    conv3d_forward(ctx, in, p.a.w.value, p.a.b.value, m.t1[l], true);
    conv3d_forward(ctx, m.t1[l], p.b.w.value, p.b.b.value, m.skip[l], true);
    if (l < L - 1) maxpool3d_forward(ctx, m.skip[l], m.pooled[l]);
  }
  for (int l = L - 2; l >= 0; --l) {
    const Tensor& below = l == L - 2 ? m.skip[L - 1] : m.dout[l + 1];
    upsample2x_forward(ctx, below, m.cat[l].channel_slice(0, f[l + 1]));
    auto& p = m.dec[l];
    conv3d_forward(ctx, m.cat[l], p.a.w.value, p.a.b.value, m.dt1[l], true);
    conv3d_forward(ctx, m.dt1[l], p.b.w.value, p.b.b.value, m.dout[l], true);
  }
  const Tensor& top = L == 1 ? m.skip[0] : m.dout[0];
  conv3d_forward(ctx, top, m.final_conv.w.value, m.final_conv.b.value, m.logits, false);
  return m.logits;
}

void UNet3D::backward(Context& ctx, const Tensor& grad_logits) {
  Impl& m = *impl_;
  CUSEG_CHECK(m.logits.defined() && grad_logits.shape() == m.logits.shape(),
              "UNet3D::backward: gradient " << shape_str(grad_logits.shape())
                                            << " does not match the last forward");
  const int L = int(cfg_.filters.size());
  const auto& f = cfg_.filters;
  if (!m.grads_planned) {
    // Decoder level l's gradients (g_dout, g_dt1) are dead before encoder level l's
    // (g_skip, g_t1) are first written, and they have the same shape [N, f_l, ...]: one
    // buffer serves both (saves 2 f_l channels per level).
    for (int l = 0; l < L; ++l) {
      if (l < L - 1) {
        m.g_cat[l] = Tensor::empty(m.cat[l].shape(), DType::F32, dev_);
        m.g_pooled[l] = Tensor::empty(m.pooled[l].shape(), DType::F32, dev_);
        m.g_dt1[l] = Tensor::empty(m.dt1[l].shape(), DType::F32, dev_);
        m.g_dout[l] = Tensor::empty(m.dout[l].shape(), DType::F32, dev_);
        m.g_t1[l] = m.g_dt1[l];
        m.g_skip[l] = m.g_dout[l];
      } else {
        m.g_t1[l] = Tensor::empty(m.t1[l].shape(), DType::F32, dev_);
        m.g_skip[l] = Tensor::empty(m.t1[l].shape(), DType::F32, dev_);
      }
    }
    m.grads_planned = true;
  }
  auto conv_bwd = [&](const Tensor& in, ConvParams& c, const Tensor& gy, const Tensor& gx) {
    conv3d_backward(ctx, in, c.w.value, gy, gx, c.w.grad, c.b.grad);
    if (m.grad_ready) {
      m.grad_ready(ctx, c.w);
      m.grad_ready(ctx, c.b);
    }
  };
  // Final 1x1 conv.
  const Tensor& top = L == 1 ? m.skip[0] : m.dout[0];
  const Tensor& g_top = L == 1 ? m.g_skip[0] : m.g_dout[0];
  conv_bwd(top, m.final_conv, grad_logits, g_top);
  // Decoder, top (l = 0) down to the deepest level.
  for (int l = 0; l <= L - 2; ++l) {
    auto& p = m.dec[l];
    relu_backward(ctx, m.dout[l], m.g_dout[l]);
    conv_bwd(m.dt1[l], p.b, m.g_dout[l], m.g_dt1[l]);
    relu_backward(ctx, m.dt1[l], m.g_dt1[l]);
    conv_bwd(m.cat[l], p.a, m.g_dt1[l], m.g_cat[l]);
    const Tensor& g_below = l == L - 2 ? m.g_skip[L - 1] : m.g_dout[l + 1];
    upsample2x_backward(ctx, m.g_cat[l].channel_slice(0, f[l + 1]), g_below);
  }
  // Encoder, deepest first.
  for (int l = L - 1; l >= 0; --l) {
    auto& p = m.enc[l];
    if (l < L - 1) {
      maxpool3d_backward(ctx, m.skip[l], m.pooled[l], m.g_pooled[l], m.g_skip[l]);
      add_inplace(ctx, m.g_skip[l], m.g_cat[l].channel_slice(f[l + 1], f[l + 1] + f[l]));
    }
    relu_backward(ctx, m.skip[l], m.g_skip[l]);
    conv_bwd(m.t1[l], p.b, m.g_skip[l], m.g_t1[l]);
    relu_backward(ctx, m.t1[l], m.g_t1[l]);
    const Tensor& in = l == 0 ? m.x : m.pooled[l - 1];
    conv_bwd(in, p.a, m.g_t1[l], l == 0 ? Tensor() : m.g_pooled[l - 1]);
  }
}

}  // namespace cuseg
