// Checkpoints: safetensors round trip is bit-exact (weights and optimiser state), the
// stored layout is the PyTorch/torchio one (conv kernel spatial axes reversed), and
// truncated or corrupted files are rejected with an error naming the file.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>

#include "cuseg/core/check.h"
#include "cuseg/engine/checkpoint.h"
#include "cuseg/engine/ops.h"
#include "cuseg/model/unet3d.h"

using namespace cuseg;

namespace {

std::string tmp_path(const std::string& name) {
  return std::string(CUSEG_BINARY_DIR) + "/tests/ckpt_" + name;
}

std::string read_all(const std::string& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void write_all(const std::string& p, const std::string& s) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(s.data(), std::streamsize(s.size()));
}

bool bit_equal(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

// One training step so that weights, moments and step are all non-trivial.
void train_one_step(UNet3D& net, Adam& opt) {
  Context ctx(Device::CPU);
  std::mt19937 rng(5);
  Tensor x = Tensor::empty({1, 1, 8, 8, 8});
  for (int64_t i = 0; i < x.numel(); ++i) x.f32()[i] = float(rng() % 100) / 50.f - 1.f;
  Tensor lab = Tensor::empty({1, 8, 8, 8}, DType::U8);
  for (int64_t i = 0; i < lab.numel(); ++i) lab.data<uint8_t>()[i] = uint8_t(rng() % 3);
  const Tensor& lg = net.forward(ctx, x);
  Tensor g = Tensor::empty(lg.shape());
  weighted_cross_entropy(ctx, lg, lab, {1.f, 1.f, 3.f}, g);
  net.zero_grad();
  net.backward(ctx, g);
  opt.step(ctx);
}

}  // namespace

TEST(Checkpoint, RoundTripIsBitExactWithOptimizerState) {
  const UNetConfig cfg{1, 3, {4, 8}};
  UNet3D a(cfg, Device::CPU, 1);
  Adam oa(a.parameters(), AdamConfig{1e-3f});
  train_one_step(a, oa);
  const std::string p = tmp_path("roundtrip.safetensors");
  save_checkpoint(p, a.parameters(), {{"epoch", "3"}}, &oa);

  UNet3D b(cfg, Device::CPU, 2);  // different init
  Adam ob(b.parameters(), AdamConfig{1e-3f});
  Metadata m = load_checkpoint(p, b.parameters(), &ob);
  EXPECT_EQ(m["epoch"], "3");
  EXPECT_EQ(ob.steps(), 1);
  auto pa = a.parameters(), pb = b.parameters();
  for (size_t i = 0; i < pa.size(); ++i) {
    EXPECT_TRUE(bit_equal(pa[i]->value, pb[i]->value)) << pa[i]->name;
    EXPECT_TRUE(bit_equal(oa.exp_avg()[i], ob.exp_avg()[i])) << pa[i]->name;
    EXPECT_TRUE(bit_equal(oa.exp_avg_sq()[i], ob.exp_avg_sq()[i])) << pa[i]->name;
  }
  // Saving the loaded model again gives the same bytes.
  const std::string p2 = tmp_path("roundtrip2.safetensors");
  save_checkpoint(p2, b.parameters(), {{"epoch", "3"}}, &ob);
  EXPECT_EQ(read_all(p), read_all(p2));
  EXPECT_EQ(read_all(optimizer_state_path(p)), read_all(optimizer_state_path(p2)));
}

TEST(Checkpoint, StoresPyTorchNamesAndTorchioAxisOrder) {
  UNet3D net(UNetConfig{1, 3, {4, 8}}, Device::CPU, 3);
  const std::string p = tmp_path("layout.safetensors");
  save_checkpoint(p, net.parameters(), {});
  Metadata meta;
  auto ts = read_safetensors(p, &meta);
  EXPECT_EQ(meta["format"], "pt");
  std::map<std::string, Tensor> by;
  for (auto& t : ts) by[t.name] = t.tensor;
  ASSERT_TRUE(by.count("layer1.step.0.weight"));
  ASSERT_TRUE(by.count("layer3.step.2.bias"));
  ASSERT_TRUE(by.count("layer4.weight"));
  EXPECT_EQ(by.size(), net.parameters().size());
  // Stored [Co, Ci, a, b, c] = ours [Co, Ci, c, b, a] (D,H,W = K,J,I).
  const Tensor& ours = net.parameters()[0]->value;  // layer1.step.0.weight [4,1,3,3,3]
  const Tensor& st = by["layer1.step.0.weight"];
  for (int o = 0; o < 4; ++o)
    for (int a = 0; a < 3; ++a)
      for (int b = 0; b < 3; ++b)
        for (int c = 0; c < 3; ++c)
          ASSERT_EQ(st.f32()[((o * 3 + a) * 3 + b) * 3 + c],
                    ours.f32()[((o * 3 + c) * 3 + b) * 3 + a]);
}

TEST(Checkpoint, AtomicWriteLeavesNoTempFile) {
  UNet3D net(UNetConfig{1, 3, {4}}, Device::CPU, 3);
  const std::string p = tmp_path("atomic.safetensors");
  save_checkpoint(p, net.parameters(), {});
  const std::string dir = std::string(CUSEG_BINARY_DIR) + "/tests";
  // A write into a folder that does not exist fails cleanly and leaves the old file intact.
  EXPECT_THROW(save_checkpoint(dir + "/no/such/dir/x.safetensors", net.parameters(), {}), Error);
  std::ifstream probe(p + ".tmp");
  EXPECT_FALSE(probe.good());
}

TEST(Checkpoint, RejectsTruncatedAndCorruptedFiles) {
  UNet3D net(UNetConfig{1, 3, {4, 8}}, Device::CPU, 4);
  const std::string p = tmp_path("good.safetensors");
  save_checkpoint(p, net.parameters(), {});
  const std::string good = read_all(p);
  auto expect_rejected = [&](const std::string& bytes, const char* needle, const char* what) {
    const std::string q = tmp_path("bad.safetensors");
    write_all(q, bytes);
    try {
      load_checkpoint(q, net.parameters());
      ADD_FAILURE() << what << ": accepted";
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find(q), std::string::npos) << what << ": message lacks the path: " << msg;
      EXPECT_NE(msg.find(needle), std::string::npos) << what << ": " << msg;
    }
  };
  expect_rejected(good.substr(0, good.size() - 10), "truncated", "cut data");
  expect_rejected(good.substr(0, 5), "not a safetensors", "cut header length");
  expect_rejected(good.substr(0, 40), "exceeds the file", "cut header");
  std::string bad_json = good;
  bad_json[9] = '#';
  expect_rejected(bad_json, "not valid JSON", "corrupted header");
  expect_rejected(good + "xxxx", "trailing bytes", "extra bytes");
  // A checkpoint of another configuration.
  UNet3D other(UNetConfig{1, 3, {4, 6}}, Device::CPU, 4);
  save_checkpoint(tmp_path("other.safetensors"), other.parameters(), {});
  EXPECT_THROW(load_checkpoint(tmp_path("other.safetensors"), net.parameters()), Error);
  EXPECT_THROW(load_checkpoint(tmp_path("missing.safetensors"), net.parameters()), Error);
}

