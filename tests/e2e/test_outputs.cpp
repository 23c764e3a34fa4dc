// engine_infer's outputs beyond the mask, as a user runs them (subprocesses): the animated
// GIF preview, the statistics JSON, DICOM SEG output for a DICOM series input (read back
// with DCMTK: the same voxels and geometry as the NIfTI output), and the class probabilities
// with and without test-time mirroring (--probabilities, --tta), on a tiny phantom model.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "cuseg/data/dicom_seg.h"
#include "cuseg/data/image.h"
#include "cuseg/data/metrics.h"
#include "cuseg/engine/checkpoint.h"
#include "cuseg/pipeline/animation.h"
#include "cuseg/pipeline/gif.h"
#include "cuseg/pipeline/inference.h"
#include "test_util.h"

namespace fs = std::filesystem;
using json = nlohmann::json;
using namespace cuseg;

namespace {

const std::string kBin = CUSEG_BINARY_DIR "/apps/";
// Each test runs as its own process (ctest), possibly in parallel: a folder per process.
const fs::path kWork =
    fs::path(CUSEG_BINARY_DIR) / "e2e_outputs" / ("pid" + std::to_string(getpid()));

using Result = CommandResult;
Result run(const std::string& cmd) {
  return run_command(cmd);
}

class Outputs : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    std::error_code ec;
    fs::remove_all(kWork, ec);
    fs::create_directories(kWork);
    // The e2e tiny run (test_util.h), one epoch: the outputs' plumbing is under test, not
    // the model's quality.
    TinyRunConfig c;
    c.phantom_dir = (kWork / "phantom").string();
    c.phantom_seed = 5;
    c.epochs = 1;
    write_tiny_run_config(kWork / "tiny.yaml", c);
    const Result r = run(kBin + "engine_train -c " + (kWork / "tiny.yaml").string() + " -o " +
                         (kWork / "run").string());
    trained_ok_ = r.rc == 0;
    if (!trained_ok_) std::printf("%s\n", r.out.c_str());
  }
  static void TearDownTestSuite() {
    if (::testing::UnitTest::GetInstance()->Passed()) {
      std::error_code ec;
      fs::remove_all(kWork, ec);
    }
  }
  static std::string model() { return (kWork / "run").string(); }
  static std::string phantom_case(int n) {
    return (kWork / "phantom" / "imagesTr" / ("liver_" + std::to_string(n) + ".nii.gz")).string();
  }
  static bool trained_ok_;
};
bool Outputs::trained_ok_ = false;

}  // namespace

