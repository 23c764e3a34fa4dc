// PyTorch parity: the engine's CPU ops and the tiny U-Net against the golden files written by
// tests/reference/make_golden.py (PyTorch 2.15, CPU, float32; format in reference/golden.h).
//
// Each comparison passes when |got - ref| <= tol + |ref| * rel for every element, and prints
// the max abs diff and the % of that budget used. Tolerances are stated where they are
// used. Common ground: float32 rounds each operation to eps = 2^-24 ~ 6e-8 (relative), and a
// sum of n terms accumulated in another order differs by about sqrt(n)*eps (typical) up to
// n*eps (worst case) of sum|terms|. Tolerances that scale with a tensor's magnitude use
// "scale" = max|ref| of that tensor, so one bound serves gradients of 1e-7 and of 60.
// make_golden.py prints PyTorch's own float32-vs-float64 noise per tensor: every tolerance
// below is at least 10x that noise, and far below what an indexing or formula bug gives.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "cuseg/engine/context.h"
#include "cuseg/engine/ops.h"
#include "cuseg/engine/optim.h"
#include "cuseg/engine/param.h"
#include "cuseg/engine/tensor.h"
#include "cuseg/model/unet3d.h"
#include "reference/golden.h"

using namespace cuseg;
using golden::compare;
using golden::GoldenFile;
using golden::GoldenTensor;

