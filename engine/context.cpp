#include "cuseg/engine/context.h"

#include <sstream>

#include "cuseg/core/check.h"
#include "cuseg/engine/tensor.h"
#if CUSEG_HAVE_CUDA
#include <cuda_runtime.h>
#include <cudnn.h>

#include "cuseg/engine/cuda/cuda_context.h"
#include "cuseg/engine/cuda/cudnn_graph.h"
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

Context::GraphPlans Context::graph_plans() const {
  GraphPlans g;
#if CUSEG_HAVE_CUDA
  if (cuda_) {
    const GraphCacheStats s = graph_cache_stats(*cuda_);
    g.built = s.plans;
    g.refused = s.refused;
    g.max_workspace = s.max_workspace;
  }
#endif
  return g;
}

namespace {
#if CUSEG_HAVE_CUDA
std::string cuda_version(int v) {  // 13000 -> 13.0
  std::ostringstream os;
  os << v / 1000 << "." << (v % 1000) / 10;
  return os.str();
}
std::string cudnn_version(size_t v) {  // 9.x: 10000 major + 100 minor + patch
  std::ostringstream os;
  os << v / 10000 << "." << (v % 10000) / 100 << "." << v % 100;
  return os.str();
}
#endif
}  // namespace

std::string cudnn_runtime_version() {
#if CUSEG_HAVE_CUDA
  return cudnn_version(cudnnGetVersion());
#else
  return "";
#endif
}

std::string gpu_library_versions() {
#if CUSEG_HAVE_CUDA
  std::ostringstream os;
  int rt = 0, drv = 0;
  const bool have_rt = cudaRuntimeGetVersion(&rt) == cudaSuccess;
  const bool have_drv = cudaDriverGetVersion(&drv) == cudaSuccess && drv > 0;
  cudaGetLastError();
  os << "CUDA runtime " << (have_rt ? cuda_version(rt) : "?") << ", driver "
     << (have_drv ? cuda_version(drv) : "none") << ", cuDNN " << cudnn_runtime_version()
     << " (compiled " << CUDNN_MAJOR << "." << CUDNN_MINOR << "." << CUDNN_PATCHLEVEL << ")";
  std::string why;
  if (cudnn_graph_usable(&why))
    os << ", cuDNN graph path on (cudnn-frontend " << cudnn_frontend_version() << ")";
  else
    os << ", cuDNN graph path off: " << why;
  return os.str();
#else
  return "CPU-only build (no CUDA backend)";
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
