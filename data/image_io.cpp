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
#include <itkMetaImageIOFactory.h>
#include <itkNiftiImageIO.h>
#include <itkNiftiImageIOFactory.h>
#include <itkNrrdImageIOFactory.h>
#include <zlib.h>  // zlib comes with ITK (ITKZLIB is a public dependency of ITKIONIFTI)

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <limits>
#include <mutex>
#include <random>
#include <sstream>

#include "cuseg/core/check.h"
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

// Header checks shared by the readers: exists, readable by some ImageIO, 3-D scalar.
FileInfo checked_info(const std::string& path) {
  FileInfo info = read_info(path);
  CUSEG_REQUIRE(info.components == 1, path << ": expected a scalar image, found " << info.components
                                           << " components per voxel");
  bool extra_ok = true;
  for (int d = 3; d < info.dimensions; ++d) extra_ok = extra_ok && info.extent[d] == 1;
  CUSEG_REQUIRE(
      info.dimensions >= 3 && extra_ok,
      path << ": expected a 3-D image, found " << info.dimensions << "-D with extent " << [&] {
        std::ostringstream os;
        for (size_t d = 0; d < info.extent.size(); ++d) os << (d ? "x" : "") << info.extent[d];
        return os.str();
      }());
  return info;
}

template <class TPixel>
typename itk::Image<TPixel, 3>::Pointer read_itk(const std::string& path) {
  using ImageT = itk::Image<TPixel, 3>;
  auto reader = itk::ImageFileReader<ImageT>::New();
  reader->SetFileName(path);
  try {
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

// ---------------------------------------------------------------- reading
FileInfo read_info(const std::string& path) {
  register_factories();
  CUSEG_REQUIRE(fs::exists(path), path << ": no such file");
  auto io = itk::ImageIOFactory::CreateImageIO(path.c_str(), itk::ImageIOFactory::ReadMode);
  CUSEG_REQUIRE(io, path << ": not a readable image (expected NIfTI .nii/.nii.gz, NRRD, "
                            "MetaImage .mha/.mhd or DICOM)");
  FileInfo info;
  info.path = path;
  try {
    io->SetFileName(path);
    io->ReadImageInformation();
  } catch (const itk::ExceptionObject& e) {
    CUSEG_THROW(path << ": cannot read the header: " << e.GetDescription());
  }
  info.dimensions = int(io->GetNumberOfDimensions());
  for (int d = 0; d < info.dimensions; ++d) info.extent.push_back(int(io->GetDimensions(d)));
  info.components = int(io->GetNumberOfComponents());
  info.component_type = itk::ImageIOBase::GetComponentTypeAsString(io->GetComponentType());
  for (int a = 0; a < 3 && a < info.dimensions; ++a) {
    info.geo.size[a] = info.extent[a];
    info.geo.spacing[a] = io->GetSpacing(a);
    info.geo.origin[a] = io->GetOrigin(a);
    auto col = io->GetDirection(a);
    for (int r = 0; r < 3; ++r) info.geo.direction[3 * r + a] = r < int(col.size()) ? col[r] : 0;
  }
  for (int a = info.dimensions; a < 3; ++a) info.geo.size[a] = 1;
  return info;
}

Image read_image(const std::string& path) {
  register_factories();
  if (fs::is_directory(path)) return read_dicom_series(path);
  checked_info(path);
  auto im = read_itk<float>(path);
  Image out;
  out.geo = geometry_of(im.GetPointer());
  const float* p = im->GetBufferPointer();
  out.v.assign(p, p + out.geo.numel());
  return out;
}

LabelMap read_label(const std::string& path) {
  register_factories();
  checked_info(path);
  // Read as double: every stored type (uint8 .. int32, float32, float64) converts exactly.
  auto im = read_itk<double>(path);
  LabelMap out;
  out.geo = geometry_of(im.GetPointer());
  const double* p = im->GetBufferPointer();
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

Image read_dicom_series(const std::string& dir, const std::string& series_uid) {
  register_factories();
  const std::vector<std::string> files = dicom_series_files(dir, series_uid);
  const std::string uid = series_uid.empty() ? dicom_series_uids(dir).front() : series_uid;
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
  const float* p = reader->GetOutput()->GetBufferPointer();
  out.v.assign(p, p + out.geo.numel());
  return out;
}

// ---------------------------------------------------------------- NIfTI non-finite scan
// Why this exists: ITK's NIfTI reader cannot show NaN or Inf. In ITK's bundled niftilib
// (Modules/ThirdParty/NIFTI/src/nifti/niftilib/nifti1_io.c, nifti_read_buffer(), the block
// "check input float arrays for goodness, and fix bad numbers", compiled whenever <math.h>
// defines isfinite) every non-finite FLOAT32/FLOAT64/COMPLEX value is overwritten with 0 right
// after the bytes are read and byte-swapped. It runs for every read (nifti_image_load and the
// collapsed-image path ITK uses both end in nifti_read_buffer), before ITK converts the pixel
// type and before scl_slope/scl_inter are applied, and there is no option to turn it off: so
// neither reading with the file's own component type through ImageIOBase nor any reader
// setting avoids it. This scan is therefore a CHECK on top of the ITK read: it decodes only the
// header fields it needs (NIfTI-1 / NIfTI-2 layouts from nifti1.h / nifti2.h) and streams the
// voxel payload through zlib (gzread also reads uncompressed files), counting non-finite values.
NonFiniteScan scan_nifti_nonfinite(const std::string& path) {
  NonFiniteScan r;
  gzFile f = gzopen(path.c_str(), "rb");
  CUSEG_REQUIRE(f != nullptr, path << ": cannot open for the NaN/Inf scan");
  struct Closer {
    gzFile f;
    ~Closer() { gzclose(f); }
  } closer{f};
  std::array<unsigned char, 540> h{};
  const int got = gzread(f, h.data(), unsigned(h.size()));
  CUSEG_REQUIRE(got >= 348, path << ": too short for a NIfTI header (" << got << " bytes)");
  auto rd = [&](size_t off, void* dst, size_t n, bool swap) {
    std::memcpy(dst, h.data() + off, n);
    if (swap) std::reverse(static_cast<unsigned char*>(dst), static_cast<unsigned char*>(dst) + n);
  };
  int32_t sz = 0;
  rd(0, &sz, 4, false);
  bool swap = false;
  if (sz != 348 && sz != 540) {
    rd(0, &sz, 4, true);
    swap = true;
  }
  CUSEG_REQUIRE(sz == 348 || sz == 540,
                path << ": not a NIfTI file (sizeof_hdr is neither 348 nor 540)");
  int16_t datatype = 0;
  int64_t dim[8] = {};
  int64_t vox_offset = 0;
  if (sz == 348) {
    CUSEG_REQUIRE(std::memcmp(h.data() + 344, "n+1", 4) == 0,
                  path << ": only single-file NIfTI-1 (magic n+1) is scanned");
    rd(70, &datatype, 2, swap);
    for (int d = 0; d < 8; ++d) {
      int16_t v = 0;
      rd(40 + 2 * size_t(d), &v, 2, swap);
      dim[d] = v;
    }
    float off = 0;
    rd(108, &off, 4, swap);
    vox_offset = int64_t(off);
  } else {
    CUSEG_REQUIRE(got == 540 && std::memcmp(h.data() + 4, "n+2", 4) == 0,
                  path << ": only single-file NIfTI-2 (magic n+2) is scanned");
    rd(12, &datatype, 2, swap);
    for (int d = 0; d < 8; ++d) rd(16 + 8 * size_t(d), &dim[d], 8, swap);
    rd(168, &vox_offset, 8, swap);
  }
  // NIFTI_TYPE_FLOAT32 = 16, NIFTI_TYPE_FLOAT64 = 64 (nifti1.h). Integer types cannot hold NaN.
  if (datatype != 16 && datatype != 64) return r;
  r.checked = true;
  CUSEG_REQUIRE(dim[0] >= 1 && dim[0] <= 7, path << ": bad dim[0] " << dim[0]);
  int64_t nvox = 1;
  for (int d = 1; d <= dim[0]; ++d) nvox *= std::max<int64_t>(dim[d], 1);
  r.size = {int(dim[1]), dim[0] >= 2 ? int(dim[2]) : 1, dim[0] >= 3 ? int(dim[3]) : 1};
  CUSEG_REQUIRE(gzseek(f, z_off_t(vox_offset), SEEK_SET) == z_off_t(vox_offset),
                path << ": cannot seek to the voxel data at byte " << vox_offset);
  const size_t bytes = datatype == 16 ? 4 : 8;
  std::vector<unsigned char> buf(size_t(1) << 20);
  int64_t n = 0;
  while (n < nvox) {
    const size_t want = size_t(std::min<int64_t>(nvox - n, int64_t(buf.size() / bytes))) * bytes;
    const int k = gzread(f, buf.data(), unsigned(want));
    CUSEG_REQUIRE(k == int(want), path << ": voxel data ends after "
                                       << n + std::max(k, 0) / int(bytes) << " of " << nvox
                                       << " voxels");
    for (size_t q = 0; q < want; q += bytes, ++n) {
      bool finite;
      if (swap) std::reverse(buf.data() + q, buf.data() + q + bytes);
      if (bytes == 4) {
        float v;
        std::memcpy(&v, buf.data() + q, 4);
        finite = std::isfinite(v);
        if (std::isnan(v)) ++r.nan;
      } else {
        double v;
        std::memcpy(&v, buf.data() + q, 8);
        finite = std::isfinite(v);
        if (std::isnan(v)) ++r.nan;
      }
      if (!finite) {
        if (r.first < 0) r.first = n;
        ++r.count;
      }
    }
  }
  return r;
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
