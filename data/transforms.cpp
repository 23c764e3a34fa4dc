// CPU transforms (see data/transforms.h for the semantics).
#include "cuseg/data/transforms.h"

#include <algorithm>
#include <cmath>
#include <type_traits>

#include "cuseg/core/check.h"
#include "cuseg/core/random.h"
#include "cuseg/kernels/crop_or_pad.h"
#include "cuseg/kernels/rescale_intensity.h"

namespace cuseg {
namespace data {
namespace {

// 3x3 helpers (row-major).
using M3 = std::array<double, 9>;
M3 mul(const M3& a, const M3& b) {
  M3 r{};
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j)
      for (int k = 0; k < 3; ++k) r[3 * i + j] += a[3 * i + k] * b[3 * k + j];
  return r;
}
M3 inverse(const M3& m) {
  const double det = m[0] * (m[4] * m[8] - m[5] * m[7]) - m[1] * (m[3] * m[8] - m[5] * m[6]) +
                     m[2] * (m[3] * m[7] - m[4] * m[6]);
  CUSEG_CHECK(std::abs(det) > 1e-12, "singular geometry matrix (determinant " << det << ")");
  M3 r;
  r[0] = (m[4] * m[8] - m[5] * m[7]) / det;
  r[1] = (m[2] * m[7] - m[1] * m[8]) / det;
  r[2] = (m[1] * m[5] - m[2] * m[4]) / det;
  r[3] = (m[5] * m[6] - m[3] * m[8]) / det;
  r[4] = (m[0] * m[8] - m[2] * m[6]) / det;
  r[5] = (m[2] * m[3] - m[0] * m[5]) / det;
  r[6] = (m[3] * m[7] - m[4] * m[6]) / det;
  r[7] = (m[1] * m[6] - m[0] * m[7]) / det;
  r[8] = (m[0] * m[4] - m[1] * m[3]) / det;
  return r;
}
// Index -> world linear part: direction * diag(spacing).
M3 index_to_world(const Geometry& g) {
  M3 r;
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) r[3 * i + j] = g.direction[3 * i + j] * g.spacing[j];
  return r;
}

// out(idx) = in(B * idx + t), with B, t mapping output indices to input continuous indices.
template <class T>
Volume<T> resample_affine(const Volume<T>& in, const Geometry& out_geo, const M3& B,
                          const std::array<double, 3>& t, Interp interp, T pad_value) {
  Volume<T> out = Volume<T>::make(out_geo, pad_value);
  const auto& s = in.geo.size;
  const int W = s[0], H = s[1], D = s[2];
  const auto& os = out_geo.size;
#pragma omp parallel for schedule(static)
  for (int k = 0; k < os[2]; ++k)
    for (int j = 0; j < os[1]; ++j)
      for (int i = 0; i < os[0]; ++i) {
        const double x = B[0] * i + B[1] * j + B[2] * k + t[0];
        const double y = B[3] * i + B[4] * j + B[5] * k + t[1];
        const double z = B[6] * i + B[7] * j + B[8] * k + t[2];
        // ITK IsInsideBuffer: continuous index within [-0.5, size - 0.5].
        if (x < -0.5 || y < -0.5 || z < -0.5 || x > W - 0.5 || y > H - 0.5 || z > D - 0.5) continue;
        T& dst = out.at(i, j, k);
        if (interp == Interp::Nearest) {
          // Round half up like ITK's NearestNeighborInterpolateImageFunction (RoundHalfIntegerUp).
          const int xi = std::min(W - 1, int(std::floor(x + 0.5)));
          const int yi = std::min(H - 1, int(std::floor(y + 0.5)));
          const int zi = std::min(D - 1, int(std::floor(z + 0.5)));
          dst = in.at(std::max(xi, 0), std::max(yi, 0), std::max(zi, 0));
          continue;
        }
        const int x0 = int(std::floor(x)), y0 = int(std::floor(y)), z0 = int(std::floor(z));
        const double fx = x - x0, fy = y - y0, fz = z - z0;
        auto cl = [](int v, int n) { return v < 0 ? 0 : (v >= n ? n - 1 : v); };
        const int xa = cl(x0, W), xb = cl(x0 + 1, W), ya = cl(y0, H), yb = cl(y0 + 1, H);
        const int za = cl(z0, D), zb = cl(z0 + 1, D);
        auto v = [&](int a, int b, int c) { return double(in.at(a, b, c)); };
        const double c00 = v(xa, ya, za) * (1 - fx) + v(xb, ya, za) * fx;
        const double c10 = v(xa, yb, za) * (1 - fx) + v(xb, yb, za) * fx;
        const double c01 = v(xa, ya, zb) * (1 - fx) + v(xb, ya, zb) * fx;
        const double c11 = v(xa, yb, zb) * (1 - fx) + v(xb, yb, zb) * fx;
        const double c0 = c00 * (1 - fy) + c10 * fy, c1 = c01 * (1 - fy) + c11 * fy;
        dst = T(c0 * (1 - fz) + c1 * fz);
      }
  return out;
}

}  // namespace

