// safetensors checkpoints: read_safetensors on the weights file and the optimiser-state file,
// then load_checkpoint into a small U-Net with its Adam state (names, dtypes, shapes, the
// optimiser companion file and its "step"). Input: the weights file, optionally followed by
// kSeparator and the "<stem>.optim.safetensors" file.
#include "cuseg/engine/checkpoint.h"
#include "cuseg/engine/optim.h"
#include "cuseg/model/unet3d.h"
#include "fuzz_util.h"

using namespace cuseg_fuzz;

namespace {
// The network the seeds were written from (fuzz/make_corpus.cpp): 1 level, 2 filters.
struct Net {
  cuseg::UNet3D net{cuseg::UNetConfig{1, 3, {2}}, cuseg::Device::CPU, 0};
  cuseg::Adam adam{net.parameters(), cuseg::AdamConfig{}};
};
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Net* net = new Net;  // kept for the process (libFuzzer never returns from main)
  const auto parts = split(data, size, 2);
  const fs::path w = scratch() / "model.safetensors", o = scratch() / "model.optim.safetensors";
  write_file(w, parts[0]);
  std::error_code ec;
  fs::remove(o, ec);
  if (parts.size() > 1) write_file(o, parts[1]);
  expect_clean([&] {
    cuseg::Metadata meta;
    cuseg::read_safetensors(w.string(), &meta);
  });
  if (parts.size() > 1) expect_clean([&] { cuseg::read_safetensors(o.string()); });
  expect_clean([&] { cuseg::load_checkpoint(w.string(), net->net.parameters(), &net->adam); });
  return 0;
}