TEST_F(Outputs, GifPreviewHasEverySliceAndStatsMatchTheMask) {
  CUSEG_REQUIRE_FILE_IO();
  if (!CUSEG_HAVE_GIF) GTEST_SKIP() << "built without giflib";
  ASSERT_TRUE(trained_ok_);
  const fs::path o = kWork / "gif";
  const Result r = run(kBin + "engine_infer -m " + model() + " -i " + phantom_case(0) + " -o " +
                       (o / "mask.nii.gz").string() + " --preview " + (o / "mask.gif").string() +
                       " --stats " + (o / "stats.json").string());
  ASSERT_EQ(r.rc, 0) << r.out;
  const data::LabelMap mask = data::read_label((o / "mask.nii.gz").string());
  const DecodedGif g = read_gif((o / "mask.gif").string());
  EXPECT_EQ(int(g.frames.size()), mask.geo.size[2]);  // every axial slice (RAS k = file k)
  EXPECT_TRUE(g.loops);

  // Statistics, recomputed here from the written mask.
  const json s = json::parse(std::ifstream(o / "stats.json"));
  const double vml = mask.geo.voxel_ml();
  int64_t n[3] = {0, 0, 0};
  for (uint8_t v : mask.v) n[v]++;
  auto border = [&](int lo, int hi) {
    const auto& z = mask.geo.size;
    for (int k = 0; k < z[2]; ++k)
      for (int j = 0; j < z[1]; ++j)
        for (int i = 0; i < z[0]; ++i) {
          const bool edge =
              i == 0 || j == 0 || k == 0 || i == z[0] - 1 || j == z[1] - 1 || k == z[2] - 1;
          const int l = mask.at(i, j, k);
          if (edge && l >= lo && l <= hi) return true;
        }
    return false;
  };
  EXPECT_EQ(s["labels"]["1"]["voxels"].get<int64_t>(), n[1]);
  EXPECT_EQ(s["labels"]["2"]["voxels"].get<int64_t>(), n[2]);
  EXPECT_NEAR(s["labels"]["1"]["ml"].get<double>(), double(n[1]) * vml, 1e-9);
  EXPECT_NEAR(s["labels"]["2"]["ml"].get<double>(), double(n[2]) * vml, 1e-9);
  EXPECT_EQ(s["liver_voxels"].get<int64_t>(), n[1] + n[2]);  // LiTS: liver includes tumour
  EXPECT_NEAR(s["liver_ml"].get<double>(), double(n[1] + n[2]) * vml, 1e-9);
  const data::Mask tumour = data::tumour_mask(mask);
  const auto sizes = data::component_sizes(tumour, mask.geo);
  EXPECT_EQ(s["tumour_count"].get<int>(), int(sizes.size()));
  EXPECT_EQ(s["largest_lesion_voxels"].get<int64_t>(), sizes.empty() ? 0 : sizes.front());
  EXPECT_EQ(s["labels"]["1"]["touches_border"].get<bool>(), border(1, 1));
  EXPECT_EQ(s["labels"]["2"]["touches_border"].get<bool>(), border(2, 2));
  std::vector<std::string> incomplete;
  if (border(1, 2)) incomplete.push_back("liver");
  if (border(2, 2)) incomplete.push_back("tumour");
  EXPECT_EQ(s["touches_border"].get<std::vector<std::string>>(), incomplete);
  EXPECT_EQ(r.out.find("touches the image border") != std::string::npos, !incomplete.empty());
}

// engine_train writes the slice-by-slice GIF of the first validation case whenever the best
// checkpoint changes: RUN_DIR/best_<case>.gif, every slice of the (48x48x24) phantom.
TEST_F(Outputs, TrainingWritesTheBestCheckpointGif) {
  CUSEG_REQUIRE_FILE_IO();
  if (!CUSEG_HAVE_GIF) GTEST_SKIP() << "built without giflib";
  ASSERT_TRUE(trained_ok_);
  std::vector<fs::path> gifs;
  for (const auto& e : fs::directory_iterator(kWork / "run"))
    if (e.path().extension() == ".gif") gifs.push_back(e.path());
  ASSERT_EQ(gifs.size(), 1u);
  EXPECT_EQ(gifs[0].filename().string().rfind("best_liver_", 0), 0u) << gifs[0];
  const DecodedGif g = read_gif(gifs[0].string());
  EXPECT_EQ(g.frames.size(), 24u);
  EXPECT_TRUE(g.loops);
}

TEST_F(Outputs, BadPreviewNameIsAClearError) {
  ASSERT_TRUE(trained_ok_);
  const fs::path o = kWork / "badprev";
  const Result r = run(kBin + "engine_infer -m " + model() + " -i " + phantom_case(1) + " -o " +
                       (o / "mask.nii.gz").string() + " --preview " + (o / "mask.jpg").string());
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.out.find("mask.jpg"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(o / "mask.nii.gz"));
}

