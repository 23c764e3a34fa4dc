// Streams, events, asynchronous copies and page-locked host memory for code compiled by the
// host compiler (no CUDA headers here; CUDA builds only). The data pipeline
// (data/device_patches.h) streams volumes on a copy stream of its own while the context's
// stream runs kernels; events order the two without synchronising the host.
#pragma once
#include <cstddef>

#include "cuseg/kernels/common.h"

namespace cuseg {

class Context;

// The CUDA stream of a CUDA context (ops and kernels launched for it run there).
Stream context_stream(Context& ctx);

// A stream that does not synchronise with the legacy default stream.
Stream cuda_stream_create();
void cuda_stream_destroy(Stream s);  // print-only on error (destructors)
void cuda_stream_synchronize(Stream s);

// Events (opaque cudaEvent_t), created with timing disabled.
using CudaEvent = void*;
CudaEvent cuda_event_create();
void cuda_event_destroy(CudaEvent e);  // print-only on error
void cuda_event_record(CudaEvent e, Stream s);
void cuda_stream_wait_event(Stream s, CudaEvent e);  // s waits for e's work (no host wait)
void cuda_event_synchronize(CudaEvent e);            // the host waits

// Page-locked host memory (what makes host -> device copies asynchronous).
void* cuda_host_alloc(size_t bytes);
void cuda_host_free(void* p);  // print-only on error

// cudaMemcpyAsync on `s` (host memory must be page-locked for the copy to overlap).
void cuda_copy_async(void* dst, const void* src, size_t bytes, bool dst_on_device,
                     bool src_on_device, Stream s);

// Free and total memory of the current device, in bytes.
void cuda_memory_info(size_t* free_bytes, size_t* total_bytes);

}  // namespace cuseg
