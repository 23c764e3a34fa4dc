// Execution context: which device runs the ops, and (on CUDA) the stream, library handles,
// plan caches and workspace owned by this context. Layers take a Context& in forward and
// backward. Contexts are not shared across threads.
#pragma once
#include <cstddef>
#include <memory>
#include <string>

#include "cuseg/engine/memory.h"

namespace cuseg {

class CudaContext;  // engine/cuda/cuda_context.h (CUDA builds only)

struct ContextOptions {
  size_t workspace_budget_bytes = size_t(512) << 20;  // cuDNN workspace cap
  // cuDNN graph plans (bf16 path, engine/cuda/cudnn_graph.h): time every eligible plan on the
  // first call and keep the fastest (also CUSEG_CUDNN_AUTOTUNE=1); only deterministic plans
  // unless `deterministic` is false.
  bool cudnn_autotune = false;
  // CUDA: only what cuDNN reports as deterministic: the fp32 convolution algorithms (forward,
  // backward-data, backward-filter; a problem with none inside the workspace budget is an
  // error naming it) and the graph plans above. With false, cuDNN's heuristic order decides,
  // deterministic or not. The hand-written kernels are deterministic either way (no
  // floating-point atomics), and the CPU backend always is for a given thread count.
  // Config key train.deterministic.
  bool deterministic = true;
};

class Context {
 public:
  explicit Context(Device d, ContextOptions opt = {});
  ~Context();
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  Device device() const { return device_; }
  const ContextOptions& options() const { return opt_; }
  // The CUDA state; throws on a CPU context or in a CPU-only build.
  CudaContext& cuda();
  // Waits for all queued work (no-op on CPU).
  void synchronize();
  // Peak / live bytes of this context's device pool.
  MemoryStats memory() const { return memory_pool(device_).stats(); }
  // cuDNN graph plans of the bf16 path built / refused by this context so far, and the largest
  // plan workspace (bytes); zeros on a CPU context.
  struct GraphPlans {
    int built = 0, refused = 0;
    size_t max_workspace = 0;
  };
  GraphPlans graph_plans() const;

 private:
  Device device_;
  ContextOptions opt_;
  std::unique_ptr<CudaContext> cuda_;
};

// One line naming the GPU libraries this process runs with, for every record (train log,
// benchmark JSON): CUDA runtime and driver, cuDNN at run time and at compile time, whether the
// cuDNN graph path (bf16) is built and with which cudnn-frontend. cuDNN 9.8-9.10 shipped wrong
// bf16 3-D convolution results (PyTorch issues 163539, 166122): the version is recorded and
// the bf16 parity tests, not trust, decide. "CPU-only build" without the CUDA backend; never
// throws (no driver: says so).
std::string gpu_library_versions();
// The runtime cuDNN version as major.minor.patch ("" without cuDNN / CUDA backend).
std::string cudnn_runtime_version();

// "auto" -> CUDA when a device answers, else CPU; "cuda" throws when none answers.
Device resolve_device(const std::string& name);
// Makes CUDA device `index` this process's device (one process per GPU: the local rank).
// Call before the first Context or tensor on the device. Throws in a CPU-only build.
void select_cuda_device(int index);

}  // namespace cuseg
