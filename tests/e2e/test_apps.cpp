// End to end: engine_train and engine_infer as a user runs them (subprocesses), on a tiny
// phantom config (train, interrupt, resume, infer), on the real CTs in tests/data (exact
// output geometry), and on bad inputs (clear message naming the file, non-zero exit, no
// partial output). Sized to run in about a minute on 2 CPU cores.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "cuseg/data/image.h"
#include "cuseg/pipeline/report.h"
#include "test_util.h"

namespace fs = std::filesystem;
using json = nlohmann::json;
using namespace cuseg;

namespace {

const std::string kBin = CUSEG_BINARY_DIR "/apps/";
const std::string kData = CUSEG_TEST_DATA_DIR;
// ctest runs each test of this file as its own process, possibly in parallel: every process
// works (and trains its tiny model, ~1 s) in its own folder.
const fs::path kWork = fs::path(CUSEG_BINARY_DIR) / "e2e_work" / ("pid" + std::to_string(getpid()));

using Result = CommandResult;
Result run(const std::string& cmd) {
  return run_command(cmd);
}

std::string write_file(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  std::ofstream(p) << text;
  return p.string();
}

std::string tiny_config() {
  TinyRunConfig c;
  c.phantom_dir = (kWork / "phantom").string();
  return write_tiny_run_config(kWork / "tiny.yaml", c);
}

std::map<int64_t, double> train_losses(const fs::path& metrics) {
  std::map<int64_t, double> m;
  std::ifstream f(metrics);
  for (std::string line; std::getline(f, line);) {
    const json j = json::parse(line);
    if (j["type"] == "train") m[j["step"].get<int64_t>()] = j["last_loss"].get<double>();
  }
  return m;
}

void expect_same_geometry(const std::string& mask, const std::string& input) {
  const data::FileInfo a = data::read_info(mask), b = data::read_info(input);
  EXPECT_EQ(a.geo.size, b.geo.size) << mask;
  std::string why;
  EXPECT_TRUE(data::same_grid(a.geo, b.geo, &why)) << mask << ": " << why;
  // Tolerance: NIfTI stores spacing/origin/direction as float32 (relative 6e-8); 1e-5 mm.
  for (int a_ = 0; a_ < 3; ++a_) {
    EXPECT_NEAR(a.geo.spacing[a_], b.geo.spacing[a_], 1e-5) << mask;
    EXPECT_NEAR(a.geo.origin[a_], b.geo.origin[a_], 1e-4) << mask;
  }
  for (int e = 0; e < 9; ++e) EXPECT_NEAR(a.geo.direction[e], b.geo.direction[e], 1e-6) << mask;
  EXPECT_EQ(a.component_type, "unsigned_char") << mask;
  const data::LabelMap m = data::read_label(mask);
  for (uint8_t v : m.v) ASSERT_LE(v, 2) << mask;
}

// Minimal NIfTI-1 writer for inputs ITK-based writers refuse to make (2-D, 4-D, NaN).
std::string write_raw_nifti(const fs::path& p, std::vector<int16_t> dims, std::vector<float> v) {
  char h[352] = {};
  int32_t i32 = 348;
  std::memcpy(h, &i32, 4);
  int16_t dim[8] = {int16_t(dims.size()), 1, 1, 1, 1, 1, 1, 1};
  for (size_t a = 0; a < dims.size(); ++a) dim[a + 1] = dims[a];
  std::memcpy(h + 40, dim, sizeof dim);
  const int16_t datatype = 16, bitpix = 32;  // float32
  std::memcpy(h + 70, &datatype, 2);
  std::memcpy(h + 72, &bitpix, 2);
  float pixdim[8] = {1, 1, 1, 1, 1, 1, 1, 1};
  std::memcpy(h + 76, pixdim, sizeof pixdim);
  const float vox_offset = 352;
  std::memcpy(h + 108, &vox_offset, 4);
  std::memcpy(h + 344, "n+1\0", 4);
  fs::create_directories(p.parent_path());
  std::ofstream f(p, std::ios::binary);
  f.write(h, sizeof h);
  f.write(reinterpret_cast<const char*>(v.data()), std::streamsize(v.size() * sizeof(float)));
  return p.string();
}

class Apps : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    std::error_code ec;
    fs::remove_all(kWork, ec);
    fs::create_directories(kWork);
    config_ = tiny_config();
    // Reference run: 2 epochs straight through.
    const Result r = run(kBin + "engine_train -c " + config_ + " -o " + (kWork / "runA").string());
    trained_ok_ = r.rc == 0;
    if (!trained_ok_) std::printf("%s\n", r.out.c_str());
  }
  static void TearDownTestSuite() {
    if (::testing::UnitTest::GetInstance()->Passed()) {
      std::error_code ec;
      fs::remove_all(kWork, ec);
    }
  }
  static std::string config_;
  static bool trained_ok_;
};
std::string Apps::config_;
bool Apps::trained_ok_ = false;

