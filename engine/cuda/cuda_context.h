// CUDA state owned by one Context: stream, cuDNN handle, and the cuDNN plan / algorithm caches
// (legacy API and graph API) with their workspace. Only included by code built with
// CUSEG_HAVE_CUDA.
#pragma once
#include <cuda_runtime.h>
#include <cudnn.h>

#include <memory>

#include "cuseg/engine/context.h"
#include "cuseg/engine/cuda/cudnn_graph.h"

namespace cuseg {

class CudnnCache;  // engine/cuda/cudnn_ops.cpp

class CudaContext {
 public:
  explicit CudaContext(const ContextOptions& opt);
  ~CudaContext();
  CudaContext(const CudaContext&) = delete;
  CudaContext& operator=(const CudaContext&) = delete;

  cudaStream_t stream() const { return stream_; }
  cudnnHandle_t cudnn() const { return cudnn_; }
  CudnnCache& cudnn_cache() { return *cache_; }
  // cuDNN graph plans of the bf16 path (engine/cuda/cudnn_graph.h).
  GraphCache& graph_cache() { return *graph_cache_; }
  size_t workspace_budget() const { return budget_; }
  void synchronize();

 private:
  cudaStream_t stream_ = nullptr;
  cudnnHandle_t cudnn_ = nullptr;
  size_t budget_;
  std::unique_ptr<CudnnCache> cache_;
  GraphCachePtr graph_cache_;
};

}  // namespace cuseg