// ---------------------------------------------------------------- CropOrPad
Geometry crop_or_pad_geometry(const Geometry& in, const std::array<int, 3>& target) {
  Geometry g = in;
  g.size = target;
  g.origin =
      in.world(crop_or_pad_offset(in.size[0], target[0]), crop_or_pad_offset(in.size[1], target[1]),
               crop_or_pad_offset(in.size[2], target[2]));
  return g;
}

template <class T>
Volume<T> crop_or_pad(const Volume<T>& in, const std::array<int, 3>& target, T pad_value) {
  for (int a = 0; a < 3; ++a)
    CUSEG_CHECK(target[size_t(a)] > 0, "crop_or_pad: target size must be positive, got "
                                           << target[0] << "x" << target[1] << "x" << target[2]);
  const auto& s = in.geo.size;
  const int off[3] = {crop_or_pad_offset(s[0], target[0]), crop_or_pad_offset(s[1], target[1]),
                      crop_or_pad_offset(s[2], target[2])};
  const Geometry g = crop_or_pad_geometry(in.geo, target);
  Volume<T> out;
  out.geo = g;
  out.v.resize(size_t(g.numel()));
  if constexpr (std::is_same_v<T, float>) {
    // Float images go through the kernel's CPU twin (the op the CUDA path mirrors).
    Vol vin{const_cast<float*>(in.v.data()), 1, 1, s[2], s[1], s[0], int64_t(in.v.size())};
    Vol vout{out.v.data(), 1, 1, target[2], target[1], target[0], int64_t(out.v.size())};
    crop_or_pad_cpu(vin, vout, crop_or_pad_params(vin, vout, pad_value));
    return out;
  }
  for (int k = 0; k < target[2]; ++k) {
    const int sk = crop_or_pad_src(k, off[2], s[2]);
    for (int j = 0; j < target[1]; ++j) {
      const int sj = crop_or_pad_src(j, off[1], s[1]);
      T* dst = &out.v[size_t(g.index(0, j, k))];
      for (int i = 0; i < target[0]; ++i) {
        const int si = crop_or_pad_src(i, off[0], s[0]);
        dst[i] = (sk < 0 || sj < 0 || si < 0) ? pad_value : in.at(si, sj, sk);
      }
    }
  }
  return out;
}

template <class T>
Volume<T> crop_or_pad_inverse(const Volume<T>& in, const Geometry& original, T pad_value) {
  Volume<T> out = crop_or_pad(in, original.size, pad_value);
  out.geo = original;
  return out;
}

template Volume<float> crop_or_pad(const Volume<float>&, const std::array<int, 3>&, float);
template Volume<uint8_t> crop_or_pad(const Volume<uint8_t>&, const std::array<int, 3>&, uint8_t);
template Volume<float> crop_or_pad_inverse(const Volume<float>&, const Geometry&, float);
template Volume<uint8_t> crop_or_pad_inverse(const Volume<uint8_t>&, const Geometry&, uint8_t);

