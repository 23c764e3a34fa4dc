// PNG previews, training-curve SVG and atomic writes (see report.h).
#include "cuseg/pipeline/report.h"

#include <png.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

#include "cuseg/core/atomic_file.h"
#include "cuseg/core/check.h"

namespace cuseg {

RGBImage RGBImage::make(int w, int h, uint8_t grey) {
  RGBImage r;
  r.width = w;
  r.height = h;
  r.rgb.assign(size_t(w) * size_t(h) * 3, grey);
  return r;
}

void RGBImage::blit(const RGBImage& src, int x0, int y0) {
  for (int y = 0; y < src.height && y + y0 < height; ++y)
    for (int x = 0; x < src.width && x + x0 < width; ++x)
      for (int c = 0; c < 3; ++c)
        rgb[(size_t(y + y0) * size_t(width) + size_t(x + x0)) * 3 + size_t(c)] =
            src.rgb[(size_t(y) * size_t(src.width) + size_t(x)) * 3 + size_t(c)];
}

void write_png(const RGBImage& img, const std::string& path) {
  CUSEG_CHECK(img.width > 0 && img.height > 0, path << ": empty picture");
  // Encoded in memory, then written crash-safe in one go.
  std::string bytes;
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png ? png_create_info_struct(png) : nullptr;
  if (!png || !info || setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    CUSEG_THROW(path << ": libpng failed to encode the picture");
  }
  png_set_write_fn(
      png, &bytes,
      [](png_structp p, png_bytep data, size_t n) {
        static_cast<std::string*>(png_get_io_ptr(p))->append(reinterpret_cast<char*>(data), n);
      },
      nullptr);
  png_set_IHDR(png, info, png_uint_32(img.width), png_uint_32(img.height), 8, PNG_COLOR_TYPE_RGB,
               PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  for (int y = 0; y < img.height; ++y)
    png_write_row(png, const_cast<png_bytep>(img.rgb.data() + size_t(y) * size_t(img.width) * 3));
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  write_file_atomic(path, bytes);
}

bool read_png_size(const std::string& path, int* w, int* h) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return false;
  unsigned char sig[8];
  if (std::fread(sig, 1, 8, f) != 8 || png_sig_cmp(sig, 0, 8)) {
    std::fclose(f);
    return false;
  }
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png ? png_create_info_struct(png) : nullptr;
  if (!png || !info || setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, &info, nullptr);
    std::fclose(f);
    return false;
  }
  png_init_io(png, f);
  png_set_sig_bytes(png, 8);
  // Decode everything so a truncated file is reported as invalid.
  png_read_png(png, info, PNG_TRANSFORM_IDENTITY, nullptr);
  *w = int(png_get_image_width(png, info));
  *h = int(png_get_image_height(png, info));
  png_destroy_read_struct(&png, &info, nullptr);
  std::fclose(f);
  return true;
}

void write_text_atomic(const std::string& path, const std::string& text) {
  write_file_atomic(path, text);
}

int display_scale(const data::Geometry& g, int min_pixels) {
  const int m = std::max(1, std::max(g.size[0], g.size[1]));
  return std::max(1, (min_pixels + m - 1) / m);
}

std::array<uint8_t, 3> overlay_pixel(float v, int label, int grey_levels) {
  v = std::clamp(v, 0.f, 1.f);
  if (grey_levels > 1) v = float(std::lround(v * float(grey_levels - 1))) / float(grey_levels - 1);
  float px[3] = {v * 255.f, v * 255.f, v * 255.f};
  if (label == 1 || label == 2) {
    const float a = label == 1 ? kLiverOpacity : kTumourOpacity;
    const auto& c = label == 1 ? kLiverRGB : kTumourRGB;
    for (int q = 0; q < 3; ++q) px[q] = (1 - a) * px[q] + a * float(c[size_t(q)]);
  }
  return {uint8_t(std::lround(px[0])), uint8_t(std::lround(px[1])), uint8_t(std::lround(px[2]))};
}

RGBImage render_axial(const data::Image& ct, const data::LabelMap* label, int k, float lo, float hi,
                      int scale, int grey_levels) {
  const int W = ct.geo.size[0], H = ct.geo.size[1];
  k = std::clamp(k, 0, ct.geo.size[2] - 1);
  RGBImage r = RGBImage::make(W * scale, H * scale);
  const float span = hi > lo ? hi - lo : 1.f;
  for (int row = 0; row < H; ++row)
    for (int col = 0; col < W; ++col) {
      const int i = W - 1 - col, j = H - 1 - row;  // radiological view of a RAS volume
      const int l = label && !label->v.empty() ? label->at(i, j, k) : 0;
      const auto px = overlay_pixel((ct.at(i, j, k) - lo) / span, l, grey_levels);
      for (int dy = 0; dy < scale; ++dy)
        for (int dx = 0; dx < scale; ++dx) {
          uint8_t* p =
              &r.rgb[(size_t(row * scale + dy) * size_t(r.width) + size_t(col * scale + dx)) * 3];
          for (int c = 0; c < 3; ++c) p[c] = px[size_t(c)];
        }
    }
  return r;
}

int most_informative_slice(const data::LabelMap& label) {
  const auto& s = label.geo.size;
  if (label.v.empty()) return s[2] / 2;
  std::vector<int64_t> tum(size_t(s[2]), 0), fg(size_t(s[2]), 0);
  for (int k = 0; k < s[2]; ++k)
    for (int j = 0; j < s[1]; ++j)
      for (int i = 0; i < s[0]; ++i) {
        const uint8_t l = label.at(i, j, k);
        tum[size_t(k)] += l == 2;
        fg[size_t(k)] += l != 0;
      }
  const auto bt = std::max_element(tum.begin(), tum.end());
  if (*bt > 0) return int(bt - tum.begin());
  const auto bf = std::max_element(fg.begin(), fg.end());
  if (*bf > 0) return int(bf - fg.begin());
  return s[2] / 2;
}

