// Dataset discovery, splits, integrity check (one crafted file per problem), the cache and
// the phantom generator.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>

#include "cuseg/core/check.h"
#include "cuseg/data/dataset.h"
#include "cuseg/data/metrics.h"
#include "cuseg/data/phantom.h"
#include "test_util.h"

namespace fs = std::filesystem;
using namespace cuseg::data;

namespace {

fs::path tmp_dir(const std::string& name) {
  return scratch_dir("data_dataset", name);
}

Geometry small_geo() {
  Geometry g;
  g.size = {6, 5, 4};
  g.spacing = {1.5, 1.5, 3};
  g.origin = {10, 20, 30};
  g.direction = {-1, 0, 0, 0, -1, 0, 0, 0, 1};
  return g;
}

// Writes an image/label pair into a fresh Decathlon-style folder and returns its case.
CaseFiles write_case(const fs::path& dir, const Image& im, const LabelMap& lab) {
  fs::create_directories(dir / "imagesTr");
  fs::create_directories(dir / "labelsTr");
  CaseFiles c{"liver_0", (dir / "imagesTr" / "liver_0.nii.gz").string(),
              (dir / "labelsTr" / "liver_0.nii.gz").string()};
  write_image(im, c.image, PixelType::Float32);
  write_label(lab, c.label);
  return c;
}

bool has_problem(const std::vector<Problem>& ps, const std::string& file, const std::string& what) {
  for (const auto& p : ps)
    if (p.file == file && p.what.find(what) != std::string::npos) return true;
  return false;
}
std::string dump(const std::vector<Problem>& ps) {
  std::string s;
  for (const auto& p : ps) s += p.file + ": " + p.what + "\n";
  return s;
}

}  // namespace

TEST(DataDataset, DiscoverPairsWithoutDatasetJson) {
  CUSEG_REQUIRE_FILE_IO();
  const fs::path d = tmp_dir("pairs");
  fs::create_directories(d / "imagesTr");
  fs::create_directories(d / "labelsTr");
  Image im = Image::make(small_geo());
  LabelMap lab = LabelMap::make(small_geo());
  write_image(im, (d / "imagesTr" / "liver_10.nii.gz").string());
  write_label(lab, (d / "labelsTr" / "liver_10.nii.gz").string());
  write_image(im, (d / "imagesTr" / "liver_2_0000.nii.gz").string());  // nnU-Net naming
  write_label(lab, (d / "labelsTr" / "liver_2.nii.gz").string());
  write_image(im, (d / "imagesTr" / "liver_3.nii.gz").string());  // no label
  std::ofstream(d / "labelsTr" / "._liver_10.nii.gz") << "AppleDouble junk";
  std::ofstream(d / "imagesTr" / ".hidden.nii.gz") << "junk";
  const Dataset ds = discover(d.string());
  EXPECT_EQ(ds.source, "imagesTr/labelsTr pairs");
  ASSERT_EQ(ds.cases.size(), 2u);
  EXPECT_EQ(ds.cases[0].id, "liver_2");  // natural order
  EXPECT_NE(ds.cases[0].image.find("liver_2_0000.nii.gz"), std::string::npos);
  EXPECT_EQ(ds.cases[1].id, "liver_10");
  bool noted_unpaired = false, noted_hidden = false;
  for (const auto& n : ds.notes) {
    noted_unpaired |= n.find("liver_3.nii.gz has no label") != std::string::npos;
    noted_hidden |= n.find("._liver_10") != std::string::npos;
  }
  EXPECT_TRUE(noted_unpaired);
  EXPECT_TRUE(noted_hidden);
  EXPECT_TRUE(check_dataset(ds).empty()) << dump(check_dataset(ds));
}

TEST(DataDataset, SplitIsDeterministicAndReused) {
  std::vector<std::string> ids;
  for (int i = 0; i < 118; ++i) ids.push_back("liver_" + std::to_string(i));
  const Split a = make_split(ids, 0.11, 0), b = make_split(ids, 0.11, 0);
  EXPECT_EQ(a.train.size(), 105u);  // the reference split
  EXPECT_EQ(a.val.size(), 13u);
  EXPECT_EQ(a.val, b.val);
  EXPECT_NE(make_split(ids, 0.11, 1).val, a.val);
  const std::string f = (tmp_dir("split") / "splits.json").string();
  const Split w = load_or_create_split(f, ids, 0.11, 0);
  EXPECT_EQ(w.val, a.val);
  const Split r = load_or_create_split(f, ids, 0.5, 99);  // reused: fraction/seed ignored
  EXPECT_EQ(r.val, a.val);
  ids.push_back("liver_999");
  EXPECT_THROW(load_or_create_split(f, ids), cuseg::Error);  // dataset changed
}

