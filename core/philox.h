// Philox4x32-10: a counter-based random number generator (Salmon, Moraes, Dror, Shaw,
// "Parallel random numbers: as easy as 1, 2, 3", SC 2011). The output is a pure function of a
// 128-bit counter and a 64-bit key, so draw number n of any stream can be computed directly on
// any device and any thread, in any order: the training patch stream is keyed by (seed, epoch,
// rank, patch index) with it (data/patch_pipeline.h), so patches do not depend on the number
// of workers, ranks or on the device, and a resumed run continues the same stream.
//
// Written from the published definition (the paper, section 4.2, and the Random123 reference
// implementation's constants): per round the counter (c0, c1, c2, c3) becomes
//   (hi(M1 c2) ^ c1 ^ k0, lo(M1 c2), hi(M0 c0) ^ c3 ^ k1, lo(M0 c0))
// with the 32 x 32 -> 64-bit products' high and low words, M0 = 0xD2511F53, M1 = 0xCD9E8D57,
// and the key is bumped by the Weyl constants (0x9E3779B9, 0xBB67AE85) between rounds.
// tests/cpu/test_philox.cpp checks the three published known-answer vectors.
//
// Everything here is CUSEG_HD (host and device) and integer-only, hence bit-identical on both.
#pragma once
#include <cstdint>

#include "cuseg/core/host_device.h"

namespace cuseg {

struct Philox4 {
  uint32_t v[4];
};

CUSEG_HD Philox4 philox4x32_10(Philox4 ctr, uint32_t k0, uint32_t k1) {
  for (int round = 0; round < 10; ++round) {
    if (round > 0) {
      k0 += 0x9E3779B9u;
      k1 += 0xBB67AE85u;
    }
    const uint64_t p0 = uint64_t(0xD2511F53u) * ctr.v[0];
    const uint64_t p1 = uint64_t(0xCD9E8D57u) * ctr.v[2];
    ctr = Philox4{{uint32_t(p1 >> 32) ^ ctr.v[1] ^ k0, uint32_t(p1),
                   uint32_t(p0 >> 32) ^ ctr.v[3] ^ k1, uint32_t(p0)}};
  }
  return ctr;
}

// The high 64 bits of a 64 x 64-bit product (the device has an instruction for it).
CUSEG_HD uint64_t mulhi64(uint64_t a, uint64_t b) {
#if defined(__CUDA_ARCH__)
  return __umul64hi(a, b);
#else
  const uint64_t a_lo = a & 0xFFFFFFFFu, a_hi = a >> 32, b_lo = b & 0xFFFFFFFFu, b_hi = b >> 32;
  const uint64_t lo_lo = a_lo * b_lo, hi_lo = a_hi * b_lo, lo_hi = a_lo * b_hi, hi_hi = a_hi * b_hi;
  const uint64_t mid = (lo_lo >> 32) + (hi_lo & 0xFFFFFFFFu) + lo_hi;
  return hi_hi + (hi_lo >> 32) + (mid >> 32);
#endif
}

// Uniform double in [0, 1) from two words: 53 random bits, exactly representable.
CUSEG_HD double philox_u01(uint32_t hi, uint32_t lo) {
  return double(((uint64_t(hi) << 32) | lo) >> 11) * (1.0 / 9007199254740992.0);
}

// Integer in [0, n) from one 32-bit word: floor(u * n / 2^32) (multiply-shift, no division).
// Each value has probability within n / 2^32 (relative) of 1/n: below 1e-9 for the box sizes
// (n <= a few voxels) and axis extents it is used for.
CUSEG_HD uint32_t philox_below(uint32_t u, uint32_t n) {
  return uint32_t((uint64_t(u) * n) >> 32);
}
// Integer in [0, n) from two words: floor(u64 * n / 2^64); relative bias below n / 2^64.
CUSEG_HD uint64_t philox_below64(uint32_t hi, uint32_t lo, uint64_t n) {
  return mulhi64((uint64_t(hi) << 32) | lo, n);
}

// Named streams. A draw is philox4x32_10(counter, key) with key = the 64-bit seed and
// counter = (draw, item, epoch, purpose << 24 | rank): `purpose` separates the kinds of
// decisions (subject order, fill shuffle, affine, label choice, centre candidates), `item`
// is the visit or patch index inside the epoch and `draw` numbers the 4-word blocks one item
// uses. Ranks are 24-bit (16,777,215 ranks at most); items, epochs and draws 32-bit.
enum class PhiloxPurpose : uint32_t {
  SubjectOrder = 1,
  FillShuffle = 2,
  Affine = 3,
  LabelChoice = 4,
  CentreCandidate = 5,
};

struct PhiloxStream {
  uint64_t seed = 0;
  uint32_t epoch = 0;
  uint32_t rank = 0;  // < 2^24

  CUSEG_HD Philox4 draw(PhiloxPurpose purpose, uint32_t item, uint32_t block) const {
    const Philox4 ctr{{block, item, epoch, (uint32_t(purpose) << 24) | (rank & 0xFFFFFFu)}};
    return philox4x32_10(ctr, uint32_t(seed), uint32_t(seed >> 32));
  }
};

}  // namespace cuseg
