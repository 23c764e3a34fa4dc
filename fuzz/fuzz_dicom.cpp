// A DICOM series folder through ITK/GDCM: dicom_series_uids (GDCM's scan of the folder) and
// read_image on the folder (read_dicom_series: first series, memory guard from the first slice's
// header, series geometry checks). When the read succeeds, the series goes on through DCMTK as
// engine_infer --output-type dicom-seg takes it: dicom_series_info and write_dicom_seg of an
// empty mask on the series' grid (both parse every source file again, with DCMTK). Input: up to
// 4 files IM0.dcm .. IM3.dcm, separated by kSeparator.
#include "cuseg/data/dicom_seg.h"
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
  bool read = false;
  d::Geometry grid;
  expect_clean([&] {
    const d::Image img = d::read_image(dir.string(), limits);
    check_volume(img, dir);
    grid = img.geo;
    read = true;
  });
#if CUSEG_HAVE_DCMTK
  if (read) {
    expect_clean([&] { d::dicom_series_info(dir.string()); });
    const fs::path seg = fresh_dir("seg") / "mask.dcm";
    expect_clean([&] { d::write_dicom_seg(d::LabelMap::make(grid), dir.string(), seg.string()); });
  }
#endif
  (void)read;
  return 0;
}
