// Files from outside that are not images (README "Reliability"): safetensors checkpoints and
// optimiser state, run configs, dataset.json. Nothing in them is trusted: sizes are bounded by
// the file before anything is allocated, config paths resolve against the config's folder, and
// every refusal is a cuseg::Error naming the file and what was expected.
#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>

#include "cuseg/core/check.h"
#include "cuseg/data/dataset.h"
#include "cuseg/engine/checkpoint.h"
#include "cuseg/engine/memory.h"
#include "cuseg/model/unet3d.h"
#include "cuseg/pipeline/config.h"
#include "test_util.h"

namespace fs = std::filesystem;
using namespace cuseg;

namespace {

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected a cuseg::Error, got another exception: " << e.what();
    return "";
  }
  ADD_FAILURE() << "expected a cuseg::Error";
  return "";
}

std::string write(const fs::path& p, const std::string& bytes) {
  fs::create_directories(p.parent_path());
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), std::streamsize(bytes.size()));
  return p.string();
}

// A safetensors file: 8-byte little-endian header length, the JSON header, the data bytes.
std::string safetensors(const std::string& header, const std::string& data, uint64_t hlen = 0) {
  if (!hlen) hlen = header.size();
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[size_t(i)] = char((hlen >> (8 * i)) & 0xff);
  return out + header + data;
}

void expect_refused(const std::function<void()>& fn, const std::string& path,
                    const std::string& expected) {
  const std::string msg = error_of(fn);
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  EXPECT_NE(msg.find(expected), std::string::npos) << "expected '" << expected << "' in: " << msg;
}

}  // namespace

// The header length and every tensor's extent are checked against the file size, with no
// overflow, before any tensor exists.
TEST(UntrustedFiles, SafetensorsSizesAreBoundedByTheFile) {
  const fs::path d = scratch_dir("untrusted", "safetensors");
  const std::string data(64, '\0');  // room for 16 floats
  auto refused = [&](const std::string& name, const std::string& bytes, const std::string& why) {
    const std::string p = write(d / name, bytes);
    expect_refused([&] { read_safetensors(p); }, p, why);
  };
  refused("hlen.safetensors", safetensors("{}", data, uint64_t(1) << 62), "exceeds the file");
  refused("extent.safetensors",
          safetensors(R"({"w":{"dtype":"F32","shape":[17],"data_offsets":[0,68]}})", data),
          "within 64 data bytes");
  // 2^32 x 2^32 floats: the product overflows 64 bits, and would wrap to 0 bytes.
  refused("overflow.safetensors",
          safetensors(
              R"({"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,0]}})", ""),
          "whose product is below 2^62");
  refused("negative.safetensors",
          safetensors(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[-16,0]}})", data),
          "bad safetensors entry for 'w'");
  refused("text_offsets.safetensors",
          safetensors(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":["0","16"]}})", data),
          "bad safetensors entry for 'w'");
  refused(
      "meta.safetensors",
      safetensors(
          R"({"__metadata__":[1,2],"w":{"dtype":"F32","shape":[16],"data_offsets":[0,64]}})", data),
      "__metadata__ is not a JSON object");
  fs::create_directories(d / "folder.safetensors");
  expect_refused([&] { read_safetensors((d / "folder.safetensors").string()); },
                 (d / "folder.safetensors").string(), "not a file");

  // 4096 entries that all claim the same 1 MiB: refused as overlapping before any of them is
  // allocated (4 GiB if they were); the CPU pool's peak does not move by even one of them.
  std::string h = "{";
  for (int i = 0; i < 4096; ++i)
    h += std::string(i ? "," : "") + "\"t" + std::to_string(i) +
         R"(":{"dtype":"U8","shape":[1048576],"data_offsets":[0,1048576]})";
  h += "}";
  const std::string p =
      write(d / "overlap.safetensors", safetensors(h, std::string(1 << 20, '\1')));
  memory_pool(Device::CPU).reset_peak();
  const size_t before = memory_pool(Device::CPU).stats().peak;
  expect_refused([&] { read_safetensors(p); }, p, "hole or overlap");
  EXPECT_LT(memory_pool(Device::CPU).stats().peak, before + (size_t(1) << 20));
}

