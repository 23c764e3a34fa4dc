// CUDA twins of the test-time-augmentation ops (kernels/mirror.h, through the backend table)
// against the CPU backend, over the cases and tolerances of tests/opcases (opcases::mirror()).
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "cuseg/engine/context.h"
#include "cuseg/engine/ops.h"
#include "cuseg/engine/tensor.h"
#include "cuseg/kernels/mirror.h"
#include "opcases/op_cases.h"
#include "test_util.h"

using namespace cuseg;

namespace {
// max |a - b| over two CPU tensors of equal size.
double max_diff(const Tensor& a, const Tensor& b) {
  double m = 0;
  for (int64_t i = 0; i < a.numel(); ++i)
    m = std::max(m, double(std::fabs(a.f32()[i] - b.f32()[i])));
  return m;
}
}  // namespace

TEST(MirrorParity, MirrorAndSoftmaxAccumulateEveryAxisMask) {
  CUSEG_REQUIRE_CUDA();
  const opcases::MirrorSpec& spec = opcases::mirror();
  std::mt19937 rng(3);
  Context cpu(Device::CPU), gpu(Device::CUDA);
  for (const auto& cs : opcases::with_use(spec.cases, opcases::kParity))
    for (int axes = 0; axes <= kMirrorAll; ++axes) {
      const Shape s = cs.dims.shape();
      const std::string tag = cs.label + " " + cs.dims.str() + " axes " + std::to_string(axes);
      Tensor x = uniform_tensor(s, rng, -8.f, 8.f);
      Tensor y = Tensor::empty(s);
      mirror(cpu, x, y, axes);
      Tensor xg = x.to(Device::CUDA), yg = Tensor::empty(s, DType::F32, Device::CUDA);
      mirror(gpu, xg, yg, axes);
      gpu.synchronize();
      EXPECT_LE(max_diff(yg.to(Device::CPU), y), spec.parity_mirror.atol) << tag;

      Tensor acc = uniform_tensor(s, rng, -1.f, 1.f);  // accumulate onto something non-zero
      Tensor accg = acc.to(Device::CUDA);
      softmax_mirror_accumulate(cpu, x, acc, axes, 0.125f);
      softmax_mirror_accumulate(gpu, xg, accg, axes, 0.125f);
      gpu.synchronize();
      EXPECT_LE(max_diff(accg.to(Device::CPU), acc), spec.parity_softmax.atol)
          << tag << " (" << spec.parity_softmax.why << ")";
    }
}
