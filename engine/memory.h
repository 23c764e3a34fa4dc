// Device memory: one caching pool per device with live / peak byte accounting, and
// stream-ordered reuse of freed blocks.
//
// Blocks are rounded up to 512 bytes and cached by exact rounded size on free, so a
// training loop that allocates the same shapes every step reaches a steady state with no
// calls to the system allocator (or cudaMalloc). `live` counts bytes handed out, `peak`
// its maximum, `reserved` what the pool holds from the system (live + cached + pending).
//
// Streams (why: the compute stream, a copy stream and a communication stream run at once).
// The host frees a block when its last Tensor goes away, while work that uses it may still
// be queued on the device. The pool therefore never hands a freed block to work that could
// run before that queued work:
// - Every block has an OWNER stream: the allocating thread's current stream (StreamScope;
//   default 0, the legacy default stream). Freed, it returns to its owner's cache and is
//   handed again only to allocations on the same owner: work queued later on one stream
//   runs after all earlier work on it, so no event is needed.
// - A block used on another stream must be declared: record_stream(p, s) (PyTorch's
//   recordStream contract). Freeing it records one event on each such stream; the block
//   waits in a pending list until every event has completed (polled at later allocations,
//   never blocking), then joins its owner's cache.
// - Cached blocks never cross owners. Under memory pressure the pool waits for pending
//   events, synchronises the device and returns every cached block to the system before it
//   reports out of memory.
// - The contexts' compute streams are blocking streams (engine/cuda/cuda_context.cpp):
//   ordered with the legacy default stream, so blocks they use may keep owner 0 as long as
//   one compute stream is active at a time. Two compute streams running at once, or any
//   non-blocking stream (copy, NCCL), allocate under StreamScope(their stream) and declare
//   cross-stream uses with record_stream.
// - Before destroying a stream that owns or used blocks, call retire_stream(s).
// The CPU pool has no stream hooks: host code is ordered, streams are ignored there.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <unordered_map>
#include <utility>
#include <vector>

#include "cuseg/kernels/common.h"  // Stream

namespace cuseg {

enum class Device { CPU, CUDA };
const char* device_name(Device d);

struct MemoryStats {
  size_t live = 0;
  size_t peak = 0;
  size_t reserved = 0;
  size_t allocations = 0;         // calls to allocate()
  size_t system_allocations = 0;  // of which reached the system allocator
  size_t pending = 0;             // freed bytes waiting for other streams' events
};

// Stream-order hooks of a device (all null on the CPU: host order needs none).
struct StreamEvents {
  void* (*record)(Stream s) = nullptr;  // an event recorded on s after its queued work
  bool (*done)(void* event) = nullptr;  // non-blocking: has the event completed?
  void (*wait)(void* event) = nullptr;  // host wait for the event
  void (*destroy)(void* event) = nullptr;
  void (*sync_device)() = nullptr;  // wait for all work on the device
};

// Raw system allocation functions for one device.
struct RawAllocator {
  void* (*alloc)(size_t bytes) = nullptr;  // nullptr when out of memory
  void (*free)(void* p) = nullptr;
  StreamEvents events;
};

class MemoryPool {
 public:
  explicit MemoryPool(RawAllocator raw) : raw_(raw) {}
  ~MemoryPool();
  MemoryPool(const MemoryPool&) = delete;
  MemoryPool& operator=(const MemoryPool&) = delete;

  // A block of at least `bytes` owned by `stream` (the thread's current stream by default).
  void* allocate(size_t bytes);
  void* allocate(size_t bytes, Stream stream);
  // p must be a pointer allocate() returned (anything else is ignored: never free foreign
  // pointers). Never throws (called from destructors); a failed event record keeps the
  // block out of every cache (counted in reserved) rather than risk a race.
  void deallocate(void* p);
  // Declares that work on `stream` uses block p (a pointer allocate() returned). No-op for
  // the owner stream, on the CPU, and for foreign pointers.
  void record_stream(void* p, Stream stream);
  // Waits for the work queued on `stream`, then forgets it: blocks it owns pass to the
  // legacy default stream, declared uses of it are dropped. Call before cudaStreamDestroy.
  void retire_stream(Stream stream);
  // Waits for pending blocks, then returns every cached block to the system.
  void release_cached();
  MemoryStats stats() const;
  void reset_peak();
  // Cached (free, reusable) blocks owned by `stream` (for tests and reports).
  size_t cached_blocks(Stream stream) const;

  static constexpr size_t kAlign = 512;

 private:
  struct Block {
    size_t size = 0;
    Stream owner = nullptr;
    std::vector<Stream> uses;  // other streams declared with record_stream
  };
  struct Pending {
    void* p = nullptr;
    Block block;
    std::vector<void*> events;  // one per stream in block.uses
  };
  bool has_events() const { return raw_.events.record != nullptr; }
  // Moves pending blocks whose events all completed (all of them when `wait`) to the caches.
  void collect_pending_locked(bool wait);
  void release_cached_locked();

  RawAllocator raw_;
  mutable std::mutex mu_;
  std::unordered_map<void*, Block> in_use_;
  std::multimap<std::pair<Stream, size_t>, void*> cached_;  // (owner, size) -> block
  std::vector<Pending> pending_;
  MemoryStats st_;
};

// The allocating thread's current stream (0, the legacy default stream, unless a
// StreamScope is active on this thread).
Stream current_stream();

// Makes `s` the current stream of this thread until the scope ends (scopes nest).
class StreamScope {
 public:
  explicit StreamScope(Stream s);
  ~StreamScope();
  StreamScope(const StreamScope&) = delete;
  StreamScope& operator=(const StreamScope&) = delete;

 private:
  Stream prev_;
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
