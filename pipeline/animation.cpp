// Slice-by-slice overlay GIF (see animation.h).
#include "cuseg/pipeline/animation.h"

#include <algorithm>
#include <unordered_map>

#include "cuseg/core/check.h"
#include "cuseg/pipeline/font.h"

namespace cuseg {

namespace {

uint32_t key(const uint8_t* p) {
  return uint32_t(p[0]) << 16 | uint32_t(p[1]) << 8 | uint32_t(p[2]);
}

// Caption layout for a frame `width` pixels wide: text scale 2 from 256 px up, else 1.
struct Caption {
  int scale, pad, line, height;
  explicit Caption(int width) {
    scale = width >= 256 ? 2 : 1;
    pad = 3 * scale;
    line = kCellHeight * scale + pad;
    height = pad + 2 * line;
  }
};

const char* kSliceWord = "SLICE ";
const char* kLegendLiver = "LIVER";
const char* kLegendTumour = "TUMOUR";

// Width the caption needs at `scale`: the longer of the slice line and the legend line.
int caption_width(int slices, int scale) {
  const int swatch = kGlyphHeight * scale, gap = 2 * kCellWidth * scale;
  const std::string idx = kSliceWord + std::to_string(slices) + "/" + std::to_string(slices);
  const int legend = swatch + kCellWidth * scale + text_width(kLegendLiver, scale) + gap + swatch +
                     kCellWidth * scale + text_width(kLegendTumour, scale);
  return 2 * kCellWidth * scale + std::max(text_width(idx, scale), legend);
}

void fill(RGBImage& img, int x0, int y0, int w, int h, const std::array<uint8_t, 3>& c) {
  for (int y = std::max(0, y0); y < std::min(img.height, y0 + h); ++y)
    for (int x = std::max(0, x0); x < std::min(img.width, x0 + w); ++x) {
      uint8_t* p = &img.rgb[(size_t(y) * size_t(img.width) + size_t(x)) * 3];
      p[0] = c[0], p[1] = c[1], p[2] = c[2];
    }
}

}  // namespace

Palette overlay_palette() {
  Palette p;
  for (int label = 0; label <= 2; ++label)
    for (int q = 0; q < kGifGreyLevels; ++q)
      p.push_back(overlay_pixel(float(q) / float(kGifGreyLevels - 1), label, kGifGreyLevels));
  for (const auto& c : {kCaptionBackground, kCaptionText, kLiverRGB, kTumourRGB}) p.push_back(c);
  CUSEG_CHECK(p.size() <= 256, "overlay palette has " << p.size() << " colours");
  return p;
}

RGBImage overlay_frame(const data::Image& ct, const data::LabelMap* label, int k, float lo,
                       float hi) {
  const int slices = ct.geo.size[2];
  CUSEG_CHECK(k >= 0 && k < slices, "overlay_frame: slice " << k << " of " << slices);
  const int scale = display_scale(ct.geo, kGifMinPixels);
  const RGBImage slice = render_axial(ct, label, k, lo, hi, scale, kGifGreyLevels);
  const Caption cap(slice.width);
  const int width = std::max(slice.width, caption_width(slices, cap.scale));
  RGBImage f = RGBImage::make(width, slice.height + cap.height);
  fill(f, 0, 0, f.width, f.height, kCaptionBackground);
  f.blit(slice, (width - slice.width) / 2, 0);
  const int x0 = kCellWidth * cap.scale, s = cap.scale;
  int y = slice.height + cap.pad;
  draw_text(f, x0, y, kSliceWord + std::to_string(k + 1) + "/" + std::to_string(slices),
            kCaptionText, s);
  y += cap.line;
  const int swatch = kGlyphHeight * s;
  int x = x0;
  fill(f, x, y, swatch, swatch, kLiverRGB);
  x = draw_text(f, x + swatch + kCellWidth * s, y, kLegendLiver, kCaptionText, s);
  x += 2 * kCellWidth * s;
  fill(f, x, y, swatch, swatch, kTumourRGB);
  draw_text(f, x + swatch + kCellWidth * s, y, kLegendTumour, kCaptionText, s);
  return f;
}

std::vector<uint8_t> to_palette_indices(const RGBImage& img, const Palette& palette) {
  std::unordered_map<uint32_t, uint8_t> index;
  for (size_t c = palette.size(); c-- > 0;) index[key(palette[c].data())] = uint8_t(c);
  std::vector<uint8_t> out(size_t(img.width) * size_t(img.height));
  for (size_t n = 0; n < out.size(); ++n) {
    const auto it = index.find(key(&img.rgb[3 * n]));
    CUSEG_CHECK(it != index.end(),
                "colour (" << int(img.rgb[3 * n]) << ", " << int(img.rgb[3 * n + 1]) << ", "
                           << int(img.rgb[3 * n + 2]) << ") is not in the palette");
    out[n] = it->second;
  }
  return out;
}

void write_overlay_gif(const data::Image& ct, const data::LabelMap& label, float lo, float hi,
                       const std::string& path, int delay_cs) {
  CUSEG_CHECK(ct.geo.size == label.geo.size, path << ": CT and mask sizes differ");
  CUSEG_REQUIRE(ct.geo.size[2] >= 1, path << ": the volume has no slices");
  const Palette palette = overlay_palette();
  const RGBImage first = overlay_frame(ct, &label, 0, lo, hi);
  GifWriter gif(path, first.width, first.height, palette, delay_cs, true);
  gif.add_frame(to_palette_indices(first, palette));
  for (int k = 1; k < ct.geo.size[2]; ++k)
    gif.add_frame(to_palette_indices(overlay_frame(ct, &label, k, lo, hi), palette));
  gif.finish();
}

}  // namespace cuseg