// ---------------------------------------------------------------- intensity
double percentile(const std::vector<float>& values, double p) {
  CUSEG_CHECK(!values.empty(), "percentile of an empty image");
  CUSEG_CHECK(p >= 0 && p <= 100, "percentile must be in [0, 100], got " << p);
  std::vector<float> a(values);
  const double rank = p / 100.0 * double(a.size() - 1);
  const size_t lo = size_t(std::floor(rank));
  const size_t hi = std::min(lo + 1, a.size() - 1);
  std::nth_element(a.begin(), a.begin() + long(lo), a.end());
  const double vlo = a[lo];
  if (hi == lo) return vlo;
  const double vhi = *std::min_element(a.begin() + long(lo) + 1, a.end());
  return vlo + (vhi - vlo) * (rank - double(lo));
}

void rescale_intensity(Image& img, float out_min, float out_max, double pct_lo, double pct_hi) {
  CUSEG_CHECK(pct_lo < pct_hi, "rescale_intensity: percentiles must be increasing, got ("
                                   << pct_lo << ", " << pct_hi << ")");
  RescaleParams p;
  if (pct_lo == 0.0 && pct_hi == 100.0) {
    const auto mm = std::minmax_element(img.v.begin(), img.v.end());
    p.in_min = *mm.first;
    p.in_max = *mm.second;
  } else {
    // torchio clips a float32 array to float64 cut-offs: the stored cut-offs are float32.
    p.in_min = float(percentile(img.v, pct_lo));
    p.in_max = float(percentile(img.v, pct_hi));
  }
  if (!(p.in_max > p.in_min)) return;  // constant image: unchanged (torchio warns)
  p.out_min = out_min;
  p.out_max = out_max;
  rescale_intensity_cpu(img.v.data(), img.v.data(), int64_t(img.v.size()), p);
}

void clamp(Image& img, float lo, float hi) {
  CUSEG_CHECK(lo <= hi, "clamp: lo " << lo << " > hi " << hi);
  for (auto& x : img.v) x = std::min(hi, std::max(lo, x));
}

void ct_window(Image& img, float level, float width, float out_min, float out_max) {
  CUSEG_CHECK(width > 0, "ct_window: width must be positive, got " << width);
  RescaleParams p{level - width / 2, level + width / 2, out_min, out_max};
  rescale_intensity_cpu(img.v.data(), img.v.data(), int64_t(img.v.size()), p);
}

// ---------------------------------------------------------------- resampling
template <class T>
Volume<T> resample_to(const Volume<T>& in, const Geometry& target, Interp interp, T pad_value) {
  // in_idx = A_in^-1 (A_out idx + o_out - o_in)
  const M3 ain_inv = inverse(index_to_world(in.geo));
  const M3 B = mul(ain_inv, index_to_world(target));
  std::array<double, 3> d, t{0, 0, 0};
  for (int r = 0; r < 3; ++r) d[size_t(r)] = target.origin[size_t(r)] - in.geo.origin[size_t(r)];
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 3; ++c) t[size_t(r)] += ain_inv[size_t(3 * r + c)] * d[size_t(c)];
  return resample_affine(in, target, B, t, interp, pad_value);
}

template Volume<float> resample_to(const Volume<float>&, const Geometry&, Interp, float);
template Volume<uint8_t> resample_to(const Volume<uint8_t>&, const Geometry&, Interp, uint8_t);