TEST_F(Apps, HelpListsEveryFlag) {
  const Result t = run(kBin + "engine_train --help");
  EXPECT_EQ(t.rc, 0);
  for (const char* f :
       {"--config", "--data", "--output", "--device", "--resume", "--seed", "--set"})
    EXPECT_NE(t.out.find(f), std::string::npos) << f;
  const Result i = run(kBin + "engine_infer --help");
  EXPECT_EQ(i.rc, 0);
  for (const char* f : {"--model", "--input", "--output", "--device", "--overlap", "--batch",
                        "--mode", "--preview", "--stats", "--ref"})
    EXPECT_NE(i.out.find(f), std::string::npos) << f;
}

TEST_F(Apps, TrainWritesRunFolder) {
  ASSERT_TRUE(trained_ok_);
  const fs::path a = kWork / "runA";
  for (const char* f : {"config.yaml", "train.log", "metrics.jsonl", "curves.svg", "splits.json",
                        "last.safetensors", "last.optim.safetensors", "best.safetensors"})
    EXPECT_TRUE(fs::exists(a / f)) << f;
  int pngs = 0;
  for (const auto& e : fs::directory_iterator(a / "previews")) {
    int w = 0, h = 0;
    EXPECT_TRUE(read_png_size(e.path().string(), &w, &h)) << e.path();
    pngs++;
  }
  EXPECT_EQ(pngs, 2);  // one per epoch
  // metrics.jsonl: per-step records and one epoch record per epoch with Dice per class.
  std::ifstream f(a / "metrics.jsonl");
  int epochs = 0;
  for (std::string line; std::getline(f, line);) {
    const json j = json::parse(line);
    for (const char* k : {"step", "epoch", "lr", "seconds", "peak_mib"}) EXPECT_TRUE(j.contains(k));
    if (j["type"] == "epoch") {
      ++epochs;
      EXPECT_TRUE(j["val_loss"].is_number());
      EXPECT_TRUE(j["dice"]["liver"].is_number());
      EXPECT_TRUE(j["dice"]["tumour"].is_number());
    }
  }
  EXPECT_EQ(epochs, 2);
  // A second run into the same folder must not silently destroy it.
  const Result again = run(kBin + "engine_train -c " + config_ + " -o " + a.string());
  EXPECT_NE(again.rc, 0);
  EXPECT_NE(again.out.find("--resume"), std::string::npos) << again.out;
}

TEST_F(Apps, ResumeContinuesTheSameLossCurve) {
  ASSERT_TRUE(trained_ok_);
  const fs::path b = kWork / "runB";
  // Interrupted mid-epoch 1 (as Ctrl-C would), then resumed to the end.
  const Result r1 =
      run(kBin + "engine_train -c " + config_ + " -o " + b.string() + " --stop-after-steps 3");
  ASSERT_EQ(r1.rc, 130) << r1.out;
  EXPECT_NE(r1.out.find("interrupted"), std::string::npos);
  const Result r2 = run(kBin + "engine_train --resume -o " + b.string());
  ASSERT_EQ(r2.rc, 0) << r2.out;
  const auto la = train_losses(kWork / "runA" / "metrics.jsonl");
  const auto lb = train_losses(b / "metrics.jsonl");
  ASSERT_EQ(la.size(), lb.size());
  ASSERT_GE(la.size(), 6u);
  // Same device, same thread count, same patch stream: the CPU backend is deterministic, so the
  // resumed losses equal the uninterrupted run's (1e-9 relative leaves room for printing only).
  for (const auto& kv : la) {
    ASSERT_TRUE(lb.count(kv.first)) << "step " << kv.first;
    EXPECT_NEAR(lb.at(kv.first), kv.second, 1e-9 * std::max(1.0, std::fabs(kv.second)))
        << "step " << kv.first;
  }
}

