// Portable seeded randomness: the same numbers from the same seed on every platform and
// standard library. std::uniform_*_distribution, std::shuffle and friends are
// implementation-defined, so product code draws only through these functions from a 64-bit
// Mersenne Twister (whose output sequence the standard fixes) or from SplitMix64.
// Counter-based streams that host and device compute alike (the training patch stream):
// Philox4x32-10 in core/philox.h.
#pragma once
#include <algorithm>
#include <cstdint>
#include <random>
#include <utility>
#include <vector>

namespace cuseg {

using Rng = std::mt19937_64;

// The top 53 bits of a 64-bit random word as a double in [0, 1) (the grid k / 2^53).
inline double unit_double(uint64_t bits) {
  return double(bits >> 11) * (1.0 / 9007199254740992.0);
}

// Uniform double in [0, 1) from one draw.
inline double uniform01(Rng& rng) {
  return unit_double(rng());
}

// Uniform float in [0, 1): the top 24 bits of one draw (exact in float32).
inline float uniform01_f24(Rng& rng) {
  return float(rng() >> 40) * (1.0f / 16777216.0f);
}

// Uniform integer in [0, n), n >= 1, from one uniform01 draw.
inline int64_t uniform_index(Rng& rng, int64_t n) {
  return std::min(n - 1, int64_t(uniform01(rng) * double(n)));
}

// Fisher-Yates shuffle, last element first, each swap partner from uniform_index.
template <class T>
void portable_shuffle(std::vector<T>& v, Rng& rng) {
  for (int64_t i = int64_t(v.size()) - 1; i > 0; --i)
    std::swap(v[size_t(i)], v[size_t(uniform_index(rng, i + 1))]);
}

// SplitMix64 (Steele, Lea and Flood, 2014): advances `state` by the golden-ratio increment and
// returns its mixed value. Good seeds from consecutive or otherwise related inputs.
inline uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Seed of stream `index` of a seeded family (e.g. one stream per epoch): SplitMix64 of
// seed + index x increment, i.e. the (index + 1)-th SplitMix64 output from state `seed`, so
// the streams of neighbouring indices are unrelated.
inline uint64_t stream_seed(uint64_t seed, uint64_t index) {
  uint64_t state = seed + 0x9E3779B97F4A7C15ull * index;
  return splitmix64(state);
}

}  // namespace cuseg