TEST(ParameterCount, ReferenceNetwork) {
  EXPECT_EQ(unet_parameter_count(UNetConfig{}), 5836099);
  UNet3D net(UNetConfig{}, Device::CPU, 0);
  int64_t n = 0;
  for (Param* p : net.parameters()) n += p->value.numel();
  EXPECT_EQ(n, 5836099);
  EXPECT_EQ(net.parameters().size(), 30u);
}

TEST(ParameterCount, ForwardBytesEstimateIsExact) {
  // unet_forward_bytes mirrors the buffer plan: it must equal what a forward-only call
  // planned (no gradient buffers until backward).
  const UNetConfig cfg{1, 3, {4, 8, 16}};
  UNet3D net(cfg, Device::CPU, 1);
  Context ctx(Device::CPU);
  const Shape in = {2, 1, 8, 12, 16};
  net.forward(ctx, Tensor::zeros(in));
  EXPECT_EQ(net.activation_bytes(), unet_forward_bytes(cfg, in));
  // Reference network, one 96^3 patch: 1 logits x 3 + level buffers, by hand:
  // l0 (96^3): 32 + 96 + 32 + 32 + pooled 32/8; l1 (48^3): 64 + 192 + 64 + 64 + 64/8;
  // l2 (24^3): 128 + 384 + 128 + 128 + 128/8; l3 (12^3): 2 * 256.
  const double v0 = 96.0 * 96 * 96, v1 = v0 / 8, v2 = v1 / 8, v3 = v2 / 8;
  const double floats = 3 * v0 + (192 + 4) * v0 + (384 + 8) * v1 + (768 + 16) * v2 + 512 * v3;
  EXPECT_EQ(double(unet_forward_bytes(UNetConfig{}, {1, 1, 96, 96, 96})), floats * 4);
}
