// The pool's stream-ordered reuse (engine/memory.h), checked on the CPU with a simulated
// device: streams are counters of queued and completed work, an event is a (stream, ticket)
// pair that is done once the stream's completed count reaches the ticket. The CUDA hooks
// (engine/cuda/runtime.cpp) map these calls one to one onto cudaEventRecord / Query /
// Synchronize; tests/cuda/test_memory_streams.cpp runs the same rules on a device.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <map>
#include <memory>
#include <stdexcept>

#include "cuseg/core/check.h"
#include "cuseg/engine/memory.h"
#include "cuseg/engine/tensor.h"

using namespace cuseg;

namespace {

// ------------------------------------------------------------------ the simulated device
struct SimStream {
  uint64_t queued = 0, completed = 0;
};
struct SimEvent {
  Stream s;
  uint64_t ticket;
};

struct Sim {
  std::map<Stream, SimStream> streams;
  size_t capacity = 0, used = 0;  // bytes the "device" can hand out
  std::map<void*, size_t> blocks;
  int events_live = 0, events_recorded = 0, waits = 0, device_syncs = 0;
  bool fail_record = false;
};
Sim* sim = nullptr;

Stream stream_id(uintptr_t k) {
  return reinterpret_cast<Stream>(k);
}

void* sim_alloc(size_t bytes) {
  if (sim->used + bytes > sim->capacity) return nullptr;
  void* p = std::malloc(bytes);
  sim->used += bytes;
  sim->blocks[p] = bytes;
  return p;
}
void sim_free(void* p) {
  sim->used -= sim->blocks.at(p);
  sim->blocks.erase(p);
  std::free(p);
}
void* sim_record(Stream s) {
  if (sim->fail_record) throw std::runtime_error("simulated sticky error");
  ++sim->events_live;
  ++sim->events_recorded;
  return new SimEvent{s, sim->streams[s].queued};
}
bool sim_done(void* e) {
  const SimEvent* ev = static_cast<SimEvent*>(e);
  return sim->streams[ev->s].completed >= ev->ticket;
}
void sim_wait(void* e) {
  ++sim->waits;
  SimStream& st = sim->streams[static_cast<SimEvent*>(e)->s];
  st.completed = std::max(st.completed, static_cast<SimEvent*>(e)->ticket);
}
void sim_destroy(void* e) {
  --sim->events_live;
  delete static_cast<SimEvent*>(e);
}
void sim_sync_device() {
  ++sim->device_syncs;
  for (auto& kv : sim->streams) kv.second.completed = kv.second.queued;
}

class PoolStreams : public ::testing::Test {
 protected:
  void SetUp() override {
    sim = &state;
    state.capacity = 64 * MemoryPool::kAlign;
    RawAllocator raw{sim_alloc, sim_free, {}};
    raw.events = StreamEvents{sim_record, sim_done, sim_wait, sim_destroy, sim_sync_device};
    pool = std::make_unique<MemoryPool>(raw);
  }
  void TearDown() override {
    pool.reset();  // releases the cached blocks
    EXPECT_EQ(state.events_live, 0) << "every event recorded is destroyed";
    for (auto& kv : state.blocks) std::free(kv.first);
    sim = nullptr;
  }
  // Work queued on s (a kernel using some block).
  void launch(Stream s) { ++state.streams[s].queued; }
  void finish(Stream s) { state.streams[s].completed = state.streams[s].queued; }
  // reserved (live + cached + pending) is exactly what the simulated device handed out.
  void expect_reserved_balance() {
    const MemoryStats st = pool->stats();
    EXPECT_EQ(st.reserved, state.used);
    EXPECT_GE(st.reserved, st.live + st.pending);
  }

