// Test volumes for the fused patch op (tests/cpu/test_affine_patch.cpp and its CUDA twin):
// odd extents, anisotropic spacing, a RAS direction with a small oblique tilt (so index and world
// axes differ), a smooth image with noise, and labels of both table modes: label 1 a large
// ellipsoid (box mode), label 2 three small blobs far apart (their bounding box is mostly empty:
// list mode), one of them near the border so that some transforms move it out of the valid
// centre region.
#pragma once
#include <cmath>
#include <cstdint>
#include <random>

#include "cuseg/data/image.h"

namespace cuseg {
namespace test {

inline void patch_test_volume(const std::array<int, 3>& size, uint64_t seed, data::Image* image,
                              data::LabelMap* label) {
  data::Geometry g;
  g.size = size;
  g.spacing = {1.3, 0.9, 2.2};
  // RAS in ITK's LPS world, tilted by 4 degrees about the slice axis.
  const double a = 4.0 * 3.14159265358979323846 / 180.0;
  g.direction = {-std::cos(a), std::sin(a), 0, -std::sin(a), -std::cos(a), 0, 0, 0, 1};
  g.origin = {12.5, -7.25, 30.0};
  *image = data::Image::make(g);
  *label = data::LabelMap::make(g);
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> noise(-0.05, 0.05);
  const double c0 = (size[0] - 1) / 2.0, c1 = (size[1] - 1) / 2.0, c2 = (size[2] - 1) / 2.0;
  const int blobs[3][3] = {{size[0] / 4, size[1] / 3, size[2] / 2},
                           {size[0] * 3 / 4, size[1] * 2 / 3, size[2] / 3},
                           {1, size[1] / 2, size[2] - 2}};  // near the border
  for (int k = 0; k < size[2]; ++k)
    for (int j = 0; j < size[1]; ++j)
      for (int i = 0; i < size[0]; ++i) {
        const double x = (i - c0) / size[0], y = (j - c1) / size[1], z = (k - c2) / size[2];
        image->at(i, j, k) =
            float(0.6 * std::sin(7 * x + 3 * y) * std::cos(5 * z) + 0.3 * x - 0.2 * z + noise(rng));
        uint8_t l = (x * x / 0.09 + y * y / 0.06 + z * z / 0.12) < 1.0 ? 1 : 0;
        for (const auto& b : blobs) {
          const int di = i - b[0], dj = j - b[1], dk = k - b[2];
          if (di * di + dj * dj + dk * dk <= 2) l = 2;
        }
        label->at(i, j, k) = l;
      }
}

}  // namespace test
}  // namespace cuseg
