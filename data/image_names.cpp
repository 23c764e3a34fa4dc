// Image file names: the extensions the readers of data/image.h accept. Compiled with and
// without ITK (dataset discovery and engine_infer's folder walk need no reader).
#include "cuseg/data/image.h"

namespace cuseg {
namespace data {

const std::vector<std::string>& image_extensions() {
  static const std::vector<std::string> exts = {".nii.gz", ".nii", ".nrrd",
                                                ".nhdr",   ".mha", ".mhd"};
  return exts;
}

std::string image_extension(const std::string& name) {
  for (const std::string& ext : image_extensions())
    if (name.size() > ext.size() && name.compare(name.size() - ext.size(), ext.size(), ext) == 0)
      return ext;
  return "";
}

}  // namespace data
}  // namespace cuseg
