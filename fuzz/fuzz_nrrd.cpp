// NRRD (.nrrd: text header + raw/gzip/ascii payload, or a detached data file next to it)
// through ITK: read_info, read_image, read_label. The input is the file.
#include "fuzz_image_common.h"

using namespace cuseg_fuzz;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const fs::path p = scratch() / "input.nrrd";
  write_file(p, std::string_view(reinterpret_cast<const char*>(data), size));
  read_every_way(p, false);
  return 0;
}
