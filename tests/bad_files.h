// Image files with the headers a reader must refuse (or take apart carefully), written byte by
// byte from the formats' specifications, because ITK's writers refuse to make most of them.
// Shared by tests/cpu/test_reader_limits.cpp and tests/e2e/test_bad_headers.cpp.
#pragma once
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace bad_files {

namespace fs = std::filesystem;

inline std::string write(const fs::path& p, const std::string& bytes) {
  fs::create_directories(p.parent_path());
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), std::streamsize(bytes.size()));
  return p.string();
}

template <class T>
std::string bytes_of(const std::vector<T>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

// n float32 voxels of value v, as raw little-endian bytes.
inline std::string floats(size_t n, float v = 0.f) {
  return bytes_of(std::vector<float>(n, v));
}

// NIfTI-1 single file (nifti1.h): sizeof_hdr 348, dim[] at 40, datatype at 70, bitpix at 72,
// pixdim[] at 76, vox_offset at 108, magic "n+1" at 344; data at 352. No qform/sform: ITK takes
// the spacing from pixdim and an identity direction.
struct Nifti1 {
  std::vector<int16_t> dims{4, 4, 3};
  int16_t datatype = 16, bitpix = 32;  // NIFTI_TYPE_FLOAT32
  float spacing[3] = {1.f, 1.f, 2.f};
  float vox_offset = 352.f;
  std::string payload;  // written after the 352-byte header
  std::string file() const {
    char h[352] = {};
    const int32_t sizeof_hdr = 348;
    std::memcpy(h, &sizeof_hdr, 4);
    int16_t dim[8] = {int16_t(dims.size()), 1, 1, 1, 1, 1, 1, 1};
    for (size_t a = 0; a < dims.size() && a < 7; ++a) dim[a + 1] = dims[a];
    std::memcpy(h + 40, dim, sizeof dim);
    std::memcpy(h + 70, &datatype, 2);
    std::memcpy(h + 72, &bitpix, 2);
    const float pixdim[8] = {1, spacing[0], spacing[1], spacing[2], 1, 1, 1, 1};
    std::memcpy(h + 76, pixdim, sizeof pixdim);
    std::memcpy(h + 108, &vox_offset, 4);
    std::memcpy(h + 344, "n+1\0", 4);
    return std::string(h, sizeof h) + payload;
  }
};

// MetaImage (.mha) with a LOCAL raw payload; every key ITK's MetaIO needs, each overridable.
struct Mha {
  std::string ndims = "3", dim_size = "4 4 3", spacing = "1 1 2", offset = "0 0 0",
              transform = "1 0 0 0 1 0 0 0 1", element_type = "MET_FLOAT", extra;
  std::string payload;
  std::string file() const {
    return "ObjectType = Image\nNDims = " + ndims +
           "\nBinaryData = True\nBinaryDataByteOrderMSB = False\nCompressedData = False\n"
           "TransformMatrix = " +
           transform + "\nOffset = " + offset + "\nElementSpacing = " + spacing +
           "\nDimSize = " + dim_size + "\n" + extra + "ElementType = " + element_type +
           "\nElementDataFile = LOCAL\n" + payload;
  }
};

// NRRD (.nrrd) with a raw little-endian payload.
struct Nrrd {
  std::string type = "float", dimension = "3", sizes = "4 4 3",
              directions = "(1,0,0) (0,1,0) (0,0,2)", kinds = "domain domain domain",
              origin = "(0,0,0)";
  std::string payload;
  std::string file() const {
    return "NRRD0004\ntype: " + type + "\ndimension: " + dimension +
           "\nspace: left-posterior-superior\nsizes: " + sizes +
           "\nspace directions: " + directions + "\nkinds: " + kinds +
           "\nendian: little\nencoding: raw\nspace origin: " + origin + "\n\n" + payload;
  }
};

// A 4-D MetaImage (4 x 4 x 3 x 2 float32, zeros): a time series, not a volume.
inline Mha four_d_mha() {
  Mha m;
  m.ndims = "4";
  m.spacing = "1 1 2 1";
  m.offset = "0 0 0 0";
  m.transform = "1 0 0 0 0 1 0 0 0 0 1 0 0 0 0 1";
  m.dim_size = "4 4 3 2";
  m.payload = floats(96);
  return m;
}

// A NRRD of 3-vectors over a 4 x 4 x 3 grid (float32, zeros): not a scalar image.
inline Nrrd vector_nrrd() {
  Nrrd r;
  r.dimension = "4";
  r.sizes = "3 4 4 3";
  r.kinds = "vector domain domain domain";
  r.directions = "none (1,0,0) (0,1,0) (0,0,2)";
  r.payload = floats(144);
  return r;
}

}  // namespace bad_files
