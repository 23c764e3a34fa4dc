// The readers against headers that lie (README "Reliability"): sizes beyond the memory limit or
// the machine, zero/negative/absurd extents, zero/negative/NaN spacing, non-orthonormal
// directions, 4-D and vector images, NaN/Inf voxels. Every refusal happens on the header, before
// a voxel buffer exists, and names the file and what was expected. The files are written byte
// by byte (tests/bad_files.h) because ITK's writers refuse to make them.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <functional>
#include <iterator>
#include <string>

#include "bad_files.h"
#include "cuseg/core/check.h"
#include "cuseg/data/dataset.h"
#include "cuseg/data/image.h"
#include "test_util.h"

namespace fs = std::filesystem;
using namespace cuseg::data;
using namespace bad_files;

namespace {

// The error of fn(), or a test failure when it does not throw cuseg::Error.
std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const cuseg::Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected a cuseg::Error";
  return "";
}

// The message names the file and says what was expected.
void expect_refused(const std::string& path, const std::string& expected,
                    const ReadLimits& limits = {}) {
  for (int reader = 0; reader < 2; ++reader) {
    const std::string msg = error_of([&] {
      if (reader == 0)
        read_image(path, limits);
      else
        read_label(path, limits);
    });
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    EXPECT_NE(msg.find(expected), std::string::npos) << "expected '" << expected << "' in: " << msg;
  }
}

ReadLimits limit(uint64_t bytes) {
  ReadLimits l;
  l.max_bytes = bytes;
  l.limit_name = "--max-memory";
  return l;
}

}  // namespace

// 32767^3 int16 is 64 TiB of voxels: had the reader asked ITK for it, it would have thrown
// std::bad_alloc or been killed; the header check refuses it without reading the (absent) data.
TEST(ReaderLimits, HeaderAskingMoreThanTheMachineIsRefusedBeforeReading) {
  CUSEG_REQUIRE_FILE_IO();
  const fs::path d = scratch_dir("reader_limits", "machine");
  Nifti1 n;
  n.dims = {32767, 32767, 32767};
  n.datatype = 4;  // NIFTI_TYPE_INT16
  n.bitpix = 16;
  expect_refused(write(d / "huge.nii", n.file()), "this machine's memory");
  Mha m;
  m.dim_size = "100000 100000 100000";
  expect_refused(write(d / "huge.mha", m.file()), "this machine's memory");
  Nrrd r;
  r.sizes = "100000 100000 100000";
  expect_refused(write(d / "huge.nrrd", r.file()), "this machine's memory");
  EXPECT_GT(machine_memory_bytes(), uint64_t(0));
}

// The estimate is exact for what it counts, so the limit decides at the byte: a 64^3 float32
// NIfTI needs 64^3 x (4 ITK float + 4 ITK's file-type buffer + 4 niftilib's copy + 4 result) =
// 4 MiB for read_image. One byte less is refused with the limit's name; at 4 MiB the guard
// passes and the read itself fails, because this file has a header and no voxel data.
TEST(ReaderLimits, HeaderAskingMoreThanTheLimitIsRefusedBeforeReading) {
  CUSEG_REQUIRE_FILE_IO();
  const fs::path d = scratch_dir("reader_limits", "limit");
  Nifti1 n;
  n.dims = {64, 64, 64};
  const std::string f = write(d / "no_data.nii", n.file());
  const uint64_t need = 64 * 64 * 64 * 16;
  EXPECT_DOUBLE_EQ(read_peak_bytes(64 * 64 * 64, 4, 4, 4, true), double(need));
  std::string msg = error_of([&] { read_image(f, limit(need - 1)); });
  EXPECT_NE(msg.find(f), std::string::npos) << msg;
  EXPECT_NE(msg.find("--max-memory"), std::string::npos) << msg;
  EXPECT_NE(msg.find("64x64x64"), std::string::npos) << msg;
  msg = error_of([&] { read_image(f, limit(need)); });
  EXPECT_EQ(msg.find("--max-memory"), std::string::npos) << msg;
  EXPECT_NE(msg.find("truncated"), std::string::npos) << msg;
  // Labels are read as double: 64^3 x (8 + 4 + 4 + 1).
  EXPECT_NE(error_of([&] { read_label(f, limit(64 * 64 * 64 * 17 - 1)); }).find("--max-memory"),
            std::string::npos);
}