// Every problem the integrity check names, each from a crafted file.
TEST(DataDataset, IntegrityCheckNamesEachProblem) {
  CUSEG_REQUIRE_FILE_IO();
  const Geometry g = small_geo();
  Image im = Image::make(g, 40.f);
  LabelMap lab = LabelMap::make(g, 1);
  {  // clean
    const CaseFiles c = write_case(tmp_dir("ok"), im, lab);
    EXPECT_TRUE(check_case(c).empty()) << dump(check_case(c));
  }
  {  // size mismatch
    LabelMap l2 = LabelMap::make([&] {
      Geometry h = g;
      h.size = {6, 5, 3};
      return h;
    }());
    const CaseFiles c = write_case(tmp_dir("size"), im, l2);
    EXPECT_TRUE(has_problem(check_case(c), c.label, "size 6x5x4 vs 6x5x3")) << dump(check_case(c));
  }
  {  // spacing / origin / direction mismatch
    for (int what = 0; what < 3; ++what) {
      LabelMap l2 = lab;
      if (what == 0) l2.geo.spacing[2] = 2.5;
      if (what == 1) l2.geo.origin[0] = 11;
      if (what == 2) l2.geo.direction = {1, 0, 0, 0, 1, 0, 0, 0, 1};
      const CaseFiles c = write_case(tmp_dir("geo" + std::to_string(what)), im, l2);
      const char* key[3] = {"spacing[2]", "origin[0]", "direction (RAS vs LPS"};
      EXPECT_TRUE(has_problem(check_case(c), c.label, key[what])) << dump(check_case(c));
    }
  }
  {  // label outside the classes
    LabelMap l2 = lab;
    l2.at(1, 1, 1) = 7;
    const CaseFiles c = write_case(tmp_dir("classes"), im, l2);
    EXPECT_TRUE(has_problem(check_case(c), c.label, "7 (1 voxels); expected class values 0..2"))
        << dump(check_case(c));
  }
  {  // non-integral label (float file)
    const fs::path d = tmp_dir("fraclabel");
    CaseFiles c = write_case(d, im, lab);
    Image fl = Image::make(g, 1.f);
    fl.at(2, 2, 2) = 0.5f;
    write_image(fl, c.label);
    EXPECT_TRUE(has_problem(check_case(c), c.label, "found 0.5 at voxel (2, 2, 2)"))
        << dump(check_case(c));
  }
  {  // NaN and Inf intensities in a MetaImage: ITK keeps them, the voxel check sees them.
    Image bad = im;
    bad.at(3, 0, 1) = std::numeric_limits<float>::quiet_NaN();
    bad.at(4, 0, 1) = std::numeric_limits<float>::infinity();
    CaseFiles c = write_case(tmp_dir("nan"), im, lab);
    c.image = (fs::path(c.image).parent_path() / "liver_0.mha").string();
    write_image(bad, c.image);
    EXPECT_TRUE(
        has_problem(check_case(c), c.image, "2 voxels are NaN or Inf (first at voxel (3, 0, 1))"))
        << dump(check_case(c));
  }
  {  // NaN in a compressed NIfTI image: ITK's reader hands back 0 there; read_image restores it
    // from the stored payload, and the integrity check names the file, the voxel and NaN.
    Image bad = im;
    bad.at(1, 2, 3) = std::numeric_limits<float>::quiet_NaN();
    bad.at(2, 2, 3) = -std::numeric_limits<float>::infinity();
    CaseFiles c = write_case(tmp_dir("nan_nii"), bad, lab);
    ASSERT_EQ(read_info(c.image).component_type, "float");
    EXPECT_TRUE(std::isnan(read_image(c.image).at(1, 2, 3)));
    EXPECT_TRUE(has_problem(check_case(c), c.image,
                            "2 voxels are NaN or Inf (first at voxel (1, 2, 3)); expected finite "
                            "intensities (1 NaN, 1 Inf)"))
        << dump(check_case(c));
  }
  {  // NaN in a float label map (uncompressed .nii): would read as background 0 otherwise.
    const fs::path d = tmp_dir("nan_label");
    CaseFiles c = write_case(d, im, lab);
    Image fl = Image::make(lab.geo, 1.f);
    fl.at(5, 4, 3) = std::numeric_limits<float>::quiet_NaN();
    c.label = (d / "labelsTr" / "liver_0.nii").string();
    write_image(fl, c.label);
    EXPECT_TRUE(has_problem(check_case(c), c.label,
                            "label maps must hold integer class values in [0, 255]; found nan at "
                            "voxel (5, 4, 3)"))
        << dump(check_case(c));
  }
  {  // Big-endian float64 NIfTI-1 with +Inf, hand-written: the payload check byte-swaps like
    // niftilib.
    const fs::path d = tmp_dir("inf_be");
    CaseFiles c = write_case(d, im, lab);
    c.image = (d / "imagesTr" / "big_endian.nii").string();
    const Geometry& g = im.geo;
    std::vector<unsigned char> h(352, 0);
    auto be = [](const void* v, size_t n, unsigned char* out) {  // big-endian bytes of v
      const auto* b = static_cast<const unsigned char*>(v);
      for (size_t q = 0; q < n; ++q) out[q] = b[n - 1 - q];
    };
    auto put = [&](size_t off, const void* v, size_t n) { be(v, n, h.data() + off); };
    const int32_t sz = 348;
    put(0, &sz, 4);
    const int16_t dims[8] = {3, int16_t(g.size[0]), int16_t(g.size[1]), int16_t(g.size[2]), 1, 1, 1,
                             1};
    for (int q = 0; q < 8; ++q) put(40 + 2 * size_t(q), &dims[q], 2);
    const int16_t dt = 64, bp = 64;
    put(70, &dt, 2);
    put(72, &bp, 2);
    const float pix[8] = {1, 1, 1, 1, 1, 1, 1, 1}, off = 352.f, slope = 1.f;
    for (int q = 0; q < 8; ++q) put(76 + 4 * size_t(q), &pix[q], 4);
    put(108, &off, 4);
    put(112, &slope, 4);
    std::memcpy(h.data() + 344, "n+1", 4);
    std::ofstream f(c.image, std::ios::binary);
    f.write(reinterpret_cast<const char*>(h.data()), 352);
    for (int64_t n = 0; n < g.numel(); ++n) {
      const double v = n == g.index(0, 1, 2) ? std::numeric_limits<double>::infinity() : 7.0;
      unsigned char b[8];
      be(&v, 8, b);
      f.write(reinterpret_cast<const char*>(b), 8);
    }
    f.close();
    const auto ps = check_case(c);
    EXPECT_TRUE(has_problem(ps, c.image, "1 voxels are NaN or Inf (first at voxel (0, 1, 2))"))
        << dump(ps);
    EXPECT_TRUE(has_problem(ps, c.image, "0 NaN, 1 Inf")) << dump(ps);
  }
  {  // 4-D image (hand-written NIfTI-1 header: dim = 4, 2x2x2x2 float32)
    const fs::path d = tmp_dir("fourd");
    CaseFiles c = write_case(d, im, lab);
    c.image = (d / "imagesTr" / "four_d.nii").string();
    char h[352] = {};
    int32_t sz = 348;
    std::memcpy(h, &sz, 4);
    const int16_t dims[8] = {4, 2, 2, 2, 2, 1, 1, 1}, dt = 16, bp = 32;
    std::memcpy(h + 40, dims, 16);
    std::memcpy(h + 70, &dt, 2);
    std::memcpy(h + 72, &bp, 2);
    const float pix[8] = {1, 1, 1, 1, 1, 1, 1, 1}, off = 352.f;
    std::memcpy(h + 76, pix, 32);
    std::memcpy(h + 108, &off, 4);
    std::memcpy(h + 344, "n+1", 4);
    std::ofstream f(c.image, std::ios::binary);
    f.write(h, 352);
    const std::vector<char> data(16 * 4, 0);
    f.write(data.data(), std::streamsize(data.size()));
    f.close();
    EXPECT_TRUE(has_problem(check_case(c), c.image, "expected a 3-D image, found 4-D"))
        << dump(check_case(c));
  }
  {  // missing / unreadable files
    CaseFiles c{"x", "/nonexistent/img.nii.gz", "/nonexistent/lab.nii.gz"};
    const auto ps = check_case(c);
    EXPECT_TRUE(has_problem(ps, c.image, "no such file")) << dump(ps);
    EXPECT_TRUE(has_problem(ps, c.label, "no such file")) << dump(ps);
  }
}

