// The slice-by-slice overlay GIF (pipeline/animation.h), its GIF writer/reader
// (pipeline/gif.h, giflib) and the bitmap font (pipeline/font.h).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>

#include "cuseg/core/check.h"
#include "cuseg/pipeline/animation.h"
#include "cuseg/pipeline/font.h"
#include "cuseg/pipeline/gif.h"
#include "test_util.h"

namespace fs = std::filesystem;
using namespace cuseg;

namespace {

#define CUSEG_REQUIRE_GIF()                                                          \
  do {                                                                               \
    if (!CUSEG_HAVE_GIF) GTEST_SKIP() << "built with CUSEG_WITH_GIF=OFF: no giflib"; \
  } while (0)

// A small RAS volume (radiological display flips i and j): a ramp of intensities over the
// display window, a liver box (label 1) with a tumour voxel block (label 2) in slices 1..3.
struct Volume {
  data::Image ct;
  data::LabelMap label;
};
Volume make_volume() {
  data::Geometry g;
  g.size = {40, 30, 5};
  g.spacing = {1.5, 1.5, 3};
  g.direction = {-1, 0, 0, 0, -1, 0, 0, 0, 1};  // RAS
  Volume v{data::Image::make(g), data::LabelMap::make(g)};
  for (int k = 0; k < 5; ++k)
    for (int j = 0; j < 30; ++j)
      for (int i = 0; i < 40; ++i) {
        v.ct.at(i, j, k) = -200.f + 450.f * float(i + 40 * j) / float(40 * 30) + 10.f * float(k);
        if (k >= 1 && k <= 3 && i >= 10 && i < 30 && j >= 5 && j < 25) v.label.at(i, j, k) = 1;
        if (k == 2 && i >= 15 && i < 20 && j >= 10 && j < 14) v.label.at(i, j, k) = 2;
      }
  return v;
}

// Whether a's w x h block at (x0, y0) equals b's top-left block within `tol` per channel.
bool same_pixels(const RGBImage& a, const RGBImage& b, int x0, int y0, int w, int h, int tol,
                 int* worst) {
  *worst = 0;
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int c = 0; c < 3; ++c) {
        const int va = a.rgb[(size_t(y0 + y) * size_t(a.width) + size_t(x0 + x)) * 3 + size_t(c)];
        const int vb = b.rgb[(size_t(y) * size_t(b.width) + size_t(x)) * 3 + size_t(c)];
        *worst = std::max(*worst, std::abs(va - vb));
      }
  return *worst <= tol;
}

}  // namespace

TEST(Font, GlyphsAreDistinctAndCaseInsensitive) {
  std::set<std::array<uint8_t, kGlyphHeight>> seen;
  const std::string chars = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ/-.:,()%+=_?";
  for (char c : chars) {
    ASSERT_TRUE(has_glyph(c)) << c;
    const auto rows = glyph_rows(c);
    bool any = false;
    for (uint8_t r : rows) {
      EXPECT_LT(r, 1 << kGlyphWidth) << c;  // 5 columns only
      any |= r != 0;
    }
    EXPECT_TRUE(any) << "empty glyph for " << c;
    EXPECT_TRUE(seen.insert(rows).second) << "glyph of " << c << " duplicates another";
  }
  EXPECT_EQ(glyph_rows('a'), glyph_rows('A'));
  EXPECT_FALSE(has_glyph('#'));
  EXPECT_EQ(glyph_rows('#'), glyph_rows('?'));
  EXPECT_EQ(text_width("AB", 2), (2 * kCellWidth - 1) * 2);
}

TEST(Font, DrawTextPutsTheGlyphBitsScaled) {
  RGBImage img = RGBImage::make(40, 20, 0);
  const int x_end = draw_text(img, 3, 2, "7", {255, 0, 0}, 2);
  EXPECT_EQ(x_end, 3 + kCellWidth * 2);
  const auto rows = glyph_rows('7');
  for (int y = 0; y < 20; ++y)
    for (int x = 0; x < 40; ++x) {
      const int fx = (x - 3) / 2, fy = (y - 2) / 2;
      const bool inside = x >= 3 && y >= 2 && fx < kGlyphWidth && fy < kGlyphHeight;
      const bool on = inside && (rows[size_t(fy)] >> (kGlyphWidth - 1 - fx) & 1);
      EXPECT_EQ(img.rgb[(size_t(y) * 40 + size_t(x)) * 3], on ? 255 : 0) << x << "," << y;
    }
  // Clipped at the picture's edge without writing outside it.
  RGBImage tiny = RGBImage::make(4, 4, 0);
  draw_text(tiny, 2, 2, "88", {1, 2, 3}, 3);
  EXPECT_EQ(tiny.rgb.size(), 4u * 4u * 3u);
}

TEST(Animation, PaletteCoversEveryOverlayColour) {
  const Palette p = overlay_palette();
  EXPECT_LE(p.size(), 256u);
  std::set<std::array<uint8_t, 3>> colours(p.begin(), p.end());
  for (int label = 0; label <= 2; ++label)
    for (int step = 0; step <= 1000; ++step)
      EXPECT_TRUE(colours.count(overlay_pixel(float(step) / 1000.f, label, kGifGreyLevels)))
          << "label " << label << " v " << step;
  for (const auto& c : {kCaptionBackground, kCaptionText, kLiverRGB, kTumourRGB})
    EXPECT_TRUE(colours.count(c));
}