// DICOM series in: the SEG read back through DCMTK holds the NIfTI output's voxels on the
// NIfTI output's grid, referencing the input series.
TEST_F(Outputs, DicomSegMatchesTheNiftiOutput) {
  CUSEG_REQUIRE_FILE_IO();
  if (!CUSEG_HAVE_DCMTK) GTEST_SKIP() << "built without DCMTK";
  ASSERT_TRUE(trained_ok_);
  const fs::path o = kWork / "dicom";
  const fs::path series = o / "series";
  data::write_dicom_series(data::read_image(phantom_case(4)), series.string());
  const std::string nii = (o / "mask.nii.gz").string(), seg = (o / "seg.dcm").string();
  Result r = run(kBin + "engine_infer -m " + model() + " -i " + series.string() + " -o " + nii);
  ASSERT_EQ(r.rc, 0) << r.out;
  r = run(kBin + "engine_infer -m " + model() + " -i " + series.string() + " -o " + seg +
          " --output-type dicom-seg");
  ASSERT_EQ(r.rc, 0) << r.out;
  const data::LabelMap mask = data::read_label(nii);
  const data::DicomSegContents c = data::read_dicom_seg(seg);
  ASSERT_EQ(c.labels.geo.size, mask.geo.size);
  EXPECT_TRUE(c.labels.v == mask.v);
  // NIfTI stores the grid in float32 (relative 6e-8), the SEG in decimal text: 1e-4 mm / 1e-6.
  for (int a = 0; a < 3; ++a) {
    EXPECT_NEAR(c.labels.geo.spacing[size_t(a)], mask.geo.spacing[size_t(a)], 1e-5);
    EXPECT_NEAR(c.labels.geo.origin[size_t(a)], mask.geo.origin[size_t(a)], 1e-4);
  }
  for (int e = 0; e < 9; ++e)
    EXPECT_NEAR(c.labels.geo.direction[size_t(e)], mask.geo.direction[size_t(e)], 1e-6);
  const data::DicomSeriesInfo src = data::dicom_series_info(series.string());
  EXPECT_EQ(c.referenced_series_uid, src.series_instance_uid);
  EXPECT_EQ(c.study_instance_uid, src.study_instance_uid);
  EXPECT_EQ(c.frame_of_reference_uid, src.frame_of_reference_uid);
  EXPECT_EQ(c.source_instance_per_slice, src.instance_per_slice);
  ASSERT_EQ(c.segments.size(), 2u);
  EXPECT_EQ(c.segments[0].type.value, "10200004");
  EXPECT_EQ(c.segments[1].type.value, "108369006");
}

