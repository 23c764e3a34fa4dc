// The inference pipeline (pipeline/inference.h) on the CPU backend, where the device-side path
// runs through the CPU twins: patches cut by crop_or_pad into the batch tensor, grid
// aggregation (crop, average, hann, gaussian), argmax. Each is checked against a direct
// computation written from the definitions: the patch copied voxel by voxel from the padded
// volume (host-side padding as training does it), one network call per patch, every voxel's
// weighted sum accumulated patch by patch, argmax by hand. The same float operations happen in
// the same order on both sides (products, then sums in patch order), so the comparisons are
// exact, not within a tolerance. Test-time mirroring (--tta) and the probability maps are
// checked against a direct computation in double (8 explicitly flipped forward passes per
// patch, softmax, flip back, average, aggregate), within tolerances stated at each test. Also:
// nnU-Net's Gaussian weights against its own maps, the float16 rounding, the memory plan
// against the pool's peak, and the transfer count.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "cuseg/core/check.h"
#include "cuseg/core/transfer_stats.h"
#include "cuseg/data/samplers.h"
#include "cuseg/data/transforms.h"
#include "cuseg/engine/memory.h"
#include "cuseg/engine/ops.h"
#include "cuseg/kernels/conv3d.h"
#include "cuseg/kernels/grid_aggregate.h"
#include "cuseg/pipeline/inference.h"
#include "cuseg/pipeline/probabilities.h"

using namespace cuseg;
using data::Geometry;
using data::Image;
using data::Index3;
using data::LabelMap;
using json = nlohmann::json;

