// Thin C++ wrappers over the CUDA runtime for code compiled by the host compiler
// (no CUDA headers here). Only built with CUSEG_HAVE_CUDA.
#pragma once
#include <cstddef>

#include "cuseg/kernels/common.h"  // Stream

namespace cuseg {

// Number of CUDA devices that answer; 0 when there is no driver or no GPU (never throws).
int cuda_device_count();
// 2-D copy: `rows` rows of `row_bytes`, at pitches dst_pitch / src_pitch. Synchronous.
void cuda_copy_2d(void* dst, size_t dst_pitch, const void* src, size_t src_pitch, size_t row_bytes,
                  size_t rows, bool dst_on_device, bool src_on_device);
void cuda_memset_2d(void* dst, size_t pitch, int value, size_t row_bytes, size_t rows);
// The same, queued on stream s (no host synchronisation).
void cuda_memset_2d_async(void* dst, size_t pitch, int value, size_t row_bytes, size_t rows,
                          Stream s);
void cuda_synchronize();
// Device-to-device copy of `bytes`, queued on stream `s` (a cudaStream_t; asynchronous).
void cuda_copy_async(void* dst, const void* src, size_t bytes, void* stream);
// Makes device `index` current for this thread (one process per GPU: index = local rank).
// Must run before the first allocation or context on that device. Throws naming the index
// and the device count when there is no such device.
void cuda_select_device(int index);

}  // namespace cuseg