// The optimiser companion file: float32 moments of the model's shapes and a whole-number step.
TEST(UntrustedFiles, OptimiserStateIsCheckedLikeTheWeights) {
  const fs::path d = scratch_dir("untrusted", "optim");
  UNet3D net(UNetConfig{1, 3, {2}}, Device::CPU, 0);
  Adam adam(net.parameters(), AdamConfig{});
  const std::string w = (d / "m.safetensors").string(), o = optimizer_state_path(w);
  save_checkpoint(w, net.parameters(), {}, &adam);
  std::ifstream in(o, std::ios::binary);
  const std::string good((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // "step":"0" -> "step":"x" (same length, so every offset stays valid).
  std::string bad_step = good;
  const size_t at = bad_step.find("\"step\":\"0\"");
  ASSERT_NE(at, std::string::npos);
  bad_step[at + 8] = 'x';
  write(o, bad_step);
  expect_refused([&] { load_checkpoint(w, net.parameters(), &adam); }, o,
                 "metadata 'step' is 'x', expected a whole number >= 0");
  // A moment stored as I32 (same size, other type): refused by dtype, not copied.
  std::string i32 = good;
  i32.replace(i32.find("\"F32\""), 5, "\"I32\"");
  write(o, i32);
  expect_refused([&] { load_checkpoint(w, net.parameters(), &adam); }, o, "expected float32");
}

// Relative paths in a config file are relative to the file's folder; --set values and stored
// configs are taken as they are; the resolved config holds the joined path and loads again.
TEST(UntrustedFiles, ConfigPathsResolveAgainstTheConfigFolder) {
  const fs::path d = scratch_dir("untrusted", "config");
  const std::string cfg = write(d / "configs" / "run.yaml", "data:\n  dir: ../datasets/liver\n");
  RunConfig r = load_config(cfg);
  EXPECT_EQ(r.data_dir, (d / "datasets" / "liver").string());
  const RunConfig again = parse_config(r.resolved_yaml, "stored");
  EXPECT_EQ(again.data_dir, r.data_dir);
  // Absolute stays; --set is relative to the working folder (a command-line value).
  write(d / "configs" / "abs.yaml", "data:\n  dir: /data/liver\n");
  EXPECT_EQ(load_config((d / "configs" / "abs.yaml").string()).data_dir, "/data/liver");
  r = load_config(cfg, {"data.dir=cli/liver"});
  EXPECT_EQ(r.data_dir, "cli/liver");
  // Not given in the file: the default, relative to the working folder.
  write(d / "configs" / "empty.yaml", "");
  EXPECT_EQ(load_config((d / "configs" / "empty.yaml").string()).data_dir, "data/Task03_Liver");
  // A config named without a folder resolves against ".".
  const fs::path cwd = fs::current_path();
  fs::current_path(d / "configs");
  EXPECT_EQ(load_config("run.yaml").data_dir, "../datasets/liver");
  fs::current_path(cwd);
}

TEST(UntrustedFiles, ConfigSyntaxErrorsNameTheFile) {
  const fs::path d = scratch_dir("untrusted", "config_bad");
  // A list as a key ("? [a, b]") is valid YAML but not a config key.
  std::string p = write(d / "complex_key.yaml", "train:\n  ? [a, b]\n  : 1\n");
  expect_refused([&] { load_config(p); }, p, "expected a plain name");
  // Nesting deeper than yaml-cpp's parser allows (its depth guard): an error, not a crash.
  p = write(d / "deep.yaml", std::string(5000, '[') + std::string(5000, ']'));
  expect_refused([&] { load_config(p); }, p, "not valid YAML");
  p = write(d / "top_list.yaml", "- 1\n- 2\n");
  expect_refused([&] { load_config(p); }, p, "expected a YAML mapping");
  expect_refused([&] { load_config(d.string()); }, d.string(), "cannot open the config file");
}

TEST(UntrustedFiles, DatasetJsonIsChecked) {
  const fs::path d = scratch_dir("untrusted", "dataset");
  auto refused = [&](const std::string& name, const std::string& json, const std::string& why) {
    const fs::path root = d / name;
    const std::string js = write(root / "dataset.json", json);
    fs::create_directories(root / "imagesTr");
    expect_refused([&] { data::discover(root.string()); }, js, why);
  };
  refused("ending", R"({"file_ending": 5})", "\"file_ending\" must be a string");
  refused("entry_type", R"({"training": [{"image": 1, "label": "./labelsTr/a.nii.gz"}]})",
          "needs \"image\" and \"label\" paths (strings)");
  refused("entry_kind", R"({"training": [3]})", "needs \"image\" and \"label\"");
  refused("twice",
          R"({"training": [{"image": "./imagesTr/a.nii.gz", "label": "./labelsTr/a.nii.gz"},
                           {"image": "./imagesTr/b.nii.gz", "label": "./labelsTr/a.nii.gz"}]})",
          "case 'a' appears twice");
  // imagesTr/labelsTr pairs: liver_1.nii next to liver_1.nii.gz gives one id twice.
  const fs::path pairs = d / "pairs";
  for (const char* f : {"imagesTr/liver_1.nii.gz", "labelsTr/liver_1.nii.gz",
                        "imagesTr/liver_1.nii", "labelsTr/liver_1.nii"})
    write(pairs / f, "");
  expect_refused([&] { data::discover(pairs.string()); }, pairs.string(),
                 "case 'liver_1' appears twice");
}

// Case ids come from file names, which may be any bytes; the split file is JSON (UTF-8 only).
// nlohmann's dump threw its own type_error naming no file (found by fuzz_dataset).
TEST(UntrustedFiles, SplitFileRefusesIdsThatAreNotUtf8) {
  const fs::path d = scratch_dir("untrusted", "split");
  const std::string p = (d / "splits.json").string();
  expect_refused(
      [&] {
        data::load_or_create_split(p, {"liver_1", "liver_\xf5x"}, 0.5, 0);
      },
      p, "not valid UTF-8");
  EXPECT_FALSE(fs::exists(p));
}
