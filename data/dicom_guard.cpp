// DICOM element-length walk (data/dicom_guard.h). The encoding rules are DICOM PS3.5 section 7
// (data elements: tag, explicit/implicit VR, 2- or 4-byte lengths; undefined length 0xFFFFFFFF
// with item (FFFE,E000), item delimiter (FFFE,E00D) and sequence delimiter (FFFE,E0DD)
// elements) and section 10 / annex A (transfer syntaxes), PS3.10 section 7 (the 128-byte
// preamble, "DICM", the explicit-VR little-endian group 0002).
#include "cuseg/data/dicom_guard.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <set>
#include <string>

namespace cuseg {
namespace data {
namespace detail {
namespace {

constexpr uint32_t kUndefined = 0xFFFFFFFFu;
constexpr int kMaxDepth = 64;  // nested sequences; real files use a handful

struct Walker {
  std::ifstream in;
  uint64_t size = 0;
  bool explicit_vr = true, big_endian = false;
  std::string problem;  // first problem found
  bool unsure = false;  // stopped where the encoding breaks the rules
  std::string unsure_why;
  std::string recognition_code;  // a refused top-level (0008,0010) value, "" when none
  std::string bad_geometry;      // a refused top-level (0020,0032) / (0020,0037), "" when none
  int samples_per_pixel = -1;    // (0028,0002) of the top-level data set (a refused value first)
  // The image pixel module of the top-level data set (PS3.3 C.7.6.3), for the pixel data
  // length; -1 when absent.
  int64_t rows = -1, columns = -1, bits_allocated = -1, bits_stored = -1, frames = -1;
  bool bad_frames = false;        // (0028,0008) present but not a positive integer (DICOM IS)
  int64_t pixel_data_bytes = -1;  // the defined length of the top-level (7FE0,0010)
  std::string photometric;        // (0028,0004), trimmed
  bool has_photometric = false;
  std::set<uint32_t> top_level;  // tags of the top-level data set seen so far
  std::string repeated;          // the first top-level tag found twice, "" when none

  // `v` is one integer (DICOM IS: optional sign, digits, padded with spaces).
  static bool integer_string(std::string v, long long& out) {
    while (!v.empty() && (v.back() == ' ' || v.back() == '\0')) v.pop_back();
    while (!v.empty() && v.front() == ' ') v.erase(0, 1);
    if (v.empty() || v.size() > 12) return false;
    for (size_t i = 0; i < v.size(); ++i)
      if (!(std::isdigit(static_cast<unsigned char>(v[i])) ||
            (i == 0 && (v[i] == '+' || v[i] == '-'))))
        return false;
    out = std::strtoll(v.c_str(), nullptr, 10);
    return true;
  }

