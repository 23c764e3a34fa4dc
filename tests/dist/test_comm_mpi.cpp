// The MPI communicator and GradientSync across real processes: ctest runs this binary under
// `mpirun -np 2` (tests/CMakeLists.txt). Every rank runs every test in the same order, so the
// collectives inside the tests pair up. Values are small integers and halves: sums and averages
// of them are exact in float, so results are compared with ==.
#include <gtest/gtest.h>

#include <cstring>
#include <numeric>
#include <vector>

#include "cuseg/core/check.h"
#include "cuseg/engine/comm.h"
#include "cuseg/engine/context.h"
#include "cuseg/engine/tensor.h"

using namespace cuseg;

namespace {

struct World {
  Context ctx{Device::CPU};
  DistEnv env = detect_dist_env();
  std::unique_ptr<Communicator> comm = make_communicator(ctx, env, CommOptions{60});
};

World& world() {
  static World w;
  return w;
}

TEST(CommMpi, EnvironmentMatchesTheLauncher) {
  World& w = world();
  EXPECT_EQ(w.env.launcher, "mpirun");
  EXPECT_GE(w.env.world_size, 2);
  EXPECT_EQ(w.comm->rank(), w.env.rank);
  EXPECT_EQ(w.comm->world_size(), w.env.world_size);
  EXPECT_STREQ(w.comm->backend(), "mpi");
}

TEST(CommMpi, AllreduceSumAverageMax) {
  World& w = world();
  const int r = w.comm->rank(), W = w.comm->world_size();
  const size_t n = 1000;
  auto fill = [&](std::vector<float>& v) {
    for (size_t i = 0; i < n; ++i) v[i] = float(r + 1) + 0.5f * float(i % 7);
  };
  std::vector<float> v(n);
  // Sum over ranks of (r + 1) = W (W + 1) / 2.
  const float rank_sum = float(W * (W + 1) / 2);
  fill(v);
  w.comm->allreduce(v.data(), n, ReduceOp::Sum);
  for (size_t i = 0; i < n; ++i) ASSERT_EQ(v[i], rank_sum + float(W) * 0.5f * float(i % 7)) << i;
  fill(v);
  w.comm->allreduce(v.data(), n, ReduceOp::Average);
  for (size_t i = 0; i < n; ++i)
    ASSERT_EQ(v[i], (rank_sum + float(W) * 0.5f * float(i % 7)) / float(W)) << i;
  fill(v);
  w.comm->allreduce(v.data(), n, ReduceOp::Max);
  for (size_t i = 0; i < n; ++i) ASSERT_EQ(v[i], float(W) + 0.5f * float(i % 7)) << i;
  double h[2] = {double(r), 1.0};
  w.comm->allreduce_host(h, 2, ReduceOp::Sum);
  EXPECT_EQ(h[0], double(W * (W - 1) / 2));
  EXPECT_EQ(h[1], double(W));
}

TEST(CommMpi, BroadcastFromRankZeroAndBarrier) {
  World& w = world();
  std::vector<uint8_t> b(4099, uint8_t(w.comm->rank() + 7));
  if (w.comm->rank() == 0) std::iota(b.begin(), b.end(), uint8_t(3));
  w.comm->broadcast(b.data(), b.size(), 0);
  for (size_t i = 0; i < b.size(); ++i) ASSERT_EQ(b[i], uint8_t(3 + i)) << i;
  w.comm->barrier();
}

// Parameters of assorted sizes whose gradient on rank r is (r + 1) * (index pattern).
struct FakeModel {
  std::vector<Param> ps;
  explicit FakeModel(int rank) {
    const int64_t sizes[] = {7, 1000, 3, 4096, 1, 513};
    for (int k = 0; k < 6; ++k) {
      Param p;
      p.name = "p" + std::to_string(k);
      p.value = Tensor::zeros({sizes[k]});
      p.grad = Tensor::empty({sizes[k]});
      for (int64_t i = 0; i < sizes[k]; ++i) p.grad.f32()[i] = float(rank + 1) * float(i % 5 + k);
      ps.push_back(std::move(p));
    }
  }
  std::vector<Param*> pointers() {
    std::vector<Param*> v;
    for (auto& p : ps) v.push_back(&p);
    return v;
  }
};

TEST(CommMpi, GradientSyncAveragesEveryBucket) {
  World& w = world();
  const int W = w.comm->world_size();
  FakeModel m(w.comm->rank());
  // 2 KiB buckets: several buckets, one parameter bigger than a bucket (it gets its own).
  GradientSync sync(*w.comm, m.pointers(), 2048);
  EXPECT_GE(sync.buckets(), 3);
  for (int step = 0; step < 2; ++step) {
    FakeModel fresh(w.comm->rank());
    for (size_t k = 0; k < m.ps.size(); ++k) m.ps[k].grad.copy_from(fresh.ps[k].grad);
    sync.begin();
    // Backward order (last parameter first), with one pair swapped: launches must still go
    // out in bucket order on every rank.
    const int order[] = {5, 3, 4, 2, 1, 0};
    for (int k : order) sync.mark_ready(w.ctx, &m.ps[size_t(k)]);
    sync.finish(w.ctx);
    // Average over ranks of (r + 1) * x = (W + 1) / 2 * x.
    for (size_t k = 0; k < m.ps.size(); ++k)
      for (int64_t i = 0; i < m.ps[k].grad.numel(); ++i)
        ASSERT_EQ(m.ps[k].grad.f32()[i], float(W * (W + 1) / 2) * float(i % 5 + int(k)) / float(W))
            << "param " << k << " element " << i << " step " << step;
  }
}

TEST(CommMpi, GradientSyncAveragesParametersNeverMarked) {
  World& w = world();
  FakeModel m(w.comm->rank());
  GradientSync sync(*w.comm, m.pointers(), 1 << 20);
  sync.begin();
  sync.finish(w.ctx);  // nothing marked: every bucket still averaged, in order
  const int W = w.comm->world_size();
  EXPECT_EQ(m.ps[1].grad.f32()[4], float(W * (W + 1) / 2) * 5.f / float(W));
}

TEST(CommMpi, ParametersBroadcastAndChecked) {
  World& w = world();
  FakeModel m(w.comm->rank());
  for (auto& p : m.ps)
    for (int64_t i = 0; i < p.value.numel(); ++i)
      p.value.f32()[i] = float(w.comm->rank() * 1000 + i);
  auto ps = m.pointers();
  // Different on every rank: the check must say so, on every rank, naming the parameter.
  try {
    check_parameters_equal(*w.comm, ps);
    ADD_FAILURE() << "differing parameters were not detected";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("parameter p0 differs between ranks"), std::string::npos)
        << e.what();
  }
  broadcast_parameters(*w.comm, ps);
  for (auto& p : m.ps)
    for (int64_t i = 0; i < p.value.numel(); ++i) ASSERT_EQ(p.value.f32()[i], float(i));
  EXPECT_NO_THROW(check_parameters_equal(*w.comm, ps));
}

}  // namespace
