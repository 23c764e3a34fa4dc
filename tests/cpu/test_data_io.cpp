// Image I/O, geometry and orientation against the real CT files in tests/data (SOURCE.md).
// Expected values are those documented in SOURCE.md plus, where SOURCE.md is silent, values
// read from the raw NIfTI bytes by an independent pure-Python header/voxel parser (gzip +
// struct, no ITK): label counts of the realct masks, HU ranges, the sform origin.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <set>

#include "cuseg/core/check.h"
#include "cuseg/data/image.h"
#include "test_util.h"

namespace fs = std::filesystem;
using namespace cuseg::data;

namespace {

const std::string kData = CUSEG_TEST_DATA_DIR;
std::string realct(const std::string& f) {
  return kData + "/realct/" + f;
}
std::string lits(const std::string& f) {
  return kData + "/lits64/" + f;
}

fs::path tmp_dir(const std::string& name) {
  return scratch_dir("data_io", name);
}

template <class T>
std::map<int, int64_t> counts(const Volume<T>& v) {
  std::map<int, int64_t> c;
  for (T x : v.v) c[int(x)]++;
  return c;
}

// The sform of every realct file: RAS affine diag(3,3,3), origin (-177.95633, 11.319, 94.30176)
// in RAS, i.e. ITK (LPS) direction diag(-1,-1,1) and origin (177.95633, -11.319, 94.30176).
void expect_realct_geometry(const Geometry& g, int nk) {
  EXPECT_EQ(g.size, (std::array<int, 3>{122, 101, nk}));
  for (int a = 0; a < 3; ++a) EXPECT_DOUBLE_EQ(g.spacing[size_t(a)], 3.0);
  // Stored as float32 in the header; ITK converts to double exactly.
  EXPECT_DOUBLE_EQ(g.origin[0], double(177.95632934570312f));
  EXPECT_DOUBLE_EQ(g.origin[1], double(-11.319000244140625f));
  EXPECT_DOUBLE_EQ(g.origin[2], double(94.3017578125f));
  const std::array<double, 9> dir{-1, 0, 0, 0, -1, 0, 0, 0, 1};
  for (int n = 0; n < 9; ++n) EXPECT_DOUBLE_EQ(g.direction[size_t(n)], dir[size_t(n)]) << n;
  EXPECT_EQ(orientation_code(g), "RAS");
}

// A minimal uncompressed NIfTI-1 writer for crafted bad files (2-D, 4-D, vector pixels) that our
// own writer refuses to produce. Header layout from the NIfTI-1 standard (nifti1.h).
void write_raw_nifti(const std::string& path, std::vector<short> dims, short datatype, short bitpix,
                     const std::vector<char>& payload, short intent = 0) {
  char h[352] = {};
  auto put_i32 = [&](int off, int32_t v) { std::memcpy(h + off, &v, 4); };
  auto put_i16 = [&](int off, int16_t v) { std::memcpy(h + off, &v, 2); };
  auto put_f32 = [&](int off, float v) { std::memcpy(h + off, &v, 4); };
  put_i32(0, 348);
  put_i16(40, short(dims.size()));
  for (size_t d = 0; d < dims.size(); ++d) put_i16(42 + 2 * int(d), dims[d]);
  for (size_t d = dims.size(); d < 7; ++d) put_i16(42 + 2 * int(d), 1);
  put_i16(68, intent);
  put_i16(70, datatype);
  put_i16(72, bitpix);
  for (int d = 0; d < 8; ++d) put_f32(76 + 4 * d, 1.f);
  put_f32(108, 352.f);  // vox_offset
  put_f32(112, 1.f);    // scl_slope
  put_i16(254, 1);      // sform_code: scanner
  put_f32(280, 1.f);
  put_f32(300, 1.f);
  put_f32(320, 1.f);
  std::memcpy(h + 344, "n+1\0", 4);
  std::ofstream f(path, std::ios::binary);
  f.write(h, 352);
  f.write(payload.data(), std::streamsize(payload.size()));
}

}  // namespace

TEST(DataIo, RealCtFullVolume) {
  CUSEG_REQUIRE_FILE_IO();
  const auto p = realct("abdomen_ct_3mm.nii.gz");
  const FileInfo info = read_info(p);
  EXPECT_EQ(info.dimensions, 3);
  EXPECT_EQ(info.component_type, "int");  // the int32 quirk
  const Image ct = read_image(p);
  expect_realct_geometry(ct.geo, 112);
  const auto mm = std::minmax_element(ct.v.begin(), ct.v.end());
  EXPECT_EQ(*mm.first, -1207.f);
  EXPECT_EQ(*mm.second, 3382.f);
}

