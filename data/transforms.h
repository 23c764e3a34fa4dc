// CPU transforms on data::Volume (i fastest, geometry kept up to date; see data/image.h).
// Semantics follow torchio as stated in docs/ARCHITECTURE.md; each function says what it keeps.
#pragma once
#include <array>
#include <cstdint>
#include <random>

#include "cuseg/data/image.h"

namespace cuseg {
namespace data {

// ---------------------------------------------------------------- CropOrPad (centre)
// Per axis: diff = |target - size| split ini = ceil(diff/2), fin = floor(diff/2) (torchio).
// The geometry follows the voxels: origin moves to the world position of the first kept (or
// padded) voxel; spacing and direction are unchanged. Index maths: kernels/crop_or_pad.h.
template <class T>
Volume<T> crop_or_pad(const Volume<T>& in, const std::array<int, 3>& target, T pad_value = T(0));
// The geometry crop_or_pad gives a volume of geometry `g` (target size, origin moved).
Geometry crop_or_pad_geometry(const Geometry& g, const std::array<int, 3>& target);
// Inverse for inference: back to `original` (the input geometry of the forward call); kept
// voxels return to where they came from, cropped-away regions get pad_value, and the geometry
// is restored verbatim.
template <class T>
Volume<T> crop_or_pad_inverse(const Volume<T>& in, const Geometry& original, T pad_value = T(0));

// ---------------------------------------------------------------- intensity
// numpy.percentile (linear interpolation between closest ranks) of all voxels; p in [0, 100].
double percentile(const std::vector<float>& values, double p);
// RescaleIntensity(out_min, out_max, percentiles): clip to the percentile cut-offs, then map
// [cut_lo, cut_hi] to [out_min, out_max] (kernels/rescale_intensity.h). A constant image
// is returned unchanged (torchio warns and does the same).
void rescale_intensity(Image& img, float out_min = -1.f, float out_max = 1.f, double pct_lo = 0.0,
                       double pct_hi = 100.0);
// Clamp / CT window in the image's units (e.g. HU): values below lo become lo, above hi hi.
void clamp(Image& img, float lo, float hi);
// CT window by level/width (e.g. liver: level 60, width 400 HU) then rescale to [out_min, out_max].
void ct_window(Image& img, float level, float width, float out_min = -1.f, float out_max = 1.f);

// ---------------------------------------------------------------- resampling
enum class Interp { Nearest, Linear };
// Resample onto an arbitrary target grid (world positions through both geometries). Linear
// interpolation clamps neighbours at the border and samples only continuous indices within
// [-0.5, size - 0.5] (ITK's IsInsideBuffer); outside points get pad_value.
template <class T>
Volume<T> resample_to(const Volume<T>& in, const Geometry& target, Interp interp, T pad_value);
// torchio Resample(target spacing) (current torchio; data/transforms.cpp cites the source):
// new size = floor(size * spacing / new_spacing) per axis (singleton axes stay 1), same
// direction, same centre: new origin = centre - direction * ((new_size - 1) / 2 * new_spacing).
Geometry resampled_geometry(const Geometry& g, const std::array<double, 3>& new_spacing);
// torchio Resize: same field of view at a given size: spacing = size / new_size * spacing, the
// Resample rule above, then torchio's CropOrPad correction when floor() missed the size by one.
Geometry resized_geometry(const Geometry& g, const std::array<int, 3>& new_size);
// Inverse for inference: resample_to(x, original_geometry, ...).

// ---------------------------------------------------------------- RandomAffine
// torchio RandomAffine(scales=(0.9, 1.1), degrees=10, translation=0, center='image',
// default_pad_value='minimum'): per axis scale s_a ~ U(scale_lo, scale_hi), angle
// t_a ~ U(-deg, deg) in degrees about the RAS axes R, A, S, translation ~ U(-max, max) mm in RAS.
// An output point p (world) samples the input at c + R^T (D^-1 (p - c) - t), with c the image
// centre (world position of continuous index (size - 1) / 2), D = diag(s) along world axes, and
// R = Rz(t3) Rx(t1) Ry(t2) in RAS (ITK Euler3D order): the inverse of "rotate, then scale", so a
// scale of 1.1 makes objects look 1.1 times larger, as in torchio. Images: linear, padded with
// their minimum; labels: nearest, padded with 0. (Sources cited in data/transforms.cpp.)
struct AffineParams {
  std::array<double, 3> scales{1, 1, 1};
  std::array<double, 3> degrees{0, 0, 0};         // about R, A, S
  std::array<double, 3> translation_mm{0, 0, 0};  // toward R, A, S
};
struct RandomAffineConfig {
  double scale_lo = 0.9, scale_hi = 1.1;
  double max_degrees = 10.0;
  double max_translation_mm = 0.0;
};
AffineParams sample_affine(const RandomAffineConfig& cfg, std::mt19937_64& rng);
// The map apply_affine resamples with, in index space: output voxel idx = (i, j, k) samples
// the input at continuous index b * idx + t (b row-major). The fused patch op
// (kernels/affine_patch.h) quantises exactly this map, so both follow the same transform.
struct IndexAffine {
  std::array<double, 9> b{1, 0, 0, 0, 1, 0, 0, 0, 1};
  std::array<double, 3> t{0, 0, 0};
};
IndexAffine affine_index_map(const Geometry& geo, const AffineParams& p);
template <class T>
Volume<T> apply_affine(const Volume<T>& in, const AffineParams& p, Interp interp, T pad_value);
// Both at once with one draw (image linear + min pad, label nearest + 0 pad).
void random_affine(Image& img, LabelMap& lab, const RandomAffineConfig& cfg, std::mt19937_64& rng,
                   AffineParams* used = nullptr);

}  // namespace data
}  // namespace cuseg