namespace {

std::string ref_path(const std::string& file) {
  return std::string(CUSEG_SOURCE_DIR) + "/tests/reference/" + file;
}

const GoldenFile& load(const std::string& file) {
  static std::map<std::string, GoldenFile> cache;
  auto it = cache.find(file);
  if (it == cache.end()) it = cache.emplace(file, golden::load_golden(ref_path(file))).first;
  return it->second;
}

// A CPU float32 tensor holding a float32 reference.
Tensor tensor_of(const GoldenTensor& r) {
  if (r.f.empty() && r.numel() > 0)
    throw std::runtime_error("golden tensor " + r.name + " is not float32");
  Tensor t = Tensor::empty(r.shape, DType::F32, Device::CPU);
  if (r.numel()) std::memcpy(t.f32(), r.f.data(), r.f.size() * sizeof(float));
  return t;
}

// Labels (int64 in the file) as the engine's uint8 label tensor.
Tensor labels_of(const GoldenTensor& r) {
  if (r.i.empty()) throw std::runtime_error("golden tensor " + r.name + " is not int64");
  Tensor t = Tensor::empty(r.shape, DType::U8, Device::CPU);
  uint8_t* p = t.data<uint8_t>();
  for (size_t k = 0; k < r.i.size(); ++k) p[k] = uint8_t(r.i[k]);
  return t;
}

// The elements of a (possibly batch-strided) CPU float tensor, packed.
std::vector<float> values(const Tensor& t) {
  Tensor c = t;
  if (!t.is_contiguous()) {
    c = Tensor::empty(t.shape(), t.dtype(), Device::CPU);
    c.copy_from(t);
  }
  return std::vector<float>(c.f32(), c.f32() + c.numel());
}

// A tensor of the given shape filled with a sentinel, to prove an op overwrites it.
Tensor garbage(const Shape& s, float v = 12345.f) {
  Tensor t = Tensor::empty(s, DType::F32, Device::CPU);
  t.fill(v);
  return t;
}

// A reference tensor transformed element-wise (e.g. relu of the reference output).
GoldenTensor mapped(const GoldenTensor& r, const std::string& name, float (*fn)(float)) {
  GoldenTensor t = r;
  t.name = name;
  for (float& v : t.f) v = fn(v);
  return t;
}

double scale(const GoldenTensor& r) {
  return golden::max_abs(r);
}

// ------------------------------------------------------------------------------ tolerances
// Conv3d: each output sums Cin*k^3 = 81 (k3) products, gw sums N*D*H*W = 420, gx sums
// Cout*k^3 = 108; the engine uses im2col + GEMM (blocked order) vs PyTorch's own order.
// sqrt(420)*eps ~ 1.2e-6; worst case 420*eps ~ 2.5e-5 of sum|terms|. PyTorch's own f32
// noise: <= 5.5e-7 of scale (k3.gw). Budget: 1e-5 of scale + 1e-5 relative.
constexpr double kConvTol = 1e-5, kConvRel = 1e-5;
// Upsample: forward = 8 corner terms with weights products of {0.25, 0.75} (exact), gx
// gathers up to 4^3 = 64 terms; worst case 64*eps ~ 4e-6 of sum|terms| (sum|terms| is
// ~2x scale for random inputs). PyTorch's own noise: 1.8e-7 of scale.
constexpr double kUpTol = 1e-5, kUpRel = 1e-6;
// Cross-entropy: the engine accumulates the loss in double; PyTorch's float32 loss carries
// ~1e-7 relative error. The gradient is w[y] (softmax - onehot) / sum w per element (a
// handful of roundings, ~5 eps relative) except where softmax ~ 1 cancels against the
// one-hot: there the error is absolute, ~eps * w[y] / sum w ~ 3e-10 here, covered by the
// 1e-6-of-scale term (4e-9).
constexpr double kLossRel = 1e-6;
constexpr double kCeGradTol = 1e-6, kCeGradRel = 1e-5;
// Adam: a few roundings per step on the update (~lr * few eps) plus the param's own
// rounding (1 ulp of |p| <= 2.4e-7 at |p| ~ 2.8) per step, 5 steps: a few ulps of |p|.
// PyTorch's own noise after 5 steps: 3.3e-7 absolute. Budget 1e-8 + 2e-6 |p| (~16 ulps).
constexpr double kAdamTol = 1e-8, kAdamRel = 2e-6;
// Tiny U-Net: 15 convolutions (sums of up to 48*27 = 1296 terms, sqrt(1296)*eps ~ 2e-6
// each) compound through the depth, plus pooling/upsampling; gradients go back through the
// same chain. PyTorch's own noise: 6e-8 of scale (logits), 3e-7 of scale (worst gradient,
// layer3.step.0.weight). Budget 1e-4 of scale + 1e-4 relative for logits and gradients
// (an off-by-one or wrong weight gives errors of order 1e-1 .. 1 of scale).
constexpr double kNetTol = 1e-4, kNetRel = 1e-4;
// Loss of the network: the logits' relative error (<= ~1e-5 typical) enters the loss
// linearly and averages over 4096 voxels.
constexpr double kNetLossRel = 1e-5;
// Adam on the network: Adam divides each gradient by its own running rms, so a gradient's
// relative error (<= 1e-4, above) moves an update of size <= lr = 1e-3 by <= 1e-7; 5 steps
// <= 5e-7, plus a few ulps of |p| (|p| < 0.5): budget 1e-6 + 1e-5 |p|. Near-zero gradients
// (|g| ~ eps_adam = 1e-8) are damped by eps, not amplified. The losses 1..4 follow from
// those parameters: relative 1e-5 like the first.
constexpr double kNetAdamTol = 1e-6, kNetAdamRel = 1e-5;

float relu_f(float v) {
  return v > 0.f ? v : 0.f;
}

}  // namespace

// ------------------------------------------------------------------------------ the files
TEST(golden_file, AllFilesLoadWithExpectedTensors) {
  const std::vector<std::pair<std::string, std::vector<std::string>>> expect = {
      {"conv3d.bin",
       {"k3.x", "k3.weight", "k3.bias", "k3.y", "k3.gy", "k3.gx", "k3.gw", "k3.gb", "k1.x",
        "k1.weight", "k1.bias", "k1.y", "k1.gy", "k1.gx", "k1.gw", "k1.gb"}},
      {"relu.bin", {"x", "y", "gy", "gx"}},
      {"maxpool3d.bin", {"rand.x", "rand.gx", "ties.x", "ties.gx", "const.x", "const.gx"}},
      {"upsample.bin", {"x", "y", "gy", "gx"}},
      {"cross_entropy.bin", {"weight", "logits", "labels", "loss", "grad", "big.loss"}},
      {"adam.bin", {"lr", "param0", "grad1", "param1", "grad5", "param5"}},
      {"unet_tiny.bin",
       {"config.filters", "x", "labels", "logits", "loss", "adam_losses", "layer1.step.0.weight",
        "grad.layer8.bias", "b2.logits", "after5.layer8.weight"}},
  };
  for (const auto& [file, names] : expect) {
    const GoldenFile& g = load(file);
    for (const auto& n : names) EXPECT_TRUE(g.count(n)) << file << " lacks " << n;
  }
  EXPECT_EQ(golden::get(load("conv3d.bin"), "k3.weight").shape,
            (std::vector<int64_t>{4, 3, 3, 3, 3}));
  EXPECT_EQ(golden::get(load("unet_tiny.bin"), "labels").i.size(), size_t(16 * 16 * 16));
}

