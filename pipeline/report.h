// Pictures and small report files: PNG previews of CT with the segmentation overlaid, the
// training-curve SVG, and atomic text writes. Everything is written crash-safe
// (core/atomic_file.h), so a reader never sees a partial file.
//
// Display convention: axial slices in the radiological view (patient's right on the picture's
// left, anterior at the top), which for a RAS volume means column c <- i = W-1-c and row
// r <- j = H-1-r. Liver is drawn green, tumour red, blended over the grey CT.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "cuseg/data/image.h"

namespace cuseg {

struct RGBImage {
  int width = 0, height = 0;
  std::vector<uint8_t> rgb;  // row-major, 3 bytes per pixel
  static RGBImage make(int w, int h, uint8_t grey = 0);
  void blit(const RGBImage& src, int x0, int y0);
};

// Writes an 8-bit RGB PNG (libpng) atomically; throws cuseg::Error naming the file.
void write_png(const RGBImage& img, const std::string& path);
// Reads back width/height of a PNG (for checks); returns false when it is not a valid PNG.
bool read_png_size(const std::string& path, int* w, int* h);

// Text file written crash-safe (core/atomic_file.h).
void write_text_atomic(const std::string& path, const std::string& text);

// Overlay colours: liver (label 1) and tumour (label 2) blended over the grey CT with these
// opacities (out = (1 - a) grey + a colour, per channel, rounded to nearest).
constexpr std::array<uint8_t, 3> kLiverRGB{40, 220, 60}, kTumourRGB{240, 40, 40};
constexpr float kLiverOpacity = 0.40f, kTumourOpacity = 0.65f;
// The display colour of one voxel: `v` is the windowed intensity in [0, 1] (clamped), `label`
// its class. grey_levels > 1 first rounds v to that many evenly spaced levels (the GIF
// palette's grey ramp, see pipeline/animation.h); 0 keeps it continuous.
std::array<uint8_t, 3> overlay_pixel(float v, int label, int grey_levels = 0);

// One axial slice k of a RAS volume: grey CT windowed to [lo, hi] (image units), with the
// label overlaid when `label` is non-null; nearest-neighbour upscaled by `scale`.
RGBImage render_axial(const data::Image& ct, const data::LabelMap* label, int k, float lo, float hi,
                      int scale, int grey_levels = 0);
// Up to `max_tiles` axial slices spread over the labelled extent of `label` (whole volume when
// empty), `columns` per row.
RGBImage axial_montage(const data::Image& ct, const data::LabelMap& label, float lo, float hi,
                       int max_tiles = 12, int columns = 4);
// The axial slice with the most tumour voxels in `label` (else the most foreground, else
// the middle).
int most_informative_slice(const data::LabelMap& label);
// Integer upscale so that the larger in-plane extent is at least `min_pixels`.
int display_scale(const data::Geometry& g, int min_pixels);

// Training curves: one point per epoch. NaN values are skipped (e.g. epochs without Dice).
struct CurvePoint {
  int epoch = 0;
  double train_loss = 0, val_loss = 0;
  double dice_liver = 0, dice_tumour = 0;  // NaN when not measured that epoch
};
std::string curves_svg(const std::vector<CurvePoint>& points, const std::string& title);

}  // namespace cuseg