  Sim state;
  std::unique_ptr<MemoryPool> pool;
  const Stream legacy = nullptr, A = stream_id(0xA0), B = stream_id(0xB0);
  const size_t kB = 4 * MemoryPool::kAlign;
};

TEST_F(PoolStreams, SameStreamReuseNeedsNoEvent) {
  void* p = pool->allocate(kB, A);
  launch(A);  // a kernel on A uses p, still queued when the host frees p
  pool->deallocate(p);
  EXPECT_EQ(pool->allocate(kB, A), p) << "stream order makes immediate reuse on A safe";
  EXPECT_EQ(state.events_recorded, 0);
  EXPECT_EQ(pool->stats().system_allocations, 1u);
  pool->deallocate(p);
  expect_reserved_balance();
}

TEST_F(PoolStreams, CachedBlocksNeverCrossOwners) {
  void* p = pool->allocate(kB, A);
  launch(A);
  pool->deallocate(p);
  void* q = pool->allocate(kB, B);
  EXPECT_NE(q, p) << "B's work could run before A's queued use of p";
  EXPECT_EQ(pool->cached_blocks(A), 1u);
  EXPECT_EQ(pool->stats().system_allocations, 2u);
  pool->deallocate(q);
  EXPECT_EQ(pool->cached_blocks(B), 1u);
  expect_reserved_balance();
}

TEST_F(PoolStreams, DeclaredUseDefersReuseUntilTheOtherStreamIsDone) {
  void* p = pool->allocate(kB, legacy);
  pool->record_stream(p, B);       // e.g. an all-reduce of this gradient on the NCCL stream
  pool->record_stream(p, B);       // declared twice: one event
  pool->record_stream(p, legacy);  // the owner: nothing to declare
  launch(B);
  pool->deallocate(p);
  EXPECT_EQ(state.events_recorded, 1);
  EXPECT_EQ(pool->stats().pending, kB);
  void* q = pool->allocate(kB, legacy);
  EXPECT_NE(q, p) << "B has not finished with p";
  expect_reserved_balance();
  finish(B);
  void* r = pool->allocate(kB, legacy);  // polls the pending list first
  EXPECT_EQ(r, p);
  EXPECT_EQ(pool->stats().pending, 0u);
  EXPECT_EQ(state.waits, 0) << "polling never blocks the host";
  pool->deallocate(q);
  pool->deallocate(r);
  expect_reserved_balance();
}

TEST_F(PoolStreams, EveryDeclaredStreamMustFinish) {
  void* p = pool->allocate(kB, A);
  pool->record_stream(p, B);
  pool->record_stream(p, legacy);
  launch(B);
  launch(legacy);
  pool->deallocate(p);
  EXPECT_EQ(state.events_recorded, 2);
  finish(B);
  void* q = pool->allocate(kB, A);
  EXPECT_NE(q, p) << "the legacy stream still uses p";
  finish(legacy);
  void* r = pool->allocate(kB, A);
  EXPECT_EQ(r, p);
  pool->deallocate(q);
  pool->deallocate(r);
}

TEST_F(PoolStreams, ReallocatedBlockStartsWithNoDeclaredUses) {
  void* p = pool->allocate(kB, A);
  pool->record_stream(p, B);
  pool->deallocate(p);  // event on B (nothing queued there: already done)
  void* q = pool->allocate(kB, A);
  ASSERT_EQ(q, p);
  const int before = state.events_recorded;
  pool->deallocate(q);
  EXPECT_EQ(state.events_recorded, before) << "the old declaration must not survive reuse";
}

TEST_F(PoolStreams, OutOfMemoryWaitsForPendingAndReleasesCaches) {
  state.capacity = 3 * kB;
  void* a = pool->allocate(kB, A);
  void* b = pool->allocate(kB, B);
  void* c = pool->allocate(kB, legacy);
  pool->record_stream(c, B);
  launch(A);
  launch(B);
  pool->deallocate(a);  // cached on A
  pool->deallocate(c);  // pending on B's event
  EXPECT_EQ(pool->stats().pending, kB);
  // A different size fits nowhere: the pool must wait for B's event, synchronise the device
  // (a cached block may still be used by queued work) and give both blocks back.
  void* d = pool->allocate(2 * kB, legacy);
  ASSERT_NE(d, nullptr);
  EXPECT_EQ(state.waits, 1);
  EXPECT_EQ(state.device_syncs, 1);
  EXPECT_EQ(pool->stats().pending, 0u);
  EXPECT_EQ(pool->cached_blocks(A), 0u);
  expect_reserved_balance();
  EXPECT_THROW(pool->allocate(kB, legacy), Error) << "really out of memory";
  pool->deallocate(b);
  pool->deallocate(d);
  expect_reserved_balance();
}

TEST_F(PoolStreams, RetiredStreamHandsItsBlocksToTheLegacyStream) {
  void* p = pool->allocate(kB, A);
  void* q = pool->allocate(kB, legacy);
  pool->record_stream(q, A);
  launch(A);
  pool->deallocate(p);
  pool->retire_stream(A);  // waits for A, then forgets it
  EXPECT_EQ(state.waits, 1);
  EXPECT_EQ(pool->cached_blocks(A), 0u);
  EXPECT_EQ(pool->cached_blocks(legacy), 1u);
  const int before = state.events_recorded;
  pool->deallocate(q);  // A's declared use is gone with A: no event, cached at once
  EXPECT_EQ(state.events_recorded, before);
  EXPECT_EQ(pool->cached_blocks(legacy), 2u);
  EXPECT_EQ(pool->stats().pending, 0u);
}

TEST_F(PoolStreams, FailedEventRecordNeverReusesTheBlock) {
  void* p = pool->allocate(kB, A);
  pool->record_stream(p, B);
  state.fail_record = true;
  pool->deallocate(p);  // must not throw (destructors free)
  state.fail_record = false;
  EXPECT_EQ(pool->stats().live, 0u);
  EXPECT_EQ(pool->stats().reserved, kB) << "kept out of every cache";
  void* q = pool->allocate(kB, A);
  EXPECT_NE(q, p);
  pool->deallocate(q);
}

TEST_F(PoolStreams, ReleaseCachedWaitsForPendingBlocks) {
  void* p = pool->allocate(kB, A);
  pool->record_stream(p, B);
  launch(B);
  pool->deallocate(p);
  pool->release_cached();
  EXPECT_EQ(state.waits, 1);
  EXPECT_EQ(pool->stats().reserved, 0u);
  EXPECT_EQ(state.used, 0u);
}

TEST_F(PoolStreams, CurrentStreamComesFromTheInnermostScope) {
  EXPECT_EQ(current_stream(), legacy);
  {
    StreamScope sa(A);
    EXPECT_EQ(current_stream(), A);
    void* p = pool->allocate(kB);
    {
      StreamScope sb(B);
      EXPECT_EQ(current_stream(), B);
    }
    EXPECT_EQ(current_stream(), A);
    pool->deallocate(p);
    EXPECT_EQ(pool->cached_blocks(A), 1u);
  }
  EXPECT_EQ(current_stream(), legacy);
}

// The CPU pool has no stream hooks: streams are ignored and blocks are reused at once.
TEST(MemoryCpu, StreamsAreIgnoredOnTheHost) {
  MemoryPool& pool = memory_pool(Device::CPU);
  {
    StreamScope s(stream_id(0xA0));
    Tensor t = Tensor::empty({333});
    t.record_stream(stream_id(0xB0));
  }
  EXPECT_EQ(pool.stats().pending, 0u);
  const size_t sys = pool.stats().system_allocations;
  Tensor u = Tensor::empty({333});  // same size, default stream: served from the cache
  EXPECT_EQ(pool.stats().system_allocations, sys);
}

}  // namespace
