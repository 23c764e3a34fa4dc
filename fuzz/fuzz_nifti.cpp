// NIfTI-1 / NIfTI-2 through ITK (read_info, read_image, read_label) and cuseg's NaN/Inf scan of
// the stored payload (scan_nifti_nonfinite). Input: byte 0 chooses the file kind (bit 0 set:
// .nii.gz, the remaining bytes gzip-compressed before writing, so mutations act on the NIfTI
// bytes themselves; clear: .nii, written as they are).
#include <zlib.h>

#include "fuzz_image_common.h"

using namespace cuseg_fuzz;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const bool gz = data[0] & 1;
  const fs::path nii = scratch() / "input.nii", niigz = scratch() / "input.nii.gz";
  std::error_code ec;
  fs::remove(gz ? nii : niigz, ec);
  const fs::path p = gz ? niigz : nii;
  if (gz) {
    gzFile f = gzopen(p.c_str(), "wb1");
    if (!f) finding("cannot write the scratch file", p.string());
    if (size > 1) gzwrite(f, data + 1, unsigned(size - 1));
    gzclose(f);
  } else {
    write_file(p, std::string_view(reinterpret_cast<const char*>(data) + 1, size - 1));
  }
  read_every_way(p, true);
  return 0;
}
