#include "bench_common.h"

#include <sys/resource.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <thread>

#include "cuseg/core/check.h"
#if CUSEG_HAVE_CUDA
#include <cuda_runtime.h>
#include <cudnn.h>

#include "cuseg/engine/cuda/cuda_check.h"
#endif

namespace cuseg {
namespace bench {

namespace {
std::string cpu_model_name() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("model name", 0) == 0) {
      const auto p = line.find(':');
      return p == std::string::npos ? line : line.substr(p + 2);
    }
  return "unknown CPU";
}
size_t mem_total() {
  std::ifstream f("/proc/meminfo");
  std::string key;
  size_t kb = 0;
  while (f >> key >> kb) {
    if (key == "MemTotal:") return kb * 1024;
    f.ignore(256, '\n');
  }
  return 0;
}
#if CUSEG_HAVE_CUDA
std::string version_str(int v) {  // CUDA encodes 1000 * major + 10 * minor
  std::ostringstream s;
  s << v / 1000 << "." << (v % 1000) / 10;
  return s.str();
}
int attr(cudaDeviceAttr a, int dev) {
  int v = 0;
  if (cudaDeviceGetAttribute(&v, a, dev) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return v;
}
#endif
}  // namespace

DeviceInfo describe_device(Device d) {
  DeviceInfo info;
  info.device = device_name(d);
  if (d == Device::CPU) {
    info.name = cpu_model_name();
    info.sm_count = int(std::thread::hardware_concurrency());
    info.total_memory = mem_total();
    return info;
  }
#if CUSEG_HAVE_CUDA
  int dev = 0;
  CUDA_CHECK(cudaGetDevice(&dev));
  cudaDeviceProp prop{};
  CUDA_CHECK(cudaGetDeviceProperties(&prop, dev));
  info.name = prop.name;
  info.total_memory = prop.totalGlobalMem;
  info.sm_count = attr(cudaDevAttrMultiProcessorCount, dev);
  info.l2_bytes = size_t(attr(cudaDevAttrL2CacheSize, dev));
  int drv = 0, rt = 0;
  cudaDriverGetVersion(&drv);
  cudaRuntimeGetVersion(&rt);
  info.driver = version_str(drv) + " (CUDA driver API)";
  info.cuda_runtime = version_str(rt);
  {
    const size_t v = cudnnGetVersion();  // 9.x: 10000 * major + 100 * minor + patch
    std::ostringstream s;
    s << v / 10000 << "." << (v % 10000) / 100 << "." << v % 100;
    info.cudnn_runtime = s.str();
    std::ostringstream c;
    c << CUDNN_MAJOR << "." << CUDNN_MINOR << "." << CUDNN_PATCHLEVEL;
    info.cudnn_compiled = c.str();
  }
  // memoryClockRate / clockRate left cudaDeviceProp in CUDA 13; the attributes remain.
  const double mem_khz = attr(cudaDevAttrMemoryClockRate, dev);
  const double bus_bits = attr(cudaDevAttrGlobalMemoryBusWidth, dev);
  info.peak_bw = 2.0 * mem_khz * 1e3 * bus_bits / 8.0;
  const double clk_khz = attr(cudaDevAttrClockRate, dev);
  const int major = attr(cudaDevAttrComputeCapabilityMajor, dev);
  const int minor = attr(cudaDevAttrComputeCapabilityMinor, dev);
  const int lanes = (major == 8 && minor == 0) ? 64 : (major >= 8 ? 128 : 64);
  info.peak_fp32 = double(info.sm_count) * lanes * 2.0 * clk_khz * 1e3;
  const double bf16_per_clk = major == 9                   ? 4096
                              : (major == 8 && minor == 0) ? 2048
                              : (major == 8 || major == 7) ? 1024
                                                           : 0;
  info.peak_bf16 = (major == 9 && info.sm_count == 132)
                       ? 989.4e12
                       : double(info.sm_count) * bf16_per_clk * clk_khz * 1e3;
#else
  CUSEG_THROW("describe_device(cuda) in a CPU-only build");
#endif
  return info;
}

std::string to_json_string(const DeviceInfo& i) {
  nlohmann::json j = {{"device", i.device},
                      {"name", i.name},
                      {"sm_count_or_cpus", i.sm_count},
                      {"driver", i.driver},
                      {"cuda_runtime", i.cuda_runtime},
                      {"cudnn_runtime", i.cudnn_runtime},
                      {"cudnn_compiled", i.cudnn_compiled},
                      {"total_memory_bytes", i.total_memory},
                      {"l2_bytes", i.l2_bytes},
                      {"peak_bw_bytes_per_s", i.peak_bw},
                      {"peak_fp32_flop_per_s", i.peak_fp32},
                      {"peak_bf16_flop_per_s", i.peak_bf16}};
  return j.dump();
}

Tensor random_tensor(const Shape& shape, Device dev, uint64_t seed, float lo, float hi) {
  Tensor h = Tensor::empty(shape, DType::F32, Device::CPU);
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(lo, hi);
  float* p = h.f32();
  for (int64_t i = 0; i < h.numel(); ++i) p[i] = u(rng);
  return dev == Device::CPU ? h : h.to(dev);
}

Tensor random_labels(const Shape& shape, int classes, Device dev, uint64_t seed) {
  Tensor h = Tensor::empty(shape, DType::U8, Device::CPU);
  std::mt19937_64 rng(seed);
  uint8_t* p = h.data<uint8_t>();
  for (int64_t i = 0; i < h.numel(); ++i) p[i] = uint8_t(rng() % uint64_t(classes));
  return dev == Device::CPU ? h : h.to(dev);
}

size_t peak_rss_bytes() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return size_t(u.ru_maxrss) * 1024;
}

void flush_l2(void* stream) {
#if CUSEG_HAVE_CUDA
  static void* buf = nullptr;
  static size_t bytes = 0;
  if (!buf) {
    int dev = 0;
    CUDA_CHECK(cudaGetDevice(&dev));
    bytes = 2 * size_t(attr(cudaDevAttrL2CacheSize, dev));
    if (bytes == 0) bytes = size_t(128) << 20;
    CUDA_CHECK(cudaMalloc(&buf, bytes));  // outside the pool: not counted as engine memory
  }
  CUDA_CHECK(cudaMemsetAsync(buf, int(bytes & 0xff), bytes, static_cast<cudaStream_t>(stream)));
#else
  (void)stream;
#endif
}

}  // namespace bench
}  // namespace cuseg