  // What the image pixel module says about the native pixel data, "" when it is consistent.
  std::string pixel_problem() const {
    if (has_photometric) {
      // The defined terms of PS3.3 C.7.6.3.1.2 and their Samples per Pixel. GDCM matches a
      // value it does not know by its prefix ("YBR_FULL_42" as YBR_FULL_422) and then decodes
      // three samples from one (a read past the pixel data; fuzz_dicom).
      static const struct {
        const char* name;
        int samples;
      } kTerms[] = {{"MONOCHROME1", 1},
                    {"MONOCHROME2", 1},
                    {"PALETTE COLOR", 1},
                    {"RGB", 3},
                    {"HSV", 3},
                    {"YBR_FULL", 3},
                    {"YBR_FULL_422", 3},
                    {"YBR_PARTIAL_422", 3},
                    {"YBR_PARTIAL_420", 3},
                    {"YBR_ICT", 3},
                    {"YBR_RCT", 3},
                    {"ARGB", 4},
                    {"CMYK", 4}};
      int samples = 0;
      for (const auto& t : kTerms)
        if (photometric == t.name) samples = t.samples;
      std::string shown;
      for (char c : photometric) shown += (c >= 32 && c < 127) ? c : '?';
      if (samples == 0)
        return "Photometric Interpretation (0028,0004) is '" + shown +
               "'; expected a defined term (MONOCHROME2, RGB, YBR_FULL, ...)";
      if (samples_per_pixel >= 0 && samples_per_pixel != samples)
        return "Photometric Interpretation (0028,0004) " + shown + " has " +
               std::to_string(samples) + " samples per pixel; Samples per Pixel (0028,0002) is " +
               std::to_string(samples_per_pixel);
    }
    if (bad_frames) return "Number of Frames (0028,0008) is not a positive integer (DICOM IS)";
    if (bits_allocated >= 0 && bits_allocated != 1 &&
        (bits_allocated % 8 != 0 || bits_allocated == 0 || bits_allocated > 64))
      // 12 is the packed ACR-NEMA encoding; GDCM asserts on such pixel data whose length is
      // not a multiple of 3 (fuzz_dicom).
      return "Bits Allocated (0028,0100) is " + std::to_string(bits_allocated) +
             "; DICOM allows 1 or a multiple of 8 up to 64";
    if (bits_stored >= 0 &&
        (bits_stored == 0 || (bits_allocated >= 0 && bits_stored > bits_allocated)))
      return "Bits Stored (0028,0101) is " + std::to_string(bits_stored) +
             ", Bits Allocated (0028,0100) " + std::to_string(bits_allocated) +
             "; DICOM needs 1 <= Bits Stored <= Bits Allocated";
    if (pixel_data_bytes < 0 || rows < 0 || columns < 0 || bits_allocated < 0) return "";
    // Native (not encapsulated) pixel data holds Rows x Columns x Number of Frames x Samples per
    // Pixel values of Bits Allocated bits (PS3.5 8.1.1), padded to an even length; YBR_FULL_422
    // stores two values per pixel instead of three (PS3.3 C.7.6.3.1.2). GDCM copies
    // that many bytes out of a shorter element when it has to convert it (byte swap, planar
    // configuration): a read past the value.
    // Rows and Columns < 2^16, frames < 10^12, samples <= 4, bits <= 64: the product can pass
    // 2^64, so it is formed in long double (exact to 2^64, more than a 32-bit length needs).
    const long double need =
        std::ceil((long double)(rows)*columns * std::max<int64_t>(frames, 1) *
                  std::max(samples_per_pixel, 1) * bits_allocated / 8.0L *
                  (photometric == "YBR_FULL_422" && samples_per_pixel == 3 ? 2.0L / 3.0L : 1.0L));
    if ((long double)pixel_data_bytes >= need) return "";
    char b[200];
    std::snprintf(b, sizeof b,
                  "Pixel Data (7fe0,0010) holds %lld bytes; Rows x Columns x Number of Frames x "
                  "Samples per Pixel x Bits Allocated / 8 needs %.0Lf",
                  (long long)pixel_data_bytes, need);
    return b;
  }

