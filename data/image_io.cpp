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
#include <itkNiftiImageIOFactory.h>
#include <itkNrrdImageIOFactory.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <limits>
#include <mutex>
#include <random>
#include <sstream>

#include "data/image.h"
#include "engine/check.h"

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
  CUSEG_CHECK(info.components == 1, path << ": expected a scalar image, found " << info.components
                                         << " components per voxel");
  bool extra_ok = true;
  for (int d = 3; d < info.dimensions; ++d) extra_ok = extra_ok && info.extent[d] == 1;
  CUSEG_CHECK(
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
}

}  // namespace

// ---------------------------------------------------------------- geometry helpers
std::array<double, 3> Geometry::world(double i, double j, double k) const {
  const double idx[3] = {i * spacing[0], j * spacing[1], k * spacing[2]};
  std::array<double, 3> p = origin;
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 3; ++c) p[r] += direction[3 * r + c] * idx[c];
  return p;
}

bool same_grid(const Geometry& a, const Geometry& b, std::string* why) {
  std::ostringstream os;
  if (a.size != b.size) {
    os << "size " << a.size[0] << "x" << a.size[1] << "x" << a.size[2] << " vs " << b.size[0] << "x"
       << b.size[1] << "x" << b.size[2];
  } else {
    // ITK's defaults: coordinate tolerance 1e-6 x spacing(axis 0), direction tolerance 1e-6.
    const double ctol = 1e-6 * std::abs(a.spacing[0]);
    for (int d = 0; d < 3 && os.tellp() == 0; ++d) {
      if (std::abs(a.spacing[d] - b.spacing[d]) > ctol)
        os << "spacing[" << d << "] " << a.spacing[d] << " vs " << b.spacing[d] << " mm";
      else if (std::abs(a.origin[d] - b.origin[d]) > ctol)
        os << "origin[" << d << "] " << a.origin[d] << " vs " << b.origin[d] << " mm";
    }
    for (int n = 0; n < 9 && os.tellp() == 0; ++n)
      if (std::abs(a.direction[n] - b.direction[n]) > 1e-6)
        os << "direction (" << orientation_code(a) << " vs " << orientation_code(b) << ", element "
           << n << ": " << a.direction[n] << " vs " << b.direction[n] << ")";
  }
  if (why) *why = os.str();
  return os.tellp() == 0;
}

std::string describe(const Geometry& g) {
  std::ostringstream os;
  os.precision(4);
  os << g.size[0] << "x" << g.size[1] << "x" << g.size[2] << " @ " << g.spacing[0] << "x"
     << g.spacing[1] << "x" << g.spacing[2] << " mm, " << orientation_code(g) << ", origin ("
     << g.origin[0] << ", " << g.origin[1] << ", " << g.origin[2] << ") mm LPS";
  return os.str();
}