TEST_F(Apps, InferPhantomWithStatsPreviewAndRef) {
  ASSERT_TRUE(trained_ok_);
  const std::string in = (kWork / "phantom" / "imagesTr" / "liver_0.nii.gz").string();
  const std::string ref = (kWork / "phantom" / "labelsTr" / "liver_0.nii.gz").string();
  const fs::path o = kWork / "infer";
  const Result r =
      run(kBin + "engine_infer -m " + (kWork / "runA").string() + " -i " + in + " -o " +
          (o / "mask.nii.gz").string() + " --preview " + (o / "mask.png").string() + " --stats " +
          (o / "stats.json").string() + " --ref " + ref + " --mode average --overlap 8 --batch 3");
  ASSERT_EQ(r.rc, 0) << r.out;
  for (const char* stage : {"read", "preprocess", "network", "aggregate", "write"})
    EXPECT_NE(r.out.find(stage), std::string::npos) << stage;
  expect_same_geometry((o / "mask.nii.gz").string(), in);
  int w = 0, h = 0;
  EXPECT_TRUE(read_png_size((o / "mask.png").string(), &w, &h));
  EXPECT_GT(w, 0);
  const json s = json::parse(std::ifstream(o / "stats.json"));
  for (const char* k :
       {"liver_ml", "tumour_ml", "tumour_count", "seconds", "device", "peak_device_pool_mib"})
    EXPECT_TRUE(s.contains(k)) << k;
  const json sum = json::parse(std::ifstream(o / "mask_summary.json"));
  EXPECT_TRUE(sum["mean"]["liver"]["Dice"].is_number());
  EXPECT_TRUE(sum["metric_per_case"][0]["metrics"]["liver"].contains("HD95_mm"));
}

TEST_F(Apps, InferRealCTKeepsExactGeometry) {
  ASSERT_TRUE(trained_ok_);
  const fs::path o = kWork / "real";
  struct Case {
    std::string image, ref;
  };
  const std::vector<Case> cases = {
      // int32 CT, non-identity direction; its reference liver mask is stored as float64.
      {kData + "/realct/abdomen_ct_3mm.nii.gz", kData + "/realct/abdomen_ct_3mm_liver.nii.gz"},
      {kData + "/realct/abdomen_ct_3mm_30slices.nii.gz", ""},
      // float32 uncompressed NIfTI with float32 labels 0/1/2.
      {kData + "/lits64/liver_ct_64x64x33.nii", kData + "/lits64/liver_ct_64x64x33_labels.nii"}};
  for (const auto& c : cases) {
    const std::string out =
        (o / (fs::path(c.image).stem().stem().string() + "_mask.nii.gz")).string();
    const Result r = run(kBin + "engine_infer -m " + (kWork / "runA").string() + " -i " + c.image +
                         " -o " + out + " --overlap 0" + (c.ref.empty() ? "" : " --ref " + c.ref));
    ASSERT_EQ(r.rc, 0) << r.out;
    expect_same_geometry(out, c.image);
  }
  // NRRD output of a non-identity-direction case keeps it too.
  const std::string nrrd = (o / "abdomen30.nrrd").string();
  const Result r = run(kBin + "engine_infer -m " + (kWork / "runA" / "last.safetensors").string() +
                       " -i " + cases[1].image + " -o " + nrrd + " --overlap 0");
  ASSERT_EQ(r.rc, 0) << r.out;
  expect_same_geometry(nrrd, cases[1].image);
}

