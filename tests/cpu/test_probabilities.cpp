// Class probabilities back on the input grid (pipeline/probabilities.h) through the exact
// inverse of the preprocessing, and their 4-D NIfTI file (data::write_probabilities).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "cuseg/core/check.h"
#include "cuseg/data/image.h"
#include "cuseg/pipeline/config.h"
#include "cuseg/pipeline/inference.h"
#include "cuseg/pipeline/probabilities.h"
#include "test_util.h"

namespace fs = std::filesystem;
using namespace cuseg;

namespace {

// An input that is not RAS ("PIR": every axis permuted and flipped) so reorientation is undone
// too, with a ramp of intensities.
data::Image input_image() {
  data::Geometry g;
  g.size = {23, 30, 17};
  g.spacing = {1.5, 2.0, 2.5};
  g.origin = {10.0, -20.0, 30.0};
  g.direction = {0, 0, -1, 1, 0, 0, 0, -1, 0};
  data::Image img = data::Image::make(g);
  for (size_t n = 0; n < img.v.size(); ++n) img.v[n] = float(n % 97) * 3.f - 100.f;
  return img;
}

RunConfig config(bool resample) {
  RunConfig cfg;
  cfg.resample_inplane = resample ? std::array<int, 2>{20, 26} : std::array<int, 2>{0, 0};
  cfg.crop_or_pad = {24, 18, 20};  // crops some axes, pads others
  return cfg;
}

// p0, p1, p2 on the model grid from one label map: one-hot softened to (0.8, 0.1, 0.1).
std::vector<data::Image> soft_one_hot(const data::LabelMap& m) {
  std::vector<data::Image> p(3, data::Image::make(m.geo, 0.1f));
  for (size_t n = 0; n < m.v.size(); ++n) p[m.v[n]].v[n] = 0.8f;
  return p;
}

// Whether world point w lies within the voxel centres of g (continuous index in
// [0, size - 1] on every axis; direction columns are orthonormal, so index = D^T (w - o) / s).
bool inside_centres(const data::Geometry& g, const std::array<double, 3>& w) {
  for (int a = 0; a < 3; ++a) {
    double t = 0;
    for (int r = 0; r < 3; ++r)
      t += g.direction[size_t(3 * r + a)] * (w[size_t(r)] - g.origin[size_t(r)]);
    t /= g.spacing[size_t(a)];
    if (t < -1e-9 || t > g.size[size_t(a)] - 1 + 1e-9) return false;
  }
  return true;
}

}  // namespace

// Without resampling every step is a permutation, crop or pad: argmax of the restored maps
// is the restored mask exactly, and the grid is the input's.
TEST(Probabilities, InverseWithoutResamplingMatchesTheMaskExactly) {
  const data::Image img = input_image();
  const RunConfig cfg = config(false);
  const data::Index3 patch{32, 32, 16};  // larger than the crop in two axes: padded to patch
  const Preprocessed pre = preprocess(cfg, img, nullptr, &patch);
  ASSERT_TRUE(pre.cropped);
  ASSERT_TRUE(pre.padded_to_patch);
  std::mt19937 rng(4);
  data::LabelMap model = data::LabelMap::make(pre.image.geo);
  for (auto& v : model.v) v = uint8_t(rng() % 3);
  const auto restored = restore_probabilities(pre, soft_one_hot(model));
  ASSERT_EQ(restored.size(), 3u);
  const data::LabelMap want = restore_geometry(pre, model);
  for (const auto& r : restored) {
    std::string why;
    EXPECT_TRUE(data::same_grid(r.geo, img.geo, &why)) << why;
    EXPECT_EQ(r.geo.direction, img.geo.direction);
    EXPECT_EQ(r.geo.origin, img.geo.origin);
  }
  EXPECT_TRUE(argmax_classes(restored).v == want.v);
  int64_t background_fill = 0;
  for (size_t n = 0; n < img.v.size(); ++n) {
    const float s = restored[0].v[n] + restored[1].v[n] + restored[2].v[n];
    ASSERT_NEAR(s, 1.f, 1e-6f);
    background_fill += restored[0].v[n] == 1.f;  // voxels cropped away: certain background
  }
  EXPECT_GT(background_fill, 0);
}

