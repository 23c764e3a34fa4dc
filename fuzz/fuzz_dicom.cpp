// A DICOM series folder through ITK/GDCM: dicom_series_uids (GDCM's scan of the folder) and
// read_image on the folder (read_dicom_series: first series, memory guard from the first slice's
// header, series geometry checks). Input: up to 4 files IM0.dcm .. IM3.dcm, separated by
// kSeparator.
#include "fuzz_image_common.h"

using namespace cuseg_fuzz;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const fs::path dir = fresh_dir("series");
  const auto parts = split(data, size, 4);
  for (size_t k = 0; k < parts.size(); ++k)
    write_file(dir / ("IM" + std::to_string(k) + ".dcm"), parts[k]);
  namespace d = cuseg::data;
  d::ReadLimits limits;
  limits.max_bytes = kReadLimitBytes;
  limits.limit_name = "the fuzzing limit";
  expect_clean([&] { d::dicom_series_uids(dir.string()); });
  expect_clean([&] { check_volume(d::read_image(dir.string(), limits), dir); });
  return 0;
}