TEST(DataIo, RealCtLiverMaskStoredAsFloat64) {
  CUSEG_REQUIRE_FILE_IO();
  const auto p = realct("abdomen_ct_3mm_liver.nii.gz");
  EXPECT_EQ(read_info(p).component_type, "double");
  const LabelMap m = read_label(p);
  expect_realct_geometry(m.geo, 112);
  const auto c = counts(m);
  ASSERT_EQ(c.size(), 2u);
  EXPECT_EQ(c.at(0), 1338462);
  EXPECT_EQ(c.at(1), 41602);
}

TEST(DataIo, RealCt30SlicesAndOrgans) {
  CUSEG_REQUIRE_FILE_IO();
  const auto ct = read_image(realct("abdomen_ct_3mm_30slices.nii.gz"));
  EXPECT_EQ(read_info(realct("abdomen_ct_3mm_30slices.nii.gz")).component_type, "short");
  expect_realct_geometry(ct.geo, 30);
  const auto mm = std::minmax_element(ct.v.begin(), ct.v.end());
  EXPECT_EQ(*mm.first, -1100.f);
  EXPECT_EQ(*mm.second, 1207.f);
  const auto org = read_label(realct("abdomen_ct_3mm_30slices_organs.nii.gz"));
  EXPECT_EQ(read_info(realct("abdomen_ct_3mm_30slices_organs.nii.gz")).component_type,
            "unsigned_char");
  expect_realct_geometry(org.geo, 30);
  const auto c = counts(org);
  EXPECT_EQ(c.size(), 42u);   // 41 organs + background
  EXPECT_EQ(c.at(5), 38634);  // liver = 5
  EXPECT_EQ(c.at(0), 259435);
  EXPECT_EQ(c.rbegin()->first, 117);
}

TEST(DataIo, Lits64CtAndLabels) {
  CUSEG_REQUIRE_FILE_IO();
  const auto ct = read_image(lits("liver_ct_64x64x33.nii"));
  const auto lab = read_label(lits("liver_ct_64x64x33_labels.nii"));
  EXPECT_EQ(read_info(lits("liver_ct_64x64x33_labels.nii")).component_type, "float");
  for (const Geometry* g : {&ct.geo, &lab.geo}) {
    EXPECT_EQ(g->size, (std::array<int, 3>{64, 64, 33}));
    // The header quirk: spacing not updated by the downsampling (0.664 x 0.664 x 5 mm).
    EXPECT_DOUBLE_EQ(g->spacing[0], double(0.6640620231628418f));
    EXPECT_DOUBLE_EQ(g->spacing[1], double(0.6640620231628418f));
    EXPECT_DOUBLE_EQ(g->spacing[2], 5.0);
    EXPECT_EQ(orientation_code(*g), "RAS");
  }
  std::string why;
  EXPECT_TRUE(same_grid(ct.geo, lab.geo, &why)) << why;
  const auto mm = std::minmax_element(ct.v.begin(), ct.v.end());
  EXPECT_EQ(*mm.first, -1024.f);
  EXPECT_NEAR(*mm.second, 842.0, 1.0);  // SOURCE.md: "-1024..842" (interpolated: 842.375)
  const auto c = counts(lab);
  ASSERT_EQ(c.size(), 3u);
  EXPECT_EQ(c.at(0), 128793);
  EXPECT_EQ(c.at(1), 6165);
  EXPECT_EQ(c.at(2), 210);
  // Liver on slices z = 10..31, tumour on z = 13..25 (SOURCE.md).
  int lz0 = 99, lz1 = -1, tz0 = 99, tz1 = -1;
  for (int k = 0; k < 33; ++k)
    for (int j = 0; j < 64; ++j)
      for (int i = 0; i < 64; ++i) {
        const int v = lab.at(i, j, k);
        if (v >= 1) lz0 = std::min(lz0, k), lz1 = std::max(lz1, k);
        if (v == 2) tz0 = std::min(tz0, k), tz1 = std::max(tz1, k);
      }
  EXPECT_EQ(lz0, 10);
  EXPECT_EQ(lz1, 31);
  EXPECT_EQ(tz0, 13);
  EXPECT_EQ(tz1, 25);
}

