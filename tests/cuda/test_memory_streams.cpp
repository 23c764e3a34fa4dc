// The device pool's stream-ordered reuse on a real device (the bookkeeping itself is tested
// on the CPU in tests/cpu/test_memory_streams.cpp). A stream is held back by a host
// function that waits for the test's go-ahead, so "work still queued" is certain, not a
// matter of timing. Streams here are non-blocking (like a copy or NCCL stream): nothing
// orders them with each other or with the legacy default stream.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "cuseg/engine/memory.h"
#include "cuseg/engine/tensor.h"
#if CUSEG_HAVE_CUDA
#include <cuda_runtime.h>
#endif

using namespace cuseg;

#define REQUIRE_CUDA() \
  if (!cuseg::cuda_available()) GTEST_SKIP() << "no CUDA device"

namespace {

#if CUSEG_HAVE_CUDA
#define CK(expr) ASSERT_EQ((expr), cudaSuccess) << #expr

// Holds a stream back until release() (or the end of the scope, so a failed assertion
// cannot leave the device blocked).
class Gate {
 public:
  explicit Gate(cudaStream_t s) {
    EXPECT_EQ(cudaLaunchHostFunc(s, &Gate::wait, &open_), cudaSuccess);
  }
  ~Gate() { release(); }
  void release() { open_.store(true); }

 private:
  static void wait(void* flag) {
    while (!static_cast<std::atomic<bool>*>(flag)->load())
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  std::atomic<bool> open_{false};
};

struct Streams {
  cudaStream_t a = nullptr, b = nullptr;
  Streams() {
    EXPECT_EQ(cudaStreamCreateWithFlags(&a, cudaStreamNonBlocking), cudaSuccess);
    EXPECT_EQ(cudaStreamCreateWithFlags(&b, cudaStreamNonBlocking), cudaSuccess);
  }
  ~Streams() {
    memory_pool(Device::CUDA).retire_stream(a);
    memory_pool(Device::CUDA).retire_stream(b);
    cudaStreamDestroy(a);
    cudaStreamDestroy(b);
  }
};

// A size no other test uses, so cached blocks of other tests cannot interfere.
constexpr size_t kBytes = (size_t(3) << 20) + 12345;

// Puts `count` blocks of kBytes into stream s's cache before any gate closes: a cudaMalloc
// while a stream is held back could wait for it (allocation is an implicit-synchronisation
// point in the CUDA programming guide), and the test would hang instead of failing.
void warm_cache(Stream s, int count) {
  MemoryPool& pool = memory_pool(Device::CUDA);
  std::vector<void*> v;
  for (int i = 0; i < count; ++i) v.push_back(pool.allocate(kBytes, s));
  for (void* p : v) pool.deallocate(p);
}

TEST(MemoryStreams, OwnerStreamReusesAtOnceOtherStreamsDoNot) {
  REQUIRE_CUDA();
  MemoryPool& pool = memory_pool(Device::CUDA);
  Streams st;
  warm_cache(st.a, 1);
  warm_cache(st.b, 1);
  const size_t mallocs = pool.stats().system_allocations;
  Gate gate(st.a);
  void* p = pool.allocate(kBytes, st.a);
  CK(cudaMemsetAsync(p, 1, kBytes, st.a));  // queued behind the gate
  pool.deallocate(p);
  void* on_b = pool.allocate(kBytes, st.b);
  EXPECT_NE(on_b, p) << "stream b could overwrite p before a's queued memset runs";
  void* on_a = pool.allocate(kBytes, st.a);
  EXPECT_EQ(on_a, p) << "work queued later on a runs after the memset: safe to reuse";
  EXPECT_EQ(pool.stats().system_allocations, mallocs);
  gate.release();
  CK(cudaStreamSynchronize(st.a));
  pool.deallocate(on_a);
  pool.deallocate(on_b);
}

TEST(MemoryStreams, DeclaredUseKeepsTheBlockUntilThatStreamIsDone) {
  REQUIRE_CUDA();
  MemoryPool& pool = memory_pool(Device::CUDA);
  Streams st;
  warm_cache(st.a, 2);
  Gate gate(st.b);
  std::vector<unsigned char> host(kBytes, 0);
  void* p = nullptr;
  {
    StreamScope scope(st.a);
    Tensor t = Tensor::empty({int64_t(kBytes)}, DType::U8, Device::CUDA);
    p = t.raw();
    // Like an all-reduce on a communication stream: b uses a's tensor.
    ASSERT_EQ(cudaMemsetAsync(p, 7, kBytes, st.b), cudaSuccess);
    t.record_stream(st.b);
  }  // freed on the host while b's memset is still queued
  EXPECT_GE(pool.stats().pending, kBytes);
  void* q = pool.allocate(kBytes, st.a);
  EXPECT_NE(q, p) << "b has not run its memset yet";
  gate.release();
  CK(cudaStreamSynchronize(st.b));
  void* r = pool.allocate(kBytes, st.a);  // b's event has completed: p is back in a's cache
  EXPECT_EQ(r, p);
  CK(cudaMemcpy(host.data(), r, kBytes, cudaMemcpyDeviceToHost));
  EXPECT_EQ(host.front(), 7);
  EXPECT_EQ(host.back(), 7);
  pool.deallocate(q);
  pool.deallocate(r);
}

// The engine's own path (one blocking compute stream, owner = legacy stream): freeing and
// reallocating the same shapes reaches a steady state with no cudaMalloc and no events.
TEST(MemoryStreams, SingleStreamSteadyStateNeedsNoSystemAllocation) {
  REQUIRE_CUDA();
  MemoryPool& pool = memory_pool(Device::CUDA);
  { Tensor warm = Tensor::empty({1, 2, 33, 33, 33}, DType::F32, Device::CUDA); }
  const MemoryStats s0 = pool.stats();
  for (int i = 0; i < 10; ++i) {
    Tensor t = Tensor::empty({1, 2, 33, 33, 33}, DType::F32, Device::CUDA);
    t.zero();
  }
  const MemoryStats s1 = pool.stats();
  EXPECT_EQ(s1.system_allocations, s0.system_allocations);
  EXPECT_EQ(s1.pending, 0u);
}
#else
TEST(MemoryStreams, NeedsACudaBuild) {
  GTEST_SKIP() << "built without the CUDA backend";
}
#endif

}  // namespace