RGBImage axial_montage(const data::Image& ct, const data::LabelMap& label, float lo, float hi,
                       int max_tiles, int columns) {
  const auto& s = ct.geo.size;
  int k0 = 0, k1 = s[2] - 1;
  if (!label.v.empty()) {
    int a = s[2], b = -1;
    for (int k = 0; k < s[2]; ++k) {
      bool any = false;
      for (int j = 0; j < s[1] && !any; ++j)
        for (int i = 0; i < s[0]; ++i)
          if (label.at(i, j, k)) {
            any = true;
            break;
          }
      if (any) a = std::min(a, k), b = std::max(b, k);
    }
    if (b >= a) k0 = a, k1 = b;
  }
  const int n = std::max(1, std::min(max_tiles, k1 - k0 + 1));
  const int cols = std::min(columns, n), rows = (n + cols - 1) / cols;
  const int scale = display_scale(ct.geo, 160);
  const int tw = s[0] * scale, th = s[1] * scale, gap = 4;
  RGBImage m = RGBImage::make(cols * tw + (cols - 1) * gap, rows * th + (rows - 1) * gap, 32);
  for (int t = 0; t < n; ++t) {
    // Slices spread evenly, superior at the top-left (k decreasing = head to feet).
    const int k = n == 1 ? (k0 + k1) / 2 : k1 - int(std::lround(double(t) * (k1 - k0) / (n - 1)));
    m.blit(render_axial(ct, &label, k, lo, hi, scale), (t % cols) * (tw + gap),
           (t / cols) * (th + gap));
  }
  return m;
}

std::string curves_svg(const std::vector<CurvePoint>& pts, const std::string& title) {
  const int W = 900, H = 360, pw = 400, ph = 260, top = 50, left1 = 60, left2 = 520;
  std::ostringstream o;
  o.setf(std::ios::fixed);
  o.precision(2);
  o << "<svg xmlns='http://www.w3.org/2000/svg' width='" << W << "' height='" << H
    << "' font-family='sans-serif' font-size='12'>\n<rect width='100%' height='100%' "
       "fill='white'/>\n<text x='20' y='22' font-size='15'>"
    << title << "</text>\n";
  int max_epoch = 1;
  double max_loss = 1e-6;
  for (const auto& p : pts) {
    max_epoch = std::max(max_epoch, p.epoch);
    if (std::isfinite(p.train_loss)) max_loss = std::max(max_loss, p.train_loss);
    if (std::isfinite(p.val_loss)) max_loss = std::max(max_loss, p.val_loss);
  }
  auto panel = [&](int x0, const std::string& name, double ymax) {
    o << "<rect x='" << x0 << "' y='" << top << "' width='" << pw << "' height='" << ph
      << "' fill='none' stroke='#888'/>\n<text x='" << x0 << "' y='" << top - 8 << "'>" << name
      << "</text>\n";
    for (int t = 0; t <= 4; ++t) {
      const double y = top + ph - ph * t / 4.0;
      o << "<line x1='" << x0 << "' x2='" << x0 + pw << "' y1='" << y << "' y2='" << y
        << "' stroke='#eee'/><text x='" << x0 - 6 << "' y='" << y + 4 << "' text-anchor='end'>"
        << ymax * t / 4 << "</text>\n";
    }
    o << "<text x='" << x0 + pw / 2 << "' y='" << top + ph + 30
      << "' text-anchor='middle'>epoch (1.." << max_epoch << ")</text>\n";
  };
  auto series = [&](int x0, double ymax, const std::string& colour, const std::string& label,
                    int legend_row, double CurvePoint::*field) {
    std::string path;
    for (const auto& p : pts) {
      const double v = p.*field;
      if (!std::isfinite(v)) continue;
      const double x =
          x0 + (max_epoch <= 1 ? pw / 2.0 : pw * (p.epoch - 1) / double(max_epoch - 1));
      const double y = top + ph - ph * std::clamp(v / ymax, 0.0, 1.0);
      std::ostringstream pt;
      pt.setf(std::ios::fixed);
      pt.precision(1);
      pt << (path.empty() ? "M" : " L") << x << " " << y;
      path += pt.str();
      o << "<circle cx='" << x << "' cy='" << y << "' r='2.5' fill='" << colour << "'/>\n";
    }
    if (!path.empty())
      o << "<path d='" << path << "' fill='none' stroke='" << colour << "' stroke-width='2'/>\n";
    o << "<text x='" << x0 + pw - 110 << "' y='" << top + 16 + 16 * legend_row << "' fill='"
      << colour << "'>" << label << "</text>\n";
  };
  panel(left1, "loss (weighted CE)", max_loss);
  series(left1, max_loss, "#1f77b4", "train loss", 0, &CurvePoint::train_loss);
  series(left1, max_loss, "#ff7f0e", "val loss", 1, &CurvePoint::val_loss);
  panel(left2, "validation Dice (whole volumes)", 1.0);
  series(left2, 1.0, "#2ca02c", "liver", 0, &CurvePoint::dice_liver);
  series(left2, 1.0, "#d62728", "tumour", 1, &CurvePoint::dice_tumour);
  o << "</svg>\n";
  return o.str();
}

}  // namespace cuseg