TEST(golden_file, MalformedFilesAreRejectedWithThePath) {
  std::ifstream in(ref_path("adam.bin"), std::ios::binary);
  const std::string good((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_GT(good.size(), 64u);
  const std::string dir = ::testing::TempDir();
  auto expect_reject = [&](const std::string& tag, const std::string& bytes,
                           const std::string& why) {
    const std::string path = dir + "golden_bad_" + tag + ".bin";
    { std::ofstream(path, std::ios::binary) << bytes; }
    try {
      golden::load_golden(path);
      ADD_FAILURE() << tag << ": accepted";
    } catch (const std::runtime_error& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find(path), std::string::npos) << tag << ": " << msg;
      EXPECT_NE(msg.find(why), std::string::npos) << tag << ": " << msg;
    }
  };
  expect_reject("truncated", good.substr(0, good.size() - 3), "truncated");
  expect_reject("header_only", good.substr(0, 10), "truncated");
  expect_reject("trailing", good + "x", "trailing");
  std::string magic = good;
  magic[0] = 'X';
  expect_reject("magic", magic, "magic");
  std::string version = good;
  version[8] = 2;
  expect_reject("version", version, "version");
  std::string dtype = good;  // first record: name_len at 16, name at 20
  uint32_t name_len;
  std::memcpy(&name_len, &good[16], 4);
  dtype[20 + name_len] = 7;
  expect_reject("dtype", dtype, "dtype");
  EXPECT_THROW(golden::load_golden(dir + "golden_does_not_exist.bin"), std::runtime_error);
}

// ------------------------------------------------------------------------------ ops
class golden_ops : public ::testing::Test {
 protected:
  Context ctx{Device::CPU};
};

TEST_F(golden_ops, Conv3d) {
  const GoldenFile& g = load("conv3d.bin");
  for (const std::string k : {"k3.", "k1."}) {
    const auto &rx = golden::get(g, k + "x"), &rw = golden::get(g, k + "weight"),
               &rb = golden::get(g, k + "bias"), &ry = golden::get(g, k + "y"),
               &rgy = golden::get(g, k + "gy"), &rgx = golden::get(g, k + "gx"),
               &rgw = golden::get(g, k + "gw"), &rgb = golden::get(g, k + "gb");
    Tensor x = tensor_of(rx), w = tensor_of(rw), b = tensor_of(rb), gy = tensor_of(rgy);

    Tensor y = garbage(ry.shape);
    conv3d_forward(ctx, x, w, b, y, /*relu=*/false);
    EXPECT_TRUE(compare("conv3d " + k + "y", values(y), ry, kConvTol * scale(ry), kConvRel));

    // Fused ReLU: relu(y) (relu(a) - relu(b) <= |a - b|, so the same budget holds).
    Tensor yr = garbage(ry.shape);
    conv3d_forward(ctx, x, w, b, yr, /*relu=*/true);
    EXPECT_TRUE(compare("conv3d " + k + "relu(y)", values(yr), mapped(ry, k + "relu_y", relu_f),
                        kConvTol * scale(ry), kConvRel));

    Tensor gx = garbage(rgx.shape), gw = Tensor::zeros(rgw.shape), gb = Tensor::zeros(rgb.shape);
    conv3d_backward(ctx, x, w, gy, gx, gw, gb);
    EXPECT_TRUE(compare("conv3d " + k + "gx", values(gx), rgx, kConvTol * scale(rgx), kConvRel));
    EXPECT_TRUE(compare("conv3d " + k + "gw", values(gw), rgw, kConvTol * scale(rgw), kConvRel));
    EXPECT_TRUE(compare("conv3d " + k + "gb", values(gb), rgb, kConvTol * scale(rgb), kConvRel));

    // Parameter gradients accumulate (+=): a second backward doubles them, gx is
    // overwritten (not doubled); an undefined gx is skipped.
    conv3d_backward(ctx, x, w, gy, Tensor(), gw, gb);
    GoldenTensor rgw2 = mapped(rgw, k + "2gw", [](float v) { return 2 * v; });
    GoldenTensor rgb2 = mapped(rgb, k + "2gb", [](float v) { return 2 * v; });
    EXPECT_TRUE(compare("conv3d " + k + "gw (2 backward)", values(gw), rgw2,
                        2 * kConvTol * scale(rgw), kConvRel));
    EXPECT_TRUE(compare("conv3d " + k + "gb (2 backward)", values(gb), rgb2,
                        2 * kConvTol * scale(rgb), kConvRel));
  }
}

TEST_F(golden_ops, Relu) {
  // Exact: a comparison and a select, no arithmetic. x holds exact zeros (gradient 0 there).
  const GoldenFile& g = load("relu.bin");
  const auto &ry = golden::get(g, "y"), &rgx = golden::get(g, "gx");
  Tensor y = tensor_of(golden::get(g, "x"));
  relu_forward(ctx, y);
  EXPECT_TRUE(compare("relu y", values(y), ry, 0, 0));
  Tensor gr = tensor_of(golden::get(g, "gy"));
  relu_backward(ctx, y, gr);
  EXPECT_TRUE(compare("relu gx", values(gr), rgx, 0, 0));
}

TEST_F(golden_ops, MaxPool3d) {
  // Exact: forward selects, backward routes (first maximum in d,h,w order on ties).
  const GoldenFile& g = load("maxpool3d.bin");
  for (const std::string c : {"rand.", "ties.", "const."}) {
    const auto &rx = golden::get(g, c + "x"), &ry = golden::get(g, c + "y"),
               &rgx = golden::get(g, c + "gx");
    Tensor x = tensor_of(rx);
    Tensor y = garbage(ry.shape);
    maxpool3d_forward(ctx, x, y);
    EXPECT_TRUE(compare("maxpool3d " + c + "y", values(y), ry, 0, 0));
    Tensor gx = garbage(rx.shape);
    maxpool3d_backward(ctx, x, y, tensor_of(golden::get(g, c + "gy")), gx);
    EXPECT_TRUE(compare("maxpool3d " + c + "gx", values(gx), rgx, 0, 0));
  }
}

TEST_F(golden_ops, Upsample2x) {
  const GoldenFile& g = load("upsample.bin");
  const auto &ry = golden::get(g, "y"), &rgx = golden::get(g, "gx");
  Tensor y = garbage(ry.shape);
  upsample2x_forward(ctx, tensor_of(golden::get(g, "x")), y);
  EXPECT_TRUE(compare("upsample y", values(y), ry, kUpTol * scale(ry), kUpRel));
  Tensor gx = garbage(rgx.shape);
  upsample2x_backward(ctx, tensor_of(golden::get(g, "gy")), gx);
  EXPECT_TRUE(compare("upsample gx", values(gx), rgx, kUpTol * scale(rgx), kUpRel));
}

// The same ops on channel slices of wider tensors (how the U-Net's zero-copy concat feeds
// them): same results, and the neighbouring channels are left alone.
TEST_F(golden_ops, ChannelSliceViews) {
  auto wide_of = [](const Shape& s, int64_t before, int64_t after) {
    Shape w = s;
    w[1] += before + after;
    Tensor t = garbage(w, -777.f);
    return std::make_pair(t, t.channel_slice(before, before + s[1]));
  };
  auto untouched = [](const Tensor& wide, int64_t c0, int64_t c1, const char* what) {
    const std::vector<float> v = values(wide);
    const int64_t N = wide.dim(0), C = wide.dim(1), S = wide.numel() / (N * C);
    int64_t bad = 0;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t c = 0; c < C; ++c)
        if (c < c0 || c >= c1)
          for (int64_t s = 0; s < S; ++s) bad += v[(n * C + c) * S + s] != -777.f;
    EXPECT_EQ(bad, 0) << what << ": " << bad << " values outside the slice were written";
  };

  {  // conv3d k3: x and y are slices; gx is a slice.
    const GoldenFile& g = load("conv3d.bin");
    const auto &rx = golden::get(g, "k3.x"), &ry = golden::get(g, "k3.y"),
               &rgx = golden::get(g, "k3.gx"), &rgw = golden::get(g, "k3.gw");
    auto [xw, x] = wide_of(rx.shape, 2, 1);
    x.copy_from(tensor_of(rx));
    auto [yw, y] = wide_of(ry.shape, 1, 3);
    Tensor w = tensor_of(golden::get(g, "k3.weight")), b = tensor_of(golden::get(g, "k3.bias"));
    conv3d_forward(ctx, x, w, b, y, false);
    EXPECT_TRUE(compare("slice conv3d k3.y", values(y), ry, kConvTol * scale(ry), kConvRel));
    untouched(yw, 1, 1 + ry.shape[1], "conv3d y");
    auto [gxw, gx] = wide_of(rgx.shape, 3, 2);
    Tensor gw = Tensor::zeros(rgw.shape), gb = Tensor::zeros({rgw.shape[0]});
    conv3d_backward(ctx, x, w, tensor_of(golden::get(g, "k3.gy")), gx, gw, gb);
    EXPECT_TRUE(compare("slice conv3d k3.gx", values(gx), rgx, kConvTol * scale(rgx), kConvRel));
    EXPECT_TRUE(compare("slice conv3d k3.gw", values(gw), rgw, kConvTol * scale(rgw), kConvRel));
    untouched(gxw, 3, 3 + rgx.shape[1], "conv3d gx");
  }
  {  // upsample: output into a slice (the decoder's concat buffer), gy read from a slice.
    const GoldenFile& g = load("upsample.bin");
    const auto &ry = golden::get(g, "y"), &rgy = golden::get(g, "gy"), &rgx = golden::get(g, "gx");
    auto [yw, y] = wide_of(ry.shape, 0, 2);
    upsample2x_forward(ctx, tensor_of(golden::get(g, "x")), y);
    EXPECT_TRUE(compare("slice upsample y", values(y), ry, kUpTol * scale(ry), kUpRel));
    untouched(yw, 0, ry.shape[1], "upsample y");
    auto [gyw, gy] = wide_of(rgy.shape, 0, 2);
    gy.copy_from(tensor_of(rgy));
    Tensor gx = garbage(rgx.shape);
    upsample2x_backward(ctx, gy, gx);
    EXPECT_TRUE(compare("slice upsample gx", values(gx), rgx, kUpTol * scale(rgx), kUpRel));
  }
  {  // maxpool: input is a skip tensor living in a concat buffer; gx is written into it.
    const GoldenFile& g = load("maxpool3d.bin");
    const auto &rx = golden::get(g, "ties.x"), &ry = golden::get(g, "ties.y"),
               &rgx = golden::get(g, "ties.gx");
    auto [xw, x] = wide_of(rx.shape, 2, 0);
    x.copy_from(tensor_of(rx));
    Tensor y = garbage(ry.shape);
    maxpool3d_forward(ctx, x, y);
    EXPECT_TRUE(compare("slice maxpool3d ties.y", values(y), ry, 0, 0));
    auto [gxw, gx] = wide_of(rx.shape, 1, 1);
    maxpool3d_backward(ctx, x, y, tensor_of(golden::get(g, "ties.gy")), gx);
    EXPECT_TRUE(compare("slice maxpool3d ties.gx", values(gx), rgx, 0, 0));
    untouched(gxw, 1, 1 + rx.shape[1], "maxpool3d gx");
  }
}

