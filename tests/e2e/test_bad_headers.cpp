// engine_infer against inputs whose headers lie (README "Reliability"): sizes beyond
// --max-memory or the machine, zero extents, zero or negative spacing, a non-orthonormal
// direction, 4-D and vector images, NaN/Inf voxels, a truncated file, a NIfTI twin. Each gives a
// non-zero exit, a message naming the file and what was expected, and no output file. The model
// is an untrained network saved as engine_train saves one (weights + resolved config): every
// input here is refused before the network runs, and one good input proves the model works.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "bad_files.h"
#include "cuseg/data/image.h"
#include "cuseg/engine/checkpoint.h"
#include "cuseg/model/unet3d.h"
#include "cuseg/pipeline/config.h"
#include "cuseg/pipeline/inference.h"
#include "test_util.h"

namespace fs = std::filesystem;
using namespace cuseg;
using namespace bad_files;

namespace {

const std::string kBin = CUSEG_BINARY_DIR "/apps/";

using Result = CommandResult;
Result run(const std::string& cmd) {
  return run_command(cmd);
}

}  // namespace

TEST(BadHeaders, EngineInferRefusesEachBeforeReadingTheVoxels) {
  CUSEG_REQUIRE_FILE_IO();
  const fs::path d = scratch_dir("bad_headers", "infer");
  // The model: a 1-level net with 8^3 patches, saved with its resolved config.
  const RunConfig cfg = parse_config(
      "sampler: {patch: [8, 8, 8]}\nmodel: {filters: [2]}\n"
      "preprocess: {resample_inplane: null, crop_or_pad: null}\n"
      "inference: {patch: [8, 8, 8], overlap: 2, batch: 2}\n",
      "test config");
  UNet3D net(cfg.model, Device::CPU, 0);
  const std::string model = (d / "model.safetensors").string();
  save_checkpoint(model, net.parameters(), {{kConfigKey, cfg.resolved_yaml}});

  // A good input runs: the refusals below are the inputs' doing.
  Mha good;
  good.payload = floats(48, -100.f);
  const std::string good_in = write(d / "good.mha", good.file());
  Result r = run(kBin + "engine_infer -m " + model + " -i " + good_in + " -o " +
                 (d / "good_mask.nii.gz").string() + " --device cpu");
  ASSERT_EQ(r.rc, 0) << r.out;

  std::vector<float> nonfinite(48, 10.f);
  nonfinite[5] = INFINITY;
  nonfinite[9] = NAN;
  const std::string phantom_cut = [&] {  // a real image file cut at 90 %
    data::Geometry g;
    g.size = {16, 16, 8};
    data::write_image(data::Image::make(g, 40.f), (d / "whole.nii.gz").string(),
                      data::PixelType::Int16);
    std::ifstream in(d / "whole.nii.gz", std::ios::binary);
    const std::string b((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    return write(d / "cut.nii.gz", b.substr(0, b.size() * 9 / 10));
  }();
  const std::string twin = [&] {  // twin.nii.gz with a twin.nii beside it
    data::Geometry g;
    g.size = {8, 8, 8};
    data::write_image(data::Image::make(g, 40.f), (d / "twin.nii.gz").string());
    data::write_image(data::Image::make(g, -40.f), (d / "twin.nii").string());
    return (d / "twin.nii.gz").string();
  }();

  struct Bad {
    std::string name, file, flags, expected;
  };
  std::vector<Bad> cases;
  {
    Nifti1 n;  // 64^3 float32 needs 4 MiB to read; the budget is 2 MiB
    n.dims = {64, 64, 64};
    n.payload = floats(64 * 64 * 64);
    cases.push_back(
        {"over --max-memory", write(d / "big.nii", n.file()), "--max-memory 2", "--max-memory"});
  }
  {
    Nifti1 n;
    n.dims = {32767, 32767, 32767};
    n.datatype = 4;
    n.bitpix = 16;
    cases.push_back(
        {"over the machine", write(d / "huge.nii", n.file()), "", "this machine's memory"});
  }
  {
    Nifti1 n;
    n.dims = {4, 0, 3};
    n.payload = floats(48);
    cases.push_back(
        {"zero extent", write(d / "zero_dim.nii", n.file()), "", "expected every extent >= 1"});
  }
  {
    Mha m;
    m.spacing = "0 1 2";
    m.payload = floats(48);
    cases.push_back({"zero spacing", write(d / "zero_spacing.mha", m.file()), "",
                     "expected finite spacings > 0"});
  }
  {
    Nifti1 n;
    n.spacing[2] = -2.f;
    n.payload = floats(48);
    cases.push_back({"negative spacing", write(d / "neg_spacing.nii", n.file()), "",
                     "expected a voxel spacing in (0, 1e6] mm"});
  }
  {
    Nrrd r_;
    r_.directions = "(1,0,0) (1,1,0) (0,0,2)";
    r_.payload = floats(48);
    cases.push_back({"skewed direction", write(d / "skew.nrrd", r_.file()), "", "not orthonormal"});
  }
  {
    cases.push_back(
        {"4-D", write(d / "time.mha", four_d_mha().file()), "", "expected a 3-D image"});
  }
  {
    cases.push_back(
        {"vector", write(d / "vector.nrrd", vector_nrrd().file()), "", "expected a scalar image"});
  }
  {
    Nrrd r_;
    r_.payload = bytes_of(nonfinite);
    cases.push_back({"Inf/NaN in NRRD", write(d / "inf.nrrd", r_.file()), "", "non-finite"});
    Nifti1 n;
    n.payload = bytes_of(nonfinite);
    cases.push_back({"Inf/NaN in NIfTI", write(d / "inf.nii", n.file()), "", "non-finite"});
  }
  cases.push_back({"truncated", phantom_cut, "", "truncated"});
  cases.push_back({"NIfTI twin", twin, "", "remove or rename"});

  for (size_t k = 0; k < cases.size(); ++k) {
    const Bad& c = cases[k];
    const fs::path out = d / "out" / ("mask_" + std::to_string(k) + ".nii.gz");
    r = run(kBin + "engine_infer -m " + model + " -i " + c.file + " -o " + out.string() +
            " --device cpu " + c.flags);
    EXPECT_EQ(r.rc, 1) << c.name << "\n" << r.out;
    EXPECT_NE(r.out.find(c.file), std::string::npos) << c.name << "\n" << r.out;
    EXPECT_NE(r.out.find(c.expected), std::string::npos) << c.name << "\n" << r.out;
    EXPECT_FALSE(fs::exists(out)) << c.name;
    if (fs::exists(out.parent_path()))
      for (const auto& e : fs::directory_iterator(out.parent_path()))
        ADD_FAILURE() << c.name << ": left " << e.path();
  }
}
