// Tensor views and the caching memory pool's accounting.
#include <gtest/gtest.h>

#include "cuseg/core/check.h"
#include "cuseg/engine/context.h"
#include "cuseg/engine/tensor.h"

using namespace cuseg;

TEST(Tensor, ShapesStridesAndChannelSlices) {
  Tensor t = Tensor::zeros({2, 5, 3, 4, 6});
  EXPECT_EQ(t.numel(), 2 * 5 * 3 * 4 * 6);
  EXPECT_EQ(t.strides(), (Shape{360, 72, 24, 6, 1}));
  Tensor s = t.channel_slice(1, 3);
  EXPECT_FALSE(s.is_contiguous());
  Vol v = s.vol();
  EXPECT_EQ(v.c, 2);
  EXPECT_EQ(v.sn, 360);
  EXPECT_EQ(v.p, t.f32() + 72);
  // Copy into and out of a batch-strided view.
  Tensor src = Tensor::empty({2, 2, 3, 4, 6});
  for (int64_t i = 0; i < src.numel(); ++i) src.f32()[i] = float(i + 1);
  s.copy_from(src);
  Tensor back = s.clone();
  ASSERT_TRUE(back.is_contiguous());
  for (int64_t i = 0; i < src.numel(); ++i) ASSERT_EQ(back.f32()[i], src.f32()[i]);
  EXPECT_EQ(t.f32()[0], 0.f);           // channel 0 untouched
  EXPECT_EQ(t.f32()[72], 1.f);          // channel 1, batch 0
  EXPECT_EQ(t.f32()[360 + 72], 145.f);  // channel 1, batch 1 (src batch stride 144)
  EXPECT_THROW(t.channel_slice(4, 6), Error);
  EXPECT_THROW(t.reshape({7}), Error);
}

TEST(Memory, PoolCountsLiveAndPeakAndReusesBlocks) {
  MemoryPool& pool = memory_pool(Device::CPU);
  pool.release_cached();
  const MemoryStats s0 = pool.stats();
  {
    Tensor a = Tensor::empty({1000});  // 4000 B -> 4096 B block (512-byte rounding)
    Tensor b = Tensor::empty({10});
    const MemoryStats s1 = pool.stats();
    EXPECT_EQ(s1.live - s0.live, 4096u + 512u);
    EXPECT_GE(s1.peak, s1.live);
  }
  const MemoryStats s2 = pool.stats();
  EXPECT_EQ(s2.live, s0.live);
  const size_t sys = s2.system_allocations;
  { Tensor c = Tensor::empty({1000}); }  // served from the cache
  EXPECT_EQ(pool.stats().system_allocations, sys);
  pool.reset_peak();
  EXPECT_EQ(pool.stats().peak, pool.stats().live);
}

TEST(Device, ResolveDevice) {
  EXPECT_EQ(resolve_device("cpu"), Device::CPU);
  EXPECT_EQ(resolve_device("auto"), cuda_available() ? Device::CUDA : Device::CPU);
  EXPECT_THROW(resolve_device("tpu"), Error);
  if (!cuda_available()) EXPECT_THROW(resolve_device("cuda"), Error);
}

TEST(Tensor, BatchSliceIsAView) {
  Tensor t = Tensor::zeros({4, 3});
  Tensor s = t.batch_slice(1, 3);
  EXPECT_EQ(s.shape(), (Shape{2, 3}));
  EXPECT_TRUE(s.is_contiguous());
  s.data<float>()[0] = 7.f;
  EXPECT_EQ(t.f32()[3], 7.f);
  EXPECT_THROW(t.batch_slice(2, 5), Error);
  EXPECT_THROW(t.batch_slice(2, 2), Error);
}

TEST(Tensor, DTypeTable) {
  for (DType t : {DType::F32, DType::BF16, DType::F16, DType::U8, DType::I32}) {
    EXPECT_EQ(dtype_info(t).dtype, t);
    const DTypeInfo* back = dtype_from_safetensors(dtype_info(t).safetensors);
    ASSERT_NE(back, nullptr);
    EXPECT_EQ(back->dtype, t);
  }
  EXPECT_EQ(dtype_size(DType::BF16), 2u);
  EXPECT_STREQ(dtype_name(DType::I32), "int32");
  EXPECT_EQ(dtype_from_safetensors("F64"), nullptr);
  EXPECT_EQ(dtype_from_safetensors("f32"), nullptr);
}