TEST_F(golden_ops, WeightedCrossEntropy) {
  const GoldenFile& g = load("cross_entropy.bin");
  const GoldenTensor& rw = golden::get(g, "weight");
  const std::vector<float> weights(rw.f.begin(), rw.f.end());
  ASSERT_EQ(weights, (std::vector<float>{1.f, 1.f, 3.f}));
  // "big.": logits x40 (|x| up to ~150). PyTorch's log_softmax is (x - max) - log(sum), so
  // softmax keeps full relative precision; forming lse = max + log(sum) first and then
  // exp(x - lse) rounds lse to ulp(|max|) (~4e-6 at 60) and loses (p - 1) for confident
  // voxels. This case pins the stable form.
  for (const std::string c : {"", "big."}) {
    const auto &rlogits = golden::get(g, c + "logits"), &rloss = golden::get(g, c + "loss"),
               &rgrad = golden::get(g, c + "grad");
    Tensor logits = tensor_of(rlogits), labels = labels_of(golden::get(g, c + "labels"));
    Tensor grad = garbage(rgrad.shape);
    const float loss = float(weighted_cross_entropy(ctx, logits, labels, weights, grad));
    EXPECT_TRUE(compare("cross_entropy " + c + "loss", &loss, 1, rloss, 0, kLossRel));
    EXPECT_TRUE(compare("cross_entropy " + c + "grad", values(grad), rgrad,
                        kCeGradTol * scale(rgrad), kCeGradRel));
    // Loss only (undefined grad) gives the same loss.
    const float loss_only = float(weighted_cross_entropy(ctx, logits, labels, weights, Tensor()));
    EXPECT_EQ(loss_only, loss) << c;
  }
}

