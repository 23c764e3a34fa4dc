// CudaContext: one stream, the cuDNN handle bound to it, and the cuDNN cache.
//
// The stream is a *blocking* stream (cudaStreamDefault, not cudaStreamNonBlocking) on
// purpose: Tensor::copy_from / zero() use the synchronous runtime calls on the legacy
// default stream (engine/cuda/runtime.cpp), and a blocking stream is implicitly ordered
// with those, so a zero() of a gradient followed by a kernel on this stream cannot race.
#include "cuseg/engine/cuda/cuda_context.h"

#include <cstdio>
#include <exception>

#include "cuseg/engine/cuda/cuda_check.h"
#include "cuseg/engine/cuda/cudnn_cache.h"
#include "cuseg/engine/memory.h"

namespace cuseg {

CudaContext::CudaContext(const ContextOptions& opt) : budget_(opt.workspace_budget_bytes) {
  CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamDefault));
  CUDNN_CHECK(cudnnCreate(&cudnn_));
  CUDNN_CHECK(cudnnSetStream(cudnn_, stream_));
  cache_ = std::make_unique<CudnnCache>(budget_, stream_, opt.deterministic);
  graph_cache_ = make_graph_cache(opt);
}

CudaContext::~CudaContext() {
  // Queued work may still use cached workspace; finish it before the memory goes back.
  if (stream_) CUDA_CHECK_PRINT(cudaStreamSynchronize(stream_));
  graph_cache_.reset();  // plans before the handle they were built with
  cache_.reset();
  if (cudnn_) {
    const cudnnStatus_t st = cudnnDestroy(cudnn_);
    if (st != CUDNN_STATUS_SUCCESS)
      std::fprintf(stderr, "cuseg: cudnnDestroy failed: %s\n", cudnnGetErrorString(st));
  }
  if (stream_) {
    // Blocks allocated under StreamScope(stream_) pass to the legacy stream (engine/memory.h).
    try {
      memory_pool(Device::CUDA).retire_stream(stream_);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "cuseg: retiring the context's stream failed: %s\n", e.what());
    }
    CUDA_CHECK_PRINT(cudaStreamDestroy(stream_));
  }
}

void CudaContext::synchronize() {
  CUDA_CHECK(cudaStreamSynchronize(stream_));
}

}  // namespace cuseg
