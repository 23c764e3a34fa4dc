// DICOM SEG for builds configured with CUSEG_WITH_DCMTK=OFF (no DCMTK; e.g. the GPU check kit):
// every function that would read or write a file throws a
// cuseg::Error naming the path and saying why.
#include "cuseg/core/check.h"
#include "cuseg/data/dicom_seg.h"

namespace cuseg {
namespace data {

namespace {
[[noreturn]] void no_dcmtk(const std::string& path) {
  CUSEG_THROW(path << ": this build has no DICOM SEG support (configured with "
                      "CUSEG_WITH_DCMTK=OFF)");
}
}  // namespace

void write_dicom_seg(const LabelMap&, const std::string&, const std::string& path,
                     const DicomSegOptions&, const std::vector<SegmentDefinition>&) {
  no_dcmtk(path);
}
DicomSegContents read_dicom_seg(const std::string& path) {
  no_dcmtk(path);
}
DicomSeriesInfo dicom_series_info(const std::string& series_dir) {
  no_dcmtk(series_dir);
}

}  // namespace data
}  // namespace cuseg