TEST_F(golden_ops, Adam) {
  const GoldenFile& g = load("adam.bin");
  const double lr = golden::get(g, "lr").scalar();
  Param p{"p", tensor_of(golden::get(g, "param0")), Tensor()};
  p.grad = Tensor::zeros(p.value.shape());
  AdamConfig cfg;
  cfg.lr = float(lr);
  Adam opt({&p}, cfg);
  for (int k = 1; k <= 5; ++k) {
    p.grad.copy_from(tensor_of(golden::get(g, "grad" + std::to_string(k))));
    opt.step(ctx);
    EXPECT_EQ(opt.steps(), k);
    EXPECT_TRUE(compare("adam param after step " + std::to_string(k), values(p.value),
                        golden::get(g, "param" + std::to_string(k)), kAdamTol, kAdamRel));
  }
}

// ------------------------------------------------------------------------------ tiny U-Net
namespace {

struct TinyNet {
  const GoldenFile& g = load("unet_tiny.bin");
  UNetConfig cfg;
  std::unique_ptr<UNet3D> net;
  std::vector<float> weights;

  TinyNet() {
    const GoldenTensor& f = golden::get(g, "config.filters");
    cfg.filters.assign(f.i.begin(), f.i.end());
    cfg.in_channels = int(golden::get(g, "config.in_channels").scalar());
    cfg.classes = int(golden::get(g, "config.classes").scalar());
    net = std::make_unique<UNet3D>(cfg, Device::CPU, 1234);
    const GoldenTensor& cw = golden::get(g, "class_weights");
    weights.assign(cw.f.begin(), cw.f.end());
  }
  // Loads PyTorch's parameters by name; checks names, order and shapes match the module.
  void load_weights() {
    int64_t total = 0;
    for (Param* p : net->parameters()) {
      const GoldenTensor& r = golden::get(g, p->name);
      ASSERT_EQ(p->value.shape(), r.shape) << p->name;
      p->value.copy_from(tensor_of(r));
      total += r.numel();
    }
    EXPECT_EQ(total, net->num_parameters());
  }
  // Forward + weighted CE + backward on (x, labels); returns the loss.
  double step(Context& ctx, const Tensor& x, const Tensor& labels, Tensor logits_out) {
    net->zero_grad();
    const Tensor& logits = net->forward(ctx, x);
    Tensor grad = Tensor::empty(logits.shape());
    const double loss = weighted_cross_entropy(ctx, logits, labels, weights, grad);
    if (logits_out.defined()) logits_out.copy_from(logits);
    net->backward(ctx, grad);
    return loss;
  }
  void check(Context& ctx, const std::string& pre) {
    load_weights();
    const GoldenTensor& rlogits = golden::get(g, pre + "logits");
    Tensor logits = Tensor::empty(rlogits.shape);
    const float loss = float(step(ctx, tensor_of(golden::get(g, pre + "x")),
                                  labels_of(golden::get(g, pre + "labels")), logits));
    EXPECT_TRUE(compare("unet " + pre + "logits", values(logits), rlogits, kNetTol * scale(rlogits),
                        kNetRel));
    EXPECT_TRUE(
        compare("unet " + pre + "loss", &loss, 1, golden::get(g, pre + "loss"), 0, kNetLossRel));
    for (Param* p : net->parameters()) {
      const GoldenTensor& r = golden::get(g, pre + "grad." + p->name);
      EXPECT_TRUE(compare("unet " + pre + "grad." + p->name, values(p->grad), r, kNetTol * scale(r),
                          kNetRel));
    }
  }
};

}  // namespace