TEST_F(Outputs, DicomSegOfANonDicomInputIsAClearError) {
  ASSERT_TRUE(trained_ok_);
  const fs::path o = kWork / "segbad";
  const Result r = run(kBin + "engine_infer -m " + model() + " -i " + phantom_case(2) + " -o " +
                       (o / "seg.dcm").string() + " --output-type dicom-seg");
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.out.find("--output-type dicom-seg"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("liver_2.nii.gz"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("not a DICOM series"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(o / "seg.dcm"));
}

// The same SEG checked outside the product by scripts/check_dicom_seg.py (pydicom, highdicom,
// nibabel: not DCMTK, not ITK). Runs when the interpreter in CUSEG_PYTHON (default python3)
// has those packages; skipped otherwise (as in CI).
TEST_F(Outputs, DicomSegPassesTheIndependentPythonCheck) {
  CUSEG_REQUIRE_FILE_IO();
  if (!CUSEG_HAVE_DCMTK) GTEST_SKIP() << "built without DCMTK";
  const char* env = std::getenv("CUSEG_PYTHON");
  const std::string py = env && *env ? env : "python3";
  if (run(py + " -c 'import highdicom, pydicom, nibabel, numpy'").rc != 0)
    GTEST_SKIP() << py << " lacks highdicom / pydicom / nibabel (set CUSEG_PYTHON)";
  ASSERT_TRUE(trained_ok_);
  const fs::path o = kWork / "dicom_py";
  const fs::path series = o / "series";
  data::write_dicom_series(data::read_image(phantom_case(3)), series.string());
  const std::string nii = (o / "mask.nii.gz").string(), seg = (o / "seg.dcm").string();
  ASSERT_EQ(run(kBin + "engine_infer -m " + model() + " -i " + series.string() + " -o " + nii).rc,
            0);
  ASSERT_EQ(run(kBin + "engine_infer -m " + model() + " -i " + series.string() + " -o " + seg +
                " --output-type dicom-seg")
                .rc,
            0);
  const Result r = run(py + " " + CUSEG_SOURCE_DIR + "/scripts/check_dicom_seg.py " + seg + " " +
                       nii + " " + series.string());
  EXPECT_EQ(r.rc, 0) << r.out;
  EXPECT_NE(r.out.find("check_dicom_seg: passed"), std::string::npos) << r.out;
}

// --probabilities (with and without --tta) through the app: one 4-D NIfTI on the input's grid
// with one map per class, stored as uint8 q = round(255 p) (data::write_probabilities), so each
// value read back is within 1/510 of the float probability and the 3 classes sum to 1 within
// 3/510 (+ float rounding of the reader's scaling, 1e-6). The mask's class has the largest q
// at every voxel (rounding is monotone, and the mask is the argmax of the unquantised maps with
// --tta, of the logits without: softmax is monotone), so argmax(q) equals the mask except
// where two classes share the largest q (quantisation ties: counted, and must be rare).
// The phantom config does no resampling, so no interpolation is involved.
// The one-epoch phantom model predicts background nearly everywhere with nearly constant
// maps, which would make these checks weak; so the test runs a freshly initialised network of
// the same config (another seed, saved with the run's stored config as engine_train would),
// whose maps vary and whose mask holds all three classes.
TEST_F(Outputs, ProbabilitiesAreOnTheInputGridAndAgreeWithTheMask) {
  CUSEG_REQUIRE_FILE_IO();
  ASSERT_TRUE(trained_ok_);
  const fs::path o = kWork / "probs";
  fs::create_directories(o);
  const std::string untrained = (o / "untrained.safetensors").string();
  {
    const LoadedModel trained = load_model(model(), Device::CPU);
    UNet3D fresh(trained.cfg.model, Device::CPU, 12345);
    // PyTorch's default init leaves this tiny network's output nearly constant; weights 4x
    // larger make it depend on the image (a valid network all the same).
    for (Param* prm : fresh.parameters())
      for (int64_t i = 0; i < prm->value.numel(); ++i) prm->value.f32()[i] *= 4.f;
    save_checkpoint(untrained, fresh.parameters(), trained.meta);
  }
  const data::Image ct = data::read_image(phantom_case(5));
  std::vector<data::Image> maps[2];
  for (int tta = 0; tta < 2; ++tta) {
    const std::string tag = tta ? "tta" : "plain";
    const fs::path mask_path = o / (tag + "_mask.nii.gz"), prob_path = o / (tag + "_p.nii.gz"),
                   stats_path = o / (tag + "_stats.json");
    const Result r = run(kBin + "engine_infer -m " + untrained + " -i " + phantom_case(5) + " -o " +
                         mask_path.string() + " --probabilities " + prob_path.string() +
                         " --stats " + stats_path.string() + (tta ? " --tta --mode gaussian" : ""));
    ASSERT_EQ(r.rc, 0) << r.out;
    const data::FileInfo info = data::read_info(prob_path.string());
    EXPECT_EQ(info.dimensions, 4) << tag;
    EXPECT_EQ(info.extent,
              (std::vector<int64_t>{ct.geo.size[0], ct.geo.size[1], ct.geo.size[2], 3}))
        << tag;
    const data::LabelMap mask = data::read_label(mask_path.string());
    maps[tta] = data::read_probabilities(prob_path.string());
    const std::vector<data::Image>& p = maps[tta];
    ASSERT_EQ(p.size(), 3u);
    std::string why;
    EXPECT_TRUE(data::same_grid(p[0].geo, ct.geo, &why)) << tag << ": " << why;
    int64_t ties = 0, wrong = 0, bad_sum = 0, per_class[3] = {0, 0, 0};
    std::set<int> levels;  // distinct q of the liver class
    for (size_t v = 0; v < mask.v.size(); ++v) {
      int q[3], top = 0;
      for (int c = 0; c < 3; ++c) {
        q[c] = int(std::lround(double(p[size_t(c)].v[v]) * 255.0));
        top = std::max(top, q[c]);
      }
      bad_sum += !(std::fabs(double(p[0].v[v]) + p[1].v[v] + p[2].v[v] - 1.0) <= 3.0 / 510 + 1e-6);
      wrong += q[mask.v[v]] != top;
      ties += (q[0] == top) + (q[1] == top) + (q[2] == top) > 1;
      levels.insert(q[1]);
      ++per_class[mask.v[v]];
    }
    EXPECT_EQ(bad_sum, 0) << tag;
    EXPECT_EQ(wrong, 0) << tag << ": the mask's class does not hold the largest probability";
    EXPECT_LT(ties, int64_t(mask.v.size()) / 100) << tag << ": too many quantisation ties";
    // The checks above must compare varying maps and a mask with every class in it.
    EXPECT_GE(levels.size(), 10u) << tag << ": the liver map is (nearly) constant";
    for (int c = 0; c < 3; ++c) EXPECT_GT(per_class[c], 0) << tag << ": no voxel of class " << c;
    const json s = json::parse(std::ifstream(stats_path));
    EXPECT_EQ(s["plan"]["tta"].get<bool>(), bool(tta)) << tag;
    EXPECT_EQ(s["probabilities"].get<std::string>(), prob_path.string()) << tag;
  }
  // --tta changes the maps (8 mirrored passes of a network that is not mirror-symmetric).
  int64_t changed = 0;
  for (int c = 0; c < 3; ++c)
    for (size_t v = 0; v < maps[0][size_t(c)].v.size(); ++v)
      changed += maps[0][size_t(c)].v[v] != maps[1][size_t(c)].v[v];
  EXPECT_GT(changed, 0);
}

// Folder input: one <case>.nii.gz of probabilities per case in the --probabilities folder.
TEST_F(Outputs, ProbabilitiesForAFolderInput) {
  CUSEG_REQUIRE_FILE_IO();
  ASSERT_TRUE(trained_ok_);
  const fs::path o = kWork / "probs_folder";
  fs::create_directories(o / "in");
  fs::copy_file(phantom_case(1), o / "in" / "liver_1.nii.gz");
  const Result r = run(kBin + "engine_infer -m " + model() + " -i " + (o / "in").string() + " -o " +
                       (o / "masks").string() + " --tta --probabilities " + (o / "p").string());
  ASSERT_EQ(r.rc, 0) << r.out;
  const auto p = data::read_probabilities((o / "p" / "liver_1.nii.gz").string());
  const data::LabelMap mask = data::read_label((o / "masks" / "liver_1.nii.gz").string());
  ASSERT_EQ(p.size(), 3u);
  std::string why;
  EXPECT_TRUE(data::same_grid(p[0].geo, mask.geo, &why)) << why;
}

// A probabilities name that is not NIfTI is refused before any work, naming the flag and file.
TEST_F(Outputs, BadProbabilitiesNameIsAClearError) {
  ASSERT_TRUE(trained_ok_);
  const fs::path o = kWork / "badprob";
  const Result r =
      run(kBin + "engine_infer -m " + model() + " -i " + phantom_case(1) + " -o " +
          (o / "mask.nii.gz").string() + " --probabilities " + (o / "p.nrrd").string());
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.out.find("--probabilities"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("p.nrrd"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(o / "mask.nii.gz"));
  EXPECT_FALSE(fs::exists(o / "p.nrrd"));
}
