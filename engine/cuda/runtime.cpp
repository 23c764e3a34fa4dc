#include "cuseg/engine/cuda/runtime.h"

#include <cuda_runtime.h>

#include <mutex>
#include <vector>

#include "cuseg/core/transfer_stats.h"
#include "cuseg/engine/cuda/cuda_check.h"
#include "cuseg/engine/memory.h"

namespace cuseg {

namespace {
void* cuda_raw_alloc(size_t bytes) {
  void* p = nullptr;
  const cudaError_t st = cudaMalloc(&p, bytes);
  if (st == cudaErrorMemoryAllocation) {
    cudaGetLastError();  // clear the (non-sticky) error so the pool can free its cache and retry
    return nullptr;
  }
  // Anything else (a sticky error left by an earlier faulting kernel, no device, ...) is not
  // an out-of-memory condition: report it as it is instead of the pool's "out of memory".
  CUDA_CHECK(st);
  return p;
}
void cuda_raw_free(void* p) {
  CUDA_CHECK_PRINT(cudaFree(p));
}

// Stream-order hooks of the pool (engine/memory.h). Events are timing-free and recycled:
// the pool records one per foreign stream of each block freed after cross-stream use.
std::mutex event_mu;
std::vector<cudaEvent_t>& spare_events() {
  static auto* v = new std::vector<cudaEvent_t>();  // never destroyed (used at exit)
  return *v;
}
void* cuda_event_record(Stream s) {
  cudaEvent_t ev = nullptr;
  {
    std::lock_guard<std::mutex> lock(event_mu);
    if (!spare_events().empty()) {
      ev = spare_events().back();
      spare_events().pop_back();
    }
  }
  if (!ev) CUDA_CHECK(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
  CUDA_CHECK(cudaEventRecord(ev, s));  // Stream is cudaStream_t (CUstream_st*)
  return ev;
}
bool cuda_event_done(void* ev) {
  const cudaError_t st = cudaEventQuery(static_cast<cudaEvent_t>(ev));
  if (st == cudaErrorNotReady) {
    cudaGetLastError();  // not an error: clear it
    return false;
  }
  CUDA_CHECK(st);
  return true;
}
void cuda_event_wait(void* ev) {
  CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(ev)));
}
void cuda_event_destroy(void* ev) {
  std::lock_guard<std::mutex> lock(event_mu);
  spare_events().push_back(static_cast<cudaEvent_t>(ev));
}
void cuda_sync_device() {
  CUDA_CHECK(cudaDeviceSynchronize());
}

// Installs the CUDA allocator into the device pool when the library loads.
struct RegisterCudaPool {
  RegisterCudaPool() {
    RawAllocator raw{cuda_raw_alloc, cuda_raw_free, {}};
    raw.events = StreamEvents{cuda_event_record, cuda_event_done, cuda_event_wait,
                              cuda_event_destroy, cuda_sync_device};
    register_raw_allocator(Device::CUDA, raw);
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

// cudaMemcpy2D / cudaMemset2D reject pitches above the device's cudaDevAttrMaxPitch (2^31 - 1
// bytes on current GPUs), and a packed tensor is passed as one row whose pitch is its whole
// size: any copy or zero() of a tensor of 2 GiB or more (e.g. a whole-volume activation)
// would fail. Packed ranges therefore go through the 1-D calls, which have no such limit,
// and rows whose pitch is too large are copied one by one. Same stream semantics: all of
// these are synchronous-API calls on the legacy default stream.
static bool pitch_ok(size_t pitch) {
  return pitch <= size_t(0x7fffffff);
}

void cuda_copy_2d(void* dst, size_t dst_pitch, const void* src, size_t src_pitch, size_t row_bytes,
                  size_t rows, bool dst_on_device, bool src_on_device) {
  const cudaMemcpyKind kind = kind_of(dst_on_device, src_on_device);
  if (kind == cudaMemcpyHostToDevice)
    count_transfer(TransferDirection::HostToDevice, row_bytes * rows);
  else if (kind == cudaMemcpyDeviceToHost)
    count_transfer(TransferDirection::DeviceToHost, row_bytes * rows);
  if (rows <= 1 || (dst_pitch == row_bytes && src_pitch == row_bytes)) {
    CUDA_CHECK(cudaMemcpy(dst, src, row_bytes * rows, kind));
  } else if (pitch_ok(dst_pitch) && pitch_ok(src_pitch)) {
    CUDA_CHECK(cudaMemcpy2D(dst, dst_pitch, src, src_pitch, row_bytes, rows, kind));
  } else {
    for (size_t r = 0; r < rows; ++r)
      CUDA_CHECK(cudaMemcpy(static_cast<char*>(dst) + r * dst_pitch,
                            static_cast<const char*>(src) + r * src_pitch, row_bytes, kind));
  }
}

namespace {
// Zeroes/sets `rows` rows of `row_bytes` at `pitch` with calls that accept the pitch: one
// 1-D call for packed ranges, a 2-D call while the pitch is within the limit, else row by
// row. set1d(ptr, bytes) / set2d(ptr, pitch, row_bytes, rows) issue the runtime calls.
template <class Set1d, class Set2d>
void memset_rows(void* dst, size_t pitch, size_t row_bytes, size_t rows, Set1d set1d, Set2d set2d) {
  if (rows <= 1 || pitch == row_bytes) {
    set1d(dst, row_bytes * rows);
  } else if (pitch_ok(pitch)) {
    set2d(dst, pitch, row_bytes, rows);
  } else {
    for (size_t r = 0; r < rows; ++r) set1d(static_cast<char*>(dst) + r * pitch, row_bytes);
  }
}
}  // namespace

void cuda_memset_2d(void* dst, size_t pitch, int value, size_t row_bytes, size_t rows) {
  memset_rows(
      dst, pitch, row_bytes, rows, [&](void* p, size_t n) { CUDA_CHECK(cudaMemset(p, value, n)); },
      [&](void* p, size_t pi, size_t rb, size_t nr) {
        CUDA_CHECK(cudaMemset2D(p, pi, value, rb, nr));
      });
}

void cuda_memset_2d_async(void* dst, size_t pitch, int value, size_t row_bytes, size_t rows,
                          Stream s) {
  memset_rows(
      dst, pitch, row_bytes, rows,
      [&](void* p, size_t n) { CUDA_CHECK(cudaMemsetAsync(p, value, n, s)); },
      [&](void* p, size_t pi, size_t rb, size_t nr) {
        CUDA_CHECK(cudaMemset2DAsync(p, pi, value, rb, nr, s));
      });
}

void cuda_synchronize() {
  CUDA_CHECK(cudaDeviceSynchronize());
}

void cuda_copy_async(void* dst, const void* src, size_t bytes, void* stream) {
  if (bytes == 0) return;
  CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice,
                             static_cast<cudaStream_t>(stream)));
}

void cuda_select_device(int index) {
  const int n = cuda_device_count();
  CUSEG_REQUIRE(index >= 0 && index < n, "CUDA device " << index << " requested (local rank), but "
                                                        << n << " device(s) answer");
  CUDA_CHECK(cudaSetDevice(index));
}

}  // namespace cuseg