TEST(golden_unet, ParameterNamesOrderAndCount) {
  EXPECT_EQ(unet_parameter_count(UNetConfig{}), 5836099);
  TinyNet t;
  // Every "grad.<name>" in the file is a parameter of the module, in named_parameters order.
  std::vector<std::string> names;
  for (Param* p : t.net->parameters()) names.push_back(p->name);
  size_t in_file = 0;
  for (const auto& kv : t.g)
    if (kv.first.rfind("grad.", 0) == 0) ++in_file;
  EXPECT_EQ(names.size(), in_file);
  const std::vector<std::string> expect_head = {"layer1.step.0.weight", "layer1.step.0.bias",
                                                "layer1.step.2.weight", "layer1.step.2.bias",
                                                "layer2.step.0.weight"};
  ASSERT_GE(names.size(), expect_head.size());
  EXPECT_EQ(std::vector<std::string>(names.begin(), names.begin() + 5), expect_head);
  EXPECT_EQ(names.back(), "layer8.bias");
  t.load_weights();
  EXPECT_EQ(t.net->num_parameters(), unet_parameter_count(t.cfg));
}

TEST(golden_unet, ForwardBackwardBatch1) {
  Context ctx(Device::CPU);
  TinyNet t;
  t.check(ctx, "");
}

