// CUDA twins of the test-time-augmentation kernels (kernels/mirror.h) against the CPU.
// Tolerances: mirror moves values, exact. softmax_mirror_accumulate: expf differs by <= 2 ulp
// between CUDA and glibc and nvcc may contract the scale multiply into an FMA: each
// probability within a few ulp of 1, over 8 accumulations: 1e-6 absolute.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "cuseg/engine/context.h"
#include "cuseg/engine/tensor.h"
#include "cuseg/kernels/mirror.h"
#include "test_util.h"

using namespace cuseg;

#if CUSEG_HAVE_CUDA

TEST(MirrorParity, MirrorAndSoftmaxAccumulate) {
  CUSEG_REQUIRE_CUDA();
  std::mt19937 rng(3);
  // Odd extents, a single-voxel axis, and the reference patch (96^3, 3 classes).
  const std::vector<Shape> shapes = {{2, 3, 5, 7, 9}, {1, 3, 1, 4, 3}, {1, 3, 96, 96, 96}};
  for (const Shape& s : shapes)
    for (int axes = 0; axes < 8; ++axes) {
      Tensor x = uniform_tensor(s, rng, -8.f, 8.f);
      Tensor y = Tensor::empty(s);
      mirror_cpu(x.vol(), y.vol(), axes);
      Tensor xg = x.to(Device::CUDA), yg = Tensor::empty(s, DType::F32, Device::CUDA);
      mirror_cuda(xg.vol(), yg.vol(), axes, nullptr);
      Tensor yb = yg.to(Device::CPU);
      for (int64_t i = 0; i < y.numel(); ++i) ASSERT_EQ(yb.f32()[i], y.f32()[i]) << axes;

      Tensor acc = uniform_tensor(s, rng, -1.f, 1.f);  // accumulate onto something non-zero
      Tensor accg = acc.to(Device::CUDA);
      softmax_mirror_accumulate_cpu(x.vol(), acc.vol(), axes, 0.125f);
      softmax_mirror_accumulate_cuda(xg.vol(), accg.vol(), axes, 0.125f, nullptr);
      Tensor back = accg.to(Device::CPU);
      double worst = 0;
      for (int64_t i = 0; i < acc.numel(); ++i)
        worst = std::max(worst, double(std::fabs(back.f32()[i] - acc.f32()[i])));
      EXPECT_LE(worst, 1e-6) << "axes " << axes;
    }
}
#endif
