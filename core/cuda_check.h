// CUDA_CHECK and CUSEG_LAUNCH_CHECK: one generic check (cuseg::fail) reporting the statement,
// function, file and line, and throwing. CUDA_CHECK_PRINT only prints: for destructors.
// CUSEG_LAUNCH_CHECK() after every kernel launch reads cudaGetLastError and, when the
// environment sets CUSEG_SYNC_DEBUG=1, synchronises so errors surface at their op.
// The cuDNN form (CUDNN_CHECK) is built on the same generic check in
// engine/cuda/cuda_check.h. Only included by code compiled with the CUDA toolkit.
#pragma once
#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>

#include "cuseg/core/check.h"

namespace cuseg {
inline bool sync_debug() {
  static const bool on = [] {
    const char* e = std::getenv("CUSEG_SYNC_DEBUG");
    return e && e[0] == '1';
  }();
  return on;
}
}  // namespace cuseg

// expr's status must equal ok; errstr(status) names the error.
#define CUSEG_GPU_CHECK_(expr, ok, errstr)                                                        \
  do {                                                                                            \
    auto cuseg_st_ = (expr);                                                                      \
    if (cuseg_st_ != (ok)) ::cuseg::fail(errstr(cuseg_st_), #expr, __func__, __FILE__, __LINE__); \
  } while (0)

#define CUDA_CHECK(expr) CUSEG_GPU_CHECK_(expr, cudaSuccess, cudaGetErrorString)

#define CUDA_CHECK_PRINT(expr)                                                                     \
  do {                                                                                             \
    cudaError_t cuseg_st_ = (expr);                                                                \
    if (cuseg_st_ != cudaSuccess)                                                                  \
      std::fprintf(stderr, "cuseg: %s failed: %s (%s:%d)\n", #expr, cudaGetErrorString(cuseg_st_), \
                   __FILE__, __LINE__);                                                            \
  } while (0)

#define CUSEG_LAUNCH_CHECK()                                        \
  do {                                                              \
    CUDA_CHECK(cudaGetLastError());                                 \
    if (::cuseg::sync_debug()) CUDA_CHECK(cudaDeviceSynchronize()); \
  } while (0)