// The liver.yaml path: in-plane resample + CropOrPad, both undone at inference (a model
// stopped after one step is enough: only the geometry is checked).
TEST_F(Apps, ResampleAndCropAreUndoneOnRealCT) {
  ASSERT_TRUE(trained_ok_);
  const fs::path run_dir = kWork / "runR";
  const Result t = run(kBin + "engine_train -c " + config_ + " -o " + run_dir.string() +
                       " --set preprocess.resample_inplane=[40,40]" +
                       " --set preprocess.crop_or_pad=[40,40,32] --stop-after-steps 1");
  ASSERT_EQ(t.rc, 130) << t.out;
  for (const char* img : {"/realct/abdomen_ct_3mm.nii.gz", "/lits64/liver_ct_64x64x33.nii"}) {
    const std::string out =
        (kWork / "realR" / (fs::path(img).stem().stem().string() + ".nii.gz")).string();
    const Result r = run(kBin + "engine_infer -m " + (run_dir / "last.safetensors").string() +
                         " -i " + kData + img + " -o " + out);
    ASSERT_EQ(r.rc, 0) << r.out;
    expect_same_geometry(out, kData + img);
  }
}

// Every bad input: non-zero exit, a message naming the offending file, and no output file.
TEST_F(Apps, BadInputsFailClearlyWithoutPartialOutput) {
  ASSERT_TRUE(trained_ok_);
  const fs::path bad = kWork / "bad";
  const std::string model = (kWork / "runA").string();
  const std::string good = (kWork / "phantom" / "imagesTr" / "liver_1.nii.gz").string();
  const data::Image g = data::read_image(good);
  data::LabelMap out_of_range = data::LabelMap::make(g.geo, 0);
  out_of_range.v[17] = 7;
  data::write_label(out_of_range, (bad / "label7.nii.gz").string());
  data::Geometry small = g.geo;
  small.size = {20, 20, 10};
  data::write_label(data::LabelMap::make(small, 0), (bad / "label_small.nii.gz").string());
  std::vector<float> nan_vals(8 * 8 * 8, 0.f);
  nan_vals[5] = NAN;

  struct Bad {
    std::string name, input, ref, expect_in_message;
  };
  const std::vector<Bad> cases = {
      {"missing file", (bad / "nope.nii.gz").string(), "", "nope.nii.gz"},
      {"not an image", write_file(bad / "text.nii.gz", "this is not an image\n"), "",
       "text.nii.gz"},
      {"2-D", write_raw_nifti(bad / "flat2d.nii", {16, 16}, std::vector<float>(256, 0.f)), "",
       "flat2d.nii"},
      {"4-D", write_raw_nifti(bad / "time4d.nii", {8, 8, 8, 2}, std::vector<float>(1024, 0.f)), "",
       "time4d.nii"},
      {"NaN", write_raw_nifti(bad / "nan.nii", {8, 8, 8}, nan_vals), "", "nan.nii"},
      {"label out of range", good, (bad / "label7.nii.gz").string(), "label7.nii.gz"},
      {"size mismatch", good, (bad / "label_small.nii.gz").string(), "label_small.nii.gz"},
  };
  for (const auto& c : cases) {
    const fs::path out = bad / ("out_" + std::to_string(&c - cases.data()) + ".nii.gz");
    const Result r = run(kBin + "engine_infer -m " + model + " -i " + c.input + " -o " +
                         out.string() + (c.ref.empty() ? "" : " --ref " + c.ref));
    EXPECT_NE(r.rc, 0) << c.name << "\n" << r.out;
    EXPECT_NE(r.out.find(c.expect_in_message), std::string::npos) << c.name << "\n" << r.out;
    EXPECT_FALSE(fs::exists(out)) << c.name;
    for (const auto& e : fs::directory_iterator(bad))
      EXPECT_EQ(e.path().filename().string().rfind(".partial-", 0), std::string::npos)
          << c.name << ": left " << e.path();
  }

  // Configs: an unknown key and a wrong type name the key and the file; nothing is trained.
  const std::string unknown = write_file(bad / "unknown.yaml", "train:\n  lrr: 0.1\n");
  Result r = run(kBin + "engine_train -c " + unknown + " -o " + (bad / "run_unknown").string());
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.out.find("train.lrr"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("unknown.yaml"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(bad / "run_unknown" / "last.safetensors"));
  const std::string wrong = write_file(bad / "wrong.yaml", "train:\n  epochs: many\n");
  r = run(kBin + "engine_train -c " + wrong + " -o " + (bad / "run_wrong").string());
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.out.find("train.epochs"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("wrong.yaml"), std::string::npos) << r.out;
  r = run(kBin + "engine_train -c " + config_ + " -o " + (bad / "run_set").string() +
          " --set model.filterz=[4]");
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.out.find("model.filterz"), std::string::npos) << r.out;

  // A dataset whose label map holds an out-of-range value fails the integrity check, naming it.
  const fs::path ds = bad / "dataset";
  fs::create_directories(ds / "imagesTr");
  fs::create_directories(ds / "labelsTr");
  for (int c = 0; c < 3; ++c) {
    const std::string n = "liver_" + std::to_string(c) + ".nii.gz";
    fs::copy_file(kWork / "phantom" / "imagesTr" / n, ds / "imagesTr" / n);
    fs::copy_file(kWork / "phantom" / "labelsTr" / n, ds / "labelsTr" / n);
  }
  data::write_label(out_of_range, (ds / "labelsTr" / "liver_2.nii.gz").string());
  r = run(kBin + "engine_train -c " + config_ + " -d " + ds.string() + " -o " +
          (bad / "run_ds").string() + " --set data.phantom.generate=false");
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.out.find("liver_2.nii.gz"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(bad / "run_ds" / "last.safetensors"));
}

