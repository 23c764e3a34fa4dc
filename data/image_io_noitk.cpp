// Image file I/O for builds configured with CUSEG_WITH_ITK=OFF (the GPU check kit: its machine
// has no ITK). This is a configuration fallback, not a stand-in reader: every function that
// would touch an image file throws a cuseg::Error naming the path and saying why. Everything
// else in data/ (geometry, reorientation, transforms, samplers, metrics, the phantom's volumes)
// is compiled as usual; the phantom's and datasets' file writing and reading fail the same way.
#include <string>
#include <vector>

#include "cuseg/core/check.h"
#include "cuseg/data/image.h"

namespace cuseg {
namespace data {
namespace {
[[noreturn]] void no_io(const std::string& path) {
  CUSEG_THROW(path << ": this build has no image file I/O (configured with CUSEG_WITH_ITK=OFF)");
}
}  // namespace

FileInfo read_info(const std::string& path) {
  no_io(path);
}
Image read_image(const std::string& path, const ReadLimits&) {
  no_io(path);
}
LabelMap read_label(const std::string& path, const ReadLimits&) {
  no_io(path);
}
Image read_dicom_series(const std::string& dir, const std::string&, const ReadLimits&) {
  no_io(dir);
}
std::vector<std::string> dicom_series_uids(const std::string& dir) {
  no_io(dir);
}
std::vector<std::string> dicom_series_files(const std::string& dir, const std::string&) {
  no_io(dir);
}
NonFiniteScan scan_nifti_nonfinite(const std::string& path) {
  no_io(path);
}
void write_image(const Image&, const std::string& path, PixelType) {
  no_io(path);
}
void write_label(const LabelMap&, const std::string& path) {
  no_io(path);
}
void write_probabilities(const std::vector<Image>&, const std::string& path) {
  no_io(path);
}
std::vector<Image> read_probabilities(const std::string& path) {
  no_io(path);
}
void write_dicom_series(const Image&, const std::string& dir) {
  no_io(dir);
}

}  // namespace data
}  // namespace cuseg