// Write then read keeps voxels exactly and geometry within the format's storage precision.
// NIfTI stores the affine as float32 (qform quaternion + sform rows): we allow 1e-4 mm on the
// origin (float32 ulp at |x| ~ 200 mm is 1.5e-5 mm) and 1e-6 on direction/spacing. NRRD and
// MetaImage store decimal text with ITK's full double precision: same tolerances, which they
// meet with room to spare.
class DataIoRoundTrip : public ::testing::TestWithParam<std::string> {};

TEST_P(DataIoRoundTrip, ImageAndLabelKeepVoxelsAndGeometry) {
  CUSEG_REQUIRE_FILE_IO();
  const Image ct = read_image(realct("abdomen_ct_3mm_30slices.nii.gz"));
  LabelMap lab = read_label(realct("abdomen_ct_3mm_30slices_organs.nii.gz"));
  // An oblique, non-axis-aligned geometry exercises the full direction matrix.
  Image obl = ct;
  const double c = std::cos(0.3), s = std::sin(0.3);
  obl.geo.direction = {c, -s, 0, s, c, 0, 0, 0, 1};
  obl.geo.spacing = {0.75, 0.8, 2.5};
  const fs::path dir = tmp_dir("rt_" + GetParam().substr(1));
  for (PixelType pt : {PixelType::Float32, PixelType::Int16}) {
    const std::string f = (dir / ("ct" + std::to_string(int(pt)) + GetParam())).string();
    write_image(obl, f, pt);
    const Image back = read_image(f);
    ASSERT_EQ(back.geo.size, obl.geo.size);
    EXPECT_EQ(back.v, obl.v) << f;
    for (int a = 0; a < 3; ++a) {
      EXPECT_NEAR(back.geo.spacing[size_t(a)], obl.geo.spacing[size_t(a)], 1e-6) << f;
      EXPECT_NEAR(back.geo.origin[size_t(a)], obl.geo.origin[size_t(a)], 1e-4) << f;
    }
    for (int n = 0; n < 9; ++n)
      EXPECT_NEAR(back.geo.direction[size_t(n)], obl.geo.direction[size_t(n)], 1e-6) << f;
  }
  const std::string lf = (dir / ("lab" + GetParam())).string();
  write_label(lab, lf);
  EXPECT_EQ(read_info(lf).component_type, "unsigned_char");
  const LabelMap lback = read_label(lf);
  EXPECT_EQ(lback.v, lab.v);
  std::string why;
  EXPECT_TRUE(same_grid(lback.geo, lab.geo, &why)) << why;
}

INSTANTIATE_TEST_SUITE_P(Formats, DataIoRoundTrip,
                         ::testing::Values(".nii.gz", ".nii", ".nrrd", ".mha"));

// DICOM: ITK writes the real CT as an int16 series; GDCM reads it back. Geometry is stored as
// decimal strings with 10 significant digits (%.10g): 1e-6 mm covers that rounding at
// |x| < 1000 mm. Voxels are int16 HU and must come back exactly.
TEST(DataIo, DicomSeriesRoundTripKeepsGeometry) {
  CUSEG_REQUIRE_FILE_IO();
  const Image ct = read_image(realct("abdomen_ct_3mm_30slices.nii.gz"));
  const fs::path dir = tmp_dir("dicom");
  write_dicom_series(ct, dir.string());
  const auto uids = dicom_series_uids(dir.string());
  ASSERT_EQ(uids.size(), 1u);
  const Image back = read_image(dir.string());  // a folder: read as a DICOM series
  ASSERT_EQ(back.geo.size, ct.geo.size);
  for (int a = 0; a < 3; ++a) {
    EXPECT_NEAR(back.geo.spacing[size_t(a)], ct.geo.spacing[size_t(a)], 1e-6);
    EXPECT_NEAR(back.geo.origin[size_t(a)], ct.geo.origin[size_t(a)], 1e-6);
  }
  for (int n = 0; n < 9; ++n)
    EXPECT_NEAR(back.geo.direction[size_t(n)], ct.geo.direction[size_t(n)], 1e-6);
  EXPECT_EQ(back.v, ct.v);
}

