// GIF writer and reader through giflib (see gif.h).
#include "cuseg/pipeline/gif.h"

#include <gif_lib.h>

#include <cstring>
#include <filesystem>

#include "cuseg/core/atomic_file.h"
#include "cuseg/core/check.h"

namespace fs = std::filesystem;

namespace cuseg {

namespace {
std::string gif_error(int code) {
  const char* s = GifErrorString(code);
  return s ? s : ("giflib error " + std::to_string(code));
}
}  // namespace

// The GIF is encoded into memory (giflib's output callback appends to `bytes`) and written by
// finish() through write_file_atomic (core/atomic_file.h): a full disk, a file-size limit or a
// read-only folder then gives the system's reason, and the file is either the previous one or
// the complete new one.
struct GifWriter::Impl {
  std::string path, bytes;
  GifFileType* gif = nullptr;
  int width = 0, height = 0, delay_cs = 0;
  bool finished = false;

  void fail(const std::string& what) {
    const int code = gif ? gif->Error : 0;
    close_quietly();
    CUSEG_THROW(path << ": cannot write the GIF (" << what << ": " << gif_error(code) << ")");
  }
  void close_quietly() {
    if (gif) {
      int err = 0;
      EGifCloseFile(gif, &err);
      gif = nullptr;
    }
    bytes.clear();
  }
  static int append(GifFileType* g, const GifByteType* data, int n) {
    static_cast<Impl*>(g->UserData)->bytes.append(reinterpret_cast<const char*>(data), size_t(n));
    return n;
  }
};

GifWriter::GifWriter(const std::string& path, int width, int height, const Palette& palette,
                     int delay_cs, bool loop)
    : impl_(new Impl) {
  CUSEG_CHECK(width > 0 && height > 0 && width <= 65535 && height <= 65535,
              path << ": GIF size " << width << "x" << height << " out of range");
  CUSEG_CHECK(!palette.empty() && palette.size() <= 256,
              path << ": a GIF palette holds 1..256 colours, got " << palette.size());
  CUSEG_CHECK(delay_cs >= 0 && delay_cs <= 65535, path << ": bad frame delay " << delay_cs);
  Impl& m = *impl_;
  m.path = path;
  m.width = width;
  m.height = height;
  m.delay_cs = delay_cs;
  int err = 0;
  m.gif = EGifOpen(&m, &Impl::append, &err);
  if (!m.gif) CUSEG_THROW(path << ": cannot open for writing (" << gif_error(err) << ")");
  EGifSetGifVersion(m.gif, true);  // GIF89a: graphics control and application extensions
  int colours = 2;
  while (colours < int(palette.size())) colours *= 2;
  std::vector<GifColorType> table(size_t(colours), GifColorType{0, 0, 0});
  for (size_t c = 0; c < palette.size(); ++c)
    table[c] = GifColorType{palette[c][0], palette[c][1], palette[c][2]};
  ColorMapObject* map = GifMakeMapObject(colours, table.data());
  if (!map) m.fail("colour map");
  const int ok = EGifPutScreenDesc(m.gif, width, height, 8, 0, map);
  GifFreeMapObject(map);  // EGifPutScreenDesc keeps its own copy
  if (ok != GIF_OK) m.fail("screen descriptor");
  if (loop) {
    // NETSCAPE2.0 application extension: sub-block {1, loop count 0 = forever (little endian)}.
    const unsigned char app[11] = {'N', 'E', 'T', 'S', 'C', 'A', 'P', 'E', '2', '.', '0'};
    const unsigned char repeat[3] = {1, 0, 0};
    if (EGifPutExtensionLeader(m.gif, APPLICATION_EXT_FUNC_CODE) != GIF_OK ||
        EGifPutExtensionBlock(m.gif, sizeof app, app) != GIF_OK ||
        EGifPutExtensionBlock(m.gif, sizeof repeat, repeat) != GIF_OK ||
        EGifPutExtensionTrailer(m.gif) != GIF_OK)
      m.fail("loop extension");
  }
}

GifWriter::~GifWriter() {
  if (impl_ && !impl_->finished) impl_->close_quietly();
}

void GifWriter::add_frame(const std::vector<uint8_t>& indices) {
  Impl& m = *impl_;
  CUSEG_CHECK(!m.finished && m.gif, m.path << ": frame added after finish()");
  CUSEG_CHECK(indices.size() == size_t(m.width) * size_t(m.height),
              m.path << ": frame has " << indices.size() << " pixels, expected " << m.width << "x"
                     << m.height);
  GraphicsControlBlock gcb{};
  gcb.DisposalMode = DISPOSE_DO_NOT;  // every frame covers the whole screen
  gcb.UserInputFlag = false;
  gcb.DelayTime = m.delay_cs;
  gcb.TransparentColor = NO_TRANSPARENT_COLOR;
  GifByteType ext[4];
  const size_t n = EGifGCBToExtension(&gcb, ext);
  if (EGifPutExtension(m.gif, GRAPHICS_EXT_FUNC_CODE, int(n), ext) != GIF_OK)
    m.fail("graphics control block");
  if (EGifPutImageDesc(m.gif, 0, 0, m.width, m.height, false, nullptr) != GIF_OK)
    m.fail("image descriptor");
  std::vector<GifPixelType> row(size_t(m.width));
  for (int y = 0; y < m.height; ++y) {
    std::memcpy(row.data(), indices.data() + size_t(y) * size_t(m.width), size_t(m.width));
    if (EGifPutLine(m.gif, row.data(), m.width) != GIF_OK) m.fail("frame data");
  }
  ++frames_;
}

void GifWriter::finish() {
  Impl& m = *impl_;
  CUSEG_CHECK(!m.finished && m.gif, m.path << ": finish() called twice");
  int err = 0;
  const int ok = EGifCloseFile(m.gif, &err);
  m.gif = nullptr;
  if (ok != GIF_OK) {
    m.bytes.clear();
    CUSEG_THROW(m.path << ": cannot write the GIF (" << gif_error(err) << ")");
  }
  m.finished = true;
  write_file_atomic(m.path, m.bytes);
  m.bytes.clear();
}

DecodedGif read_gif(const std::string& path) {
  CUSEG_REQUIRE(fs::is_regular_file(path), path << ": no such GIF file");
  int err = 0;
  GifFileType* gif = DGifOpenFileName(path.c_str(), &err);
  CUSEG_REQUIRE(gif, path << ": not a GIF file (" << gif_error(err) << ")");
  struct Closer {
    GifFileType* g;
    ~Closer() {
      int e = 0;
      DGifCloseFile(g, &e);
    }
  } closer{gif};
  CUSEG_REQUIRE(DGifSlurp(gif) == GIF_OK,
                path << ": cannot decode the GIF (" << gif_error(gif->Error) << ")");
  DecodedGif d;
  d.width = gif->SWidth;
  d.height = gif->SHeight;
  if (gif->SColorMap)
    for (int c = 0; c < gif->SColorMap->ColorCount; ++c) {
      const GifColorType& e = gif->SColorMap->Colors[c];
      d.palette.push_back({e.Red, e.Green, e.Blue});
    }
  for (int f = 0; f < gif->ImageCount; ++f) {
    const SavedImage& si = gif->SavedImages[f];
    for (int b = 0; b < si.ExtensionBlockCount; ++b) {
      const ExtensionBlock& e = si.ExtensionBlocks[b];
      if (e.Function == APPLICATION_EXT_FUNC_CODE && e.ByteCount == 11 &&
          std::memcmp(e.Bytes, "NETSCAPE2.0", 11) == 0)
        d.loops = true;
    }
    GraphicsControlBlock gcb{};
    gcb.DelayTime = 0;
    DGifSavedExtensionToGCB(gif, f, &gcb);
    d.delays_cs.push_back(gcb.DelayTime);
    const ColorMapObject* map = si.ImageDesc.ColorMap ? si.ImageDesc.ColorMap : gif->SColorMap;
    CUSEG_REQUIRE(map, path << ": frame " << f << " has no colour table");
    std::vector<uint8_t> idx(size_t(d.width) * size_t(d.height), uint8_t(gif->SBackGroundColor));
    const GifImageDesc& id = si.ImageDesc;
    for (int y = 0; y < id.Height; ++y)
      for (int x = 0; x < id.Width; ++x) {
        const int X = id.Left + x, Y = id.Top + y;
        if (X < 0 || Y < 0 || X >= d.width || Y >= d.height) continue;
        idx[size_t(Y) * size_t(d.width) + size_t(X)] =
            si.RasterBits[size_t(y) * size_t(id.Width) + size_t(x)];
      }
    RGBImage rgb = RGBImage::make(d.width, d.height);
    for (size_t n = 0; n < idx.size(); ++n) {
      CUSEG_REQUIRE(idx[n] < map->ColorCount, path << ": frame " << f << " uses colour "
                                                   << int(idx[n]) << " of " << map->ColorCount);
      const GifColorType& c = map->Colors[idx[n]];
      rgb.rgb[3 * n] = c.Red, rgb.rgb[3 * n + 1] = c.Green, rgb.rgb[3 * n + 2] = c.Blue;
    }
    d.frames.push_back(std::move(rgb));
    d.indices.push_back(std::move(idx));
  }
  return d;
}

}  // namespace cuseg