TEST_F(Apps, DicomSeriesInput) {
  ASSERT_TRUE(trained_ok_);
  const data::Image ct =
      data::read_image((kWork / "phantom" / "imagesTr" / "liver_4.nii.gz").string());
  const fs::path dir = kWork / "dicom_in";
  data::write_dicom_series(ct, dir.string());
  const std::string out = (kWork / "dicom_out" / "mask.nrrd").string();
  const Result r = run(kBin + "engine_infer -m " + (kWork / "runA").string() + " -i " +
                       dir.string() + " -o " + out);
  ASSERT_EQ(r.rc, 0) << r.out;
  const data::Image back = data::read_dicom_series(dir.string());
  const data::FileInfo m = data::read_info(out);
  EXPECT_EQ(m.geo.size, back.geo.size);
  std::string why;
  EXPECT_TRUE(data::same_grid(m.geo, back.geo, &why)) << why;
}

TEST_F(Apps, FolderInputSkipsABadCase) {
  ASSERT_TRUE(trained_ok_);
  const fs::path in = kWork / "folder_in";
  fs::create_directories(in);
  fs::copy_file(kWork / "phantom" / "imagesTr" / "liver_2.nii.gz", in / "case_a_0000.nii.gz");
  write_file(in / "case_b.nii.gz", "broken");
  const fs::path out = kWork / "folder_out";
  const Result r =
      run(kBin + "engine_infer -m " + (kWork / "runA").string() + " -i " + in.string() + " -o " +
          out.string() + " --stats " + (out / "stats.json").string() + " --preview " +
          (kWork / "folder_prev").string());
  EXPECT_EQ(r.rc, 3) << r.out;  // some cases failed
  EXPECT_NE(r.out.find("case_b.nii.gz"), std::string::npos) << r.out;
  expect_same_geometry((out / "case_a.nii.gz").string(), (in / "case_a_0000.nii.gz").string());
  EXPECT_FALSE(fs::exists(out / "case_b.nii.gz"));
  EXPECT_TRUE(fs::exists(kWork / "folder_prev" / "case_a.png"));
  const json s = json::parse(std::ifstream(out / "stats.json"));
  EXPECT_EQ(s["cases"].size(), 1u);
  EXPECT_EQ(s["skipped"], 1);
}

}  // namespace

