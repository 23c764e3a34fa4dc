// Device memory: one caching pool per device with live / peak byte accounting.
//
// Blocks are rounded up to 512 bytes and cached by exact rounded size on free, so a
// training loop that allocates the same shapes every step reaches a steady state with no
// calls to the system allocator (or cudaMalloc). `live` counts bytes handed out, `peak`
// its maximum, `reserved` what the pool holds from the system (live + cached).
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace cuseg {

enum class Device { CPU, CUDA };
const char* device_name(Device d);

struct MemoryStats {
  size_t live = 0;
  size_t peak = 0;
  size_t reserved = 0;
  size_t allocations = 0;         // calls to allocate()
  size_t system_allocations = 0;  // of which reached the system allocator
};

// Raw system allocation functions for one device.
struct RawAllocator {
  void* (*alloc)(size_t bytes) = nullptr;
  void (*free)(void* p) = nullptr;
};

class MemoryPool {
 public:
  explicit MemoryPool(RawAllocator raw) : raw_(raw) {}
  ~MemoryPool();
  MemoryPool(const MemoryPool&) = delete;
  MemoryPool& operator=(const MemoryPool&) = delete;

  void* allocate(size_t bytes);
  void deallocate(void* p);
  // Returns cached blocks to the system.
  void release_cached();
  MemoryStats stats() const;
  void reset_peak();

  static constexpr size_t kAlign = 512;

 private:
  RawAllocator raw_;
  mutable std::mutex mu_;
  std::unordered_map<void*, size_t> in_use_;
  std::multimap<size_t, void*> cached_;
  MemoryStats st_;
};

// The process-wide pool of a device. The CUDA pool exists only in CUDA builds
// (engine/cuda/), and throws when no device answers.
MemoryPool& memory_pool(Device d);
// Installs the CUDA raw allocator (called by the CUDA backend at start-up).
void register_raw_allocator(Device d, RawAllocator raw);

// Human-readable MiB for reports.
inline double to_mib(size_t bytes) {
  return double(bytes) / (1024.0 * 1024.0);
}

}  // namespace cuseg
