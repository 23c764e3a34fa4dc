// The image targets (fuzz_nifti, fuzz_nrrd, fuzz_mha) share one body: write the input as a file
// with the format's extension and put it through every reader the product calls on an image
// file: read_info (header only), read_image, read_label and, for NIfTI, the NaN/Inf scan of the
// stored payload. Reads are limited to kReadLimitBytes: a header may ask for any size, and the
// reader must refuse what does not fit before allocating it.
#pragma once
#include "cuseg/data/image.h"
#include "fuzz_util.h"

namespace cuseg_fuzz {

// What a successful read promises (data/image.h): a buffer matching the geometry, and a
// geometry that passes the readers' own checks.
template <class V>
void check_volume(const V& vol, const fs::path& p) {
  if (int64_t(vol.v.size()) != vol.geo.numel())
    finding("buffer size differs from the geometry", p.string());
  try {
    cuseg::data::check_geometry(vol.geo, p.string());
  } catch (const std::exception& e) {
    finding("a read returned a geometry its own checks refuse", e.what());
  }
}

inline void read_every_way(const fs::path& p, bool nifti) {
  namespace data = cuseg::data;
  data::ReadLimits limits;
  limits.max_bytes = kReadLimitBytes;
  limits.limit_name = "the fuzzing limit";
  expect_clean([&] { data::read_info(p.string()); });
  expect_clean([&] { check_volume(data::read_image(p.string(), limits), p); });
  expect_clean([&] { check_volume(data::read_label(p.string(), limits), p); });
  if (nifti) expect_clean([&] { data::scan_nifti_nonfinite(p.string()); });
}

}  // namespace cuseg_fuzz