// ---------------------------------------------------------------- reading
FileInfo read_info(const std::string& path) {
  register_factories();
  CUSEG_CHECK(fs::exists(path), path << ": no such file");
  auto io = itk::ImageIOFactory::CreateImageIO(path.c_str(), itk::ImageIOFactory::ReadMode);
  CUSEG_CHECK(io, path << ": not a readable image (expected NIfTI .nii/.nii.gz, NRRD, "
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
  CUSEG_CHECK(fs::is_directory(dir), dir << ": not a folder (expected a DICOM series folder)");
  auto names = itk::GDCMSeriesFileNames::New();
  names->SetUseSeriesDetails(true);
  names->SetDirectory(dir);
  return names->GetSeriesUIDs();
}

Image read_dicom_series(const std::string& dir, const std::string& series_uid) {
  register_factories();
  auto uids = dicom_series_uids(dir);
  CUSEG_CHECK(!uids.empty(), dir << ": no DICOM series found in this folder");
  std::string uid = series_uid.empty() ? uids.front() : series_uid;
  CUSEG_CHECK(std::find(uids.begin(), uids.end(), uid) != uids.end(),
              dir << ": no DICOM series with UID " << uid);
  auto names = itk::GDCMSeriesFileNames::New();
  names->SetUseSeriesDetails(true);
  names->SetDirectory(dir);
  auto files = names->GetFileNames(uid);
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

// ---------------------------------------------------------------- writing
void write_image(const Image& img, const std::string& path, PixelType type) {
  CUSEG_CHECK(int64_t(img.v.size()) == img.geo.numel(),
              path << ": image buffer has " << img.v.size() << " values, geometry needs "
                   << img.geo.numel());
  switch (type) {
    case PixelType::Float32:
      write_itk<float>(img, path, [&](size_t n) { return img.v[n]; });
      break;
    case PixelType::Int16:
      write_itk<int16_t>(img, path, [&](size_t n) {
        const float r = std::nearbyint(img.v[n]);
        CUSEG_CHECK(r >= -32768.f && r <= 32767.f,
                    path << ": value " << img.v[n] << " does not fit int16");
        return int16_t(r);
      });
      break;
    case PixelType::UInt8:
      write_itk<uint8_t>(img, path, [&](size_t n) {
        const float r = std::nearbyint(img.v[n]);
        CUSEG_CHECK(r >= 0.f && r <= 255.f,
                    path << ": value " << img.v[n] << " does not fit uint8");
        return uint8_t(r);
      });
      break;
  }
}

void write_label(const LabelMap& lab, const std::string& path) {
  CUSEG_CHECK(int64_t(lab.v.size()) == lab.geo.numel(),
              path << ": label buffer has " << lab.v.size() << " values, geometry needs "
                   << lab.geo.numel());
  write_itk<uint8_t>(lab, path, [&](size_t n) { return lab.v[n]; });
}

void write_dicom_series(const Image& img, const std::string& dir) {
  register_factories();
  const Geometry& g = img.geo;
  const double* d = g.direction.data();
  const double det = d[0] * (d[4] * d[8] - d[5] * d[7]) - d[1] * (d[3] * d[8] - d[5] * d[6]) +
                     d[2] * (d[3] * d[7] - d[4] * d[6]);
  CUSEG_CHECK(det > 0, dir << ": a DICOM slice stack needs a right-handed direction "
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
    CUSEG_CHECK(r >= -32768.f && r <= 32767.f,
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

// ---------------------------------------------------------------- orientation
std::string orientation_code(const Geometry& g) {
  static const char pos[3] = {'R', 'A', 'S'}, neg[3] = {'L', 'P', 'I'};
  std::string code(3, '?');
  bool used[3] = {false, false, false};
  for (int a = 0; a < 3; ++a) {
    // RAS world vector of axis a: LPS -> RAS flips x and y.
    const double v[3] = {-g.direction[0 * 3 + a], -g.direction[1 * 3 + a], g.direction[2 * 3 + a]};
    int best = 0;
    for (int r = 1; r < 3; ++r)
      if (std::abs(v[r]) > std::abs(v[best])) best = r;
    if (used[best]) return "???";  // degenerate direction (two axes along one world axis)
    used[best] = true;
    code[size_t(a)] = v[best] >= 0 ? pos[best] : neg[best];
  }
  return code;
}

namespace {
int world_axis(char c) {
  switch (c) {
    case 'R':
    case 'L':
      return 0;
    case 'A':
    case 'P':
      return 1;
    case 'S':
    case 'I':
      return 2;
    default:
      return -1;
  }
}
}  // namespace

Reorientation plan_reorientation(const Geometry& g, const std::string& target) {
  Reorientation r;
  r.original = g;
  r.from_code = orientation_code(g);
  r.to_code = target;
  CUSEG_CHECK(r.from_code != "???", "cannot name the orientation of " << describe(g));
  CUSEG_CHECK(target.size() == 3, "orientation code must have 3 letters, got '" << target << "'");
  bool seen[3] = {false, false, false};
  for (int a = 0; a < 3; ++a) {
    const int wa = world_axis(target[size_t(a)]);
    CUSEG_CHECK(wa >= 0 && !seen[wa], "bad orientation code '" << target << "'");
    seen[wa] = true;
    for (int b = 0; b < 3; ++b)
      if (world_axis(r.from_code[size_t(b)]) == wa) {
        r.perm[size_t(a)] = b;
        r.flip[size_t(a)] = r.from_code[size_t(b)] != target[size_t(a)];
      }
  }
  return r;
}

Geometry reoriented_geometry(const Reorientation& r) {
  const Geometry& o = r.original;
  Geometry g;
  std::array<double, 3> corner{0, 0, 0};  // old index of the new (0,0,0)
  for (int a = 0; a < 3; ++a) {
    const int b = r.perm[size_t(a)];
    g.size[size_t(a)] = o.size[size_t(b)];
    g.spacing[size_t(a)] = o.spacing[size_t(b)];
    const double s = r.flip[size_t(a)] ? -1.0 : 1.0;
    for (int row = 0; row < 3; ++row)
      g.direction[size_t(3 * row + a)] = s * o.direction[size_t(3 * row + b)];
    if (r.flip[size_t(a)]) corner[size_t(b)] = o.size[size_t(b)] - 1;
  }
  g.origin = o.world(corner[0], corner[1], corner[2]);
  return g;
}

template <class T>
Volume<T> reorient(const Volume<T>& in, const Reorientation& r) {
  CUSEG_CHECK(in.geo.size == r.original.size, "reorient: image size does not match the plan");
  Volume<T> out;
  out.geo = reoriented_geometry(r);
  out.v.resize(in.v.size());
  const auto& ns = out.geo.size;
  int64_t n = 0;
  for (int k = 0; k < ns[2]; ++k)
    for (int j = 0; j < ns[1]; ++j)
      for (int i = 0; i < ns[0]; ++i, ++n) {
        const int nidx[3] = {i, j, k};
        int old[3];
        for (int a = 0; a < 3; ++a)
          old[r.perm[size_t(a)]] = r.flip[size_t(a)] ? ns[size_t(a)] - 1 - nidx[a] : nidx[a];
        out.v[size_t(n)] = in.at(old[0], old[1], old[2]);
      }
  return out;
}

template <class T>
Volume<T> reorient_back(const Volume<T>& in, const Reorientation& r) {
  const Geometry expect = reoriented_geometry(r);
  CUSEG_CHECK(in.geo.size == expect.size, "reorient_back: image size "
                                              << in.geo.size[0] << "x" << in.geo.size[1] << "x"
                                              << in.geo.size[2] << " does not match the plan");
  Volume<T> out;
  out.geo = r.original;  // restored verbatim, so the round trip is exact
  out.v.resize(in.v.size());
  const auto& ns = expect.size;
  int64_t n = 0;
  for (int k = 0; k < ns[2]; ++k)
    for (int j = 0; j < ns[1]; ++j)
      for (int i = 0; i < ns[0]; ++i, ++n) {
        const int nidx[3] = {i, j, k};
        int old[3];
        for (int a = 0; a < 3; ++a)
          old[r.perm[size_t(a)]] = r.flip[size_t(a)] ? ns[size_t(a)] - 1 - nidx[a] : nidx[a];
        out.at(old[0], old[1], old[2]) = in.v[size_t(n)];
      }
  return out;
}

template Volume<float> reorient(const Volume<float>&, const Reorientation&);
template Volume<uint8_t> reorient(const Volume<uint8_t>&, const Reorientation&);
template Volume<float> reorient_back(const Volume<float>&, const Reorientation&);
template Volume<uint8_t> reorient_back(const Volume<uint8_t>&, const Reorientation&);

}  // namespace data
}  // namespace cuseg
