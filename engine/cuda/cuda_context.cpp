// CudaContext: one stream, cuDNN and cuBLAS handles bound to it, and the cuDNN cache.
//
// The stream is a *blocking* stream (cudaStreamDefault, not cudaStreamNonBlocking) on
// purpose: Tensor::copy_from / zero() use the synchronous runtime calls on the legacy
// default stream (engine/cuda/runtime.cpp), and a blocking stream is implicitly ordered
// with those, so a zero() of a gradient followed by a kernel on this stream cannot race.
#include "cuseg/engine/cuda/cuda_context.h"

#include <cstdlib>

#include "cuseg/engine/cuda/cuda_check.h"
#include "cuseg/engine/cuda/cudnn_cache.h"

namespace cuseg {

CudaContext::CudaContext(const ContextOptions& opt) : budget_(opt.workspace_budget_bytes) {
  CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamDefault));
  CUDNN_CHECK(cudnnCreate(&cudnn_));
  CUDNN_CHECK(cudnnSetStream(cudnn_, stream_));
  CUBLAS_CHECK(cublasCreate(&cublas_));
  CUBLAS_CHECK(cublasSetStream(cublas_, stream_));
  // FP32 GEMMs stay FP32 (no TF32) unless CUSEG_ALLOW_TF32=1, like the cuDNN path.
  const char* tf32 = std::getenv("CUSEG_ALLOW_TF32");
  CUBLAS_CHECK(cublasSetMathMode(
      cublas_, (tf32 && tf32[0] == '1') ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
  cache_ = std::make_unique<CudnnCache>(budget_);
  graph_cache_ = make_graph_cache(opt);
}

CudaContext::~CudaContext() {
  // Queued work may still use cached workspace; finish it before the memory goes back.
  if (stream_) CUDA_CHECK_PRINT(cudaStreamSynchronize(stream_));
  graph_cache_.reset();  // plans before the handle they were built with
  cache_.reset();
  if (cublas_) {
    const cublasStatus_t st = cublasDestroy(cublas_);
    if (st != CUBLAS_STATUS_SUCCESS)
      std::fprintf(stderr, "cuseg: cublasDestroy failed (%d)\n", int(st));
  }
  if (cudnn_) {
    const cudnnStatus_t st = cudnnDestroy(cudnn_);
    if (st != CUDNN_STATUS_SUCCESS)
      std::fprintf(stderr, "cuseg: cudnnDestroy failed: %s\n", cudnnGetErrorString(st));
  }
  if (stream_) CUDA_CHECK_PRINT(cudaStreamDestroy(stream_));
}

void CudaContext::synchronize() {
  CUDA_CHECK(cudaStreamSynchronize(stream_));
}

}  // namespace cuseg