TEST(golden_unet, ForwardBackwardBatch2) {
  Context ctx(Device::CPU);
  TinyNet t;
  t.check(ctx, "b2.");
}

TEST(golden_unet, FiveAdamSteps) {
  Context ctx(Device::CPU);
  TinyNet t;
  t.load_weights();
  AdamConfig cfg;
  cfg.lr = float(golden::get(t.g, "lr").scalar());
  Adam opt(t.net->parameters(), cfg);
  Tensor x = tensor_of(golden::get(t.g, "x"));
  Tensor labels = labels_of(golden::get(t.g, "labels"));
  std::vector<float> losses;
  for (int k = 0; k < 5; ++k) {
    losses.push_back(float(t.step(ctx, x, labels, Tensor())));  // loss k before step k
    opt.step(ctx);
  }
  const GoldenTensor& ref = golden::get(t.g, "adam_losses");
  EXPECT_TRUE(compare("unet adam_losses", losses, ref, 0, kNetLossRel));
  int checked = 0;
  for (Param* p : t.net->parameters()) {
    auto it = t.g.find("after5." + p->name);
    if (it == t.g.end()) continue;
    ++checked;
    EXPECT_TRUE(
        compare("unet after5." + p->name, values(p->value), it->second, kNetAdamTol, kNetAdamRel));
  }
  EXPECT_GE(checked, 4);
}