// A DICOM series is bounded from its first slice's header and the number of files: 8x8 int16
// slices, 3 files = 192 voxels x (4 ITK float + 2 int16 buffer + 4 result) = 1920 bytes.
TEST(ReaderLimits, DicomSeriesIsBoundedBeforeItIsRead) {
  CUSEG_REQUIRE_FILE_IO();
  const fs::path d = scratch_dir("reader_limits", "dicom");
  Geometry g;
  g.size = {8, 8, 3};
  Image im = Image::make(g, -100.f);
  write_dicom_series(im, (d / "series").string());
  const std::string dir = (d / "series").string();
  const std::string msg = error_of([&] { read_image(dir, limit(1919)); });
  EXPECT_NE(msg.find(dir), std::string::npos) << msg;
  EXPECT_NE(msg.find("--max-memory"), std::string::npos) << msg;
  EXPECT_EQ(read_image(dir, limit(1920)).geo.size, g.size);
}

TEST(ReaderLimits, ZeroNegativeAndAbsurdExtentsAreRefused) {
  CUSEG_REQUIRE_FILE_IO();
  const fs::path d = scratch_dir("reader_limits", "extents");
  Nifti1 n;
  n.payload = floats(48);
  n.dims = {4, 0, 3};  // niftilib alone would read this as 4x1x3
  expect_refused(write(d / "zero.nii", n.file()), "NIfTI dim[2] = 0; expected every extent >= 1");
  n.dims = {4, -3, 3};
  expect_refused(write(d / "negative.nii", n.file()), "NIfTI dim[2] = -3");
  Mha m;
  m.payload = floats(48);
  m.dim_size = "4 0 3";
  expect_refused(write(d / "zero.mha", m.file()), "expected every extent in [1, 2^31)");
  m.dim_size = "4 4 3000000000";  // beyond int: refused before the memory guard
  expect_refused(write(d / "beyond_int.mha", m.file()), "expected every extent in [1, 2^31)");
  Nrrd r;
  r.payload = floats(48);
  r.sizes = "4 0 3";  // teem refuses it itself; the message still names the file
  expect_refused(write(d / "zero.nrrd", r.file()), "size is zero");
}

TEST(ReaderLimits, SpacingMustBeFiniteAndPositive) {
  CUSEG_REQUIRE_FILE_IO();
  const fs::path d = scratch_dir("reader_limits", "spacing");
  Nifti1 n;
  n.payload = floats(48);
  const float spacings[] = {0.f, -2.f, NAN};  // niftilib alone would read 0 and NaN as 1 mm
  for (int k = 0; k < 3; ++k) {
    n.spacing[0] = spacings[k];
    expect_refused(write(d / ("spacing" + std::to_string(k) + ".nii"), n.file()),
                   "expected a voxel spacing in (0, 1e6] mm");
  }
  Mha m;
  m.payload = floats(48);
  for (const char* s : {"0 1 2", "-1 1 2"}) {
    m.spacing = s;
    expect_refused(write(d / (std::string(s[0] == '-' ? "neg" : "zero") + ".mha"), m.file()),
                   "expected finite spacings > 0");
  }
  Nrrd r;
  r.payload = floats(48);
  r.directions = "(0,0,0) (0,1,0) (0,0,2)";  // a zero axis vector: spacing 0
  expect_refused(write(d / "zero_axis.nrrd", r.file()), "expected finite spacings > 0");
}

// Tolerance 1e-3 on D^T D - I (data/image_io.cpp says why): a skew, a scaling or a zero matrix is
// refused; a rotation and a direction written with 6 significant digits are accepted.
TEST(ReaderLimits, DirectionMustBeOrthonormal) {
  CUSEG_REQUIRE_FILE_IO();
  const fs::path d = scratch_dir("reader_limits", "direction");
  Mha m;
  m.payload = floats(48);
  int k = 0;
  for (const char* t : {"1 0 0 0.5 1 0 0 0 1", "2 0 0 0 1 0 0 0 1", "0 0 0 0 0 0 0 0 0"}) {
    m.transform = t;
    expect_refused(write(d / ("bad" + std::to_string(k++) + ".mha"), m.file()), "not orthonormal");
  }
  Nrrd r;
  r.payload = floats(48);
  r.directions = "(1,0,0) (1,1,0) (0,0,2)";
  expect_refused(write(d / "skew.nrrd", r.file()), "not orthonormal");
  // 30 degrees about z, cos and sin to 6 digits (errors ~1e-7).
  m.transform = "0.866025 0.5 0 -0.5 0.866025 0 0 0 1";
  const Image im = read_image(write(d / "rotated.mha", m.file()));
  EXPECT_NEAR(im.geo.direction[0], 0.866025, 1e-12);
  EXPECT_NEAR(im.geo.direction[3], 0.5, 1e-12);  // row 1 of column 0
}

