// Philox4x32-10 (core/philox.h) against the published known-answer vectors, and the integer
// helpers built on it.
#include <gtest/gtest.h>

#include <set>

#include "cuseg/core/philox.h"

using namespace cuseg;

// The three philox4x32 10-round vectors of the Random123 distribution's kat_vectors file
// (counter words, key words -> output words).
TEST(Philox, KnownAnswerVectors) {
  struct Kat {
    uint32_t ctr[4], key[2], out[4];
  };
  const Kat kats[] = {
      {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
      {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff},
       {0xffffffff, 0xffffffff},
       {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
      {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344},
       {0xa4093822, 0x299f31d0},
       {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
  };
  for (const auto& k : kats) {
    const Philox4 r =
        philox4x32_10(Philox4{{k.ctr[0], k.ctr[1], k.ctr[2], k.ctr[3]}}, k.key[0], k.key[1]);
    for (int w = 0; w < 4; ++w) EXPECT_EQ(r.v[w], k.out[w]) << "word " << w;
  }
}

TEST(Philox, Mulhi64MatchesWideProduct) {
  const uint64_t vals[] = {
      0, 1, 0xFFFFFFFFull, 0x100000000ull, 0x123456789abcdef1ull, 0xfedcba9876543210ull, ~0ull};
  for (uint64_t a : vals)
    for (uint64_t b : vals) {
      const unsigned __int128 p = (unsigned __int128)a * b;
      EXPECT_EQ(mulhi64(a, b), uint64_t(p >> 64)) << a << " x " << b;
    }
}

// Streams differ in every key field, and the helpers stay in range.
TEST(Philox, StreamsAndRanges) {
  const PhiloxStream a{7, 3, 0}, b{7, 3, 1}, c{7, 4, 0}, d{8, 3, 0};
  std::set<uint32_t> firsts;
  for (const auto& s : {a, b, c, d}) firsts.insert(s.draw(PhiloxPurpose::Affine, 5, 0).v[0]);
  firsts.insert(a.draw(PhiloxPurpose::LabelChoice, 5, 0).v[0]);
  firsts.insert(a.draw(PhiloxPurpose::Affine, 6, 0).v[0]);
  firsts.insert(a.draw(PhiloxPurpose::Affine, 5, 1).v[0]);
  EXPECT_EQ(firsts.size(), 7u);
  EXPECT_EQ(philox_below(0xFFFFFFFFu, 7), 6u);
  EXPECT_EQ(philox_below(0, 7), 0u);
  EXPECT_EQ(philox_below64(0xFFFFFFFFu, 0xFFFFFFFFu, 1000000007ull), 1000000006ull);
  EXPECT_LT(philox_u01(0xFFFFFFFFu, 0xFFFFFFFFu), 1.0);
  EXPECT_EQ(philox_u01(0, 0), 0.0);
  // philox_below over 8 values from 80,000 draws: every count within 5 sigma of 10,000.
  int counts[8] = {};
  for (uint32_t i = 0; i < 80000; ++i)
    counts[philox_below(a.draw(PhiloxPurpose::Affine, i, 0).v[2], 8)]++;
  for (int c2 : counts) EXPECT_NEAR(c2, 10000, 5 * 94.0);  // sd = sqrt(80000 * 1/8 * 7/8)
}
