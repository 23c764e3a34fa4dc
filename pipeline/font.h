// A small bitmap font for captions burnt into preview pictures (slice index, legend).
//
// The glyphs are this project's own 5x7 table (pipeline/font.cpp), drawn on a 6x8 cell (one
// column and one row of spacing). It covers the digits, the letters A-Z (lower-case letters
// are drawn as capitals), space and / - . : , ( ) % + = _ ?; any other character is drawn
// as '?'. `scale` multiplies every font pixel (nearest neighbour).
#pragma once
#include <array>
#include <cstdint>
#include <string>

#include "cuseg/pipeline/report.h"

namespace cuseg {

constexpr int kGlyphWidth = 5, kGlyphHeight = 7;  // font pixels
constexpr int kCellWidth = 6, kCellHeight = 8;    // glyph + one column / row of spacing

// The 7 rows of a character, top first; bit 4 of each row is the leftmost column.
std::array<uint8_t, kGlyphHeight> glyph_rows(char c);
// Whether the table has a glyph for c (otherwise '?' is drawn).
bool has_glyph(char c);

// Width and height in pixels of `text` at `scale` (one line, no trailing spacing column).
int text_width(const std::string& text, int scale);
inline int text_height(int scale) {
  return kGlyphHeight * scale;
}

// Draws `text` with the top-left corner of its first glyph at (x, y) in `rgb`; pixels outside
// the picture are clipped. Returns the x just after the last glyph's cell.
int draw_text(RGBImage& img, int x, int y, const std::string& text,
              const std::array<uint8_t, 3>& rgb, int scale = 1);

}  // namespace cuseg