TEST(DataDataset, CacheStoresCtAsInt16) {
  CUSEG_REQUIRE_FILE_IO();
  const Geometry g = small_geo();
  Image im = Image::make(g, -1000.f);
  im.at(0, 0, 0) = 3071.f;
  const CaseFiles c = write_case(tmp_dir("cache"), im, LabelMap::make(g, 2));
  VolumeCache cache;
  auto a = cache.get(c);
  auto b = cache.get(c);
  EXPECT_EQ(a.get(), b.get());  // decoded once
  EXPECT_EQ(a->i16.size(), size_t(g.numel()));
  EXPECT_TRUE(a->f32.empty());
  EXPECT_EQ(a->image().v, im.v);
  EXPECT_EQ(cache.bytes(), size_t(g.numel()) * 3);
  EXPECT_EQ(a->label.v[0], 2);
}

// Phantom: deterministic, fast, RAS, anatomy in the documented HU ranges, learnable tumours.
TEST(DataDataset, PhantomCasesAreDeterministicAndPlausible) {
  PhantomConfig cfg;
  cfg.seed = 3;
  const auto t0 = std::chrono::steady_clock::now();
  const PhantomCase a = make_phantom(cfg, 0);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(secs, 1.0);  // the brief: a 128x128x64 case well under a second
  const PhantomCase b = make_phantom(cfg, 0);
  EXPECT_EQ(a.ct.v, b.ct.v);
  EXPECT_EQ(a.label.v, b.label.v);
  EXPECT_EQ(orientation_code(a.ct.geo), "RAS");
  int with_tumour = 0, without = 0;
  for (int c = 0; c < 10; ++c) {
    const PhantomCase p = make_phantom(cfg, c);
    double sum[3] = {0, 0, 0};
    int64_t cnt[3] = {0, 0, 0};
    for (size_t n = 0; n < p.ct.v.size(); ++n) {
      sum[p.label.v[n]] += p.ct.v[n];
      cnt[p.label.v[n]]++;
      ASSERT_EQ(p.ct.v[n], std::nearbyint(p.ct.v[n]));  // integral HU (stored int16)
    }
    const double liver = sum[1] / double(cnt[1]);
    EXPECT_GT(liver, 40);  // liver 50..70 HU plus noise
    EXPECT_LT(liver, 80);
    EXPECT_GT(cnt[1], 10000);
    // Liver in the right half (RAS: i grows toward the patient's right).
    int64_t right = 0;
    for (int k = 0; k < 64; ++k)
      for (int j = 0; j < 128; ++j)
        for (int i = 64; i < 128; ++i) right += p.label.at(i, j, k) >= 1;
    EXPECT_GT(double(right), 0.7 * double(cnt[1] + cnt[2]));
    if (cnt[2] == 0) {
      ++without;
      continue;
    }
    ++with_tumour;
    // Contrast: 45..80 HU by construction (x 0.85..1 towards the rim), hypo or hyper, so
    // the mean |HU - liver mean| over tumour voxels must exceed 35 HU even with noise.
    double dev = 0;
    for (size_t n = 0; n < p.ct.v.size(); ++n)
      if (p.label.v[n] == 2) dev += std::abs(p.ct.v[n] - liver);
    EXPECT_GT(dev / double(cnt[2]), 35.0);
    // Not tiny: each tumour >= a 4-voxel-radius ellipsoid clipped by the liver; 4/3 pi 4^3
    // = 268 voxels, so every component must have well over 100 voxels.
    const Mask t = tumour_mask(p.label);
    EXPECT_GE(count_components(t, p.label.geo), 1);
    EXPECT_GT(double(cnt[2]) / count_components(t, p.label.geo), 100.0);
  }
  EXPECT_GT(with_tumour, 0);
  EXPECT_GT(without, 0);
}

