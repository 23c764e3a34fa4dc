#include "engine/cuda/runtime.h"

#include <cuda_runtime.h>

#include "engine/cuda/cuda_check.h"
#include "engine/memory.h"

namespace cuseg {

namespace {
void* cuda_raw_alloc(size_t bytes) {
  void* p = nullptr;
  if (cudaMalloc(&p, bytes) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky-free error so the pool can retry
    return nullptr;
  }
  return p;
}
void cuda_raw_free(void* p) {
  CUDA_CHECK_PRINT(cudaFree(p));
}

// Installs the CUDA allocator into the device pool when the library loads.
struct RegisterCudaPool {
  RegisterCudaPool() {
    register_raw_allocator(Device::CUDA, RawAllocator{cuda_raw_alloc, cuda_raw_free});
  }
} register_cuda_pool;
}  // namespace

int cuda_device_count() {
  static const int count = [] {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
      cudaGetLastError();
      return 0;
    }
    return n;
  }();
  return count;
}

static cudaMemcpyKind kind_of(bool dst_dev, bool src_dev) {
  if (dst_dev && src_dev) return cudaMemcpyDeviceToDevice;
  if (dst_dev) return cudaMemcpyHostToDevice;
  if (src_dev) return cudaMemcpyDeviceToHost;
  return cudaMemcpyHostToHost;
}

void cuda_copy_2d(void* dst, size_t dst_pitch, const void* src, size_t src_pitch, size_t row_bytes,
                  size_t rows, bool dst_on_device, bool src_on_device) {
  CUDA_CHECK(cudaMemcpy2D(dst, dst_pitch, src, src_pitch, row_bytes, rows,
                          kind_of(dst_on_device, src_on_device)));
}

void cuda_memset_2d(void* dst, size_t pitch, int value, size_t row_bytes, size_t rows) {
  CUDA_CHECK(cudaMemset2D(dst, pitch, value, row_bytes, rows));
}

void cuda_synchronize() {
  CUDA_CHECK(cudaDeviceSynchronize());
}

}  // namespace cuseg
