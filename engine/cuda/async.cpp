#include "cuseg/engine/cuda/async.h"

#include <cuda_runtime.h>

#include "cuseg/core/transfer_stats.h"
#include "cuseg/engine/context.h"
#include "cuseg/engine/cuda/cuda_check.h"
#include "cuseg/engine/cuda/cuda_context.h"

namespace cuseg {

namespace {
cudaStream_t raw(Stream s) {
  return reinterpret_cast<cudaStream_t>(s);
}
cudaEvent_t raw_event(CudaEvent e) {
  return static_cast<cudaEvent_t>(e);
}
}  // namespace

Stream context_stream(Context& ctx) {
  return reinterpret_cast<Stream>(ctx.cuda().stream());
}

Stream cuda_stream_create() {
  cudaStream_t s = nullptr;
  CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  return reinterpret_cast<Stream>(s);
}

void cuda_stream_destroy(Stream s) {
  if (s) CUDA_CHECK_PRINT(cudaStreamDestroy(raw(s)));
}

void cuda_stream_synchronize(Stream s) {
  CUDA_CHECK(cudaStreamSynchronize(raw(s)));
}

CudaEvent cuda_event_create() {
  cudaEvent_t e = nullptr;
  CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
  return e;
}

void cuda_event_destroy(CudaEvent e) {
  if (e) CUDA_CHECK_PRINT(cudaEventDestroy(raw_event(e)));
}

void cuda_event_record(CudaEvent e, Stream s) {
  CUDA_CHECK(cudaEventRecord(raw_event(e), raw(s)));
}

void cuda_stream_wait_event(Stream s, CudaEvent e) {
  CUDA_CHECK(cudaStreamWaitEvent(raw(s), raw_event(e), 0));
}

void cuda_event_synchronize(CudaEvent e) {
  CUDA_CHECK(cudaEventSynchronize(raw_event(e)));
}

void* cuda_host_alloc(size_t bytes) {
  void* p = nullptr;
  CUDA_CHECK(cudaMallocHost(&p, bytes));
  return p;
}

void cuda_host_free(void* p) {
  if (p) CUDA_CHECK_PRINT(cudaFreeHost(p));
}

void cuda_copy_async(void* dst, const void* src, size_t bytes, bool dst_on_device,
                     bool src_on_device, Stream s) {
  const cudaMemcpyKind kind =
      dst_on_device ? (src_on_device ? cudaMemcpyDeviceToDevice : cudaMemcpyHostToDevice)
                    : (src_on_device ? cudaMemcpyDeviceToHost : cudaMemcpyHostToHost);
  CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, kind, raw(s)));
  if (kind == cudaMemcpyHostToDevice) count_transfer(TransferDirection::HostToDevice, bytes);
  if (kind == cudaMemcpyDeviceToHost) count_transfer(TransferDirection::DeviceToHost, bytes);
}

void cuda_memory_info(size_t* free_bytes, size_t* total_bytes) {
  CUDA_CHECK(cudaMemGetInfo(free_bytes, total_bytes));
}

}  // namespace cuseg
