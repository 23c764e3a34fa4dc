// Bytes moved between host and device memory, counted where the copies are made: every
// Tensor copy (engine/cuda/runtime.cpp, cuda_copy_2d), the asynchronous copies
// (engine/cuda/async.cpp), NCCL's host-value staging (engine/cuda/comm_nccl.cpp) and the scalar
// read-backs inside kernels (kernels/cross_entropy.cu). `grep cudaMemcpy` lists every copy
// site; each host <-> device one calls count_transfer. Process-wide, thread-safe counters; a caller
// measures a stretch of work as the difference of two snapshots. Host-to-host and device-to-device
// copies are not counted.
#pragma once
#include <cstddef>
#include <cstdint>

namespace cuseg {

struct TransferStats {
  uint64_t host_to_device_bytes = 0;
  uint64_t device_to_host_bytes = 0;
  uint64_t host_to_device_copies = 0;
  uint64_t device_to_host_copies = 0;
};
// Snapshot of the counters since the process started.
TransferStats transfer_stats();
// Counter change from `before` to `after`.
TransferStats operator-(const TransferStats& after, const TransferStats& before);

enum class TransferDirection { HostToDevice, DeviceToHost };
void count_transfer(TransferDirection dir, size_t bytes);

}  // namespace cuseg
