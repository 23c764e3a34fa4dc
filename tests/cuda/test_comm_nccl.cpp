// The NCCL communicator on the one GPU of the check machine (world size 1, TCP rendezvous with
// itself): stream ordering of the asynchronous collectives against the compute stream, the
// blocking forms, and GradientSync on device gradients. The multi-rank arithmetic is the same
// code as the MPI path, which tests/dist runs with two real processes on the CPU.
#include <gtest/gtest.h>

#include <vector>

#include "cuseg/engine/comm.h"
#include "cuseg/engine/context.h"
#include "cuseg/engine/ops.h"
#include "cuseg/engine/tensor.h"
#include "test_util.h"

using namespace cuseg;

namespace {

DistEnv single_gpu_env() {
  DistEnv e;
  e.launcher = "env";
  e.master_addr = "127.0.0.1";
  e.master_port = 29000 + int(getpid() % 1000);
  return e;
}

bool have_nccl() {
  for (const auto& b : comm_backends())
    if (b == "nccl") return true;
  return false;
}

#define REQUIRE_NCCL()                                          \
  do {                                                          \
    CUSEG_REQUIRE_CUDA();                                       \
    if (!have_nccl()) GTEST_SKIP() << "this build has no NCCL"; \
  } while (0)

std::vector<float> host(const Tensor& t) {
  Tensor h = t.to(Device::CPU);
  return std::vector<float>(h.f32(), h.f32() + h.numel());
}

TEST(CommNccl, CollectivesOnOneGpu) {
  REQUIRE_NCCL();
  Context ctx(Device::CUDA);
  auto comm = make_communicator(ctx, single_gpu_env(), CommOptions{60});
  EXPECT_STREQ(comm->backend(), "nccl");
  EXPECT_EQ(comm->world_size(), 1);
  Tensor h = Tensor::empty({1000});
  for (int i = 0; i < 1000; ++i) h.f32()[i] = 0.5f * float(i % 9);
  Tensor d = h.to(Device::CUDA);
  comm->allreduce(d.f32(), 1000, ReduceOp::Average);  // one rank: the identity
  EXPECT_EQ(host(d), std::vector<float>(h.f32(), h.f32() + 1000));
  double v[2] = {1.5, -2.0};
  comm->allreduce_host(v, 2, ReduceOp::Sum);
  EXPECT_EQ(v[0], 1.5);
  EXPECT_EQ(v[1], -2.0);
  comm->broadcast(d.raw(), d.nbytes(), 0);
  comm->barrier();
}

TEST(CommNccl, AsyncAllreduceIsOrderedWithTheComputeStream) {
  REQUIRE_NCCL();
  Context ctx(Device::CUDA);
  auto comm = make_communicator(ctx, single_gpu_env(), CommOptions{60});
  // The compute stream writes the buffer (a 64 MiB add), the collective must see the result,
  // and work queued after finish() must see the collective's output.
  const int64_t n = int64_t(16) << 20;
  Tensor a = Tensor::zeros({1, 1, 1, 1, n}, DType::F32, Device::CUDA);
  Tensor ones = Tensor::empty({1, 1, 1, 1, n});
  ones.fill(1.f);
  Tensor od = ones.to(Device::CUDA);
  add_inplace(ctx, a, od);  // queued on the compute stream
  auto req = comm->start_allreduce(ctx, a.f32(), size_t(n), ReduceOp::Sum);
  comm->finish(ctx, *req);
  add_inplace(ctx, a, od);  // after the collective
  ctx.synchronize();
  const auto r = host(a);
  for (int64_t i = 0; i < n; i += 4097) ASSERT_EQ(r[size_t(i)], 2.f) << i;
  EXPECT_EQ(r.back(), 2.f);
}

TEST(CommNccl, GradientSyncOnDeviceGradients) {
  REQUIRE_NCCL();
  Context ctx(Device::CUDA);
  auto comm = make_communicator(ctx, single_gpu_env(), CommOptions{60});
  std::vector<Param> ps(4);
  const int64_t sizes[] = {5, 3000, 17, 70000};
  std::vector<Param*> ptrs;
  for (int k = 0; k < 4; ++k) {
    ps[size_t(k)].name = "p" + std::to_string(k);
    Tensor g = Tensor::empty({sizes[k]});
    for (int64_t i = 0; i < sizes[k]; ++i) g.f32()[i] = float(k) + 0.25f * float(i % 11);
    ps[size_t(k)].value = Tensor::zeros({sizes[k]}, DType::F32, Device::CUDA);
    ps[size_t(k)].grad = g.to(Device::CUDA);
    ptrs.push_back(&ps[size_t(k)]);
  }
  GradientSync sync(*comm, ptrs, 16 << 10);  // 16 KiB buckets: several
  EXPECT_GE(sync.buckets(), 2);
  sync.begin();
  for (int k = 3; k >= 0; --k) sync.mark_ready(ctx, &ps[size_t(k)]);
  sync.finish(ctx);
  ctx.synchronize();
  for (int k = 0; k < 4; ++k) {
    const auto g = host(ps[size_t(k)].grad);
    for (int64_t i = 0; i < sizes[k]; ++i)
      ASSERT_EQ(g[size_t(i)], float(k) + 0.25f * float(i % 11)) << k << " " << i;
  }
}

}  // namespace