TEST(Animation, GifHoldsEverySliceWithOverlayCaptionAndLoop) {
  CUSEG_REQUIRE_GIF();
  const Volume v = make_volume();
  const fs::path dir = scratch_dir("animation", "gif");
  const std::string path = (dir / "slices.gif").string();
  write_overlay_gif(v.ct, v.label, -160.f, 240.f, path);
  const DecodedGif g = read_gif(path);
  ASSERT_EQ(g.frames.size(), 5u);  // one frame per axial slice
  EXPECT_TRUE(g.loops);
  for (int d : g.delays_cs) EXPECT_EQ(d, kGifDelayCs);
  const int scale = display_scale(v.ct.geo, kGifMinPixels);
  EXPECT_GE(std::max(v.ct.geo.size[0], v.ct.geo.size[1]) * scale, kGifMinPixels);
  for (int k = 0; k < 5; ++k) {
    const RGBImage& f = g.frames[size_t(k)];
    ASSERT_EQ(f.width, g.width);
    // The frame is exactly what overlay_frame renders (the palette is lossless for it) ...
    const RGBImage expect = overlay_frame(v.ct, &v.label, k, -160.f, 240.f);
    ASSERT_EQ(f.width, expect.width);
    ASSERT_EQ(f.height, expect.height);
    EXPECT_EQ(f.rgb, expect.rgb) << "slice " << k;
    // ... and its image part is the PNG renderer's slice up to the grey rounding: 80 levels
    // over 0..255 put a grey at most 255 / 79 / 2 = 1.6 away, the overlay blend scales that by
    // (1 - opacity) <= 1, plus 0.5 for rounding to bytes: 2 at most.
    const RGBImage png = render_axial(v.ct, &v.label, k, -160.f, 240.f, scale);
    int worst = 0;
    EXPECT_TRUE(same_pixels(f, png, (f.width - png.width) / 2, 0, png.width, png.height, 2, &worst))
        << "slice " << k << ": max channel difference " << worst;
  }
  // Overlay colours exactly where the labels are: palette entries 0..79 are the grey ramp,
  // 80..159 its liver blends, 160..239 its tumour blends (overlay_palette's order).
  const int image_rows = v.ct.geo.size[1] * scale;
  auto count = [&](int k, int lo, int hi) {
    int64_t n = 0;
    for (int y = 0; y < image_rows; ++y)
      for (int x = 0; x < g.width; ++x) {
        const int q = g.indices[size_t(k)][size_t(y) * size_t(g.width) + size_t(x)];
        n += q >= lo && q < hi;
      }
    return n;
  };
  const int64_t px = int64_t(scale) * scale;  // display pixels per voxel
  const int64_t liver[5] = {0, 400, 380, 400, 0}, tumour[5] = {0, 0, 20, 0, 0};
  for (int k = 0; k < 5; ++k) {
    EXPECT_EQ(count(k, 80, 160), liver[k] * px) << "slice " << k;
    EXPECT_EQ(count(k, 160, 240), tumour[k] * px) << "slice " << k;
  }
  // Captions differ from slice to slice (the index), the legend swatches are there.
  EXPECT_NE(g.frames[0].rgb, g.frames[4].rgb);
  std::set<std::array<uint8_t, 3>> caption;
  const RGBImage& f0 = g.frames[0];
  for (int y = image_rows; y < f0.height; ++y)
    for (int x = 0; x < f0.width; ++x) {
      const uint8_t* p = &f0.rgb[(size_t(y) * size_t(f0.width) + size_t(x)) * 3];
      caption.insert({p[0], p[1], p[2]});
    }
  for (const auto& c : {kCaptionBackground, kCaptionText, kLiverRGB, kTumourRGB})
    EXPECT_TRUE(caption.count(c)) << int(c[0]) << "," << int(c[1]) << "," << int(c[2]);
  // The first caption line reads "SLICE 1/5": its text is the font's rendering of it.
  RGBImage text = RGBImage::make(f0.width, f0.height - image_rows);
  for (size_t n = 0; n < text.rgb.size() / 3; ++n)
    for (int c = 0; c < 3; ++c) text.rgb[3 * n + size_t(c)] = kCaptionBackground[size_t(c)];
  RGBImage probe = text;
  const int ts = f0.width >= 256 ? 2 : 1;
  draw_text(probe, kCellWidth * ts, 3 * ts, "SLICE 1/5", kCaptionText, ts);
  int worst = 0;
  EXPECT_TRUE(
      same_pixels(f0, probe, 0, image_rows, probe.width, kCellHeight * ts + 3 * ts, 0, &worst));
}

TEST(Animation, UnwritablePathIsAClearErrorWithoutFiles) {
  CUSEG_REQUIRE_GIF();
  const Volume v = make_volume();
  const fs::path dir = scratch_dir("animation", "bad");
  const std::string path = (dir / "no_such_folder" / "x.gif").string();
  try {
    write_overlay_gif(v.ct, v.label, -160.f, 240.f, path);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("x.gif"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(fs::is_empty(dir));
  EXPECT_THROW(read_gif((dir / "missing.gif").string()), Error);
  const std::string not_gif = (dir / "text.gif").string();
  std::ofstream(not_gif) << "not a gif";
  try {
    read_gif(not_gif);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("text.gif"), std::string::npos) << e.what();
  }
}
