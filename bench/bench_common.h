// Helpers shared by engine_bench and bench_kernels: device description (name, driver,
// CUDA/cuDNN versions, peak rates used for "% of peak"), seeded random tensors, the L2
// flush and process memory figures. Units: bytes, seconds, bytes/s, FLOP/s.
#pragma once
#include <cstdint>
#include <string>

#include "cuseg/engine/tensor.h"

namespace cuseg {
namespace bench {

struct DeviceInfo {
  std::string device;  // "cpu" or "cuda"
  std::string name;    // GPU or CPU model name
  int sm_count = 0;    // CUDA: multiprocessors; CPU: logical processors
  std::string driver, cuda_runtime, cudnn_runtime, cudnn_compiled;
  size_t total_memory = 0;  // bytes (CUDA: device memory; CPU: MemTotal)
  size_t l2_bytes = 0;      // CUDA only
  // Peak DRAM bandwidth (bytes/s) = 2 (DDR) x memory clock x bus width / 8, from
  // cudaDeviceGetAttribute; 0 on CPU (not derivable; we do not state one).
  double peak_bw = 0;
  // FP32 CUDA-core peak (FLOP/s) = SMs x 128 FP32 lanes (sm_80+: 64 on sm_80, 128 on
  // sm_86/89/90) x 2 (FMA) x boost clock. cuDNN may run fp32 convolutions on TF32 tensor
  // cores, which can exceed this figure (see README).
  double peak_fp32 = 0;
  // Dense bf16 tensor-core peak (FLOP/s) = SMs x dense bf16 FLOP per clock per SM (sm_90: 4096;
  // sm_80: 2048; sm_86 / sm_89: 1024) x clock. For the 132-SM Hopper parts (H100 SXM, H200) the
  // datasheet figure is used instead (989.4 TFLOP/s, i.e. a 1830 MHz tensor clock): the
  // attribute's boost clock would overstate it. 0 when unknown (and on the CPU).
  double peak_bf16 = 0;
};

// Describes the device a Context on `d` would use (device 0 for CUDA).
DeviceInfo describe_device(Device d);
std::string to_json_string(const DeviceInfo& info);  // one JSON object

// Uniform [lo, hi) float tensor on `dev`, from a seeded generator (never zeros: see
// the measurement method; zeros can hide unwritten outputs and run faster).
Tensor random_tensor(const Shape& shape, Device dev, uint64_t seed, float lo = -1.f,
                     float hi = 1.f);
// uint8 class labels in [0, classes).
Tensor random_labels(const Shape& shape, int classes, Device dev, uint64_t seed);

// Process peak resident set (bytes, getrusage ru_maxrss).
size_t peak_rss_bytes();

// CUDA only: writes a buffer of 2 x L2 bytes on the current stream so the next timed
// region starts with a cold L2. No-op in CPU builds.
void flush_l2(void* stream);

}  // namespace bench
}  // namespace cuseg
