// bfloat16 storage for the mixed-precision path: the top 16 bits of an IEEE-754 float32 (1 sign,
// 8 exponent, 7 fraction bits; precision p = 8, unit roundoff u = 2^-8). Values are only STORED
// in bf16; every op computes in float32 and rounds its result once, to nearest, ties to even
// (RNE), the rounding of CUDA's __float2bfloat16_rn and of cuDNN's bf16 outputs. One function
// does it for the CPU twins and the CUDA kernels, so both round identically:
//   |to_bf16(v) - v| <= 2^-8 |v|   (normal range; below 2^-126 the error is <= 2^-134;
//                                   exactly 0 for values that are already bf16).
// bf16 -> float is exact. NaN stays NaN (quiet), +-Inf stay Inf, overflow rounds to Inf as RNE
// requires. Subnormals are kept (no flush to zero).
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

#include "cuseg/kernels/common.h"

namespace cuseg {

struct bf16 {
  uint16_t bits;
};
static_assert(sizeof(bf16) == 2, "bf16 must be 2 bytes");

CUSEG_HD uint32_t float_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
#endif
}

CUSEG_HD float bits_float(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
#endif
}

CUSEG_HD float to_float(bf16 v) {
  return bits_float(uint32_t(v.bits) << 16);
}
CUSEG_HD float to_float(float v) {
  return v;
}

// Round to nearest, ties to even.
CUSEG_HD bf16 to_bf16(float f) {
  uint32_t u = float_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return bf16{uint16_t((u >> 16) | 0x0040u)};  // NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return bf16{uint16_t(u >> 16)};
}

// The value float32 arithmetic sees after storing v in bf16.
CUSEG_HD float round_bf16(float v) {
  return to_float(to_bf16(v));
}

// Stores a float32 result into T (float: as is; bf16: rounded once, RNE).
CUSEG_HD void store(float& dst, float v) {
  dst = v;
}
CUSEG_HD void store(bf16& dst, float v) {
  dst = to_bf16(v);
}

// float32 multiply / add rounded separately (no FMA contraction): mul_rn / add_rn in
// kernels/common.h.

// Distance from |v| to the next representable bf16 of larger magnitude: 2^(e - 7) for
// 2^e <= |v| < 2^(e+1) (normal range), 2^-133 below it. Tolerances in the parity tests are
// stated in these units.
inline float bf16_ulp(float v) {
  int e;
  const float m = std::fabs(v);
  if (!(m >= 1.17549435e-38f)) return 9.18354962e-41f;  // 2^-133: subnormal spacing
  std::frexp(m, &e);                                    // m = f * 2^e, 0.5 <= f < 1
  return std::ldexp(1.f, e - 8);
}

}  // namespace cuseg