TEST(DataIo, DicomRejectsLeftHandedStack) {
  Image im = Image::make(Geometry{{4, 4, 3}, {1, 1, 1}, {0, 0, 0}, {1, 0, 0, 0, 1, 0, 0, 0, -1}});
  EXPECT_THROW(write_dicom_series(im, tmp_dir("dicom_lh").string()), cuseg::Error);
}

TEST(DataIo, OrientationCodes) {
  Geometry g;
  EXPECT_EQ(orientation_code(g), "LPS");  // identity ITK direction = LPS (nibabel letters)
  g.direction = {-1, 0, 0, 0, -1, 0, 0, 0, 1};
  EXPECT_EQ(orientation_code(g), "RAS");
  // Columns (LPS): i = (0,1,0) -> P, j = (0,0,-1) -> I, k = (-1,0,0) -> R.
  g.direction = {0, 0, -1, 1, 0, 0, 0, -1, 0};
  EXPECT_EQ(orientation_code(g), "PIR");
}

// Reorientation is a pure permutation/flip: every voxel keeps its world position (1e-9 mm:
// double rounding of a few products), and the inverse restores voxels and geometry exactly.
TEST(DataIo, ReorientRoundTripIsExact) {
  CUSEG_REQUIRE_FILE_IO();
  Image im = read_image(lits("liver_ct_64x64x33.nii"));
  im.geo.direction = {0, 0, -1, 1, 0, 0, 0, -1, 0};  // "PIR": every axis permuted
  Reorientation r;
  const Image ras = to_ras(im, &r);
  EXPECT_EQ(r.from_code, "PIR");
  EXPECT_EQ(orientation_code(ras.geo), "RAS");
  for (int t = 0; t < 50; ++t) {
    const int i = (t * 7) % ras.geo.size[0], j = (t * 13) % ras.geo.size[1],
              k = (t * 5) % ras.geo.size[2];
    const auto w = ras.geo.world(i, j, k);
    // Find the source voxel through the plan and compare world positions and values.
    int old[3];
    const int nidx[3] = {i, j, k};
    for (int a = 0; a < 3; ++a)
      old[r.perm[size_t(a)]] = r.flip[size_t(a)] ? ras.geo.size[size_t(a)] - 1 - nidx[a] : nidx[a];
    const auto w0 = im.geo.world(old[0], old[1], old[2]);
    for (int a = 0; a < 3; ++a) EXPECT_NEAR(w[size_t(a)], w0[size_t(a)], 1e-9);
    EXPECT_EQ(ras.at(i, j, k), im.at(old[0], old[1], old[2]));
  }
  const Image back = reorient_back(ras, r);
  EXPECT_EQ(back.v, im.v);
  EXPECT_EQ(back.geo.size, im.geo.size);
  EXPECT_EQ(back.geo.origin, im.geo.origin);
  EXPECT_EQ(back.geo.direction, im.geo.direction);
  EXPECT_EQ(back.geo.spacing, im.geo.spacing);
  // Already RAS: identity plan.
  const auto r2 = plan_reorientation(ras.geo);
  EXPECT_EQ(r2.perm, (std::array<int, 3>{0, 1, 2}));
  EXPECT_EQ(r2.flip, (std::array<bool, 3>{false, false, false}));
}

TEST(DataIo, NonIntegralLabelIsRejectedWithFileAndValue) {
  CUSEG_REQUIRE_FILE_IO();
  const fs::path dir = tmp_dir("badlabel");
  Image im = Image::make(Geometry{{5, 4, 3}});
  im.at(2, 1, 1) = 1.5f;
  const std::string f = (dir / "frac.nii.gz").string();
  write_image(im, f);
  try {
    read_label(f);
    FAIL() << "expected an error";
  } catch (const cuseg::Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find(f), std::string::npos) << m;
    EXPECT_NE(m.find("1.5"), std::string::npos) << m;
    EXPECT_NE(m.find("(2, 1, 1)"), std::string::npos) << m;
  }
  im.at(2, 1, 1) = -1.f;
  write_image(im, f);
  EXPECT_THROW(read_label(f), cuseg::Error);
  im.at(2, 1, 1) = 2.f;  // exact integers stored as float are fine
  write_image(im, f);
  EXPECT_EQ(read_label(f).at(2, 1, 1), 2);
}

