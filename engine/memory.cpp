#include "cuseg/engine/memory.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <exception>

#include "cuseg/core/check.h"

namespace cuseg {

const char* device_name(Device d) {
  return d == Device::CPU ? "cpu" : "cuda";
}

MemoryPool::~MemoryPool() {
  // Blocks still in use at exit belong to static tensors; the OS reclaims them.
  try {
    release_cached();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cuseg: memory pool release at exit failed: %s\n", e.what());
  }
}

void* MemoryPool::allocate(size_t bytes) {
  return allocate(bytes, current_stream());
}

void* MemoryPool::allocate(size_t bytes, Stream stream) {
  const size_t sz = ((bytes == 0 ? 1 : bytes) + kAlign - 1) / kAlign * kAlign;
  if (!has_events()) stream = nullptr;  // the CPU: one host order
  std::lock_guard<std::mutex> lock(mu_);
  if (!pending_.empty()) collect_pending_locked(false);
  void* p = nullptr;
  auto it = cached_.find({stream, sz});
  if (it != cached_.end()) {
    p = it->second;
    cached_.erase(it);
  } else {
    CUSEG_CHECK(raw_.alloc != nullptr, "no allocator registered for this device");
    p = raw_.alloc(sz);
    if (!p) {
      // Give everything back (after the work that may still use it) and try once more.
      collect_pending_locked(true);
      release_cached_locked();
      p = raw_.alloc(sz);
    }
    CUSEG_CHECK(p != nullptr, "out of memory allocating " << sz << " bytes (live " << st_.live
                                                          << ", peak " << st_.peak << ")");
    st_.reserved += sz;
    ++st_.system_allocations;
  }
  Block& b = in_use_[p];
  b.size = sz;
  b.owner = stream;
  b.uses.clear();
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
  Block b = std::move(it->second);
  in_use_.erase(it);
  st_.live -= b.size;
  if (b.uses.empty()) {
    // Only the owner stream used it: later work on that stream runs after this use.
    cached_.emplace(std::make_pair(b.owner, b.size), p);
    return;
  }
  Pending pd;
  pd.p = p;
  try {
    for (Stream s : b.uses) pd.events.push_back(raw_.events.record(s));
  } catch (const std::exception& e) {
    // Without the events the pool cannot know when the other streams are done: the block
    // is never reused (it stays reserved) rather than risk a race.
    std::fprintf(stderr, "cuseg: event record on free failed (%s): %zu bytes not reused\n",
                 e.what(), b.size);
    for (void* ev : pd.events) raw_.events.destroy(ev);
    return;
  }
  pd.block = std::move(b);
  st_.pending += pd.block.size;
  pending_.push_back(std::move(pd));
}

void MemoryPool::record_stream(void* p, Stream stream) {
  if (!p || !has_events()) return;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = in_use_.find(p);
  if (it == in_use_.end() || it->second.owner == stream) return;
  std::vector<Stream>& u = it->second.uses;
  if (std::find(u.begin(), u.end(), stream) == u.end()) u.push_back(stream);
}

void MemoryPool::collect_pending_locked(bool wait) {
  std::vector<Pending> still;
  for (Pending& pd : pending_) {
    bool done = true;
    for (void* ev : pd.events) {
      if (wait)
        raw_.events.wait(ev);
      else if (!raw_.events.done(ev)) {
        done = false;
        break;
      }
    }
    if (!done) {
      still.push_back(std::move(pd));
      continue;
    }
    for (void* ev : pd.events) raw_.events.destroy(ev);
    st_.pending -= pd.block.size;
    cached_.emplace(std::make_pair(pd.block.owner, pd.block.size), pd.p);
  }
  pending_ = std::move(still);
}

void MemoryPool::release_cached_locked() {
  if (cached_.empty()) return;
  // A cached block may still be used by work queued on its owner stream: the device must
  // be idle before the memory goes back to the system.
  if (raw_.events.sync_device) raw_.events.sync_device();
  for (auto& kv : cached_) {
    raw_.free(kv.second);
    st_.reserved -= kv.first.second;
  }
  cached_.clear();
}

void MemoryPool::release_cached() {
  std::lock_guard<std::mutex> lock(mu_);
  collect_pending_locked(true);
  release_cached_locked();
}

void MemoryPool::retire_stream(Stream stream) {
  if (!has_events() || stream == nullptr) return;
  std::lock_guard<std::mutex> lock(mu_);
  void* ev = raw_.events.record(stream);
  raw_.events.wait(ev);
  raw_.events.destroy(ev);
  // Its work is done: what it owned now belongs to the legacy default stream, and it no
  // longer needs to be waited for.
  std::multimap<std::pair<Stream, size_t>, void*> moved;
  for (auto it = cached_.begin(); it != cached_.end();) {
    if (it->first.first == stream) {
      moved.emplace(std::make_pair(Stream(nullptr), it->first.second), it->second);
      it = cached_.erase(it);
    } else {
      ++it;
    }
  }
  cached_.insert(moved.begin(), moved.end());
  for (auto& kv : in_use_) {
    Block& b = kv.second;
    if (b.owner == stream) b.owner = nullptr;
    b.uses.erase(std::remove(b.uses.begin(), b.uses.end(), stream), b.uses.end());
    b.uses.erase(std::remove(b.uses.begin(), b.uses.end(), b.owner), b.uses.end());
  }
  for (Pending& pd : pending_)
    if (pd.block.owner == stream) pd.block.owner = nullptr;
}

MemoryStats MemoryPool::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return st_;
}

void MemoryPool::reset_peak() {
  std::lock_guard<std::mutex> lock(mu_);
  st_.peak = st_.live;
}

size_t MemoryPool::cached_blocks(Stream stream) const {
  std::lock_guard<std::mutex> lock(mu_);
  size_t n = 0;
  for (const auto& kv : cached_) n += kv.first.first == stream;
  return n;
}

namespace {
thread_local Stream tl_current_stream = nullptr;
}  // namespace

Stream current_stream() {
  return tl_current_stream;
}

StreamScope::StreamScope(Stream s) : prev_(tl_current_stream) {
  tl_current_stream = s;
}

StreamScope::~StreamScope() {
  tl_current_stream = prev_;
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
  static MemoryPool* cpu = new MemoryPool(RawAllocator{cpu_alloc, cpu_free, {}});
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
