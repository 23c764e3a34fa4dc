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

 private:
  Device device_;
  ContextOptions opt_;
  std::unique_ptr<CudaContext> cuda_;
};

// "auto" -> CUDA when a device answers, else CPU; "cuda" throws when none answers.
Device resolve_device(const std::string& name);
// Makes CUDA device `index` this process's device (one process per GPU: the local rank).
// Call before the first Context or tensor on the device. Throws in a CPU-only build.
void select_cuda_device(int index);

}  // namespace cuseg