namespace {

// ---------------------------------------------------------------- Gaussian weights
// nnU-Net's maps as nnU-Net computes them (scipy gaussian_filter + torch float16), written by
// tests/reference/gaussian/make_gaussian_ref.py: equal element for element, clamp included.
TEST(GaussianWeights, EqualNnunetsMapsExactly) {
  std::ifstream f(std::string(CUSEG_SOURCE_DIR) + "/tests/reference/gaussian/gaussian_ref.json");
  ASSERT_TRUE(f.good());
  const json ref = json::parse(f);
  ASSERT_GE(ref["maps"].size(), 5u);
  for (const auto& m : ref["maps"]) {
    const int pd = m["shape"][0], ph = m["shape"][1], pw = m["shape"][2];
    const auto values = m["values"].get<std::vector<double>>();
    ASSERT_EQ(values.size(), size_t(pd) * ph * pw);
    const float floor = gaussian_weight_floor(pd, ph, pw);
    int zeros = 0, bad = 0;
    for (int z = 0; z < pd; ++z)
      for (int y = 0; y < ph; ++y)
        for (int x = 0; x < pw; ++x) {
          zeros += gaussian_weight_unclamped(x, y, z, pw, ph, pd) == 0.f;
          const float w = gaussian_weight(x, y, z, pw, ph, pd, floor);
          const double r = values[size_t((z * ph + y) * pw + x)];
          if (double(w) != r) {
            if (bad++ < 5)
              ADD_FAILURE() << pd << "x" << ph << "x" << pw << " at (" << z << "," << y << "," << x
                            << "): ours " << w << ", nnU-Net " << r;
          }
        }
    EXPECT_EQ(bad, 0);
    EXPECT_EQ(zeros, m["clamped"].get<int>()) << pd << "x" << ph << "x" << pw;
    EXPECT_EQ(gaussian_weight(pw / 2, ph / 2, pd / 2, pw, ph, pd, floor), 10.f);  // the centre
  }
}

// At |x - c| = patch / 2 on every axis the map is 10 exp(-24) = 3.8e-10, 0 in float16: the
// corners of every even patch are clamped, to 2^-24 for a 96^3 patch (the reference's).
TEST(GaussianWeights, ReferencePatchCornersAreClampedToTheSmallestSubnormal) {
  EXPECT_EQ(gaussian_weight_unclamped(0, 0, 0, 96, 96, 96), 0.f);
  const float floor = gaussian_weight_floor(96, 96, 96);
  EXPECT_EQ(floor, std::ldexp(1.f, -24));
  EXPECT_EQ(gaussian_weight(0, 0, 0, 96, 96, 96, floor), floor);
  EXPECT_EQ(gaussian_weight(48, 48, 48, 96, 96, 96, floor), 10.f);
}

// round_to_float16 against the compiler's own float -> _Float16 conversion (IEEE, round to
// nearest even) at every float16 value, every midpoint between neighbours and the floats
// either side of each midpoint, and 200,000 random floats.
TEST(GaussianWeights, Float16RoundingMatchesTheCompilersConversion) {
#if defined(__FLT16_MAX__)
  auto ref = [](float v) { return float(_Float16(v)); };
  int bad = 0;
  auto check = [&](float v) {
    if (round_to_float16(v) != ref(v) && bad++ < 5)
      ADD_FAILURE() << "v " << v << ": ours " << round_to_float16(v) << ", compiler " << ref(v);
  };
  for (uint16_t b = 0; b < 0x7bff; ++b) {  // up to the largest finite float16, 65504
    _Float16 lo, hi;
    const uint16_t b1 = uint16_t(b + 1);
    std::memcpy(&lo, &b, 2);
    std::memcpy(&hi, &b1, 2);
    const float mid = 0.5f * (float(lo) + float(hi));  // exact: 12 significant bits
    for (float v : {float(lo), mid, std::nextafter(mid, 0.f), std::nextafter(mid, 1e9f)}) check(v);
  }
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> e(-30.f, 15.9f);
  for (int i = 0; i < 200000; ++i) check(std::exp2(e(rng)));
  EXPECT_EQ(bad, 0);
#else
  GTEST_SKIP() << "this compiler has no _Float16 to compare with";
#endif
}

// ---------------------------------------------------------------- the direct computation
// Tiny U-Net (2 levels: extents divisible by 2) on the CPU, deterministic weights.
// A small network; bf16 (the CPU bf16 oracle) needs filter counts that are multiples of 8.
struct Net {
  Context ctx{Device::CPU};
  UNet3D net;
  explicit Net(Precision p = Precision::F32)
      : net(p == Precision::BF16 ? UNetConfig{1, 3, {8, 16}} : UNetConfig{1, 3, {2, 3}},
            Device::CPU, 11, p) {}
};
const Precision kPrecisions[] = {Precision::F32, Precision::BF16};

// Window weight of patch voxel (x, y, z), from the definitions: torchio's hann(size + 2)[1:-1]
// per axis multiplied x * y * z; nnU-Net's map (pinned to nnU-Net's above).
float direct_weight(AggregateMode mode, int x, int y, int z, const Index3& p, float floor) {
  auto hann = [](int n, int s) {
    return float(0.5 - 0.5 * std::cos(2.0 * M_PI * double(n + 1) / double(s + 1)));
  };
  if (mode == AggregateMode::Hann) return hann(x, p[0]) * hann(y, p[1]) * hann(z, p[2]);
  if (mode == AggregateMode::Gaussian) return gaussian_weight(x, y, z, p[0], p[1], p[2], floor);
  return 1.f;
}

struct Direct {
  std::vector<float> scores;  // C x padded volume, i fastest
  LabelMap mask;
};

// `image`: normalised and already padded to at least one patch.
Direct direct(Net& n, const Image& image, const Index3& patch, int overlap, AggregateMode mode) {
  const Index3& s = image.geo.size;
  const int64_t V = int64_t(s[0]) * s[1] * s[2];
  const int C = 3;
  std::vector<float> sum(size_t(C * V), 0.f), wt(size_t(V), 0.f);
  const float floor = gaussian_weight_floor(patch[2], patch[1], patch[0]);
  for (const Index3& ini : data::grid_locations(s, patch, {overlap, overlap, overlap})) {
    Tensor x = Tensor::empty({1, 1, patch[2], patch[1], patch[0]});
    for (int k = 0; k < patch[2]; ++k)
      for (int j = 0; j < patch[1]; ++j)
        for (int i = 0; i < patch[0]; ++i)
          x.f32()[(int64_t(k) * patch[1] + j) * patch[0] + i] =
              image.at(ini[0] + i, ini[1] + j, ini[2] + k);
    n.net.forward(n.ctx, x);
    // fp32 in both precisions (bf16: the exact conversion of the bf16 logits).
    const Tensor& logits = n.net.logits_f32(n.ctx);
    const int64_t pv = int64_t(patch[0]) * patch[1] * patch[2];
    for (int k = 0; k < patch[2]; ++k)
      for (int j = 0; j < patch[1]; ++j)
        for (int i = 0; i < patch[0]; ++i) {
          const int64_t src = (int64_t(k) * patch[1] + j) * patch[0] + i;
          const int64_t dst = image.geo.index(ini[0] + i, ini[1] + j, ini[2] + k);
          if (mode == AggregateMode::Crop) {
            // torchio: overlap / 2 dropped on each side that does not touch the border.
            bool inside = true;
            const int q[3] = {i, j, k};
            for (int a = 0; a < 3; ++a) {
              const int lo = ini[a] == 0 ? 0 : overlap / 2;
              const int hi = ini[a] + patch[a] == s[a] ? patch[a] : patch[a] - overlap / 2;
              inside &= q[a] >= lo && q[a] < hi;
            }
            if (!inside) continue;
            for (int c = 0; c < C; ++c) sum[size_t(c * V + dst)] = logits.f32()[c * pv + src];
            wt[size_t(dst)] = 1.f;
          } else {
            const float w = direct_weight(mode, i, j, k, patch, floor);
            for (int c = 0; c < C; ++c) sum[size_t(c * V + dst)] += logits.f32()[c * pv + src] * w;
            wt[size_t(dst)] += w;
          }
        }
  }
  Direct d;
  d.scores.resize(sum.size());
  d.mask = LabelMap::make(image.geo);
  for (int64_t v = 0; v < V; ++v) {
    int best = 0;
    for (int c = 0; c < C; ++c) {
      d.scores[size_t(c * V + v)] =
          wt[size_t(v)] > 0.f ? sum[size_t(c * V + v)] / wt[size_t(v)] : 0.f;
      if (d.scores[size_t(c * V + v)] > d.scores[size_t(best * V + v)]) best = c;
    }
    d.mask.v[size_t(v)] = uint8_t(best);
  }
  return d;
}

Image random_image(const Index3& size, uint32_t seed, float lo, float hi) {
  Geometry g;
  g.size = size;
  g.spacing = {0.8, 1.1, 2.5};
  Image im = Image::make(g);
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(lo, hi);
  for (float& v : im.v) v = u(rng);
  return im;
}

struct GridCase {
  Index3 size, patch;
  int overlap, batch;
};
// Odd extents, a volume smaller than the patch on one axis (the pad folded into the crop),
// a batch that does not divide the patch count (zero-filled last batch), overlap 0.
const std::vector<GridCase> kGridCases = {
    {{13, 11, 9}, {6, 4, 4}, 2, 4},
    {{10, 7, 12}, {8, 8, 6}, 4, 3},
    {{9, 9, 5}, {4, 6, 2}, 0, 5},
};

// Device-side path (load without intensity, run, scores, mask) = the direct computation,
// in every aggregation mode and both precisions (bf16: the network in bf16, the aggregation in
// fp32 on the exactly converted logits, so still the same float operations on both sides).
TEST(InferencePipelineCpu, ScoresAndMaskEqualTheDirectComputation) {
  for (const Precision pr : kPrecisions) {
    Net n(pr);
    for (const GridCase& gc : kGridCases)
      for (AggregateMode mode : {AggregateMode::Crop, AggregateMode::Average, AggregateMode::Hann,
                                 AggregateMode::Gaussian}) {
        const std::string tag = std::string(precision_name(pr)) + " " + mode_name(mode) + " size " +
                                std::to_string(gc.size[0]) + "x" + std::to_string(gc.size[1]) +
                                "x" + std::to_string(gc.size[2]);
        const Image im = random_image(gc.size, 3, -1.f, 1.f);
        const float pad = -1.f;
        Image padded = im;
        data::pad_to_patch(padded, nullptr, gc.patch, pad);
        const Direct d = direct(n, padded, gc.patch, gc.overlap, mode);

        GridOptions g;
        g.patch = gc.patch;
        g.overlap = gc.overlap;
        g.batch = gc.batch;
        g.mode = mode;
        VolumePredictor vp(n.net, n.ctx, g);
        vp.load(im, nullptr, pad);
        // The volume on the "device" is the image as given.
        ASSERT_EQ(std::memcmp(vp.volume().f32(), im.v.data(), im.v.size() * sizeof(float)), 0);
        vp.run();
        const Tensor& s = vp.scores();
        ASSERT_EQ(size_t(s.numel()), d.scores.size()) << tag;
        int64_t diff = 0;
        for (size_t i = 0; i < d.scores.size(); ++i) diff += s.f32()[i] != d.scores[i];
        EXPECT_EQ(diff, 0) << tag << ": scores differ from the direct computation";
        const LabelMap m = vp.mask();
        EXPECT_EQ(m.geo.size, padded.geo.size) << tag;
        EXPECT_EQ(m.v, d.mask.v) << tag;
        // The padded geometry is the one host-side padding gives.
        std::string why;
        EXPECT_TRUE(data::same_grid(m.geo, padded.geo, &why)) << tag << ": " << why;
        // run() again starts from zero: same scores.
        vp.run();
        EXPECT_EQ(std::memcmp(vp.scores().f32(), s.f32(), d.scores.size() * sizeof(float)), 0);
      }
  }
}

// ---------------------------------------------------------------- test-time mirroring
// The direct TTA computation, from the definitions (nnU-Net's mirroring, softmax averaged):
// for each grid patch and each of the 8 subsets of the spatial axes, the patch flipped by
// explicit coordinates, one network call, each voxel's logits read back at its flipped
// position, softmax in double, 1/8 of it added; then these per-patch probabilities
// aggregated (crop, or weighted sum / weight sum) in double. C x padded volume, i fastest.
std::vector<double> direct_tta(Net& n, const Image& image, const Index3& patch, int overlap,
                               AggregateMode mode) {
  const Index3& s = image.geo.size;
  const int64_t V = int64_t(s[0]) * s[1] * s[2];
  const int C = 3;
  const int64_t pv = int64_t(patch[0]) * patch[1] * patch[2];
  auto lin = [&](int i, int j, int k) { return (int64_t(k) * patch[1] + j) * patch[0] + i; };
  std::vector<double> sum(size_t(C * V), 0.0), wt(size_t(V), 0.0);
  const float floor = gaussian_weight_floor(patch[2], patch[1], patch[0]);
  for (const Index3& ini : data::grid_locations(s, patch, {overlap, overlap, overlap})) {
    std::vector<double> prob(size_t(C * pv), 0.0);  // this patch's mirror-averaged softmax
    for (int axes = 0; axes < 8; ++axes) {
      // Flip along i (x, axes & 1), j (y, axes & 2), k (z, axes & 4).
      auto src = [&](int i, int j, int k) {
        return lin(axes & 1 ? patch[0] - 1 - i : i, axes & 2 ? patch[1] - 1 - j : j,
                   axes & 4 ? patch[2] - 1 - k : k);
      };
      Tensor x = Tensor::empty({1, 1, patch[2], patch[1], patch[0]});
      for (int k = 0; k < patch[2]; ++k)
        for (int j = 0; j < patch[1]; ++j)
          for (int i = 0; i < patch[0]; ++i)
            x.f32()[src(i, j, k)] = image.at(ini[0] + i, ini[1] + j, ini[2] + k);
      n.net.forward(n.ctx, x);
      const Tensor& logits = n.net.logits_f32(n.ctx);  // fp32 NCDHW in both precisions
      for (int k = 0; k < patch[2]; ++k)
        for (int j = 0; j < patch[1]; ++j)
          for (int i = 0; i < patch[0]; ++i) {
            double e[C], total = 0;
            for (int c = 0; c < C; ++c)
              total += e[c] = std::exp(double(logits.f32()[c * pv + src(i, j, k)]));
            for (int c = 0; c < C; ++c) prob[size_t(c * pv + lin(i, j, k))] += e[c] / total / 8.0;
          }
    }
    for (int k = 0; k < patch[2]; ++k)
      for (int j = 0; j < patch[1]; ++j)
        for (int i = 0; i < patch[0]; ++i) {
          const int64_t dst = image.geo.index(ini[0] + i, ini[1] + j, ini[2] + k);
          if (mode == AggregateMode::Crop) {
            bool inside = true;
            const int q[3] = {i, j, k};
            for (int a = 0; a < 3; ++a) {
              const int lo = ini[a] == 0 ? 0 : overlap / 2;
              const int hi = ini[a] + patch[a] == s[a] ? patch[a] : patch[a] - overlap / 2;
              inside &= q[a] >= lo && q[a] < hi;
            }
            if (!inside) continue;
            for (int c = 0; c < C; ++c)
              sum[size_t(c * V + dst)] = prob[size_t(c * pv + lin(i, j, k))];
            wt[size_t(dst)] = 1.0;
          } else {
            const double w = direct_weight(mode, i, j, k, patch, floor);
            for (int c = 0; c < C; ++c)
              sum[size_t(c * V + dst)] += prob[size_t(c * pv + lin(i, j, k))] * w;
            wt[size_t(dst)] += w;
          }
        }
  }
  for (int64_t v = 0; v < V; ++v)
    for (int c = 0; c < C; ++c)
      sum[size_t(c * V + v)] = wt[size_t(v)] > 0 ? sum[size_t(c * V + v)] / wt[size_t(v)] : 0.0;
  return sum;
}

// Argmax of C x V scores at voxel v, and the gap between the two best.
std::pair<int, double> best_and_gap(const std::vector<double>& s, int64_t V, int64_t v) {
  int best = 0;
  double a = -1e300, b = -1e300;
  for (int c = 0; c < 3; ++c) {
    const double x = s[size_t(c * V + v)];
    if (x > a) {
      b = a;
      a = x;
      best = c;
    } else if (x > b) {
      b = x;
    }
  }
  return {best, a - b};
}

// --tta on the device-side path (mirror + softmax_mirror_accumulate ops, here their CPU
// twins) = the direct computation, in every aggregation mode and on the odd grid cases, in
// both precisions (bf16: the network's fp32 logits, UNet3D::logits_f32, are what is mirrored
// back and softmaxed).
// Tolerance 1e-5 absolute per probability: the float32 softmax of one pass is within ~1e-6
// of the double one (glibc expf < 1 ulp, a 3-term sum, a divide and a multiply: a few
// roundings of 6e-8 relative, probabilities <= 1; tests/cpu/test_mirror.cpp), the 8-pass sum
// and the float weighted aggregation over the few patches that overlap a voxel add a few
// more roundings of 6e-8 each; 1e-5 leaves room for all of them. The network's logits are the
// same floats on both sides (same input patch, same weights: test above). The mask must equal
// the direct argmax wherever the direct two best probabilities are more than 2e-5 apart.
TEST(InferencePipelineCpu, TtaEqualsEightExplicitMirroredPasses) {
  for (const Precision pr : kPrecisions) {
    Net n(pr);
    for (const GridCase& gc : kGridCases)
      for (AggregateMode mode : {AggregateMode::Crop, AggregateMode::Average, AggregateMode::Hann,
                                 AggregateMode::Gaussian}) {
        const std::string tag = std::string(precision_name(pr)) + " " + mode_name(mode) + " size " +
                                std::to_string(gc.size[0]) + "x" + std::to_string(gc.size[1]) +
                                "x" + std::to_string(gc.size[2]);
        const Image im = random_image(gc.size, 3, -1.f, 1.f);
        const float pad = -1.f;
        Image padded = im;
        data::pad_to_patch(padded, nullptr, gc.patch, pad);
        const std::vector<double> want = direct_tta(n, padded, gc.patch, gc.overlap, mode);

        GridOptions g;
        g.patch = gc.patch;
        g.overlap = gc.overlap;
        g.batch = gc.batch;
        g.mode = mode;
        g.tta = true;
        VolumePredictor vp(n.net, n.ctx, g);
        vp.load(im, nullptr, pad);
        vp.run();
        const Tensor& s = vp.scores();
        ASSERT_EQ(size_t(s.numel()), want.size()) << tag;
        const int64_t V = int64_t(want.size() / 3);
        double worst = 0, worst_sum = 0;
        for (int64_t v = 0; v < V; ++v) {
          double total = 0;
          for (int c = 0; c < 3; ++c) {
            const double got = s.f32()[c * V + v];
            worst = std::max(worst, std::fabs(got - want[size_t(c * V + v)]));
            total += got;
          }
          worst_sum = std::max(worst_sum, std::fabs(total - 1.0));
        }
        EXPECT_LT(worst, 1e-5) << tag;
        EXPECT_LT(worst_sum, 1e-5) << tag << ": aggregated probabilities must sum to 1";
        const LabelMap m = vp.mask();
        int64_t near = 0, differ = 0;
        for (int64_t v = 0; v < V; ++v) {
          const auto bg = best_and_gap(want, V, v);
          if (bg.second <= 2e-5)
            ++near;
          else
            differ += m.v[size_t(v)] != bg.first;
        }
        EXPECT_EQ(differ, 0) << tag;
        EXPECT_LT(near, V / 100 + 1) << tag << ": too many near-ties for a meaningful check";
        // With tta the scores are the probabilities: probabilities() hands them back unchanged.
        const std::vector<Image> p = vp.probabilities();
        ASSERT_EQ(p.size(), 3u);
        for (int c = 0; c < 3; ++c) {
          EXPECT_EQ(p[size_t(c)].geo.size, padded.geo.size) << tag;
          EXPECT_EQ(std::memcmp(p[size_t(c)].v.data(), s.f32() + c * V, size_t(V) * sizeof(float)),
                    0)
              << tag << " class " << c;
        }
        // The mirrored passes change the result (a random network is not mirror-symmetric):
        // the same grid without tta gives other scores.
        GridOptions plain = g;
        plain.tta = false;
        VolumePredictor vq(n.net, n.ctx, plain);
        vq.load(im, nullptr, pad);
        vq.run();
        const std::vector<Image> q = vq.probabilities();
        double moved = 0;
        for (int c = 0; c < 3; ++c)
          for (int64_t v = 0; v < V; ++v)
            moved = std::max(moved, std::fabs(double(q[size_t(c)].v[size_t(v)]) -
                                              double(p[size_t(c)].v[size_t(v)])));
        EXPECT_GT(moved, 1e-3) << tag;
      }
  }
}

// Without tta, probabilities() is the softmax over the classes of the aggregated logits (the
// direct computation's scores, softmax in double): within 1e-6 per probability (float32
// softmax: glibc expf < 1 ulp, a 3-term sum, a divide, a multiply, each rounding 6e-8
// relative of values <= 1), on the padded grid; its argmax is the mask wherever the two
// largest logits give probabilities more than 2e-6 apart.
TEST(InferencePipelineCpu, ProbabilitiesAreTheSoftmaxOfTheScores) {
  Net n;
  const GridCase gc = kGridCases[0];
  for (AggregateMode mode : {AggregateMode::Crop, AggregateMode::Gaussian}) {
    const Image im = random_image(gc.size, 7, -1.f, 1.f);
    Image padded = im;
    data::pad_to_patch(padded, nullptr, gc.patch, -1.f);
    const Direct d = direct(n, padded, gc.patch, gc.overlap, mode);
    GridOptions g;
    g.patch = gc.patch;
    g.overlap = gc.overlap;
    g.batch = gc.batch;
    g.mode = mode;
    VolumePredictor vp(n.net, n.ctx, g);
    vp.load(im, nullptr, -1.f);
    vp.run();
    const LabelMap m = vp.mask();
    const std::vector<Image> p = vp.probabilities();
    ASSERT_EQ(p.size(), 3u);
    const int64_t V = int64_t(d.scores.size() / 3);
    std::vector<double> want(d.scores.size());
    double worst = 0;
    for (int64_t v = 0; v < V; ++v) {
      double e[3], total = 0;
      for (int c = 0; c < 3; ++c) total += e[c] = std::exp(double(d.scores[size_t(c * V + v)]));
      for (int c = 0; c < 3; ++c) {
        want[size_t(c * V + v)] = e[c] / total;
        worst = std::max(worst, std::fabs(double(p[size_t(c)].v[size_t(v)]) - e[c] / total));
      }
    }
    EXPECT_LT(worst, 1e-6) << mode_name(mode);
    int64_t differ = 0;
    for (int64_t v = 0; v < V; ++v) {
      const auto bg = best_and_gap(want, V, v);
      if (bg.second > 2e-6) differ += m.v[size_t(v)] != bg.first;
    }
    EXPECT_EQ(differ, 0) << mode_name(mode);
    std::string why;
    EXPECT_TRUE(data::same_grid(p[0].geo, m.geo, &why)) << why;
  }
}

// The normalisation on the "device" (min/max, clip folded into the rescale; or host
// percentiles) equals data::clamp + data::rescale_intensity value for value, also for a
// volume that is constant after clipping.
TEST(InferencePipelineCpu, NormalisationEqualsTheHostTransforms) {
  Net n;
  struct Spec {
    bool clip;
    float lo, hi;
    double plo, phi;
    float fill;  // < -5000: random HU, else a constant image
  };
  const std::vector<Spec> specs = {
      {false, 0, 0, 0, 100, -9999},    {true, -250, 250, 0, 100, -9999},
      {true, -100, 300, 1, 99, -9999}, {false, 0, 0, 2.5, 97, -9999},
      {true, -250, 250, 0, 100, 900},  {false, 0, 0, 0, 100, 40}};
  for (const Spec& sp : specs) {
    Image hu = random_image({9, 8, 7}, 5, -1024.f, 2000.f);
    if (sp.fill > -5000) std::fill(hu.v.begin(), hu.v.end(), sp.fill);
    Image ref = hu;
    if (sp.clip) data::clamp(ref, sp.lo, sp.hi);
    data::rescale_intensity(ref, -1.f, 1.f, sp.plo, sp.phi);
    IntensitySpec is;
    is.clip = sp.clip;
    is.clip_lo = sp.lo;
    is.clip_hi = sp.hi;
    is.percentile_lo = sp.plo;
    is.percentile_hi = sp.phi;
    GridOptions g;
    g.patch = {4, 4, 4};
    g.overlap = 0;
    VolumePredictor vp(n.net, n.ctx, g);
    vp.load(hu, &is, -1.f);
    EXPECT_EQ(std::memcmp(vp.volume().f32(), ref.v.data(), ref.v.size() * sizeof(float)), 0)
        << "clip " << sp.clip << " percentiles " << sp.plo << "," << sp.phi << " fill " << sp.fill;
  }
}

// segment() = the host pipeline it replaced: preprocess() (host intensity, host pad), the
// direct grid computation, restore_geometry(). A non-RAS input with clip, padding and a grid.
TEST(InferencePipelineCpu, SegmentEqualsTheHostPipeline) {
  Net n;
  RunConfig cfg;
  cfg.resample_inplane = {0, 0};
  cfg.crop_or_pad = {12, 10, 0};  // crop i, pad j; k untouched
  cfg.crop_or_pad[2] = 7;
  cfg.clip = true;
  cfg.clip_lo = -200.f;
  cfg.clip_hi = 300.f;
  Image ct = random_image({14, 8, 7}, 9, -1024.f, 1500.f);
  ct.geo.direction = {1, 0, 0, 0, 0, 1, 0, -1, 0};  // not RAS: reorientation permutes/flips
  ct.geo.origin = {-10, 20, 5};
  for (AggregateMode mode : {AggregateMode::Crop, AggregateMode::Gaussian}) {
    SegmentOptions so;
    so.grid.patch = {6, 4, 8};  // larger than the 7 slices: padded
    so.grid.overlap = 2;
    so.grid.batch = 2;
    so.grid.mode = mode;
    const Segmentation seg = segment(n.net, n.ctx, cfg, ct, so);

    const Preprocessed pre = preprocess(cfg, ct, nullptr, &so.grid.patch);
    const Direct d = direct(n, pre.image, so.grid.patch, so.grid.overlap, mode);
    const LabelMap expect = restore_geometry(pre, d.mask);
    EXPECT_EQ(seg.mask.geo.size, ct.geo.size);
    std::string why;
    EXPECT_TRUE(data::same_grid(seg.mask.geo, ct.geo, &why)) << why;
    EXPECT_EQ(seg.mask.v, expect.v) << mode_name(mode);
    // On the CPU nothing crosses a bus.
    EXPECT_EQ(seg.transfers.host_to_device_bytes + seg.transfers.device_to_host_bytes, 0u);
    for (const char* st : {"preprocess", "upload", "normalise", "crop", "network", "aggregate",
                           "argmax", "download", "restore"}) {
      bool found = false;
      for (const auto& s : seg.times.stages) found |= s.first == st;
      EXPECT_TRUE(found) << "stage " << st;
    }
  }
}

// segment() with tta and probabilities = the host pipeline with the direct TTA computation:
// preprocess() (host intensity, host pad), direct_tta() on the padded grid, then
// restore_probabilities() of its maps and restore_geometry() of its argmax. The same non-RAS
// input with clip, crop and padding as above. Tolerances as in the TTA test: 1e-5 per
// probability; mask equal except where the direct two best are within 2e-5.
TEST(InferencePipelineCpu, SegmentWithTtaAndProbabilitiesEqualsTheHostPipeline) {
  Net n;
  RunConfig cfg;
  cfg.resample_inplane = {0, 0};
  cfg.crop_or_pad = {12, 10, 7};
  cfg.clip = true;
  cfg.clip_lo = -200.f;
  cfg.clip_hi = 300.f;
  Image ct = random_image({14, 8, 7}, 9, -1024.f, 1500.f);
  ct.geo.direction = {1, 0, 0, 0, 0, 1, 0, -1, 0};
  ct.geo.origin = {-10, 20, 5};
  for (AggregateMode mode : {AggregateMode::Crop, AggregateMode::Gaussian}) {
    SegmentOptions so;
    so.grid.patch = {6, 4, 8};
    so.grid.overlap = 2;
    so.grid.batch = 2;
    so.grid.mode = mode;
    so.grid.tta = true;
    so.probabilities = true;
    const Segmentation seg = segment(n.net, n.ctx, cfg, ct, so);

    const Preprocessed pre = preprocess(cfg, ct, nullptr, &so.grid.patch);
    const std::vector<double> d = direct_tta(n, pre.image, so.grid.patch, so.grid.overlap, mode);
    const int64_t V = int64_t(d.size() / 3);
    std::vector<Image> maps(3, Image::make(pre.image.geo));
    LabelMap argmax = LabelMap::make(pre.image.geo);
    LabelMap near_tie = LabelMap::make(pre.image.geo);
    for (int64_t v = 0; v < V; ++v) {
      for (int c = 0; c < 3; ++c) maps[size_t(c)].v[size_t(v)] = float(d[size_t(c * V + v)]);
      const auto bg = best_and_gap(d, V, v);
      argmax.v[size_t(v)] = uint8_t(bg.first);
      near_tie.v[size_t(v)] = bg.second <= 2e-5;
    }
    const std::vector<Image> want = restore_probabilities(pre, maps);
    const LabelMap want_mask = restore_geometry(pre, argmax);
    const LabelMap tie = restore_geometry(pre, near_tie);
    ASSERT_EQ(seg.probabilities.size(), 3u);
    double worst = 0;
    for (int c = 0; c < 3; ++c) {
      std::string why;
      EXPECT_TRUE(data::same_grid(seg.probabilities[size_t(c)].geo, ct.geo, &why)) << why;
      for (size_t v = 0; v < ct.v.size(); ++v)
        worst = std::max(worst, std::fabs(double(seg.probabilities[size_t(c)].v[v]) -
                                          double(want[size_t(c)].v[v])));
    }
    EXPECT_LT(worst, 1e-5) << mode_name(mode);
    int64_t differ = 0;
    for (size_t v = 0; v < ct.v.size(); ++v) differ += !tie.v[v] && seg.mask.v[v] != want_mask.v[v];
    EXPECT_EQ(differ, 0) << mode_name(mode);
    EXPECT_TRUE(seg.plan.grid.tta);
    for (const char* st : {"mirror", "network", "softmax", "aggregate", "download", "restore"}) {
      bool found = false;
      for (const auto& s : seg.times.stages) found |= s.first == st;
      EXPECT_TRUE(found) << "stage " << st;
    }
  }
}

// The plan bounds the pool's peak from above, and only the convolution workspace (counted at
// its cap, kConvColumnBudget on the CPU, of which a small network uses part) separates them.
// A fresh model each time: the pool then holds nothing but the model when segment() starts.
TEST(InferencePipelineCpu, MemoryPlanBoundsThePoolPeak) {
  RunConfig cfg;
  cfg.resample_inplane = {0, 0};
  cfg.crop_or_pad = {0, 0, 0};
  const Image ct = random_image({40, 36, 20}, 4, -1000.f, 1000.f);
  // (tta, probabilities): the mirrored batch and per-patch probabilities, or the softmax of
  // the scores, are counted too.
  for (const Precision pr : kPrecisions)
    for (const auto& tp : {std::pair<bool, bool>{false, false}, {false, true}, {true, true}})
      for (size_t budget : {size_t(0), size_t(1) << 30}) {
        const std::string tag = std::string(precision_name(pr)) + " budget " +
                                std::to_string(budget) + " tta " + std::to_string(tp.first) +
                                " probabilities " + std::to_string(tp.second);
        Net n(pr);
        SegmentOptions so;
        so.grid.patch = {16, 16, 8};
        so.grid.overlap = 2;
        so.grid.batch = 3;
        so.grid.tta = tp.first;
        so.probabilities = tp.second;
        so.max_memory_bytes = budget;
        MemoryPool& pool = memory_pool(Device::CPU);
        pool.reset_peak();
        const Segmentation seg = segment(n.net, n.ctx, cfg, ct, so);
        EXPECT_EQ(seg.plan.whole_volume, budget > 0) << tag;
        EXPECT_EQ(seg.plan.precision, pr) << tag;
        const size_t peak = pool.stats().peak;
        std::printf("%s: pool peak %zu bytes, plan %zu bytes\n", tag.c_str(), peak,
                    seg.plan.estimated_bytes);
        EXPECT_LE(peak, seg.plan.estimated_bytes) << tag;
        EXPECT_LE(seg.plan.estimated_bytes, peak + kConvColumnBudget) << tag;
      }
}

// A budget below one patch is a clear error naming --max-memory.
TEST(InferencePipelineCpu, BudgetBelowOnePatchIsAnError) {
  Net n;
  Context& ctx = n.ctx;
  try {
    plan_inference(ctx, n.net.config(), Precision::F32, {20, 20, 20},
                   GridOptions{{8, 8, 8}, 2, 2, AggregateMode::Crop}, 1024);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--max-memory"), std::string::npos) << e.what();
  }
}

}  // namespace
