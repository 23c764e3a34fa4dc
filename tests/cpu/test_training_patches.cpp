// The trainer's patch source (pipeline/training_patches.h): config keys, pipeline choice, and
// the host path filling batch tensors reproducibly (seek = resume).
#include <gtest/gtest.h>

#include <cstring>

#include "cuseg/core/check.h"
#include "cuseg/pipeline/config.h"
#include "cuseg/pipeline/training_patches.h"
#include "patch_fixture.h"
#include "test_util.h"

using namespace cuseg;

TEST(TrainingPatches, ConfigKeysAreChecked) {
  const RunConfig d = parse_config("{}", "test.yaml");
  EXPECT_EQ(d.pipeline, "auto");
  EXPECT_EQ(d.storage, "i16");
  EXPECT_EQ(d.device_budget_mib, 0.0);
  const RunConfig c =
      parse_config("data: {pipeline: host, storage: f32, device_budget_mib: 512}", "test.yaml");
  EXPECT_EQ(c.pipeline, "host");
  EXPECT_EQ(c.storage, "f32");
  EXPECT_EQ(c.device_budget_mib, 512.0);
  const std::string e1 = error_message([] { parse_config("data: {pipeline: gpu}", "a.yaml"); });
  EXPECT_NE(e1.find("a.yaml"), std::string::npos) << e1;
  EXPECT_NE(e1.find("data.pipeline"), std::string::npos) << e1;
  const std::string e2 = error_message([] { parse_config("{}", "b.yaml", {"data.storage=f16"}); });
  EXPECT_NE(e2.find("data.storage"), std::string::npos) << e2;
  const std::string e3 =
      error_message([] { parse_config("data: {device_budget_mib: -1}", "c.yaml"); });
  EXPECT_NE(e3.find("data.device_budget_mib"), std::string::npos) << e3;
}

TEST(TrainingPatches, PipelineChoice) {
  RunConfig cfg = parse_config("{}", "test.yaml");
  EXPECT_FALSE(uses_device_pipeline(cfg, Device::CPU));
  EXPECT_TRUE(uses_device_pipeline(cfg, Device::CUDA));
  cfg.pipeline = "host";
  EXPECT_FALSE(uses_device_pipeline(cfg, Device::CUDA));
  cfg.pipeline = "device";
  const std::string e = error_message([&] { uses_device_pipeline(cfg, Device::CPU); });
  EXPECT_NE(e.find("data.pipeline"), std::string::npos) << e;
}

// Host pipeline into CPU batch tensors: a seek back to an earlier position (what --resume
// does) gives the same batches.
TEST(TrainingPatches, HostBatchesAndSeek) {
  RunConfig cfg = parse_config(
      "sampler: {patch: [16, 8, 8]}\nqueue: {max_length: 6, samples_per_volume: 3, "
      "num_workers: 2}\ntrain: {seed: 3}",
      "test.yaml");
  const data::PatchSpec spec = patch_spec(cfg);
  std::vector<std::shared_ptr<const data::PatchSubject>> subs;
  for (int s = 0; s < 3; ++s) {
    data::Image im;
    data::LabelMap lb;
    test::patch_test_volume({23, 21, 17}, 50 + uint64_t(s), &im, &lb);
    subs.push_back(std::make_shared<const data::PatchSubject>(
        data::make_patch_subject("s" + std::to_string(s), im, lb, spec)));
  }
  Context ctx(Device::CPU);
  TrainingPatches tp(cfg, ctx, 3, [&](int s) { return subs[size_t(s)]; });
  EXPECT_FALSE(tp.on_device());
  EXPECT_EQ(tp.patches_per_epoch(), 9);
  Tensor img = Tensor::empty({2, 1, 8, 8, 16});
  Tensor lab = Tensor::empty({2, 8, 8, 16}, DType::U8);
  std::vector<std::vector<float>> first;
  tp.seek(1, 0);
  for (int b = 0; b < 3; ++b) {
    tp.next(img, lab);
    first.emplace_back(img.f32(), img.f32() + img.numel());
  }
  tp.seek(1, 2);  // the second batch again
  tp.next(img, lab);
  EXPECT_EQ(first[1], std::vector<float>(img.f32(), img.f32() + img.numel()));
  tp.next(img, lab);
  EXPECT_EQ(first[2], std::vector<float>(img.f32(), img.f32() + img.numel()));
  EXPECT_NE(first[0], first[1]);
  Tensor wrong = Tensor::empty({2, 1, 8, 8, 15});
  EXPECT_THROW(tp.next(wrong, lab), Error);
}
