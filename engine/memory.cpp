#include "cuseg/engine/memory.h"

#include <cstdlib>

#include "cuseg/core/check.h"

namespace cuseg {

const char* device_name(Device d) {
  return d == Device::CPU ? "cpu" : "cuda";
}

MemoryPool::~MemoryPool() {
  // Blocks still in use at exit belong to static tensors; the OS reclaims them.
  release_cached();
}

void* MemoryPool::allocate(size_t bytes) {
  const size_t sz = ((bytes == 0 ? 1 : bytes) + kAlign - 1) / kAlign * kAlign;
  std::lock_guard<std::mutex> lock(mu_);
  void* p = nullptr;
  auto it = cached_.find(sz);
  if (it != cached_.end()) {
    p = it->second;
    cached_.erase(it);
  } else {
    CUSEG_CHECK(raw_.alloc != nullptr, "no allocator registered for this device");
    p = raw_.alloc(sz);
    if (!p) {  // give the cache back and try once more before reporting
      for (auto& kv : cached_) {
        raw_.free(kv.second);
        st_.reserved -= kv.first;
      }
      cached_.clear();
      p = raw_.alloc(sz);
    }
    CUSEG_CHECK(p != nullptr, "out of memory allocating " << sz << " bytes (live " << st_.live
                                                          << ", peak " << st_.peak << ")");
    st_.reserved += sz;
    ++st_.system_allocations;
  }
  in_use_[p] = sz;
  st_.live += sz;
  ++st_.allocations;
  if (st_.live > st_.peak) st_.peak = st_.live;
  return p;
}

void MemoryPool::deallocate(void* p) {
  if (!p) return;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = in_use_.find(p);
  if (it == in_use_.end()) return;  // not ours: never free foreign pointers
  st_.live -= it->second;
  cached_.emplace(it->second, p);
  in_use_.erase(it);
}

void MemoryPool::release_cached() {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& kv : cached_) {
    raw_.free(kv.second);
    st_.reserved -= kv.first;
  }
  cached_.clear();
}

MemoryStats MemoryPool::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return st_;
}

void MemoryPool::reset_peak() {
  std::lock_guard<std::mutex> lock(mu_);
  st_.peak = st_.live;
}

namespace {
void* cpu_alloc(size_t bytes) {
  return std::aligned_alloc(MemoryPool::kAlign, bytes);
}
void cpu_free(void* p) {
  std::free(p);
}

// Pools are never destroyed: tensors with static storage duration may free into them
// during program exit, after any static pool object would have been gone.
MemoryPool*& pool_slot(Device d) {
  static MemoryPool* cpu = new MemoryPool(RawAllocator{cpu_alloc, cpu_free});
  static MemoryPool* cuda = new MemoryPool(RawAllocator{});
  return d == Device::CPU ? cpu : cuda;
}
}  // namespace

MemoryPool& memory_pool(Device d) {
  return *pool_slot(d);
}

void register_raw_allocator(Device d, RawAllocator raw) {
  CUSEG_CHECK(d == Device::CUDA, "only the CUDA allocator can be registered");
  MemoryPool*& slot = pool_slot(d);
  if (slot->stats().reserved == 0) {
    delete slot;
    slot = new MemoryPool(raw);
  }
}

}  // namespace cuseg