TEST(DataDataset, PhantomDatasetPassesIntegrityCheck) {
  CUSEG_REQUIRE_FILE_IO();
  const fs::path d = tmp_dir("phantom");
  PhantomConfig cfg;
  cfg.size = {48, 48, 24};
  write_phantom_dataset(d.string(), 3, cfg);
  const Dataset ds = discover(d.string());
  EXPECT_EQ(ds.source, "dataset.json");
  ASSERT_EQ(ds.cases.size(), 3u);
  EXPECT_EQ(ds.labels.at(2), "cancer");
  EXPECT_EQ(read_info(ds.cases[0].image).component_type, "short");
  EXPECT_TRUE(check_dataset(ds).empty()) << dump(check_dataset(ds));
  const PhantomCase p = make_phantom(cfg, 1);
  EXPECT_EQ(read_image(ds.cases[1].image).v, p.ct.v);
  EXPECT_EQ(read_label(ds.cases[1].label).v, p.label.v);
}

TEST(DataDataset, ImageExtensions) {
  // One list for dataset discovery and engine_infer's folder walk; ".nii.gz" wins over ".nii".
  EXPECT_EQ(cuseg::data::image_extension("liver_0.nii.gz"), ".nii.gz");
  EXPECT_EQ(cuseg::data::image_extension("ct.nii"), ".nii");
  EXPECT_EQ(cuseg::data::image_extension("a.b.nrrd"), ".nrrd");
  EXPECT_EQ(cuseg::data::image_extension("x.nhdr"), ".nhdr");
  EXPECT_EQ(cuseg::data::image_extension("x.mhd"), ".mhd");
  EXPECT_EQ(cuseg::data::image_extension("notes.txt"), "");
  EXPECT_EQ(cuseg::data::image_extension(".nii"), "");       // only an extension
  EXPECT_EQ(cuseg::data::image_extension("CT.NII.GZ"), "");  // case-sensitive
  EXPECT_EQ(cuseg::data::image_extensions().front(), ".nii.gz");
}