TEST(ReaderLimits, FourDAndVectorImagesAreRefused) {
  CUSEG_REQUIRE_FILE_IO();
  const fs::path d = scratch_dir("reader_limits", "dims");
  Mha m = four_d_mha();
  expect_refused(write(d / "time.mha", m.file()),
                 "expected a 3-D image, found 4-D with extent 4x4x3x2");
  m.dim_size = "4 4 3 1";  // a 4th extent of 1 is a 3-D image
  m.payload = floats(48);
  EXPECT_EQ(read_image(write(d / "time1.mha", m.file())).geo.size, (std::array<int, 3>{4, 4, 3}));
  Mha v;
  v.extra = "ElementNumberOfChannels = 3\n";
  v.payload = floats(144);
  expect_refused(write(d / "vector.mha", v.file()), "expected a scalar image, found 3 components");
  expect_refused(write(d / "vector.nrrd", vector_nrrd().file()),
                 "expected a scalar image, found 3 components");
}

// NaN/Inf voxels. ITK's NIfTI reader turns them into 0 (data/image_io.cpp says where), so the
// reader scans the stored payload and puts them back; ITK's NRRD and MetaImage readers keep
// them. Either way read_image shows them and the integrity check names the file.
TEST(ReaderLimits, NonFiniteVoxelsAreFoundInEveryFormat) {
  CUSEG_REQUIRE_FILE_IO();
  const fs::path d = scratch_dir("reader_limits", "nonfinite");
  std::vector<float> v(48, 10.f);
  v[7] = NAN;
  v[20] = INFINITY;
  v[47] = -INFINITY;
  Nifti1 n;
  n.payload = bytes_of(v);
  const std::string nii = write(d / "nonfinite.nii", n.file());
  const NonFiniteScan sc = scan_nifti_nonfinite(nii);
  EXPECT_TRUE(sc.checked);
  EXPECT_EQ(sc.count, 3);
  EXPECT_EQ(sc.nan, 1);
  EXPECT_EQ(sc.first, 7);
  const Image from_nii = read_image(nii);
  EXPECT_TRUE(std::isnan(from_nii.v[7]));
  EXPECT_EQ(from_nii.v[20], INFINITY);
  EXPECT_EQ(from_nii.v[47], -INFINITY);
  // Labels: NaN is not a class value.
  EXPECT_NE(error_of([&] { read_label(nii); }).find("found nan at voxel (3, 1, 0)"),
            std::string::npos);
  Nrrd r;
  r.payload = bytes_of(v);
  const std::string nrrd = write(d / "nonfinite.nrrd", r.file());
  const Image im = read_image(nrrd);
  EXPECT_TRUE(std::isnan(im.v[7]));
  EXPECT_EQ(im.v[20], INFINITY);
  for (const std::string& f : {nii, nrrd}) {
    const auto problems = check_case(CaseFiles{"c", f, ""});
    ASSERT_EQ(problems.size(), 1u) << f;
    EXPECT_EQ(problems[0].file, f);
    EXPECT_NE(problems[0].what.find("3 voxels are NaN or Inf"), std::string::npos)
        << problems[0].what;
  }
}

