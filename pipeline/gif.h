// GIF files through giflib: a streaming writer of palette frames (animated GIF89a, looping)
// and a reader that decodes every frame (for checks and tests).
//
// Builds configured with CUSEG_WITH_GIF=OFF (the GPU check kit, whose machine has no giflib)
// compile pipeline/gif_nogif.cpp instead, whose functions throw a clear error.
#pragma once
#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "cuseg/pipeline/report.h"

namespace cuseg {

using Palette = std::vector<std::array<uint8_t, 3>>;  // RGB entries, at most 256

// Encodes frames one at a time into memory; finish() writes the file crash-safely
// (core/atomic_file.h: temporary file, fsync, rename). Nothing reaches the disk before finish(),
// so a reader never sees a partial GIF, and a failed write names the system's reason.
class GifWriter {
 public:
  // `palette` becomes the global colour table (padded with black to a power of two);
  // `delay_cs`: display time of each frame in hundredths of a second; `loop`: repeat forever
  // (NETSCAPE2.0 application extension).
  GifWriter(const std::string& path, int width, int height, const Palette& palette, int delay_cs,
            bool loop = true);
  ~GifWriter();
  GifWriter(const GifWriter&) = delete;
  GifWriter& operator=(const GifWriter&) = delete;
  // One full-size frame: width x height palette indices, row-major, top row first.
  void add_frame(const std::vector<uint8_t>& indices);
  void finish();
  int frames() const { return frames_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  int frames_ = 0;
};

// A decoded GIF: every frame as RGB (frames are full-screen in what we write; a frame smaller
// than the screen is placed at its offset over the background colour), with its delay.
struct DecodedGif {
  int width = 0, height = 0;
  bool loops = false;  // has the NETSCAPE2.0 loop extension
  Palette palette;     // the global colour table
  std::vector<RGBImage> frames;
  std::vector<std::vector<uint8_t>> indices;  // each frame's palette indices (screen size)
  std::vector<int> delays_cs;
};
// Throws cuseg::Error naming the file when it is missing or not a valid GIF.
DecodedGif read_gif(const std::string& path);

}  // namespace cuseg
