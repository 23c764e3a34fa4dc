// Stand-in for pipeline/gif.cpp in builds configured with CUSEG_WITH_GIF=OFF (no giflib):
// every function throws a clear error instead of writing or reading a GIF.
#include "cuseg/pipeline/gif.h"

#include "cuseg/core/check.h"

namespace cuseg {

struct GifWriter::Impl {};

GifWriter::GifWriter(const std::string& path, int, int, const Palette&, int, bool) {
  CUSEG_THROW(path << ": this cuseg was built without giflib (CUSEG_WITH_GIF=OFF); "
                      "GIF previews are unavailable, use a .png preview");
}
GifWriter::~GifWriter() = default;
void GifWriter::add_frame(const std::vector<uint8_t>&) {}
void GifWriter::finish() {}

DecodedGif read_gif(const std::string& path) {
  CUSEG_THROW(path << ": this cuseg was built without giflib (CUSEG_WITH_GIF=OFF)");
}

}  // namespace cuseg