// torchio Resample(target spacing), Resample.get_reference_image in
// src/torchio/transforms/preprocessing/spatial/resample.py (current TorchIO-project source):
// new_size = floor(old_size * old_spacing / new_spacing) computed in float64 without any
// epsilon, singleton axes stay 1; the output keeps the input's direction and is centred on the
// input's centre, i.e. new_origin = centre - direction @ ((new_size - 1) / 2 * new_spacing) with
// centre = (world(0) + world(old_size - 1)) / 2. (Older torchio releases used ceil() and put the
// new origin at old continuous index 0.5 * (new_spacing / old_spacing - 1); both rules agree
// whenever old_size * old_spacing / new_spacing is an integer, e.g. 512 -> 256 in-plane.)
Geometry resampled_geometry(const Geometry& g, const std::array<double, 3>& new_spacing) {
  Geometry r = g;
  std::array<double, 3> half{0, 0, 0};  // (new_size - 1) / 2 * new_spacing, per index axis
  for (int a = 0; a < 3; ++a) {
    const size_t u = size_t(a);
    CUSEG_CHECK(new_spacing[u] > 0, "resample: spacing must be positive, got " << new_spacing[u]);
    const int n =
        g.size[u] == 1 ? 1 : int(std::floor(double(g.size[u]) * g.spacing[u] / new_spacing[u]));
    CUSEG_CHECK(n >= 1, "resample: " << g.size[u] << " voxels at " << g.spacing[u]
                                     << " mm hold no voxel at " << new_spacing[u] << " mm (axis "
                                     << a << ")");
    r.size[u] = n;
    r.spacing[u] = new_spacing[u];
    half[u] = (n - 1) / 2.0 * new_spacing[u];
  }
  const auto first = g.world(0, 0, 0);
  const auto last = g.world(g.size[0] - 1, g.size[1] - 1, g.size[2] - 1);
  for (int row = 0; row < 3; ++row) {
    const size_t u = size_t(row);
    double o = (last[u] + first[u]) / 2;
    for (int c = 0; c < 3; ++c) o -= g.direction[size_t(3 * row + c)] * half[size_t(c)];
    r.origin[u] = o;
  }
  return r;
}

// torchio Resize (src/torchio/transforms/preprocessing/spatial/resize.py): spacing_out =
// shape_in / shape_out * spacing_in, then Resample(spacing_out) as above; when floor() lands one
// voxel short or long, torchio fixes the shape with CropOrPad (ini = ceil(diff / 2) voxels at the
// start), which moves the origin by that many output voxels. Geometry identical to torchio;
// voxel values differ only there: torchio pads that slice with 0, resample_to() onto this
// geometry interpolates it (it lies within the input's field of view).
Geometry resized_geometry(const Geometry& g, const std::array<int, 3>& new_size) {
  std::array<double, 3> sp;
  for (int a = 0; a < 3; ++a) {
    const size_t u = size_t(a);
    CUSEG_CHECK(new_size[u] > 0, "resize: size must be positive, got " << new_size[u]);
    sp[u] = double(g.size[u]) / double(new_size[u]) * g.spacing[u];
  }
  Geometry r = resampled_geometry(g, sp);
  const int off[3] = {crop_or_pad_offset(r.size[0], new_size[0]),
                      crop_or_pad_offset(r.size[1], new_size[1]),
                      crop_or_pad_offset(r.size[2], new_size[2])};
  r.origin = r.world(off[0], off[1], off[2]);
  r.size = new_size;
  return r;
}

// ---------------------------------------------------------------- RandomAffine
AffineParams sample_affine(const RandomAffineConfig& cfg, std::mt19937_64& rng) {
  AffineParams p;
  for (int a = 0; a < 3; ++a)
    p.scales[size_t(a)] = cfg.scale_lo + (cfg.scale_hi - cfg.scale_lo) * uniform01(rng);
  for (int a = 0; a < 3; ++a)
    p.degrees[size_t(a)] = -cfg.max_degrees + 2 * cfg.max_degrees * uniform01(rng);
  for (int a = 0; a < 3; ++a)  // drawn even when 0, like torchio (fixed draw count per call)
    p.translation_mm[size_t(a)] =
        -cfg.max_translation_mm + 2 * cfg.max_translation_mm * uniform01(rng);
  return p;
}

namespace {
M3 rot_x(double a) {
  return {1, 0, 0, 0, std::cos(a), -std::sin(a), 0, std::sin(a), std::cos(a)};
}
M3 rot_y(double a) {
  return {std::cos(a), 0, std::sin(a), 0, 1, 0, -std::sin(a), 0, std::cos(a)};
}
M3 rot_z(double a) {
  return {std::cos(a), -std::sin(a), 0, std::sin(a), std::cos(a), 0, 0, 0, 1};
}
M3 transpose(const M3& m) {
  return {m[0], m[3], m[6], m[1], m[4], m[7], m[2], m[5], m[8]};
}
}  // namespace