// The NaN/Inf scan reads the header itself: it must not trust it either.
TEST(ReaderLimits, NiftiScanNeverTrustsTheHeader) {
  CUSEG_REQUIRE_FILE_IO();
  const fs::path d = scratch_dir("reader_limits", "scan");
  Nifti1 n;
  n.payload = floats(48);
  n.vox_offset = NAN;
  std::string f = write(d / "nan_offset.nii", n.file());
  EXPECT_NE(error_of([&] { scan_nifti_nonfinite(f); }).find("vox_offset nan"), std::string::npos);
  n.vox_offset = 352;
  n.dims = {1000, 1000, 1000};  // 4 GB declared, 192 bytes present: a bounded buffer, a clear end
  f = write(d / "short.nii", n.file());
  std::string msg = error_of([&] { scan_nifti_nonfinite(f); });
  EXPECT_NE(msg.find("the file ends after 48 of the 1000000000 voxels"), std::string::npos) << msg;
  // NIfTI-2: int64 extents whose product overflows int64.
  char h[544] = {};
  const int32_t sz = 540;
  std::memcpy(h, &sz, 4);
  std::memcpy(h + 4, "n+2\0\r\n\032\n", 8);
  const int16_t dt = 16, bp = 32;
  std::memcpy(h + 12, &dt, 2);
  std::memcpy(h + 14, &bp, 2);
  const int64_t dim[8] = {3, int64_t(1) << 40, int64_t(1) << 40, int64_t(1) << 40, 1, 1, 1, 1};
  std::memcpy(h + 16, dim, sizeof dim);
  const int64_t off = 544;
  std::memcpy(h + 168, &off, 8);
  f = write(d / "overflow.nii", std::string(h, sizeof h));
  msg = error_of([&] { scan_nifti_nonfinite(f); });
  EXPECT_NE(msg.find("dimensions overflow"), std::string::npos) << msg;
  EXPECT_NE(msg.find(f), std::string::npos) << msg;
}

