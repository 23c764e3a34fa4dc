// The slice-by-slice preview: every axial slice of the CT with the segmentation overlaid, as
// one looping animated GIF (the reference recipe ends with such a video; `--preview x.gif`).
//
// Each frame is the radiological-view slice of report.h's render_axial (liver green, tumour
// red), upscaled so the larger side is at least kGifMinPixels, above a caption band with the
// slice index ("SLICE 13/40": 1-based, counted from the inferior end of the RAS volume) and a
// legend (a liver and a tumour swatch with their names), in pipeline/font.h's bitmap font.
//
// Colours are exact, not dithered: the CT grey is rounded to kGifGreyLevels evenly spaced
// levels, and the palette holds every (level, label) blend overlay_pixel() can produce plus
// the caption colours, so each frame maps to palette indices without loss (243 of 256).
#pragma once
#include <string>

#include "cuseg/data/image.h"
#include "cuseg/pipeline/gif.h"
#include "cuseg/pipeline/report.h"

namespace cuseg {

constexpr int kGifGreyLevels = 80;
constexpr int kGifMinPixels = 256;  // the larger in-plane side is upscaled to at least this
constexpr int kGifDelayCs = 8;      // 0.08 s per slice (12.5 slices per second)
constexpr std::array<uint8_t, 3> kCaptionBackground{32, 32, 32}, kCaptionText{255, 255, 255};

// The palette of every overlay frame (see the file comment).
Palette overlay_palette();

// Frame for slice k of a RAS volume (0-based k; the caption shows k + 1 of the slice count).
// `label` may be null (CT only). lo/hi: the display window in image units.
RGBImage overlay_frame(const data::Image& ct, const data::LabelMap* label, int k, float lo,
                       float hi);

// Writes every axial slice, inferior to superior, as one looping GIF (atomic: temp + rename).
// `ct` and `label` are RAS volumes on the same grid. Throws cuseg::Error naming the file.
void write_overlay_gif(const data::Image& ct, const data::LabelMap& label, float lo, float hi,
                       const std::string& path, int delay_cs = kGifDelayCs);

// Palette indices of an RGB frame whose every pixel is a palette colour (throws otherwise).
std::vector<uint8_t> to_palette_indices(const RGBImage& img, const Palette& palette);

}  // namespace cuseg