  // `v` holds exactly `count` decimal numbers separated by '\\' (DICOM DS; spaces padded).
  static bool decimal_strings(const std::string& v, int count) {
    int n = 0;
    size_t at = 0;
    while (at <= v.size()) {
      size_t end = v.find('\\', at);
      if (end == std::string::npos) end = v.size();
      std::string t = v.substr(at, end - at);
      while (!t.empty() && (t.back() == ' ' || t.back() == '\0')) t.pop_back();
      while (!t.empty() && t.front() == ' ') t.erase(0, 1);
      if (t.empty()) return false;
      for (char c : t)
        if (!((c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.' || c == 'e' || c == 'E'))
          return false;
      char* stop = nullptr;
      const double x = std::strtod(t.c_str(), &stop);
      if (stop != t.c_str() + t.size() || !std::isfinite(x)) return false;
      ++n;
      at = end + 1;
    }
    return n == count;
  }

  bool read(uint64_t pos, void* dst, size_t n) {
    if (pos + n > size) return false;
    in.seekg(std::streamoff(pos));
    in.read(static_cast<char*>(dst), std::streamsize(n));
    return bool(in);
  }
  uint16_t u16(const unsigned char* b) const {
    return big_endian ? uint16_t(b[0] << 8 | b[1]) : uint16_t(b[1] << 8 | b[0]);
  }
  uint32_t u32(const unsigned char* b) const {
    return big_endian ? uint32_t(b[0]) << 24 | uint32_t(b[1]) << 16 | uint32_t(b[2]) << 8 | b[3]
                      : uint32_t(b[3]) << 24 | uint32_t(b[2]) << 16 | uint32_t(b[1]) << 8 | b[0];
  }
  bool fail(uint16_t g, uint16_t e, uint64_t at, uint64_t len, uint64_t left) {
    char b[200];
    std::snprintf(b, sizeof b,
                  "element (%04x,%04x) at byte %llu declares %llu bytes, the file has %llu left", g,
                  e, (unsigned long long)at, (unsigned long long)len, (unsigned long long)left);
    problem = b;
    return false;
  }
  bool deep() {
    problem = "more than 64 nested sequences";
    return false;
  }

  static bool long_length_vr(const char* vr) {
    static const char* kLong[] = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ",
                                  "SV", "UC", "UN", "UR", "UT", "UV"};
    for (const char* v : kLong)
      if (vr[0] == v[0] && vr[1] == v[1]) return true;
    return false;
  }
  // The value representations of PS3.5 section 6.2.
  static bool is_vr(const char* vr) {
    static const char* kVrs[] = {"AE", "AS", "AT", "CS", "DA", "DS", "DT", "FD", "FL",
                                 "IS", "LO", "LT", "OB", "OD", "OF", "OL", "OV", "OW",
                                 "PN", "SH", "SL", "SQ", "SS", "ST", "SV", "TM", "UC",
                                 "UI", "UL", "UN", "UR", "US", "UT", "UV"};
    for (const char* v : kVrs)
      if (vr[0] == v[0] && vr[1] == v[1]) return true;
    return false;
  }

  // Items of an undefined-length sequence or encapsulated pixel data, from pos to the sequence
  // delimiter. `datasets`: items hold data sets (a sequence) rather than opaque fragments.
  bool items(uint64_t& pos, uint64_t end, bool datasets, int depth) {
    if (depth > kMaxDepth) return deep();
    while (pos + 8 <= end) {
      unsigned char h[8];
      if (!read(pos, h, 8)) return true;
      const uint16_t g = u16(h), e = u16(h + 2);
      const uint32_t len = u32(h + 4);
      const uint64_t at = pos;
      pos += 8;
      if (g != 0xFFFE) {
        unsure = true;
        unsure_why = "a sequence holds something other than items";
        return true;
      }
      if (e == 0xE0DD) return true;  // sequence delimiter
      if (e != 0xE000) continue;     // a stray item delimiter
      if (len == kUndefined) {
        if (!datasets) {
          unsure = true;
          unsure_why = "a pixel data fragment of undefined length";
          return true;
        }
        if (!dataset(pos, end, true, depth + 1)) return false;
        if (unsure) return true;
        continue;
      }
      if (len > end - pos) return fail(g, e, at, len, end - pos);
      if (datasets) {
        uint64_t p = pos;
        if (!dataset(p, pos + len, false, depth + 1)) return false;
        if (unsure) return true;
      }
      pos += len;
    }
    return true;
  }

  // Elements from pos to end, or (in_item) to the item delimiter.
  bool dataset(uint64_t& pos, uint64_t end, bool in_item, int depth) {
    if (depth > kMaxDepth) return deep();
    while (pos + 8 <= end) {
      unsigned char h[12];
      if (!read(pos, h, 8)) return true;
      const uint16_t g = u16(h), e = u16(h + 2);
      const uint64_t at = pos;
      if (g == 0xFFFE) {  // item / delimiters: tag + 4-byte length in every transfer syntax
        pos += 8;
        if (e == 0xE00D && in_item) return true;
        // Any other (FFFE,xxxx) here is read by GDCM as an element of that length (and its
        // value allocated): the length must fit the file like every other one.
        const uint32_t l = u32(h + 4);
        if (e != 0xE00D && e != 0xE0DD && l != kUndefined && l > end - pos)
          return fail(g, e, at, l, end - pos);
        continue;
      }
      char vr[2] = {0, 0};
      uint32_t len;
      if (explicit_vr) {
        std::memcpy(vr, h + 4, 2);
        if (!is_vr(vr)) {
          unsure = true;
          char b[64];
          std::snprintf(b, sizeof b, "element (%04x,%04x) at byte %llu has no valid VR", g, e,
                        (unsigned long long)at);
          unsure_why = b;
          return true;
        }
        if (long_length_vr(vr)) {
          if (!read(pos, h, 12)) return fail(g, e, at, 12, end - pos);
          len = u32(h + 8);
          pos += 12;
        } else {
          len = u16(h + 6);
          pos += 8;
        }
      } else {
        len = u32(h + 4);
        pos += 8;
      }
      if (depth == 0 && !top_level.insert(uint32_t(g) << 16 | e).second && repeated.empty()) {
        // PS3.5 7.1: each element occurs at most once in a data set. GDCM keeps one copy and
        // this walk would judge another (a second valid Samples per Pixel hid an invalid
        // first one: fuzz_dicom).
        char b[16];
        std::snprintf(b, sizeof b, "(%04x,%04x)", g, e);
        repeated = b;
      }
      if (len == kUndefined) {
        // Undefined length: a sequence, or encapsulated pixel data (fragments). A UN element of
        // undefined length holds a sequence encoded in implicit VR little endian (PS3.5 6.2.2).
        const bool pixels = g == 0x7FE0 && e == 0x0010;
        const bool un = explicit_vr && vr[0] == 'U' && vr[1] == 'N';
        const bool was_explicit = explicit_vr, was_big = big_endian;
        if (un) explicit_vr = big_endian = false;
        const bool ok = items(pos, end, !pixels, depth + 1);
        explicit_vr = was_explicit;
        big_endian = was_big;
        if (!ok) return false;
        if (unsure) return true;
        continue;
      }
      if (len > end - pos) return fail(g, e, at, len, end - pos);
      if (depth == 0 && g == 0x0028 && e == 0x0002 && len >= 2) {
        unsigned char v[2];
        // A file may hold the element more than once (GDCM keeps one of them): any value
        // DICOM does not allow is remembered, so no copy of it reaches GDCM.
        if (read(pos, v, 2)) {
          const int spp = int(u16(v));
          if ((spp != 1 && spp != 3 && spp != 4) || samples_per_pixel < 0) samples_per_pixel = spp;
        }
      }
      if (depth == 0 && g == 0x0028 && len >= 2 &&
          (e == 0x0010 || e == 0x0011 || e == 0x0100 || e == 0x0101)) {
        int64_t* field = e == 0x0010   ? &rows
                         : e == 0x0011 ? &columns
                         : e == 0x0100 ? &bits_allocated
                                       : &bits_stored;
        unsigned char v[2];
        if (read(pos, v, 2)) *field = u16(v);
      }
      if (depth == 0 && g == 0x0028 && e == 0x0008) {
        // Number of Frames: an integer string (IS, at most 12 characters).
        std::string v(size_t(std::min<uint64_t>(len, 16)), '\0');
        long long n = 0;
        if (len > 16 || !read(pos, &v[0], v.size()) || !integer_string(v, n) || n < 1)
          bad_frames = true;
        else
          frames = n;
      }
      if (depth == 0 && g == 0x7FE0 && e == 0x0010) pixel_data_bytes = int64_t(len);
      if (depth == 0 && g == 0x0028 && e == 0x0004) {
        has_photometric = true;
        photometric.assign(size_t(std::min<uint64_t>(len, 64)), '\0');
        if (!read(pos, &photometric[0], photometric.size())) photometric.clear();
        while (!photometric.empty() && (photometric.back() == ' ' || photometric.back() == '\0'))
          photometric.pop_back();
      }
      if (depth == 0 && g == 0x0008 && e == 0x0010 && len > 0) {
        // Recognition Code (retired, ACR-NEMA): GDCM asserts that a non-empty value starts
        // with one of the three ACR-NEMA spellings.
        char v[8] = {};
        const size_t n = size_t(std::min<uint64_t>(len, 8));
        if (read(pos, v, n)) {
          const std::string code(v, n);
          const bool known = code.compare(0, 8, "ACR-NEMA") == 0 ||
                             code.compare(0, 7, "ACRNEMA") == 0 ||
                             code.compare(0, 8, "MIPS 2.0") == 0;
          if (!known && recognition_code.empty()) recognition_code = code;
        }
      }
      if (depth == 0 && g == 0x0020 && (e == 0x0032 || e == 0x0037) && bad_geometry.empty()) {
        // ImagePositionPatient (3 numbers) / ImageOrientationPatient (6): decimal strings (DS).
        // GDCM orders a series by them; when one does not parse it falls back to ordering by
        // Instance Number, which crashed on such a folder (fuzz_dicom).
        std::string v(size_t(std::min<uint64_t>(len, 256)), '\0');
        if (len > 256 || !read(pos, &v[0], v.size()) || !decimal_strings(v, e == 0x0032 ? 3 : 6))
          bad_geometry = e == 0x0032 ? "ImagePositionPatient (0020,0032)"
                                     : "ImageOrientationPatient (0020,0037)";
      }
      // A sequence with a defined length: its items are walked too (GDCM parses them). In
      // implicit VR the VR is not stored; a value that starts with an item tag is a sequence.
      bool sequence = explicit_vr && vr[0] == 'S' && vr[1] == 'Q';
      if (!explicit_vr && len >= 8) {
        unsigned char t[4];
        if (read(pos, t, 4)) sequence = u16(t) == 0xFFFE && u16(t + 2) == 0xE000;
      }
      if (sequence) {
        uint64_t p = pos;
        if (!items(p, pos + len, true, depth + 1)) return false;
        if (unsure) return true;
      }
      pos += len;
    }
    return true;
  }
};

}  // namespace

bool has_dicm_magic(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char b[132];
  return in.read(b, 132) && std::memcmp(b + 128, "DICM", 4) == 0;
}

std::string dicom_length_problem(const std::string& path) {
  Walker w;
  w.in.open(path, std::ios::binary);
  if (!w.in) return "";  // unreadable: the reader reports it
  w.in.seekg(0, std::ios::end);
  w.size = uint64_t(w.in.tellg());
  uint64_t pos = 0;
  std::string syntax = "1.2.840.10008.1.2";  // implicit VR little endian, the default
  if (has_dicm_magic(path)) {
    // File meta information: group 0002, always explicit VR little endian.
    pos = 132;
    w.explicit_vr = true;
    w.big_endian = false;
    // GDCM asserts (aborts) when the file ends inside this group or right after it: its tag and
    // 32-bit length reads "should not happen" to fail (gdcmFileMetaInformation.cxx).
    const char* kEnds = "the file ends inside or right after its meta information (group 0002)";
    while (true) {
      unsigned char h[8];
      if (pos + 4 > w.size) return kEnds;
      if (!w.read(pos, h, 4) || w.u16(h) != 0x0002) break;
      if (pos + 8 > w.size || !w.read(pos, h, 8)) return kEnds;
      uint64_t end = w.size;
      uint64_t p = pos;
      // One element at a time, to pick up the transfer syntax (0002,0010).
      const uint16_t e = w.u16(h + 2);
      char vr[2] = {char(h[4]), char(h[5])};
      if (!Walker::is_vr(vr)) {
        char b[96];
        std::snprintf(b, sizeof b, "meta element (0002,%04x) at byte %llu has no valid VR",
                      w.u16(h + 2), (unsigned long long)pos);
        return std::string("its elements cannot be parsed as DICOM (") + b + ")";
      }
      uint64_t len, hdr;
      if (Walker::long_length_vr(vr)) {
        unsigned char l[4];
        if (!w.read(pos + 8, l, 4)) return kEnds;
        len = w.u32(l);
        hdr = 12;
      } else {
        len = w.u16(h + 6);
        hdr = 8;
      }
      p += hdr;
      if (len > end - p) {
        w.fail(0x0002, e, pos, len, end - p);
        return w.problem;
      }
      if (e == 0x0010 && len < 128) {
        std::string ts(size_t(len), '\0');
        if (w.read(p, &ts[0], size_t(len))) {
          while (!ts.empty() && (ts.back() == '\0' || ts.back() == ' ')) ts.pop_back();
          syntax = ts;
        }
      }
      pos = p + len;
    }
  } else {
    // No preamble: the encoding is guessed, as GDCM does: explicit when bytes 4-5 spell a VR,
    // big endian when the first group number reads small only that way (e.g. 00 08 = 0x0008).
    unsigned char h[6];
    if (!w.read(0, h, 6)) return "";
    const char vr[2] = {char(h[4]), char(h[5])};
    const unsigned le = unsigned(h[1]) << 8 | h[0], be = unsigned(h[0]) << 8 | h[1];
    syntax = !Walker::is_vr(vr)          ? "1.2.840.10008.1.2"
             : (le > 0xFF && be <= 0xFF) ? "1.2.840.10008.1.2.2"
                                         : "1.2.840.10008.1.2.1";
  }
  if (syntax == "1.2.840.10008.1.2.1.99") return "";  // deflated: GDCM inflates, cannot walk
  w.explicit_vr = syntax != "1.2.840.10008.1.2";
  w.big_endian = syntax == "1.2.840.10008.1.2.2";
  w.dataset(pos, w.size, false, 0);
  if (w.problem.empty() && w.unsure)
    w.problem = "its elements cannot be parsed as DICOM (" + w.unsure_why + ")";
  // Attribute values GDCM (as Debian builds it, with assertions on) aborts the process on.
  if (w.problem.empty() && w.samples_per_pixel >= 0 && w.samples_per_pixel != 1 &&
      w.samples_per_pixel != 3 && w.samples_per_pixel != 4)
    w.problem = "Samples per Pixel (0028,0002) is " + std::to_string(w.samples_per_pixel) +
                "; DICOM allows 1, 3 or 4";
  if (w.problem.empty() && !w.repeated.empty())
    w.problem = "element " + w.repeated + " occurs twice in the data set; DICOM allows one";
  if (w.problem.empty()) w.problem = w.pixel_problem();
  if (w.problem.empty() && !w.bad_geometry.empty())
    w.problem = w.bad_geometry + " is not a list of decimal numbers (DICOM DS, separated by '\\')";
  if (w.problem.empty() && !w.recognition_code.empty()) {
    std::string shown;
    for (char c : w.recognition_code) shown += (c >= 32 && c < 127) ? c : '?';
    w.problem = "Recognition Code (0008,0010) is '" + shown +
                "...'; expected ACR-NEMA, ACRNEMA or MIPS 2.0 (or none)";
  }
  return w.problem;
}

}  // namespace detail
}  // namespace data
}  // namespace cuseg