// A NIfTI file cut short (an interrupted download or copy) reads through ITK without an error:
// niftilib fills the missing voxels with 0. The readers refuse it, .nii and .nii.gz, images and
// labels; the whole file still reads.
TEST(ReaderLimits, TruncatedNiftiIsRefused) {
  CUSEG_REQUIRE_FILE_IO();
  const fs::path d = scratch_dir("reader_limits", "truncated");
  const std::string src =
      std::string(CUSEG_TEST_DATA_DIR) + "/realct/abdomen_ct_3mm_30slices.nii.gz";
  const Image whole = read_image(src);
  const std::string plain = (d / "plain.nii").string(), packed = (d / "packed.nii.gz").string();
  write_image(whole, plain, PixelType::Int16);
  write_image(whole, packed, PixelType::Int16);
  for (const std::string& f : {plain, packed}) {
    std::ifstream in(f, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const std::string cut = (d / ("cut_" + fs::path(f).filename().string())).string();
    write(cut, bytes.substr(0, bytes.size() * 9 / 10));
    expect_refused(cut, "voxels its header declares (truncated");
    EXPECT_EQ(read_image(f).v, whole.v) << f;
  }
}

// niftilib reads a.nii.gz's voxels from a.nii when both exist (nifti_findimgname tries .nii
// first): seen as one CT's header with another CT's voxels. Refused, naming both files.
TEST(ReaderLimits, NiftiNextToItsUncompressedTwinIsRefused) {
  CUSEG_REQUIRE_FILE_IO();
  const fs::path d = scratch_dir("reader_limits", "twins");
  const std::string a = (d / "case.nii.gz").string(), b = (d / "case.nii").string();
  fs::copy_file(std::string(CUSEG_TEST_DATA_DIR) + "/realct/abdomen_ct_3mm_30slices.nii.gz", a);
  const Image alone = read_image(a);
  fs::copy_file(std::string(CUSEG_TEST_DATA_DIR) + "/lits64/liver_ct_64x64x33.nii", b);
  const std::string msg = error_of([&] { read_image(a); });
  EXPECT_NE(msg.find(a), std::string::npos) << msg;
  EXPECT_NE(msg.find(b), std::string::npos) << msg;
  EXPECT_NE(msg.find("remove or rename"), std::string::npos) << msg;
  EXPECT_NE(read_image(b).v, alone.v);  // the plain file itself reads as itself
  fs::remove(b);
  EXPECT_EQ(read_image(a).v, alone.v);
}

// Both DICOM folder readers refuse the series `dir`, naming `slice` and saying `what`.
void expect_series_refused(const std::string& dir, const std::string& slice,
                           const std::string& what) {
  for (int reader = 0; reader < 2; ++reader) {
    const std::string msg = error_of([&] {
      if (reader == 0)
        dicom_series_uids(dir);
      else
        read_image(dir);
    });
    EXPECT_NE(msg.find(slice), std::string::npos) << msg;
    EXPECT_NE(msg.find(what), std::string::npos) << "expected '" << what << "' in: " << msg;
  }
}

// GDCM allocates every element's declared length before reading it: a slice declaring a 4 GB
// element made it allocate and zero-fill 4 GB (found by fuzz_dicom). The element walk
// (data/dicom_guard.h) refuses such a file, naming it, before GDCM opens anything.
TEST(ReaderLimits, DicomElementLongerThanItsFileIsRefusedBeforeGdcm) {
  CUSEG_REQUIRE_FILE_IO();
  const fs::path d = scratch_dir("reader_limits", "dicom_length");
  Geometry g;
  g.size = {8, 8, 2};
  write_dicom_series(Image::make(g, 20.f), (d / "series").string());
  const std::string dir = (d / "series").string();
  ASSERT_EQ(dicom_series_uids(dir).size(), 1u);
  // Pixel Data (7FE0,0010); our writer's transfer syntax is implicit VR little endian: the tag,
  // then the 4-byte length.
  const std::string slice = (d / "series" / "IM0001.dcm").string();
  std::ifstream in(slice, std::ios::binary);
  std::string b((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  in.close();
  const size_t at = b.rfind(std::string("\xe0\x7f\x10\x00", 4));
  ASSERT_NE(at, std::string::npos);
  const uint32_t huge = 0xFFFFFF00u;
  std::memcpy(&b[at + 4], &huge, 4);
  write(slice, b);
  expect_series_refused(dir, slice, "element (7fe0,0010) at byte ");
  expect_series_refused(dir, slice, "declares 4294967040 bytes");
  // The same file alone, given as a file.
  EXPECT_NE(error_of([&] { read_image(slice); }).find("not an intact DICOM file"),
            std::string::npos);
  // A folder of NIfTI files is not a DICOM folder: GDCM never reads it.
  const fs::path nii = d / "nifti_folder";
  write_image(Image::make(g, 1.f), (nii / "a.nii.gz").string());
  EXPECT_TRUE(dicom_series_uids(nii.string()).empty());
}

// The image pixel module must agree with the pixel data before GDCM decodes it: GDCM asserted
// (aborting the process) on 12-bit packed pixel data whose length is no multiple of 3 (found by
// fuzz_dicom), and copies the size the module declares out of a shorter element when it converts
// the pixels. Refused, naming the slice: Bits Allocated other than 1 or a multiple of 8, pixel
// data shorter than Rows x Columns x frames x samples x bits, an element given twice, a
// Photometric Interpretation that is no defined term or disagrees with Samples per Pixel.
TEST(ReaderLimits, DicomPixelModuleThatDisagreesWithItsPixelDataIsRefusedBeforeGdcm) {
  CUSEG_REQUIRE_FILE_IO();
  const fs::path d = scratch_dir("reader_limits", "dicom_pixels");
  Geometry g;
  g.size = {8, 8, 2};
  const std::string dir = (d / "series").string();
  const std::string slice = (d / "series" / "IM0001.dcm").string();
  write_dicom_series(Image::make(g, 20.f), dir);
  std::ifstream in(slice, std::ios::binary);
  const std::string intact((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  in.close();
  // Implicit VR little endian: tag, 4-byte length, value.
  const size_t bits = intact.find(std::string("\x28\x00\x00\x01\x02\x00\x00\x00", 8));
  const size_t pixels = intact.rfind(std::string("\xe0\x7f\x10\x00", 4));
  ASSERT_NE(bits, std::string::npos);
  ASSERT_NE(pixels, std::string::npos);
  ASSERT_EQ(intact[bits + 8], 16);
  uint32_t pixel_bytes = 0;
  std::memcpy(&pixel_bytes, &intact[pixels + 4], 4);
  ASSERT_EQ(pixel_bytes, 8u * 8u * 2u);
  ASSERT_EQ(pixels + 8 + pixel_bytes, intact.size());  // the pixel data ends the file
  std::string b = intact;
  b[bits + 8] = 12;
  write(slice, b);
  expect_series_refused(dir, slice,
                        "Bits Allocated (0028,0100) is 12; DICOM allows 1 or a multiple of 8");
  b = intact;
  const uint32_t shorter = pixel_bytes - 16;
  std::memcpy(&b[pixels + 4], &shorter, 4);
  write(slice, b.substr(0, b.size() - 16));
  expect_series_refused(dir, slice,
                        "Pixel Data (7fe0,0010) holds 112 bytes; Rows x Columns x Number of Frames "
                        "x Samples per Pixel x Bits Allocated / 8 needs 128");
  write(slice, intact + std::string("\x28\x00\x00\x01\x02\x00\x00\x00\x10\x00", 10));
  expect_series_refused(dir, slice, "element (0028,0100) occurs twice in the data set");
  // Photometric Interpretation: a defined term (GDCM took "YBR_FULL_42" for YBR_FULL_422 and
  // read three samples per pixel out of one: fuzz_dicom), with its number of samples.
  const size_t pi = intact.find("MONOCHROME2 ");
  ASSERT_NE(pi, std::string::npos);
  b = intact;
  b.replace(pi, 12, "YBR_FULL_42 ");
  write(slice, b);
  expect_series_refused(dir, slice,
                        "Photometric Interpretation (0028,0004) is 'YBR_FULL_42'; expected a "
                        "defined term");
  b.replace(pi, 12, "RGB         ");
  write(slice, b);
  expect_series_refused(dir, slice,
                        "Photometric Interpretation (0028,0004) RGB has 3 samples per pixel; "
                        "Samples per Pixel (0028,0002) is 1");
  write(slice, intact);
  EXPECT_EQ(read_image(dir).v, std::vector<float>(128, 20.f));
}

// A NaN in the qform or sform reaches an SVD inside ITK that calls abort() (found by
// fuzz_nifti): refused from the raw header first.
TEST(ReaderLimits, NonFiniteNiftiOrientationIsRefusedBeforeItk) {
  CUSEG_REQUIRE_FILE_IO();
  const fs::path d = scratch_dir("reader_limits", "qform");
  Nifti1 n;
  n.payload = floats(48);
  std::string f = n.file();
  const int16_t code = 1;
  const float nan = NAN;
  std::string q = f;
  std::memcpy(&q[252], &code, 2);  // qform_code
  std::memcpy(&q[260], &nan, 4);   // quatern_c
  const std::string qf = write(d / "qform.nii", q);
  EXPECT_NE(error_of([&] { read_info(qf); }).find("expected a finite orientation"),
            std::string::npos);
  std::string sf = f;
  std::memcpy(&sf[254], &code, 2);  // sform_code
  const float inf = INFINITY;
  std::memcpy(&sf[280 + 4 * 5], &inf, 4);  // srow_y[1]
  const std::string sp = write(d / "sform.nii", sf);
  expect_refused(sp, "NIfTI sform holds inf");
}

// MetaIO sizes DimSize, ElementSpacing, Offset, ... by NDims: "NDims = -1 0 0 0 1" sent its
// array reads into a near-endless loop (fuzz_mha). Every line MetaIO takes for NDims must hold
// one integer from 1 to 10: MetaIO's key ends at '=' or ':', and the header ends only at a key
// that is exactly ElementDataFile (fuzz_mha hid an NDims = -1 behind "ElementDataFileeOrder...").
TEST(ReaderLimits, EveryMetaImageNDimsMustBeOneIntegerFrom1To10) {
  CUSEG_REQUIRE_FILE_IO();
  const fs::path d = scratch_dir("reader_limits", "ndims");
  Mha m;
  m.payload = floats(48);
  m.ndims = "-1 0 0 0 1";
  expect_refused(write(d / "negative.mha", m.file()), "NDims '-1 0 0 0 1'; expected one integer");
  m.ndims = "3";
  m.extra = "NDims : = 11\n";
  expect_refused(write(d / "colon.mha", m.file()), "NDims '11'; expected one integer");
  m.extra = "ElementDataFileeOrderMSB = False\nNDims = -1\n";
  expect_refused(write(d / "hidden.mha", m.file()), "line 11: NDims '-1'");
  // A key that only starts with ElementDataFile is just another key: the file reads.
  m.extra = "ElementDataFileeOrderMSB = False\n";
  const std::string ok = write(d / "other_key.mha", m.file());
  EXPECT_EQ(read_image(ok).v, std::vector<float>(48, 0.f));
}

// MetaIO allocates CompressedDataSize bytes before it reads compressed voxels (fuzz_mha: a
// request for 2^63 bytes). The value must be an integer no larger than zlib's compressBound of
// the voxel bytes, and it counts toward the read's peak memory. (A compressed MetaImage as
// written by ITK reads: test_data_io's round trips.)
TEST(ReaderLimits, MetaImageCompressedDataSizeIsBoundedByItsVoxels) {
  CUSEG_REQUIRE_FILE_IO();
  const fs::path d = scratch_dir("reader_limits", "compressed_size");
  Mha m;  // 4 x 4 x 3 float: 192 bytes, compressBound 192 + 13 = 205
  m.payload = floats(48);
  m.extra = "CompressedDataSize = 84444444444444444444444444446\n";
  expect_refused(
      write(d / "digits.mha", m.file()),
      "CompressedDataSize '84444444444444444444444444446'; expected one non-negative integer");
  m.extra = "CompressedDataSize = -1\n";
  expect_refused(write(d / "negative.mha", m.file()), "CompressedDataSize '-1'");
  m.extra = "CompressedDataSize = 206\n";
  expect_refused(write(d / "above.mha", m.file()),
                 "CompressedDataSize 206 is more than zlib makes of 4x4x3 voxels of float (205 "
                 "bytes at most)");
  m.extra = "CompressedDataSize = 205\n";  // MetaIO ignores it: CompressedData = False
  EXPECT_EQ(read_image(write(d / "bound.mha", m.file())).v, std::vector<float>(48, 0.f));
}

// A zlib stream whose header sets FDICT (a preset dictionary) made MetaIO's inflate loop spin
// forever on Z_NEED_DICT (fuzz_mha). Refused before ITK reads the voxels, wherever MetaIO may
// start inflating; a plain zlib stream there reads (as in test_data_io's compressed round trips).
TEST(ReaderLimits, MetaImageCompressedStreamAskingForADictionaryIsRefused) {
  CUSEG_REQUIRE_FILE_IO();
  const fs::path d = scratch_dir("reader_limits", "zlib_dictionary");
  Mha m;
  m.extra = "CompressedDataSize = 200\n";
  m.payload = std::string("\x78\x3f", 2) + std::string(198, '\x01');  // 0x783f % 31 == 0
  std::string f = m.file();
  f.replace(f.find("CompressedData = False"), 22, "CompressedData = True");
  expect_refused(write(d / "dictionary.mha", f), "asks for a preset zlib dictionary");
  f.replace(f.find("CompressedData = True"), 21, "CompressedData = False");
  // Uncompressed, the same bytes are just voxels (192 of them read as floats, 8 left over).
  EXPECT_NO_THROW(read_image(write(d / "plain.mha", f)));
}

// A MetaImage header names the file its voxels are in: one regular file (beside the header or
// by path), never a device or FIFO that could block the read, a slice pattern or a LIST.
TEST(ReaderLimits, MetaImageDataFileMustBeOneRegularFile) {
  CUSEG_REQUIRE_FILE_IO();
  const fs::path d = scratch_dir("reader_limits", "data_file");
  Mha m;
  const auto header = [&](const std::string& name) {
    std::string f = m.file();
    f.replace(f.find("ElementDataFile = LOCAL"), 23, "ElementDataFile = " + name);
    return f;
  };
  write(d / "voxels.raw", floats(48, 2.f));
  const std::string beside = write(d / "beside.mhd", header("voxels.raw"));
  EXPECT_EQ(read_image(beside).v, std::vector<float>(48, 2.f));
  expect_refused(write(d / "stdin.mhd", header("/dev/stdin")),
                 "ElementDataFile /dev/stdin is not a regular file");
  expect_refused(write(d / "missing.mhd", header("nowhere.raw")),
                 "nowhere.raw does not exist; expected the file of voxel data");
  expect_refused(write(d / "pattern.mhd", header("slice%03d.raw")),
                 "names a list or pattern of slice files");
  expect_refused(write(d / "list.mhd", header("LIST")), "names a list or pattern");
}

// ITK threw its own exception, naming no file, for a MetaImage of an unknown element type
// (found by fuzz_mha).
TEST(ReaderLimits, UnknownVoxelTypeIsAnErrorNamingTheFile) {
  CUSEG_REQUIRE_FILE_IO();
  const fs::path d = scratch_dir("reader_limits", "element_type");
  Mha m;
  m.element_type = "MET_NONE";
  m.payload = floats(48);
  const std::string f = write(d / "none.mha", m.file());
  const std::string msg = error_of([&] { read_info(f); });
  EXPECT_NE(msg.find(f), std::string::npos) << msg;
  expect_refused(f, "");
}
