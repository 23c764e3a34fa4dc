// The backend table (engine/backend.h): every op has a CPU function; the checks run before any
// backend; an op or argument a backend does not handle fails with the op's and backend's
// names; a backend's supports predicate narrows an op; registering an op twice is refused.
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <string>

#include "cuseg/core/check.h"
#include "cuseg/engine/backend_ops.h"
#include "cuseg/engine/ops.h"
#include "test_util.h"

using namespace cuseg;

TEST(Backend, CpuHasEveryOp) {
  const Backend& cpu = backend(Device::CPU);
  EXPECT_EQ(cpu.device(), Device::CPU);
  for (int i = 0; i < kOpCount; ++i) EXPECT_TRUE(cpu.has(OpId(i))) << "op id " << i;
  EXPECT_EQ(int(cpu.op_names().size()), kOpCount);
  EXPECT_EQ(cpu.op_names().front(), "conv3d_forward");
}

TEST(Backend, CudaTableMatchesTheBuild) {
#if CUSEG_HAVE_CUDA
  ASSERT_TRUE(backend_available(Device::CUDA));
  // Every op of the table has a CUDA function today (the parity tests compare each with CPU).
  for (int i = 0; i < kOpCount; ++i) EXPECT_TRUE(backend(Device::CUDA).has(OpId(i))) << i;
#else
  EXPECT_FALSE(backend_available(Device::CUDA));
  EXPECT_NE(error_message([] { backend(Device::CUDA); }).find("no cuda backend in this build"),
            std::string::npos);
  Tensor y = Tensor::zeros({1, 1, 1, 1, 1});
  EXPECT_FALSE(supports_op(Device::CUDA, op::ReluForward{y}));
#endif
}

TEST(Backend, RunOpChecksBeforeTheBackend) {
  Context ctx(Device::CPU);
  Tensor x = Tensor::zeros({1, 2, 4, 4, 4}), y_bad = Tensor::zeros({1, 2, 3, 2, 2});
  const std::string m = error_message([&] { maxpool3d_forward(ctx, x, y_bad); });
  EXPECT_NE(m.find("maxpool output [1, 2, 3, 2, 2] for input [1, 2, 4, 4, 4]"), std::string::npos)
      << m;
  // A 4-D tensor where the op needs NCDHW.
  Tensor flat = Tensor::zeros({2, 4, 4, 4});
  EXPECT_NE(error_message([&] { relu_forward(ctx, flat); }).find("expected a 5-D NCDHW tensor"),
            std::string::npos);
}

TEST(Backend, RunsTheRegisteredFunction) {
  Context ctx(Device::CPU);
  Tensor y = Tensor::empty({1, 1, 1, 2, 2});
  const float v[] = {-1.f, 2.f, -0.f, 3.f};
  std::copy(v, v + 4, y.f32());
  run_op(ctx, op::ReluForward{y});
  EXPECT_EQ(y.f32()[0], 0.f);
  EXPECT_EQ(y.f32()[1], 2.f);
  EXPECT_EQ(y.f32()[3], 3.f);
}

namespace {
int g_calls = 0;
void relu_count(Context&, const op::ReluForward&) {
  ++g_calls;
}
// A backend that handles the op only for tensors of at most 4 elements.
bool small_only(const op::ReluForward& a) {
  return a.y.numel() <= 4;
}
}  // namespace

TEST(Backend, SupportsPredicateAndMissingOps) {
  Backend b(Device::CPU, "test");
  b.add<op::ReluForward>(relu_count, small_only);
  Context ctx(Device::CPU);
  Tensor small = Tensor::zeros({1, 1, 1, 2, 2}), big = Tensor::zeros({1, 1, 2, 2, 2});
  EXPECT_TRUE(b.supports(op::ReluForward{small}));
  EXPECT_FALSE(b.supports(op::ReluForward{big}));
  b.call(ctx, op::ReluForward{small});
  EXPECT_EQ(g_calls, 1);
  EXPECT_NE(error_message([&] {
              b.call(ctx, op::ReluForward{big});
            }).find("relu_forward is not supported by the test backend for these arguments"),
            std::string::npos);
  EXPECT_EQ(g_calls, 1);
  // An op that was never registered.
  EXPECT_FALSE(b.has(OpId::AddInplace));
  EXPECT_NE(error_message([&] {
              b.call(ctx, op::AddInplace{small, small});
            }).find("add_inplace is not supported by the test backend"),
            std::string::npos);
  // Once per op and backend.
  EXPECT_NE(error_message([&] { b.add<op::ReluForward>(relu_count); }).find("registered twice"),
            std::string::npos);
  EXPECT_EQ(b.op_names(), std::vector<std::string>{"relu_forward"});
}
