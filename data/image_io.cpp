// ITK-backed image I/O. ITK stays inside this file: data/image.h exposes plain types only.
// The ImageIO factories are registered explicitly (the project does not include ITK_USE_FILE).
#include <itkGDCMImageIO.h>
#include <itkGDCMImageIOFactory.h>
#include <itkGDCMSeriesFileNames.h>
#include <itkImage.h>
#include <itkImageFileReader.h>
#include <itkImageFileWriter.h>
#include <itkImageIOFactory.h>
#include <itkImageSeriesReader.h>
#include <itkImageSeriesWriter.h>
#include <itkMetaDataObject.h>
#include <itkMetaImageIO.h>
#include <itkMetaImageIOFactory.h>
#include <itkNiftiImageIO.h>
#include <itkNiftiImageIOFactory.h>
#include <itkNrrdImageIO.h>
#include <itkNrrdImageIOFactory.h>
#include <zlib.h>  // zlib comes with ITK (ITKZLIB is a public dependency of ITKIONIFTI)

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <mutex>
#include <random>
#include <sstream>

#include "cuseg/core/check.h"
#include "cuseg/data/dicom_guard.h"
#include "cuseg/data/image.h"

namespace fs = std::filesystem;

namespace cuseg {
namespace data {
namespace {

void register_factories() {
  static std::once_flag once;
  std::call_once(once, [] {
    itk::NiftiImageIOFactory::RegisterOneFactory();
    itk::NrrdImageIOFactory::RegisterOneFactory();
    itk::MetaImageIOFactory::RegisterOneFactory();
    itk::GDCMImageIOFactory::RegisterOneFactory();
  });
}

template <class TImage>
Geometry geometry_of(const TImage* im) {
  Geometry g;
  auto sz = im->GetLargestPossibleRegion().GetSize();
  for (int a = 0; a < 3; ++a) {
    g.size[a] = int(sz[a]);
    g.spacing[a] = im->GetSpacing()[a];
    g.origin[a] = im->GetOrigin()[a];
    for (int b = 0; b < 3; ++b) g.direction[3 * a + b] = im->GetDirection()(a, b);
  }
  return g;
}

template <class TImage>
typename TImage::Pointer make_itk(const Geometry& g) {
  auto im = TImage::New();
  typename TImage::RegionType region;
  typename TImage::SizeType sz;
  typename TImage::SpacingType sp;
  typename TImage::PointType org;
  typename TImage::DirectionType dir;
  for (int a = 0; a < 3; ++a) {
    sz[a] = size_t(g.size[a]);
    sp[a] = g.spacing[a];
    org[a] = g.origin[a];
    for (int b = 0; b < 3; ++b) dir(a, b) = g.direction[3 * a + b];
  }
  region.SetSize(sz);
  im->SetRegions(region);
  im->SetSpacing(sp);
  im->SetOrigin(org);
  im->SetDirection(dir);
  im->Allocate();
  return im;
}

// zlib file handle (gzread also reads uncompressed files), closed on scope exit.
struct GzFile {
  gzFile f;
  GzFile(const std::string& path, const char* purpose) : f(gzopen(path.c_str(), "rb")) {
    CUSEG_REQUIRE(f != nullptr, path << ": cannot open for " << purpose);
  }
  ~GzFile() { gzclose(f); }
  GzFile(const GzFile&) = delete;
  GzFile& operator=(const GzFile&) = delete;
};

// The NIfTI header fields cuseg reads itself (layouts of nifti1.h and nifti2.h), for checks on
// top of ITK's reader: niftilib silently turns extents < 1 and spacings of 0 or NaN into 1, and
// NaN/Inf voxels into 0 (see scan_nifti_nonfinite).
struct NiftiHeader {
  int32_t sizeof_hdr = 0;  // 348: NIfTI-1 (or ANALYZE 7.5), 540: NIfTI-2
  bool swap = false;       // stored in the other byte order
  bool is_nifti = false;   // NIfTI magic; false: ANALYZE 7.5 (no orientation fields)
  bool one_file = false;   // header and voxels in one file ("n+N")
  int16_t datatype = 0;
  int64_t dim[8] = {};
  double pixdim[8] = {};
  double scl_slope = 0, scl_inter = 0;  // value = stored * slope + inter (slope 0: unscaled)
  int32_t qform_code = 0, sform_code = 0;
  double quatern[6] = {};  // quatern_b, c, d, qoffset_x, y, z
  double srow[12] = {};    // srow_x, srow_y, srow_z
  int64_t vox_offset = 0;  // where niftilib reads the voxels: max(vox_offset, sizeof_hdr)
};

// Reads the header from the start of `f` the way niftilib (nifti2_io.c) decides what it is: the
// version from sizeof_hdr (348 or 540, either byte order), the byte order from dim[0] (1..7 as
// stored, or after swapping; sizeof_hdr only when dim[0] is 0), NIfTI rather than ANALYZE 7.5
// from the magic ("n+N" or "niN" with N in 1..9), a single file from its '+'. Returns false
// (with why_not) when it is no NIfTI/ANALYZE header at all; throws naming the file when dim[0]
// or vox_offset is unusable.
bool read_nifti_header(gzFile f, const std::string& path, NiftiHeader* hd, std::string* why_not) {
  std::array<unsigned char, 540> h{};
  const int got = gzread(f, h.data(), unsigned(h.size()));
  if (got < 348) {
    *why_not = "too short for a NIfTI header (" + std::to_string(std::max(got, 0)) + " bytes)";
    return false;
  }
  auto rd = [&](size_t off, void* dst, size_t n, bool swap) {
    std::memcpy(dst, h.data() + off, n);
    if (swap) std::reverse(static_cast<unsigned char*>(dst), static_cast<unsigned char*>(dst) + n);
  };
  int32_t sz = 0;
  rd(0, &sz, 4, false);
  bool size_swapped = false;
  if (sz != 348 && sz != 540) {
    rd(0, &sz, 4, true);
    size_swapped = true;
  }
  if (sz != 348 && sz != 540) {
    *why_not = "not a NIfTI file (sizeof_hdr is neither 348 nor 540)";
    return false;
  }
  if (sz == 540 && got < 540) {
    *why_not = "too short for a NIfTI-2 header (" + std::to_string(got) + " bytes)";
    return false;
  }
  hd->sizeof_hdr = sz;
  const bool v1 = sz == 348;
  // Byte order from dim[0] (niftilib's need_nhdr_swap).
  int64_t d0 = 0, d0s = 0;
  if (v1) {
    int16_t a = 0, b = 0;
    rd(40, &a, 2, false);
    rd(40, &b, 2, true);
    d0 = a, d0s = b;
  } else {
    rd(16, &d0, 8, false);
    rd(16, &d0s, 8, true);
  }
  bool swap;
  if (d0 != 0) {
    CUSEG_REQUIRE((d0 >= 1 && d0 <= 7) || (d0s >= 1 && d0s <= 7),
                  path << ": NIfTI dim[0] = " << d0 << "; expected 1 to 7 dimensions");
    swap = !(d0 >= 1 && d0 <= 7);
  } else {
    swap = size_swapped;
  }
  hd->swap = swap;
  const unsigned char* m = h.data() + (v1 ? 344 : 4);
  hd->is_nifti =
      m[0] == 'n' && (m[1] == '+' || m[1] == 'i') && m[2] >= '1' && m[2] <= '9' && m[3] == '\0';
  hd->one_file = hd->is_nifti && m[1] == '+';
  if (v1) {
    rd(70, &hd->datatype, 2, swap);
    for (int d = 0; d < 8; ++d) {
      int16_t v = 0;
      float p = 0;
      rd(40 + 2 * size_t(d), &v, 2, swap);
      rd(76 + 4 * size_t(d), &p, 4, swap);
      hd->dim[d] = v;
      hd->pixdim[d] = p;
    }
    int16_t qc = 0, sc = 0;
    rd(252, &qc, 2, swap);
    rd(254, &sc, 2, swap);
    hd->qform_code = qc;
    hd->sform_code = sc;
    for (int q = 0; q < 6; ++q) {
      float v = 0;
      rd(256 + 4 * size_t(q), &v, 4, swap);
      hd->quatern[q] = v;
    }
    for (int q = 0; q < 12; ++q) {
      float v = 0;
      rd(280 + 4 * size_t(q), &v, 4, swap);
      hd->srow[q] = v;
    }
    float sl = 0, in = 0;
    rd(112, &sl, 4, swap);
    rd(116, &in, 4, swap);
    hd->scl_slope = sl;
    hd->scl_inter = in;
    float off = 0;
    rd(108, &off, 4, swap);
    // Checked before the conversion: a float outside int64 (or NaN) does not convert.
    CUSEG_REQUIRE(off >= 0.f && off < 2147483648.f,
                  path << ": NIfTI vox_offset " << off << " is not a byte offset in [0, 2^31)");
    hd->vox_offset = int64_t(off);
  } else {
    rd(12, &hd->datatype, 2, swap);
    for (int d = 0; d < 8; ++d) {
      rd(16 + 8 * size_t(d), &hd->dim[d], 8, swap);
      rd(104 + 8 * size_t(d), &hd->pixdim[d], 8, swap);
    }
    rd(168, &hd->vox_offset, 8, swap);
    rd(176, &hd->scl_slope, 8, swap);
    rd(184, &hd->scl_inter, 8, swap);
    rd(344, &hd->qform_code, 4, swap);
    rd(348, &hd->sform_code, 4, swap);
    for (int q = 0; q < 6; ++q) rd(352 + 8 * size_t(q), &hd->quatern[q], 8, swap);
    for (int q = 0; q < 12; ++q) rd(400 + 8 * size_t(q), &hd->srow[q], 8, swap);
    CUSEG_REQUIRE(
        hd->vox_offset >= 0 && hd->vox_offset < (int64_t(1) << 31),
        path << ": NIfTI vox_offset " << hd->vox_offset << " is not a byte offset in [0, 2^31)");
  }
  CUSEG_REQUIRE(hd->dim[0] >= 1 && hd->dim[0] <= 7,
                path << ": NIfTI dim[0] = " << hd->dim[0] << "; expected 1 to 7 dimensions");
  // niftilib (nifti_image_read) reads a single file's voxels from max(vox_offset, header size).
  hd->vox_offset = std::max<int64_t>(hd->vox_offset, sz);
  return true;
}

// What niftilib would silently repair, or what would make ITK abort, refused here naming the
// field. Lengths are bounded by kMaxMm = 1e6 mm (1 km, beyond any scanner): ITK builds the
// orientation in float32 and normalises columns through sums of squares, which overflow to Inf
// from about 1.8e19 and reach an SVD that aborts the process on NaN/Inf (found by fuzz_nifti).
void check_nifti_header(const std::string& path) {
  constexpr double kMaxMm = 1e6;
  GzFile f(path, "reading the NIfTI header");
  NiftiHeader hd;
  std::string why;
  // A header cuseg cannot parse is refused here too: ITK's niftilib reads some of them anyway
  // (e.g. a "n+1" magic with a wrong sizeof_hdr) and then trusts their orientation fields.
  if (!read_nifti_header(f.f, path, &hd, &why))
    CUSEG_THROW(path << ": " << why
                     << "; expected a NIfTI-1 (sizeof_hdr 348) or NIfTI-2 (540) header");
  for (int d = 1; d <= hd.dim[0]; ++d)
    CUSEG_REQUIRE(hd.dim[d] >= 1, path << ": NIfTI dim[" << d << "] = " << hd.dim[d]
                                       << "; expected every extent >= 1 (niftilib would silently "
                                          "read it as 1)");
  for (int d = 1; d <= std::min<int64_t>(hd.dim[0], 3); ++d)
    CUSEG_REQUIRE(std::isfinite(hd.pixdim[d]) && hd.pixdim[d] > 0 && hd.pixdim[d] <= kMaxMm,
                  path << ": NIfTI pixdim[" << d << "] = " << hd.pixdim[d]
                       << "; expected a voxel spacing in (0, 1e6] mm (niftilib would silently "
                          "read 0 or NaN as 1 mm)");
  if (!hd.is_nifti) return;  // ANALYZE 7.5: no orientation fields
  if (hd.qform_code > 0)
    for (int q = 0; q < 6; ++q)
      CUSEG_REQUIRE(std::isfinite(hd.quatern[q]) && std::fabs(hd.quatern[q]) <= kMaxMm,
                    path << ": NIfTI qform holds " << hd.quatern[q]
                         << "; expected a finite orientation within 1e6 mm");
  if (hd.sform_code > 0)
    for (int q = 0; q < 12; ++q)
      CUSEG_REQUIRE(std::isfinite(hd.srow[q]) && std::fabs(hd.srow[q]) <= kMaxMm,
                    path << ": NIfTI sform holds " << hd.srow[q]
                         << "; expected a finite orientation within 1e6 mm");
}

std::string extent_str(const FileInfo& info) {
  std::ostringstream os;
  for (size_t d = 0; d < info.extent.size(); ++d) os << (d ? "x" : "") << info.extent[d];
  return os.str();
}

bool is_nifti_name(const std::string& path) {
  const std::string n = fs::path(path).filename().string();
  auto ends = [&](const char* e) {
    const size_t k = std::strlen(e);
    return n.size() > k && n.compare(n.size() - k, k, e) == 0;
  };
  return ends(".nii") || ends(".nii.gz");
}

std::string mib_str(double bytes) {
  std::ostringstream os;
  os.precision(bytes < 1e15 ? 1 : 3);
  if (bytes < 1e15)
    os << std::fixed << bytes / (1024.0 * 1024.0) << " MiB";
  else
    os << bytes / (1024.0 * 1024.0) << " MiB";
  return os.str();
}

// The memory guard (data/image.h, ReadLimits): throws before anything is allocated.
void check_memory(const std::string& path, const std::string& grid, double voxels,
                  const std::string& component_type, double peak, const ReadLimits& limits) {
  const uint64_t limit = limits.max_bytes ? limits.max_bytes : machine_memory_bytes();
  const std::string whose = limits.max_bytes && !limits.limit_name.empty() ? limits.limit_name
                            : limits.max_bytes ? std::string("the read limit")
                                               : std::string("this machine's memory");
  CUSEG_REQUIRE(peak <= double(limit),
                path << ": the header asks for a " << grid << " image (" << voxels << " voxels of "
                     << component_type << "); reading it needs about " << mib_str(peak)
                     << ", more than " << whose << " (" << mib_str(double(limit))
                     << "); expected an image that fits");
}

// Header checks shared by the readers: exists, readable by some ImageIO, 3-D scalar, sane
// extents and geometry, and a read that fits the memory limit. `out_bytes` / `result_bytes`:
// bytes per voxel of ITK's output pixel type and of the Volume handed back.
FileInfo checked_info(const std::string& path, const ReadLimits& limits, int out_bytes,
                      int result_bytes) {
  FileInfo info = read_info(path);
  if (is_nifti_name(path)) {
    // niftilib looks for a single-file NIfTI's voxels under <base>.nii before <base>.nii.gz
    // (nifti_findimgname), so reading a.nii.gz next to an a.nii takes a.nii.gz's header with
    // a.nii's voxels: garbage without a word (seen with two different CTs).
    const std::string n = fs::path(path).filename().string();
    if (n.size() > 7 && n.compare(n.size() - 7, 7, ".nii.gz") == 0) {
      const fs::path plain = fs::path(path).parent_path() / n.substr(0, n.size() - 3);
      std::error_code ec;
      CUSEG_REQUIRE(!fs::exists(plain, ec),
                    path << ": " << plain.string()
                         << " lies next to it; ITK's NIfTI reader would read that file's voxels "
                            "under this file's header. Expected one of the two: remove or rename "
                            "the other");
    }
  }
  CUSEG_REQUIRE(info.components == 1, path << ": expected a scalar image, found " << info.components
                                           << " components per voxel");
  bool extra_ok = true;
  for (int d = 3; d < info.dimensions; ++d) extra_ok = extra_ok && info.extent[d] == 1;
  CUSEG_REQUIRE(info.dimensions >= 3 && extra_ok, path << ": expected a 3-D image, found "
                                                       << info.dimensions << "-D with extent "
                                                       << extent_str(info));
  for (int a = 0; a < 3; ++a)
    CUSEG_REQUIRE(info.extent[a] >= 1 && info.extent[a] <= std::numeric_limits<int>::max(),
                  path << ": extent " << extent_str(info)
                       << " is not a volume; expected every extent in [1, 2^31)");
  check_geometry(info.geo, path);
  const double voxels = double(info.extent[0]) * double(info.extent[1]) * double(info.extent[2]);
  // zlib's compressBound: the most deflate makes of n bytes. A larger CompressedDataSize is not
  // the size of this image's compressed voxels.
  const double n = voxels * double(std::max(info.component_bytes, 1));
  const double bound =
      n + std::floor(n / 4096) + std::floor(n / 16384) + std::floor(n / 33554432) + 13;
  CUSEG_REQUIRE(double(info.buffer_bytes) <= bound,
                path << ": CompressedDataSize " << info.buffer_bytes
                     << " is more than zlib makes of " << extent_str(info) << " voxels of "
                     << info.component_type << " (" << uint64_t(bound)
                     << " bytes at most); expected the size of the compressed voxel data");
  check_memory(
      path, extent_str(info), voxels, info.component_type,
      read_peak_bytes(voxels, info.component_bytes, out_bytes, result_bytes, is_nifti_name(path)) +
          double(info.buffer_bytes),
      limits);
  return info;
}

bool ends_with(const std::string& n, const char* e) {
  const size_t k = std::strlen(e);
  return n.size() > k && n.compare(n.size() - k, k, e) == 0;
}

// True when the two bytes at `at` in `file` open a zlib stream that asks for a preset
// dictionary (RFC 1950: CM 8, (CMF * 256 + FLG) % 31 == 0, FDICT bit 0x20 of FLG). MetaIO has no
// dictionary to give: its inflate loop sees Z_NEED_DICT, which is neither an error nor the end,
// and runs forever (fuzz_mha).
bool zlib_wants_dictionary(const std::string& file, uint64_t at) {
  std::ifstream in(file, std::ios::binary);
  unsigned char h[2];
  in.seekg(std::streamoff(at));
  if (!in.read(reinterpret_cast<char*>(h), 2)) return false;
  return (h[0] & 0x0f) == 8 && (unsigned(h[0]) << 8 | h[1]) % 31 == 0 && (h[1] & 0x20) != 0;
}

// ITK's MetaImage reader (MetaIO) keeps header values in fixed 255-byte buffers and parses
// binary junk in a header line into strings it then reads past (heap over-reads found by
// fuzz_mha). A MetaImage header is text: every line up to and including ElementDataFile (where
// the header ends and the data begins) must be printable ASCII of the form "Key = Value", at
// most 254 characters long. MetaIO's key: from the first non-blank character to the first '='
// or ':' (both separate key and value), trailing blanks trimmed, compared exactly; the value
// starts after the separators and blanks that follow (metaUtils.cxx, MET_Read, MET_SkipToVal).
// Returns the header's CompressedDataSize (0 when it has none).
uint64_t check_metaimage_header(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::string line;
  int n = 0;
  bool ended = false, compressed = false;
  uint64_t compressed_size = 0;
  int64_t header_size = 0;
  std::vector<std::pair<std::string, uint64_t>> stream_starts;  // where MetaIO may inflate from
  while (n < 1000 && std::getline(in, line)) {
    ++n;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    CUSEG_REQUIRE(line.size() <= 254,
                  path << ": MetaImage header line " << n << " is " << line.size()
                       << " characters long; expected at most 254 (ITK's MetaIO reads header "
                          "values into 255-byte buffers)");
    const size_t sep = line.find_first_of("=:");
    bool text = sep != std::string::npos;
    for (unsigned char c : line) text = text && ((c >= 0x20 && c < 0x7f) || c == '\t');
    CUSEG_REQUIRE(text, path << ": MetaImage header line " << n
                             << " is not a text line 'Key = Value'; expected a text header");
    std::string key = line.substr(0, sep);
    key.erase(0, std::min(key.size(), key.find_first_not_of(" \t")));
    key.erase(key.find_last_not_of(" \t") + 1);  // npos + 1 == 0: all blank
    const size_t a = line.find_first_not_of("=: \t", sep);
    const size_t b = line.find_last_not_of(" \t");
    const std::string value = a == std::string::npos ? "" : line.substr(a, b - a + 1);
    const bool digits =
        !value.empty() && value.find_first_not_of("0123456789") == std::string::npos;
    const auto where = [&] { return path + ": MetaImage header line " + std::to_string(n); };
    // NDims sizes every array MetaIO reads next (DimSize, ElementSpacing, Offset, ...): a
    // negative or huge value sends its parser into a near-endless read (fuzz_mha). Every NDims
    // line must hold one integer in 1..10 (MetaIO's own maximum) before ITK sees the file.
    if (key == "NDims")
      CUSEG_REQUIRE(digits && value.size() <= 2 && std::stoi(value) >= 1 && std::stoi(value) <= 10,
                    where() << ": NDims '" << value << "'; expected one integer from 1 to 10");
    // MetaIO allocates a buffer of CompressedDataSize bytes before it reads the compressed
    // voxels (fuzz_mha: an allocation of 2^63 bytes). checked_info() bounds it by the voxels.
    if (key == "CompressedDataSize") {
      CUSEG_REQUIRE(digits && value.size() <= 18,
                    where() << ": CompressedDataSize '" << value
                            << "'; expected one non-negative integer (bytes)");
      compressed_size = std::stoull(value);
    }
    if (key == "CompressedData")  // MetaIO: compressed when the value starts with T, t or 1
      compressed = !value.empty() && (value[0] == 'T' || value[0] == 't' || value[0] == '1');
    if (key == "HeaderSize") {
      CUSEG_REQUIRE((digits && value.size() <= 12) || value == "-1",
                    where() << ": HeaderSize '" << value
                            << "'; expected -1 or one non-negative integer (bytes)");
      header_size = std::stoll(value);
    }
    // The header ends at the line whose key is exactly ElementDataFile ("ElementDataFileX = ..."
    // is another key to MetaIO, which reads on: fuzz_mha hid an NDims = -1 behind one).
    if (key != "ElementDataFile") continue;
    ended = true;
    // LOCAL: the voxels follow in this file. Otherwise MetaIO opens the named file (relative
    // to the header's folder; also with .gz / .Z appended), a printf pattern of slice files, or
    // "LIST" of files: a header could name /dev/stdin or a FIFO and block the read for good.
    // One regular file is required; patterns and lists are refused.
    std::string data_file = path;
    if (value != "LOCAL" && value != "Local" && value != "local") {
      CUSEG_REQUIRE(value.compare(0, 4, "LIST") != 0 && value.find('%') == std::string::npos,
                    path << ": MetaImage ElementDataFile '" << value
                         << "' names a list or pattern of slice files; expected LOCAL or one "
                            "data file");
      fs::path data(value);
      if (data.is_relative()) data = fs::path(path).parent_path() / data;
      data_file.clear();
      for (const char* ext : {"", ".gz", ".Z"}) {
        std::error_code ec;
        const fs::path f = data.string() + ext;
        if (!fs::exists(f, ec)) continue;
        CUSEG_REQUIRE(fs::is_regular_file(f, ec),
                      path << ": MetaImage ElementDataFile " << f.string()
                           << " is not a regular file; expected the file of voxel data");
        data_file = f.string();
        break;
      }
      CUSEG_REQUIRE(!data_file.empty(), path << ": MetaImage ElementDataFile " << data.string()
                                             << " does not exist; expected the file of voxel "
                                                "data next to the header");
    }
    if (compressed) {
      // MetaIO inflates from HeaderSize when it is > 0, else from where the header ends (LOCAL)
      // or the file's start, and from the file's start when CompressedDataSize is 0; with
      // HeaderSize -1 from the end minus the uncompressed size, which is no place for a
      // compressed stream.
      CUSEG_REQUIRE(header_size != -1, path << ": MetaImage HeaderSize -1 with CompressedData; "
                                               "expected the size of the header or none");
      stream_starts = {{data_file, 0}};
      if (header_size > 0) stream_starts.push_back({data_file, uint64_t(header_size)});
      if (data_file == path) stream_starts.push_back({path, uint64_t(in.tellg())});
    }
    break;
  }
  CUSEG_REQUIRE(ended, path << ": no ElementDataFile line in the MetaImage header (in its first "
                            << n << " lines); expected one where the header ends");
  for (const auto& [file, at] : stream_starts)
    CUSEG_REQUIRE(!zlib_wants_dictionary(file, at),
                  path << ": the compressed voxel data (" << file << ", byte " << at
                       << ") asks for a preset zlib dictionary, which MetaImage does not have; "
                          "expected a plain zlib or gzip stream");
  return compressed_size;
}

// The ImageIO for a file, chosen by its extension (or the DICOM magic), never by asking every
// registered ImageIO whether it can read the file: GDCM's answer means parsing the file as
// DICOM, which for a non-DICOM file can mean allocating whatever its bytes declare.
// `buffer_bytes`, when given, receives what the read allocates besides the voxel buffers (a
// MetaImage's CompressedDataSize).
itk::ImageIOBase::Pointer make_io(const std::string& path, uint64_t* buffer_bytes = nullptr) {
  const std::string n = fs::path(path).filename().string();
  itk::ImageIOBase::Pointer io;
  const char* kind = "";
  if (ends_with(n, ".nii") || ends_with(n, ".nii.gz")) {
    io = itk::NiftiImageIO::New();
    kind = "NIfTI";
  } else if (ends_with(n, ".nrrd") || ends_with(n, ".nhdr")) {
    io = itk::NrrdImageIO::New();
    kind = "NRRD";
  } else if (ends_with(n, ".mha") || ends_with(n, ".mhd")) {
    const uint64_t compressed = check_metaimage_header(path);
    if (buffer_bytes) *buffer_bytes = compressed;
    io = itk::MetaImageIO::New();
    kind = "MetaImage";
  } else if (detail::has_dicm_magic(path)) {
    const std::string problem = detail::dicom_length_problem(path);
    CUSEG_REQUIRE(problem.empty(), path << ": not an intact DICOM file: " << problem);
    io = itk::GDCMImageIO::New();
    kind = "DICOM";
  } else {
    CUSEG_THROW(path << ": not a readable image (expected NIfTI .nii/.nii.gz, NRRD .nrrd/.nhdr, "
                        "MetaImage .mha/.mhd, a DICOM file or a DICOM series folder)");
  }
  CUSEG_REQUIRE(io->CanReadFile(path.c_str()), path << ": not a readable " << kind << " file");
  io->SetFileName(path);
  return io;
}

template <class TPixel>
typename itk::Image<TPixel, 3>::Pointer read_itk(const std::string& path) {
  using ImageT = itk::Image<TPixel, 3>;
  auto reader = itk::ImageFileReader<ImageT>::New();
  reader->SetFileName(path);
  try {
    reader->SetImageIO(make_io(path));
    reader->Update();
  } catch (const itk::ExceptionObject& e) {
    CUSEG_THROW(path << ": cannot read image: " << e.GetDescription());
  }
  return reader->GetOutput();
}

template <class TPixel, class TImg>
void write_itk(const TImg& vol, const std::string& path,
               const std::function<TPixel(size_t)>& value) {
  register_factories();
  using ImageT = itk::Image<TPixel, 3>;
  auto im = make_itk<ImageT>(vol.geo);
  TPixel* buf = im->GetBufferPointer();
  for (size_t n = 0; n < vol.v.size(); ++n) buf[n] = value(n);
  auto writer = itk::ImageFileWriter<ImageT>::New();
  writer->SetFileName(path);
  writer->SetInput(im);
  writer->SetUseCompression(true);
  try {
    fs::path parent = fs::path(path).parent_path();
    if (!parent.empty()) fs::create_directories(parent);
    writer->Update();
  } catch (const itk::ExceptionObject& e) {
    CUSEG_THROW(path << ": cannot write image: " << e.GetDescription());
  } catch (const fs::filesystem_error& e) {
    CUSEG_THROW(path << ": cannot create the folder: " << e.what());
  }
  // niftilib derives its own file name from the extension and silently writes e.g.
  // "a.nii.nii.gz" as "a.nii.gz": a writer that "succeeds" without the requested file is an
  // error here, never a lost output.
  std::error_code ec;
  CUSEG_REQUIRE(fs::is_regular_file(path, ec),
                path << ": the image writer reported success but did not create this file "
                        "(NIfTI names must end in a single .nii or .nii.gz)");
}

}  // namespace

// ---------------------------------------------------------------- NIfTI payload check
// Why this exists: ITK's NIfTI reader hides two things.
// 1. NaN and Inf. In ITK's bundled niftilib (Modules/ThirdParty/NIFTI/src/nifti/niftilib/
//    nifti1_io.c, nifti_read_buffer(), the block "check input float arrays for goodness, and fix
//    bad numbers", compiled whenever <math.h> defines isfinite) every non-finite FLOAT32/FLOAT64/
//    COMPLEX value is overwritten with 0 right after the bytes are read and byte-swapped. It runs
//    for every read, before ITK converts the pixel type and applies scl_slope/scl_inter, and
//    there is no option to turn it off.
// 2. Missing data. A file that ends before its voxels do (an interrupted download or copy) reads
//    without an error: niftilib warns on stderr and fills the rest with 0 (seen with .nii and
//    .nii.gz cut at 10-90 % of their length), which for CT is water.
// So every NIfTI read is followed by this check: it decodes only the header fields it needs
// (NIfTI-1 / NIfTI-2 layouts from nifti1.h / nifti2.h), and for float data, or a compressed
// file, streams the voxel payload through zlib (gzread also reads plain files) in 1 MiB pieces;
// a plain file of integers is checked by its size alone.
namespace {

// Bytes per voxel of a NIfTI datatype code (nifti1.h), 0 for an unknown code.
int nifti_voxel_bytes(int16_t datatype) {
  switch (datatype) {
    case 2:
    case 256:
      return 1;  // UINT8, INT8
    case 4:
    case 512:
      return 2;  // INT16, UINT16
    case 8:
    case 16:
    case 768:
    case 2304:
      return 4;  // INT32, FLOAT32, UINT32, RGBA32
    case 128:
      return 3;  // RGB24
    case 32:
    case 64:
    case 1024:
    case 1280:
      return 8;  // COMPLEX64, FLOAT64, INT64, UINT64
    case 1536:
    case 1792:
      return 16;  // FLOAT128, COMPLEX128
    case 2048:
      return 32;  // COMPLEX256
    default:
      return 0;
  }
}

// The check itself. When `restore` is given (ITK's buffer of the same file, `restore_n` values,
// same linear order: i fastest), every non-finite voxel is written back into it, scaled as the
// file says (scl_slope / scl_inter; slope 0 means none), so the image shows what the file holds.
template <class T>
NonFiniteScan check_nifti_payload(const std::string& path, T* restore, int64_t restore_n) {
  NonFiniteScan r;
  GzFile f(path, "the NIfTI payload check");
  NiftiHeader hd;
  std::string why;
  CUSEG_REQUIRE(read_nifti_header(f.f, path, &hd, &why), path << ": " << why);
  CUSEG_REQUIRE(hd.one_file, path << ": expected a single-file NIfTI (magic n+1 / n+2; a header "
                                     "of another kind names its voxels in a second file)");
  const int64_t* dim = hd.dim;
  // Extents < 1 count as 1 (as niftilib does); the product is bounded so it cannot overflow:
  // nothing is allocated by it (1 MiB buffer) and the stream stops where the data ends.
  int64_t nvox = 1;
  const int64_t kMaxVoxels = int64_t(1) << 56;
  for (int d = 1; d <= dim[0]; ++d) {
    const int64_t e = std::max<int64_t>(dim[d], 1);
    CUSEG_REQUIRE(e <= kMaxVoxels / nvox,
                  path << ": dimensions overflow (dim[" << d << "] = " << dim[d] << ")");
    nvox *= e;
  }
  auto extent = [&](int d) {
    return d <= dim[0] ? int(std::min<int64_t>(std::max<int64_t>(dim[d], 1), INT32_MAX)) : 1;
  };
  r.size = {extent(1), extent(2), extent(3)};
  const int bytes = nifti_voxel_bytes(hd.datatype);
  if (bytes == 0) return r;  // a datatype ITK refuses anyway
  // NIFTI_TYPE_FLOAT32 = 16, NIFTI_TYPE_FLOAT64 = 64 (nifti1.h). Integers cannot hold NaN.
  r.checked = hd.datatype == 16 || hd.datatype == 64;
  auto short_data = [&](int64_t have) {
    CUSEG_THROW(path << ": the file ends after " << have << " of the " << nvox
                     << " voxels its header declares (truncated: a partial download or copy?)");
  };
  if (!r.checked && gzdirect(f.f)) {
    // Plain file of integers: its size says it all.
    std::error_code ec;
    const uint64_t fsize = fs::file_size(path, ec);
    const uint64_t need = uint64_t(hd.vox_offset) + uint64_t(nvox) * uint64_t(bytes);
    if (!ec && fsize < need)
      short_data(fsize > uint64_t(hd.vox_offset) ? int64_t((fsize - hd.vox_offset) / bytes) : 0);
    return r;
  }
  CUSEG_REQUIRE(gzseek(f.f, z_off_t(hd.vox_offset), SEEK_SET) == z_off_t(hd.vox_offset),
                path << ": cannot seek to the voxel data at byte " << hd.vox_offset);
  const double slope = hd.scl_slope, inter = hd.scl_inter;
  const bool scaled = slope != 0 && std::isfinite(slope);
  std::vector<unsigned char> buf(size_t(1) << 20);
  int64_t n = 0;
  while (n < nvox) {
    const size_t want =
        size_t(std::min<int64_t>(nvox - n, int64_t(buf.size()) / bytes)) * size_t(bytes);
    const int k = gzread(f.f, buf.data(), unsigned(want));
    if (k != int(want)) short_data(n + std::max(k, 0) / bytes);
    if (!r.checked) {
      n += int64_t(want) / bytes;
      continue;
    }
    for (size_t q = 0; q < want; q += size_t(bytes), ++n) {
      if (hd.swap) std::reverse(buf.data() + q, buf.data() + q + bytes);
      double v;
      if (bytes == 4) {
        float x;
        std::memcpy(&x, buf.data() + q, 4);
        v = x;
      } else {
        std::memcpy(&v, buf.data() + q, 8);
      }
      if (std::isfinite(v)) continue;
      if (std::isnan(v)) ++r.nan;
      if (r.first < 0) r.first = n;
      ++r.count;
      if (restore && n < restore_n) restore[n] = T(scaled ? v * slope + inter : v);
    }
  }
  return r;
}

}  // namespace

// ---------------------------------------------------------------- reading
FileInfo read_info(const std::string& path) {
  register_factories();
  CUSEG_REQUIRE(fs::exists(path), path << ": no such file");
  // NIfTI: what niftilib would silently repair, or what would make ITK abort (a non-finite
  // qform/sform reaches vnl_svd, which calls abort()), is refused before ITK sees the header.
  if (is_nifti_name(path)) check_nifti_header(path);
  FileInfo info;
  info.path = path;
  try {
    auto io = make_io(path, &info.buffer_bytes);
    io->ReadImageInformation();
    CUSEG_REQUIRE(io->GetComponentType() != itk::IOComponentEnum::UNKNOWNCOMPONENTTYPE,
                  path << ": unknown voxel type; expected integer or floating-point voxels");
    info.dimensions = int(io->GetNumberOfDimensions());
    for (int d = 0; d < info.dimensions; ++d) {
      // ITK's extents are unsigned: a corrupt header's "negative" extent arrives as ~2^64.
      const uint64_t e = uint64_t(io->GetDimensions(unsigned(d)));
      info.extent.push_back(e > uint64_t(std::numeric_limits<int64_t>::max()) ? -1 : int64_t(e));
    }
    info.components = int(io->GetNumberOfComponents());
    info.component_type = itk::ImageIOBase::GetComponentTypeAsString(io->GetComponentType());
    info.component_bytes = int(io->GetComponentSize());
    for (int a = 0; a < 3 && a < info.dimensions; ++a) {
      const int64_t e = info.extent[size_t(a)];
      info.geo.size[a] = e >= 0 && e <= std::numeric_limits<int>::max() ? int(e) : 0;
      info.geo.spacing[a] = io->GetSpacing(unsigned(a));
      info.geo.origin[a] = io->GetOrigin(unsigned(a));
      auto col = io->GetDirection(unsigned(a));
      for (int r = 0; r < 3; ++r) info.geo.direction[3 * r + a] = r < int(col.size()) ? col[r] : 0;
    }
  } catch (const itk::ExceptionObject& e) {
    CUSEG_THROW(path << ": cannot read the header: " << e.GetDescription());
  }
  for (int a = info.dimensions; a < 3; ++a) info.geo.size[a] = 1;
  return info;
}

Image read_image(const std::string& path, const ReadLimits& limits) {
  register_factories();
  if (fs::is_directory(path)) return read_dicom_series(path, "", limits);
  checked_info(path, limits, int(sizeof(float)), int(sizeof(float)));
  auto im = read_itk<float>(path);
  Image out;
  out.geo = geometry_of(im.GetPointer());
  const float* p = im->GetBufferPointer();
  out.v.assign(p, p + out.geo.numel());
  // NIfTI: refuse a truncated file, and put back the NaN/Inf ITK turned into 0 (see below).
  if (is_nifti_name(path)) check_nifti_payload(path, out.v.data(), int64_t(out.v.size()));
  return out;
}

LabelMap read_label(const std::string& path, const ReadLimits& limits) {
  register_factories();
  checked_info(path, limits, int(sizeof(double)), int(sizeof(uint8_t)));
  // Read as double: every stored type (uint8 .. int32, float32, float64) converts exactly.
  auto im = read_itk<double>(path);
  LabelMap out;
  out.geo = geometry_of(im.GetPointer());
  double* p = im->GetBufferPointer();
  // NIfTI: refuse a truncated file; NaN/Inf labels come back and fail the check below.
  if (is_nifti_name(path)) check_nifti_payload(path, p, out.geo.numel());
  out.v.resize(size_t(out.geo.numel()));
  for (size_t n = 0; n < out.v.size(); ++n) {
    const double x = p[n];
    if (!(x >= 0 && x <= 255 && x == std::floor(x))) {
      const int64_t i = int64_t(n % size_t(out.geo.size[0]));
      const int64_t j = int64_t(n / size_t(out.geo.size[0]) % size_t(out.geo.size[1]));
      const int64_t k = int64_t(n / (size_t(out.geo.size[0]) * size_t(out.geo.size[1])));
      CUSEG_THROW(path << ": label maps must hold integer class values in [0, 255]; found " << x
                       << " at voxel (" << i << ", " << j << ", " << k << ")");
    }
    out.v[n] = uint8_t(x);
  }
  return out;
}

std::vector<std::string> dicom_series_uids(const std::string& dir) {
  register_factories();
  CUSEG_REQUIRE(fs::is_directory(dir), dir << ": not a folder (expected a DICOM series folder)");
  // GDCM parses every file of the folder, trusting each element's length (data/dicom_guard.h).
  // A folder is a DICOM folder when it holds DICOM Part 10 files (the DICM magic); then every
  // file in it must be intact, or GDCM is not asked at all.
  std::vector<std::string> files;
  bool any_dicom = false;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (!e.is_regular_file(ec)) continue;
    files.push_back(e.path().string());
    any_dicom = any_dicom || detail::has_dicm_magic(files.back());
  }
  if (!any_dicom) return {};
  for (const auto& f : files) {
    const std::string problem = detail::dicom_length_problem(f);
    CUSEG_REQUIRE(problem.empty(), f << ": not an intact DICOM file: " << problem
                                     << "; expected a folder that holds the series' DICOM "
                                        "files only");
  }
  auto names = itk::GDCMSeriesFileNames::New();
  names->SetUseSeriesDetails(true);
  names->SetDirectory(dir);
  return names->GetSeriesUIDs();
}

std::vector<std::string> dicom_series_files(const std::string& dir, const std::string& series_uid) {
  register_factories();
  auto uids = dicom_series_uids(dir);
  CUSEG_REQUIRE(!uids.empty(), dir << ": no DICOM series found in this folder");
  std::string uid = series_uid.empty() ? uids.front() : series_uid;
  CUSEG_REQUIRE(std::find(uids.begin(), uids.end(), uid) != uids.end(),
                dir << ": no DICOM series with UID " << uid);
  auto names = itk::GDCMSeriesFileNames::New();
  names->SetUseSeriesDetails(true);
  names->SetDirectory(dir);
  return names->GetFileNames(uid);
}

Image read_dicom_series(const std::string& dir, const std::string& series_uid,
                        const ReadLimits& limits) {
  register_factories();
  const std::vector<std::string> files = dicom_series_files(dir, series_uid);
  const std::string uid = series_uid.empty() ? dicom_series_uids(dir).front() : series_uid;
  CUSEG_REQUIRE(!files.empty(), dir << ": DICOM series " << uid << " lists no files");
  // Memory guard from the first slice's header: every file of a series has the same rows and
  // columns (ImageSeriesReader refuses others), so the volume is rows x columns x frames x files.
  {
    auto io = itk::GDCMImageIO::New();
    try {
      io->SetFileName(files.front());
      io->ReadImageInformation();
    } catch (const itk::ExceptionObject& e) {
      CUSEG_THROW(files.front() << ": cannot read the DICOM header: " << e.GetDescription());
    }
    CUSEG_REQUIRE(io->GetNumberOfComponents() == 1,
                  files.front() << ": expected a scalar (grey-level) image, found "
                                << io->GetNumberOfComponents() << " components per pixel");
    double voxels = double(files.size());
    std::ostringstream grid;
    for (unsigned d = 0; d < io->GetNumberOfDimensions(); ++d) {
      voxels *= double(io->GetDimensions(d));
      grid << io->GetDimensions(d) << "x";
    }
    grid << files.size() << " file(s)";
    CUSEG_REQUIRE(io->GetComponentType() != itk::IOComponentEnum::UNKNOWNCOMPONENTTYPE,
                  files.front() << ": unknown pixel type; expected integer pixels");
    check_memory(dir, grid.str(), voxels,
                 itk::ImageIOBase::GetComponentTypeAsString(io->GetComponentType()),
                 read_peak_bytes(voxels, int(io->GetComponentSize()), int(sizeof(float)),
                                 int(sizeof(float)), false),
                 limits);
  }
  using ImageT = itk::Image<float, 3>;
  auto reader = itk::ImageSeriesReader<ImageT>::New();
  reader->SetImageIO(itk::GDCMImageIO::New());
  reader->SetFileNames(files);
  try {
    reader->Update();
  } catch (const itk::ExceptionObject& e) {
    CUSEG_THROW(dir << ": cannot read DICOM series " << uid << ": " << e.GetDescription());
  }
  Image out;
  out.geo = geometry_of(reader->GetOutput());
  // The series geometry (slice spacing and order) exists only after the read.
  check_geometry(out.geo, dir + " (DICOM series " + uid + ")");
  const float* p = reader->GetOutput()->GetBufferPointer();
  out.v.assign(p, p + out.geo.numel());
  return out;
}

NonFiniteScan scan_nifti_nonfinite(const std::string& path) {
  return check_nifti_payload<float>(path, nullptr, 0);
}

// ---------------------------------------------------------------- writing
void write_image(const Image& img, const std::string& path, PixelType type) {
  CUSEG_REQUIRE(int64_t(img.v.size()) == img.geo.numel(),
                path << ": image buffer has " << img.v.size() << " values, geometry needs "
                     << img.geo.numel());
  switch (type) {
    case PixelType::Float32:
      write_itk<float>(img, path, [&](size_t n) { return img.v[n]; });
      break;
    case PixelType::Int16:
      write_itk<int16_t>(img, path, [&](size_t n) {
        const float r = std::nearbyint(img.v[n]);
        CUSEG_REQUIRE(r >= -32768.f && r <= 32767.f,
                      path << ": value " << img.v[n] << " does not fit int16");
        return int16_t(r);
      });
      break;
    case PixelType::UInt8:
      write_itk<uint8_t>(img, path, [&](size_t n) {
        const float r = std::nearbyint(img.v[n]);
        CUSEG_REQUIRE(r >= 0.f && r <= 255.f,
                      path << ": value " << img.v[n] << " does not fit uint8");
        return uint8_t(r);
      });
      break;
  }
}

void write_label(const LabelMap& lab, const std::string& path) {
  CUSEG_REQUIRE(int64_t(lab.v.size()) == lab.geo.numel(),
                path << ": label buffer has " << lab.v.size() << " values, geometry needs "
                     << lab.geo.numel());
  write_itk<uint8_t>(lab, path, [&](size_t n) { return lab.v[n]; });
}

void write_probabilities(const std::vector<Image>& classes, const std::string& path) {
  register_factories();
  CUSEG_REQUIRE(!classes.empty(), path << ": no class probabilities to write");
  auto ends = [&](const std::string& e) {
    return path.size() > e.size() && path.compare(path.size() - e.size(), e.size(), e) == 0;
  };
  CUSEG_REQUIRE(ends(".nii") || ends(".nii.gz"),
                path << ": probabilities are written as NIfTI; the name must end in .nii.gz or "
                        ".nii");
  const Geometry& g = classes[0].geo;
  for (size_t c = 0; c < classes.size(); ++c) {
    CUSEG_CHECK(classes[c].geo.size == g.size && int64_t(classes[c].v.size()) == g.numel(),
                path << ": class " << c << " is not on the grid of class 0");
  }
  using Image4 = itk::Image<uint8_t, 4>;
  auto im = Image4::New();
  Image4::RegionType region;
  Image4::SizeType sz;
  Image4::SpacingType sp;
  Image4::PointType org;
  Image4::DirectionType dir;
  dir.SetIdentity();
  for (int a = 0; a < 3; ++a) {
    sz[a] = size_t(g.size[size_t(a)]);
    sp[a] = g.spacing[size_t(a)];
    org[a] = g.origin[size_t(a)];
    for (int b = 0; b < 3; ++b) dir(a, b) = g.direction[size_t(3 * a + b)];
  }
  sz[3] = classes.size();
  sp[3] = 1.0;
  org[3] = 0.0;
  region.SetSize(sz);
  im->SetRegions(region);
  im->SetSpacing(sp);
  im->SetOrigin(org);
  im->SetDirection(dir);
  im->Allocate();
  uint8_t* buf = im->GetBufferPointer();
  const size_t n = size_t(g.numel());
  for (size_t c = 0; c < classes.size(); ++c)
    for (size_t i = 0; i < n; ++i) {
      const float p = classes[c].v[i];
      CUSEG_CHECK(std::isfinite(p), path << ": class " << c << " probability " << p);
      buf[c * n + i] = uint8_t(std::lround(std::min(1.f, std::max(0.f, p)) * 255.f));
    }
  auto io = itk::NiftiImageIO::New();
  io->SetRescaleSlope(1.0 / 255.0);  // scl_slope / scl_inter: readers get q / 255
  io->SetRescaleIntercept(0.0);
  auto writer = itk::ImageFileWriter<Image4>::New();
  writer->SetFileName(path);
  writer->SetInput(im);
  writer->SetImageIO(io);
  writer->SetUseCompression(true);
  try {
    const fs::path parent = fs::path(path).parent_path();
    if (!parent.empty()) fs::create_directories(parent);
    writer->Update();
  } catch (const itk::ExceptionObject& e) {
    CUSEG_THROW(path << ": cannot write the probabilities: " << e.GetDescription());
  } catch (const fs::filesystem_error& e) {
    CUSEG_THROW(path << ": cannot create the folder: " << e.what());
  }
  std::error_code ec;
  CUSEG_REQUIRE(fs::is_regular_file(path, ec),
                path << ": the image writer reported success but did not create this file");
}

std::vector<Image> read_probabilities(const std::string& path) {
  register_factories();
  const FileInfo info = read_info(path);
  CUSEG_REQUIRE(info.dimensions == 4 && info.components == 1,
                path << ": expected a 4-D probability map (i, j, k, class), found "
                     << info.dimensions << "-D");
  using Image4 = itk::Image<float, 4>;
  auto reader = itk::ImageFileReader<Image4>::New();
  reader->SetFileName(path);
  try {
    reader->Update();
  } catch (const itk::ExceptionObject& e) {
    CUSEG_THROW(path << ": cannot read the probabilities: " << e.GetDescription());
  }
  const Image4* im = reader->GetOutput();
  const auto sz = im->GetLargestPossibleRegion().GetSize();
  Geometry g;
  for (int a = 0; a < 3; ++a) {
    g.size[size_t(a)] = int(sz[a]);
    g.spacing[size_t(a)] = im->GetSpacing()[a];
    g.origin[size_t(a)] = im->GetOrigin()[a];
    for (int b = 0; b < 3; ++b) g.direction[size_t(3 * a + b)] = im->GetDirection()(a, b);
  }
  std::vector<Image> out;
  const size_t n = size_t(g.numel());
  const float* p = im->GetBufferPointer();
  for (size_t c = 0; c < sz[3]; ++c) {
    Image img = Image::make(g);
    std::copy(p + c * n, p + (c + 1) * n, img.v.begin());
    out.push_back(std::move(img));
  }
  return out;
}

void write_dicom_series(const Image& img, const std::string& dir) {
  register_factories();
  const Geometry& g = img.geo;
  const double* d = g.direction.data();
  const double det = d[0] * (d[4] * d[8] - d[5] * d[7]) - d[1] * (d[3] * d[8] - d[5] * d[6]) +
                     d[2] * (d[3] * d[7] - d[4] * d[6]);
  CUSEG_REQUIRE(det > 0, dir << ": a DICOM slice stack needs a right-handed direction "
                                "(determinant +1); this image is "
                             << orientation_code(g) << " with determinant " << det
                             << " (reorient it first)");
  fs::create_directories(dir);
  using Image3 = itk::Image<int16_t, 3>;
  using Image2 = itk::Image<int16_t, 2>;
  auto im = make_itk<Image3>(g);
  int16_t* buf = im->GetBufferPointer();
  for (size_t n = 0; n < img.v.size(); ++n) {
    const float r = std::nearbyint(img.v[n]);
    CUSEG_REQUIRE(r >= -32768.f && r <= 32767.f,
                  dir << ": value " << img.v[n] << " does not fit int16 (DICOM CT)");
    buf[n] = int16_t(r);
  }
  // Deterministic-format UIDs under the UUID-derived root 2.25 (DICOM PS3.5 B.2).
  std::random_device rd;
  auto uid = [&] {
    std::ostringstream os;
    os << "2.25." << (uint64_t(rd()) << 32 | rd()) << (rd() % 100000);
    return os.str();
  };
  const std::string study = uid(), series = uid(), frame = uid();
  auto fmt = [](double x) {
    char b[64];
    std::snprintf(b, sizeof b, "%.10g", x);
    return std::string(b);
  };
  std::vector<itk::MetaDataDictionary> dicts(size_t(g.size[2]));
  std::vector<itk::MetaDataDictionary*> dict_ptrs;
  std::vector<std::string> files;
  for (int k = 0; k < g.size[2]; ++k) {
    auto& m = dicts[size_t(k)];
    auto put = [&](const char* tag, const std::string& v) {
      itk::EncapsulateMetaData<std::string>(m, tag, v);
    };
    const auto pos = g.world(0, 0, k);
    put("0008|0060", "CT");
    put("0028|0004", "MONOCHROME2");
    put("0008|0016", "1.2.840.10008.5.1.4.1.1.2");  // CT Image Storage
    put("0020|000d", study);
    put("0020|000e", series);
    put("0020|0052", frame);
    put("0008|0018", uid());
    put("0020|0013", std::to_string(k + 1));
    put("0020|0032", fmt(pos[0]) + "\\" + fmt(pos[1]) + "\\" + fmt(pos[2]));
    put("0020|0037", fmt(d[0]) + "\\" + fmt(d[3]) + "\\" + fmt(d[6]) + "\\" + fmt(d[1]) + "\\" +
                         fmt(d[4]) + "\\" + fmt(d[7]));
    // PixelSpacing is (row spacing = along j, column spacing = along i).
    put("0028|0030", fmt(g.spacing[1]) + "\\" + fmt(g.spacing[0]));
    put("0018|0050", fmt(g.spacing[2]));
    put("0028|1052", "0");  // rescale intercept: values are HU as stored
    put("0028|1053", "1");
    dict_ptrs.push_back(&m);
    char name[32];
    std::snprintf(name, sizeof name, "IM%04d.dcm", k);
    files.push_back((fs::path(dir) / name).string());
  }
  auto io = itk::GDCMImageIO::New();
  io->KeepOriginalUIDOn();
  auto writer = itk::ImageSeriesWriter<Image3, Image2>::New();
  writer->SetInput(im);
  writer->SetImageIO(io);
  writer->SetFileNames(files);
  writer->SetMetaDataDictionaryArray(&dict_ptrs);
  try {
    writer->Update();
  } catch (const itk::ExceptionObject& e) {
    CUSEG_THROW(dir << ": cannot write DICOM series: " << e.GetDescription());
  }
}

}  // namespace data
}  // namespace cuseg