TEST(DataIo, BadFilesGiveClearErrors) {
  CUSEG_REQUIRE_FILE_IO();
  const fs::path dir = tmp_dir("badfiles");
  auto expect_msg = [](const std::function<void()>& fn, const std::string& a,
                       const std::string& b) {
    try {
      fn();
      ADD_FAILURE() << "expected an error mentioning " << b;
    } catch (const cuseg::Error& e) {
      EXPECT_NE(std::string(e.what()).find(a), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(b), std::string::npos) << e.what();
    }
  };
  const std::string missing = (dir / "nope.nii.gz").string();
  expect_msg([&] { read_image(missing); }, missing, "no such file");
  const std::string junk = (dir / "junk.nii.gz").string();
  std::ofstream(junk) << "this is not an image";
  expect_msg([&] { read_image(junk); }, junk, "");
  const std::string f4 = (dir / "four_d.nii").string();
  write_raw_nifti(f4, {4, 3, 2, 2}, 16, 32, std::vector<char>(4 * 48, 0));
  expect_msg([&] { read_image(f4); }, f4, "expected a 3-D image");
  const std::string f2 = (dir / "two_d.nii").string();
  write_raw_nifti(f2, {4, 3}, 16, 32, std::vector<char>(4 * 12, 0));
  expect_msg([&] { read_image(f2); }, f2, "expected a 3-D image");
  // A 4-D file with a 4th extent of 1 is a 3-D image.
  const std::string f41 = (dir / "four_d_1.nii").string();
  write_raw_nifti(f41, {4, 3, 2, 1}, 16, 32, std::vector<char>(4 * 24, 0));
  EXPECT_EQ(read_image(f41).geo.size, (std::array<int, 3>{4, 3, 2}));
  // Vector pixels: RGB24 (NIfTI datatype 128, 24 bits) reads as 3 components per voxel.
  const std::string rgb = (dir / "rgb.nii").string();
  write_raw_nifti(rgb, {4, 3, 2}, 128, 24, std::vector<char>(3 * 24, 0));
  expect_msg([&] { read_image(rgb); }, rgb, "expected a scalar image, found 3 components");
  expect_msg([&] { read_label(rgb); }, rgb, "expected a scalar image, found 3 components");
}

// Without ITK every file function fails with the path and the configuration that caused it;
// with ITK the same calls read the real file (so this test checks the branch actually built).
TEST(DataIo, FileIoErrorSaysHowTheBuildWasConfigured) {
  const std::string p = realct("abdomen_ct_3mm_30slices.nii.gz");
  if (CUSEG_HAVE_ITK) {
    EXPECT_EQ(read_info(p).geo.size, (std::array<int, 3>{122, 101, 30}));
    return;
  }
  const std::string why = "this build has no image file I/O (configured with CUSEG_WITH_ITK=OFF)";
  const std::vector<std::pair<std::string, std::function<void()>>> calls = {
      {p, [&] { read_info(p); }},
      {p, [&] { read_image(p); }},
      {p, [&] { read_label(p); }},
      {"/tmp/x.nii.gz", [] { write_image(Image::make(Geometry{}), "/tmp/x.nii.gz"); }},
      {"/tmp/x.nii.gz", [] { write_label(LabelMap::make(Geometry{}), "/tmp/x.nii.gz"); }},
      {"/tmp/dcm", [] { dicom_series_uids("/tmp/dcm"); }},
      {"/tmp/dcm", [] { read_dicom_series("/tmp/dcm"); }},
      {"/tmp/dcm", [] { write_dicom_series(Image::make(Geometry{}), "/tmp/dcm"); }},
  };
  for (const auto& c : calls) {
    try {
      c.second();
      ADD_FAILURE() << "no error for " << c.first;
    } catch (const cuseg::Error& e) {
      EXPECT_EQ(std::string(e.what()), c.first + ": " + why);
    }
  }
}

TEST(DataIo, WriterThatRenamesTheFileIsAnError) {
  // niftilib would write "mask.nii.nii.gz" as "mask.nii.gz" and report success.
  CUSEG_REQUIRE_FILE_IO();
  const LabelMap lab = read_label(lits("liver_ct_64x64x33_labels.nii"));
  const fs::path dir = tmp_dir("renamed");
  const std::string asked = (dir / "mask.nii.nii.gz").string();
  try {
    write_label(lab, asked);
    ADD_FAILURE() << "write to " << asked << " was accepted";
  } catch (const cuseg::Error& e) {
    EXPECT_NE(std::string(e.what()).find(asked), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("did not create"), std::string::npos) << e.what();
  }
}