// torchio Affine (src/torchio/transforms/augmentation/spatial/random_affine.py), facts used:
// - degrees and translation are given in RAS; torchio negates the x and y components to build a
//   SimpleITK Euler3DTransform in LPS, whose matrix (ITK default, ComputeZYX off) is
//   Rz(gz) Rx(gx) Ry(gy): so R_lps = Rz(t3) Rx(-t1) Ry(-t2), i.e. Rz(t3) Rx(t1) Ry(t2) in RAS.
// - scaling is a ScaleTransform diag(s) about the same centre, along world axes.
// - both are centred on the image centre (world position of continuous index (size - 1) / 2).
// - the composite [scaling, rotation] applies the rotation first (ITK composites apply the last
//   added transform first): F(x) = c + D (R (x - c) + t). This maps input to output ("1.5 means
//   the objects look 1.5 times larger"), so the resampler gets F^-1: an output point p samples
//   the input at c + R^T (D^-1 (p - c) - t).
// - linear for images padded with the image minimum, nearest for labels padded with 0.
IndexAffine affine_index_map(const Geometry& geo, const AffineParams& p) {
  const double k = 3.14159265358979323846 / 180.0;
  for (int a = 0; a < 3; ++a)
    CUSEG_CHECK(p.scales[size_t(a)] > 0,
                "affine: scales must be positive, got " << p.scales[size_t(a)]);
  const M3 r =
      mul(mul(rot_z(p.degrees[2] * k), rot_x(-p.degrees[0] * k)), rot_y(-p.degrees[1] * k));
  const M3 rt = transpose(r);
  const M3 dinv{1 / p.scales[0], 0, 0, 0, 1 / p.scales[1], 0, 0, 0, 1 / p.scales[2]};
  const std::array<double, 3> t_lps{-p.translation_mm[0], -p.translation_mm[1],
                                    p.translation_mm[2]};
  // Index space: in_idx = ci + B (idx - ci) - A^-1 R^T t, with B = A^-1 R^T D^-1 A, A = index ->
  // world linear part and ci = (size - 1) / 2 the centre's continuous index.
  const M3 A = index_to_world(geo), ainv = inverse(A);
  const M3 B = mul(mul(mul(ainv, rt), dinv), A);
  const M3 art = mul(ainv, rt);
  const std::array<double, 3> ci{(geo.size[0] - 1) / 2.0, (geo.size[1] - 1) / 2.0,
                                 (geo.size[2] - 1) / 2.0};
  IndexAffine m;
  m.b = B;
  for (int row = 0; row < 3; ++row) {
    const size_t u = size_t(3 * row);
    m.t[size_t(row)] = ci[size_t(row)] - (B[u] * ci[0] + B[u + 1] * ci[1] + B[u + 2] * ci[2]) -
                       (art[u] * t_lps[0] + art[u + 1] * t_lps[1] + art[u + 2] * t_lps[2]);
  }
  return m;
}

template <class T>
Volume<T> apply_affine(const Volume<T>& in, const AffineParams& p, Interp interp, T pad_value) {
  const IndexAffine m = affine_index_map(in.geo, p);
  return resample_affine(in, in.geo, m.b, m.t, interp, pad_value);
}

template Volume<float> apply_affine(const Volume<float>&, const AffineParams&, Interp, float);
template Volume<uint8_t> apply_affine(const Volume<uint8_t>&, const AffineParams&, Interp, uint8_t);

void random_affine(Image& img, LabelMap& lab, const RandomAffineConfig& cfg, std::mt19937_64& rng,
                   AffineParams* used) {
  CUSEG_CHECK(img.geo.size == lab.geo.size, "random_affine: image and label sizes differ");
  const AffineParams p = sample_affine(cfg, rng);
  const float mn = img.v.empty() ? 0.f : *std::min_element(img.v.begin(), img.v.end());
  img = apply_affine(img, p, Interp::Linear, mn);
  lab = apply_affine(lab, p, Interp::Nearest, uint8_t(0));
  if (used) *used = p;
}

}  // namespace data
}  // namespace cuseg
