// Device -> backend table (engine/backend.h). The only place that knows which backends this
// build has.
#include "cuseg/engine/backend.h"

namespace cuseg {

std::vector<std::string> Backend::op_names() const {
  std::vector<std::string> names;
  for (const Entry& e : entries_)
    if (e.fn) names.emplace_back(e.name);
  return names;
}

bool backend_available(Device d) {
  if (d == Device::CPU) return true;
#if CUSEG_HAVE_CUDA
  return d == Device::CUDA;
#else
  return false;
#endif
}

const Backend& backend(Device d) {
  if (d == Device::CPU) return cpu_backend();
#if CUSEG_HAVE_CUDA
  if (d == Device::CUDA) return cuda_backend();
#endif
  CUSEG_THROW("no " << device_name(d) << " backend in this build (built without CUDA)");
}

}  // namespace cuseg
