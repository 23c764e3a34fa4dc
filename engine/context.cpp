#include "cuseg/engine/context.h"

#include "cuseg/core/check.h"
#include "cuseg/engine/tensor.h"
#if CUSEG_HAVE_CUDA
#include "cuseg/engine/cuda/cuda_context.h"
#include "cuseg/engine/cuda/runtime.h"
#endif

namespace cuseg {

#if !CUSEG_HAVE_CUDA
class CudaContext {};  // never constructed in a CPU-only build
#endif

Context::Context(Device d, ContextOptions opt) : device_(d), opt_(opt) {
  if (d == Device::CUDA) {
#if CUSEG_HAVE_CUDA
    CUSEG_CHECK(cuda_available(), "CUDA device requested but none answers");
    cuda_ = std::make_unique<CudaContext>(opt_);
#else
    CUSEG_THROW("CUDA device requested but this build has no CUDA backend");
#endif
  }
}

Context::~Context() = default;

CudaContext& Context::cuda() {
  CUSEG_CHECK(cuda_ != nullptr, "not a CUDA context");
  return *cuda_;
}

void Context::synchronize() {
#if CUSEG_HAVE_CUDA
  if (cuda_) cuda_->synchronize();
#endif
}

Device resolve_device(const std::string& name) {
  if (name == "cpu") return Device::CPU;
  if (name == "cuda") {
    // A preprocessor directive inside a macro's arguments is undefined behaviour: pick the
    // message first.
#if CUSEG_HAVE_CUDA
    constexpr const char* why = "--device cuda: no CUDA device answers";
#else
    constexpr const char* why =
        "--device cuda: no CUDA device answers (this build has no CUDA backend)";
#endif
    CUSEG_REQUIRE(cuda_available(), why);
    return Device::CUDA;
  }
  if (name == "auto") return cuda_available() ? Device::CUDA : Device::CPU;
  CUSEG_THROW("unknown device '" << name << "' (expected auto, cuda or cpu)");
}

void select_cuda_device(int index) {
#if CUSEG_HAVE_CUDA
  cuda_select_device(index);
#else
  CUSEG_THROW("CUDA device " << index << " requested, but this build has no CUDA backend");
#endif
}

}  // namespace cuseg