TEST_F(Apps, MaxMemoryPicksWholeVolumeOrBatchOrRefuses) {
  ASSERT_TRUE(trained_ok_);
  const std::string in = (kWork / "phantom" / "imagesTr" / "liver_0.nii.gz").string();
  const fs::path o = kWork / "maxmem";
  // A generous budget: the whole volume in one pass, same geometry as the input.
  Result r = run(kBin + "engine_infer -m " + (kWork / "runA").string() + " -i " + in + " -o " +
                 (o / "whole.nii.gz").string() + " --max-memory 4096 --stats " +
                 (o / "whole.json").string());
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_NE(r.out.find("whole volume in one pass"), std::string::npos) << r.out;
  expect_same_geometry((o / "whole.nii.gz").string(), in);
  const json s = json::parse(std::ifstream(o / "whole.json"));
  EXPECT_TRUE(s["plan"]["whole_volume"].get<bool>());
  // The estimate (weights + planned activations + input + conv workspace at its cap) is an
  // upper bound of what the pool really held, and the budget bounds the estimate.
  const double est = s["plan"]["estimated_mib"].get<double>();
  EXPECT_LE(est, 4096.0);
  EXPECT_LE(s["peak_device_pool_mib"].get<double>(), est);
  // A budget below one patch: a clear error, non-zero exit, no mask file.
  r = run(kBin + "engine_infer -m " + (kWork / "runA").string() + " -i " + in + " -o " +
          (o / "tiny.nii.gz").string() + " --max-memory 1");
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.out.find("--max-memory"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(o / "tiny.nii.gz"));
}

// bf16 through the apps on the CPU (the bf16 oracle): train a 2-level net with filters 8, 16
// for two steps, infer with --precision bf16 under --max-memory (the whole volume fits; the
// pool's peak stays under the plan's own estimate, which is exact for the buffers it plans),
// and the clear errors: bf16 with filter counts that are not multiples of 8.
TEST_F(Apps, Bf16TrainInferAndMaxMemoryOnTheCpu) {
  ASSERT_TRUE(trained_ok_);
  const fs::path run_dir = kWork / "run_bf16";
  Result r = run(kBin + "engine_train -c " + config_ + " -o " + run_dir.string() +
                 " --precision bf16 --set model.filters=[8,16] --stop-after-steps 2");
  ASSERT_EQ(r.rc, 130) << r.out;  // stopped as by Ctrl-C, checkpoint saved
  EXPECT_NE(r.out.find("precision bf16"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("libraries: "), std::string::npos) << r.out;
  const std::string in = (kWork / "phantom" / "imagesTr" / "liver_0.nii.gz").string();
  const fs::path o = kWork / "bf16";
  r = run(kBin + "engine_infer -m " + run_dir.string() + " -i " + in + " -o " +
          (o / "mask.nii.gz").string() + " --precision bf16 --max-memory 4096 --stats " +
          (o / "stats.json").string());
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_NE(r.out.find("whole volume in one pass"), std::string::npos) << r.out;
  expect_same_geometry((o / "mask.nii.gz").string(), in);
  const json s = json::parse(std::ifstream(o / "stats.json"));
  EXPECT_EQ(s["precision"].get<std::string>(), "bf16");
  EXPECT_LE(s["peak_device_pool_mib"].get<double>(), s["plan"]["estimated_mib"].get<double>());
  // The fp32-trained 4,8 model cannot run in bf16: a clear error naming the rule, no mask.
  r = run(kBin + "engine_infer -m " + (kWork / "runA").string() + " -i " + in + " -o " +
          (o / "bad.nii.gz").string() + " --precision bf16");
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.out.find("multiple of 8"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(o / "bad.nii.gz"));
  r = run(kBin + "engine_train -c " + config_ + " -o " + (kWork / "run_bad").string() +
          " --precision bf16");
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.out.find("multiple of 8"), std::string::npos) << r.out;
  r = run(kBin + "engine_train -c " + config_ + " -o " + (kWork / "run_bad").string() +
          " --precision fp16");
  EXPECT_NE(r.rc, 0);
}