// With in-plane resampling the maps are interpolated linearly: a probability that is a
// linear function of the world position on the model grid comes back as the same function
// at the input's voxel centres (linear interpolation reproduces it exactly, up to float
// rounding: 1e-5), wherever the input voxel lies inside the model grid's voxel centres.
TEST(Probabilities, InverseWithResamplingIsLinearAndKeepsTheSum) {
  const data::Image img = input_image();
  const RunConfig cfg = config(true);
  const Preprocessed pre = preprocess(cfg, img, nullptr, nullptr);
  ASSERT_TRUE(pre.resampled);
  const data::Geometry& mg = pre.image.geo;
  // World-linear ramp along the model grid's first axis direction.
  const auto w0 = mg.world(0, 0, 0), w1 = mg.world(mg.size[0] - 1, 0, 0);
  std::array<double, 3> dir{w1[0] - w0[0], w1[1] - w0[1], w1[2] - w0[2]};
  const double len2 = dir[0] * dir[0] + dir[1] * dir[1] + dir[2] * dir[2];
  auto ramp = [&](const std::array<double, 3>& w) {
    const double t =
        ((w[0] - w0[0]) * dir[0] + (w[1] - w0[1]) * dir[1] + (w[2] - w0[2]) * dir[2]) / len2;
    return 0.2 + 0.6 * t;  // in [0.2, 0.8] over the model grid
  };
  std::vector<data::Image> p(3, data::Image::make(mg, 0.f));
  for (int k = 0; k < mg.size[2]; ++k)
    for (int j = 0; j < mg.size[1]; ++j)
      for (int i = 0; i < mg.size[0]; ++i) {
        const float v = float(ramp(mg.world(i, j, k)));
        p[1].at(i, j, k) = v;
        p[0].at(i, j, k) = 1.f - v;
      }
  const auto restored = restore_probabilities(pre, p);
  int64_t checked = 0;
  double worst = 0;
  for (int k = 0; k < img.geo.size[2]; ++k)
    for (int j = 0; j < img.geo.size[1]; ++j)
      for (int i = 0; i < img.geo.size[0]; ++i) {
        const size_t n = size_t(img.geo.index(i, j, k));
        const float s = restored[0].v[n] + restored[1].v[n] + restored[2].v[n];
        ASSERT_NEAR(s, 1.f, 1e-5f);
        ASSERT_GE(restored[1].v[n], 0.f);
        ASSERT_LE(restored[1].v[n], 1.f);
        const auto w = img.geo.world(i, j, k);
        const double r = ramp(w);
        if (inside_centres(mg, w)) {
          worst = std::max(worst, std::fabs(double(restored[1].v[n]) - r));
          ++checked;
        }
      }
  EXPECT_GT(checked, 100);
  EXPECT_LT(worst, 1e-5) << "over " << checked << " voxels";
}

TEST(Probabilities, NiftiFileIsScaledUint8On4Axes) {
  CUSEG_REQUIRE_FILE_IO();
  const data::Image img = input_image();
  std::vector<data::Image> p(3, data::Image::make(img.geo, 0.f));
  for (size_t n = 0; n < img.v.size(); ++n) {
    const float a = float(n % 101) / 100.f;
    p[0].v[n] = a, p[1].v[n] = (1 - a) * 0.25f, p[2].v[n] = (1 - a) * 0.75f;
  }
  const fs::path dir = scratch_dir("probabilities", "file");
  const std::string path = (dir / "p.nii.gz").string();
  data::write_probabilities(p, path);
  const data::FileInfo info = data::read_info(path);
  EXPECT_EQ(info.dimensions, 4);
  EXPECT_EQ(info.extent, (std::vector<int64_t>{23, 30, 17, 3}));
  // On disk: NIfTI-1 datatype 2 (DT_UINT8, byte 70) and scl_slope 1/255 (byte 112), read
  // from the raw header of an uncompressed copy (ITK reports rescaled files as float).
  {
    const std::string raw = (dir / "p.nii").string();
    data::write_probabilities(p, raw);
    std::ifstream f(raw, std::ios::binary);
    unsigned char h[348];
    ASSERT_TRUE(f.read(reinterpret_cast<char*>(h), sizeof h));
    int16_t datatype = 0;
    float slope = 0, inter = -1;
    std::memcpy(&datatype, h + 70, 2);
    std::memcpy(&slope, h + 112, 4);
    std::memcpy(&inter, h + 116, 4);
    EXPECT_EQ(datatype, 2);
    EXPECT_EQ(slope, 1.f / 255.f);
    EXPECT_EQ(inter, 0.f);
    EXPECT_EQ(fs::file_size(raw), 352u + 23u * 30u * 17u * 3u);  // header + 1 byte per value
  }
  const auto back = data::read_probabilities(path);
  ASSERT_EQ(back.size(), 3u);
  std::string why;
  EXPECT_TRUE(data::same_grid(back[0].geo, img.geo, &why)) << why;
  // uint8 steps of 1/255 (rounded): within half a step, plus float32 scaling.
  for (size_t c = 0; c < 3; ++c)
    for (size_t n = 0; n < img.v.size(); ++n)
      ASSERT_NEAR(back[c].v[n], p[c].v[n], 0.5 / 255 + 1e-6) << c << " " << n;
  EXPECT_THROW(data::write_probabilities(p, (dir / "p.nrrd").string()), Error);
  for (const auto& e : fs::directory_iterator(dir))  // no temporary left behind
    EXPECT_EQ(e.path().filename().string()[0] == '.', false) << e.path();
}
