// Writes the seed corpora of the fuzz targets into fuzz/corpus/<target>/ (committed; rerun after
// a format change: build-san/fuzz/fuzz_make_corpus fuzz/corpus). Every seed is small (< 16 KB)
// and derived from the synthetic phantom, from a crop of tests/data/realct (Apache-2.0, see
// tests/data/SOURCE.md) or from the repository's configs; files ITK will not write (4-D, vector
// pixels, NaN/Inf, raw encodings, NIfTI-2) are assembled here from the formats' specifications.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "cuseg/data/image.h"
#include "cuseg/data/phantom.h"
#include "cuseg/engine/checkpoint.h"
#include "cuseg/engine/optim.h"
#include "cuseg/model/unet3d.h"
#include "fuzz_util.h"

namespace fs = std::filesystem;
using namespace cuseg;
using cuseg_fuzz::kSeparator;

namespace {

fs::path g_out, g_tmp;

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void seed(const std::string& target, const std::string& name, const std::string& bytes) {
  fs::create_directories(g_out / target);
  std::ofstream(g_out / target / name, std::ios::binary) << bytes;
  std::printf("%-12s %-28s %6zu bytes\n", target.c_str(), name.c_str(), bytes.size());
}

template <class V>
V crop(const V& in, std::array<int, 3> at, std::array<int, 3> size) {
  data::Geometry g = in.geo;
  g.size = size;
  g.origin = in.geo.world(at[0], at[1], at[2]);
  V out = V::make(g);
  for (int k = 0; k < size[2]; ++k)
    for (int j = 0; j < size[1]; ++j)
      for (int i = 0; i < size[0]; ++i) out.at(i, j, k) = in.at(at[0] + i, at[1] + j, at[2] + k);
  return out;
}

// The bytes ITK writes for an image (NIfTI written uncompressed: .nii).
std::string itk_bytes(const data::Image& im, const std::string& ext, data::PixelType t) {
  const fs::path p = g_tmp / ("x" + ext);
  data::write_image(im, p.string(), t);
  return slurp(p);
}

// NIfTI-1 single file (nifti1.h): 348-byte header, 4 bytes of extension flags, data at 352.
std::string nifti1(std::vector<int16_t> dims, int16_t datatype, int16_t bitpix,
                   const std::string& payload) {
  char h[352] = {};
  const int32_t sizeof_hdr = 348;
  std::memcpy(h, &sizeof_hdr, 4);
  int16_t dim[8] = {int16_t(dims.size()), 1, 1, 1, 1, 1, 1, 1};
  for (size_t a = 0; a < dims.size(); ++a) dim[a + 1] = dims[a];
  std::memcpy(h + 40, dim, sizeof dim);
  std::memcpy(h + 70, &datatype, 2);
  std::memcpy(h + 72, &bitpix, 2);
  const float pixdim[8] = {1, 0.8f, 0.8f, 2.5f, 1, 1, 1, 1};
  std::memcpy(h + 76, pixdim, sizeof pixdim);
  const float vox_offset = 352;
  std::memcpy(h + 108, &vox_offset, 4);
  std::memcpy(h + 344, "n+1\0", 4);
  return std::string(h, sizeof h) + payload;
}

// NIfTI-2 single file (nifti2.h): 540-byte header, 4 bytes of extension flags, data at 544.
std::string nifti2(std::vector<int64_t> dims, int16_t datatype, int16_t bitpix,
                   const std::string& payload) {
  char h[544] = {};
  const int32_t sizeof_hdr = 540;
  std::memcpy(h, &sizeof_hdr, 4);
  std::memcpy(h + 4, "n+2\0\r\n\032\n", 8);
  std::memcpy(h + 12, &datatype, 2);
  std::memcpy(h + 14, &bitpix, 2);
  int64_t dim[8] = {int64_t(dims.size()), 1, 1, 1, 1, 1, 1, 1};
  for (size_t a = 0; a < dims.size(); ++a) dim[a + 1] = dims[a];
  std::memcpy(h + 16, dim, sizeof dim);
  const double pixdim[8] = {1, 1.5, 1.5, 3, 1, 1, 1, 1};
  std::memcpy(h + 104, pixdim, sizeof pixdim);
  const int64_t vox_offset = 544;
  std::memcpy(h + 168, &vox_offset, 8);
  const int32_t qform_code = 1;  // scanner: identity rotation from a zero quaternion
  std::memcpy(h + 344, &qform_code, 4);
  return std::string(h, sizeof h) + payload;
}

template <class T>
std::string raw(const std::vector<T>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

std::vector<float> floats_with_nonfinite(size_t n) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = float(int(i % 17) - 8) * 12.5f;
  v[3] = NAN;
  v[n / 2] = INFINITY;
  v[n - 1] = -INFINITY;
  return v;
}

std::string fmt(double x) {
  char b[32];
  std::snprintf(b, sizeof b, "%.9g", x);
  return b;
}

// NRRD with a raw little-endian payload (NRRD0004, teem's format description).
std::string nrrd_raw(const data::Geometry& g, const std::string& type, const std::string& payload,
                     const std::string& extra_sizes = "", const std::string& extra_kinds = "") {
  std::ostringstream h;
  h << "NRRD0004\ntype: " << type << "\ndimension: " << (extra_sizes.empty() ? 3 : 4)
    << "\nspace: left-posterior-superior\nsizes: " << extra_sizes << g.size[0] << " " << g.size[1]
    << " " << g.size[2] << "\nspace directions: " << (extra_sizes.empty() ? "" : "none ");
  for (int a = 0; a < 3; ++a)
    h << "(" << fmt(g.direction[a] * g.spacing[a]) << "," << fmt(g.direction[3 + a] * g.spacing[a])
      << "," << fmt(g.direction[6 + a] * g.spacing[a]) << ")" << (a < 2 ? " " : "\n");
  h << "kinds: " << extra_kinds << "domain domain domain\nendian: little\nencoding: raw\n"
    << "space origin: (" << fmt(g.origin[0]) << "," << fmt(g.origin[1]) << "," << fmt(g.origin[2])
    << ")\n\n";
  return h.str() + payload;
}

// MetaImage with a LOCAL raw payload (ITK's MetaIO keys).
std::string mha_raw(const data::Geometry& g, const std::string& type, const std::string& payload,
                    const std::string& extra = "", int ndims = 3, const std::string& dim4 = "") {
  std::ostringstream h;
  h << "ObjectType = Image\nNDims = " << ndims
    << "\nBinaryData = True\nBinaryDataByteOrderMSB = False\nCompressedData = False\n"
    << "TransformMatrix =";
  for (int c = 0; c < 3; ++c)
    for (int r = 0; r < 3; ++r) h << " " << fmt(g.direction[3 * r + c]);
  h << (ndims == 4 ? " 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0" : "") << "\nOffset = " << fmt(g.origin[0])
    << " " << fmt(g.origin[1]) << " " << fmt(g.origin[2]) << (ndims == 4 ? " 0" : "")
    << "\nElementSpacing = " << fmt(g.spacing[0]) << " " << fmt(g.spacing[1]) << " "
    << fmt(g.spacing[2]) << (ndims == 4 ? " 1" : "") << "\nDimSize = " << g.size[0] << " "
    << g.size[1] << " " << g.size[2] << dim4 << "\n"
    << extra << "ElementType = " << type << "\nElementDataFile = LOCAL\n";
  return h.str() + payload;
}

std::vector<int16_t> as_i16(const data::Image& im) {
  std::vector<int16_t> v;
  for (float x : im.v) v.push_back(int16_t(x));
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: fuzz_make_corpus OUT_DIR (fuzz/corpus)\n");
    return 2;
  }
  g_out = argv[1];
  g_tmp = fs::temp_directory_path() / ("cuseg_make_corpus_" + std::to_string(getpid()));
  fs::create_directories(g_tmp);

  // Sources: a phantom case cropped to 10x10x6 (RAS, int16 HU), its labels, and a 10x8x4 crop
  // of the real CT (a non-identity direction, 3 mm voxels).
  data::PhantomConfig pc;
  pc.size = {32, 32, 16};
  const data::PhantomCase ph = data::make_phantom(pc, 0);
  const data::Image ct = crop(ph.ct, {11, 11, 5}, {10, 10, 6});
  const data::LabelMap lab = crop(ph.label, {11, 11, 5}, {10, 10, 6});
  const data::Image real =
      crop(data::read_image(std::string(CUSEG_TEST_DATA_DIR) + "/realct/abdomen_ct_3mm.nii.gz"),
           {50, 40, 50}, {10, 8, 4});
  data::Image lab_f = data::Image::make(lab.geo);
  for (size_t n = 0; n < lab.v.size(); ++n) lab_f.v[n] = lab.v[n];

  // ---- NIfTI: byte 0 = 0 (.nii) or 1 (.nii.gz, the rest is compressed by the target).
  const std::string plain(1, '\0'), gz(1, '\1');
  seed("nifti", "phantom_i16", plain + itk_bytes(ct, ".nii", data::PixelType::Int16));
  seed("nifti", "phantom_label_u8_gz", gz + itk_bytes(lab_f, ".nii", data::PixelType::UInt8));
  seed("nifti", "realct_i16_gz", gz + itk_bytes(real, ".nii", data::PixelType::Int16));
  seed("nifti", "f32_nan_inf", plain + nifti1({6, 5, 4}, 16, 32, raw(floats_with_nonfinite(120))));
  {
    std::vector<double> d(4 * 4 * 3, -1000.0);
    d[5] = NAN;
    seed("nifti", "nifti2_f64_nan", plain + nifti2({4, 4, 3}, 64, 64, raw(d)));
  }
  seed("nifti", "f32_4d", plain + nifti1({4, 4, 2, 2}, 16, 32, raw(std::vector<float>(64, 1.f))));

  // ---- NRRD.
  seed("nrrd", "phantom_i16_gzip.nrrd", itk_bytes(ct, ".nrrd", data::PixelType::Int16));
  seed("nrrd", "realct_i16_raw.nrrd", nrrd_raw(real.geo, "short", raw(as_i16(real))));
  {
    data::Geometry g;
    g.size = {6, 5, 4};
    g.spacing = {0.8, 0.8, 2.5};
    seed("nrrd", "f32_nan_inf_raw.nrrd", nrrd_raw(g, "float", raw(floats_with_nonfinite(120))));
    seed("nrrd", "vector3_raw.nrrd",
         nrrd_raw(g, "unsigned char", std::string(360, '\x07'), "3 ", "vector "));
  }

  // ---- MetaImage.
  seed("mha", "phantom_i16_zlib.mha", itk_bytes(ct, ".mha", data::PixelType::Int16));
  seed("mha", "realct_i16_raw.mha", mha_raw(real.geo, "MET_SHORT", raw(as_i16(real))));
  {
    data::Geometry g;
    g.size = {6, 5, 4};
    g.spacing = {0.8, 0.8, 2.5};
    seed("mha", "f32_nan_inf_raw.mha", mha_raw(g, "MET_FLOAT", raw(floats_with_nonfinite(120))));
    seed("mha", "vector3_raw.mha",
         mha_raw(g, "MET_UCHAR", std::string(360, '\x07'), "ElementNumberOfChannels = 3\n"));
    seed("mha", "4d_raw.mha", mha_raw(g, "MET_UCHAR", std::string(240, '\x01'), "", 4, " 2"));
  }

  // ---- DICOM: the phantom crop's first 3 slices as a series (files joined by the separator).
  {
    const data::Image small = crop(ct, {0, 0, 0}, {8, 8, 3});
    const fs::path dir = g_tmp / "dicom";
    data::write_dicom_series(small, dir.string());
    std::string all;
    for (int k = 0; k < 3; ++k) {
      char name[32];
      std::snprintf(name, sizeof name, "IM%04d.dcm", k);
      all += (k ? std::string(kSeparator) : "") + slurp(dir / name);
      if (k == 0) seed("dicom", "one_slice", slurp(dir / name));
    }
    seed("dicom", "series_3_slices", all);
  }

  // ---- safetensors: the fuzz target's network (1 level, 2 filters) with its Adam state.
  {
    UNet3D net(UNetConfig{1, 3, {2}}, Device::CPU, 0);
    Adam adam(net.parameters(), AdamConfig{});
    adam.set_steps(7);
    const fs::path w = g_tmp / "m.safetensors";
    save_checkpoint(w.string(), net.parameters(), {{"epoch", "3"}}, &adam);
    seed("safetensors", "weights_and_optim",
         slurp(w) + std::string(kSeparator) + slurp(optimizer_state_path(w.string())));
    seed("safetensors", "weights_only", slurp(w));
  }

  // ---- configs: the repository's, an empty one (all defaults), and one with --set lines.
  const fs::path src = fs::path(CUSEG_TEST_DATA_DIR).parent_path().parent_path();
  seed("config", "demo.yaml", slurp(src / "configs" / "demo.yaml"));
  seed("config", "liver.yaml", slurp(src / "configs" / "liver.yaml"));
  seed("config", "empty.yaml", "");
  seed("config", "tiny_with_set",
       "data:\n  dir: phantom\n  phantom: {generate: true, cases: 6, size: [48, 48, 24]}\n"
       "sampler:\n  patch: [16, 16, 16]\nmodel:\n  filters: [4, 8]\n"
       "inference:\n  patch: [16, 16, 16]\n  overlap: 4\n  mode: hann\n" +
           std::string(kSeparator) + "train.lr=3e-4\nsampler.label_probabilities={0: 1, 2: 1}\n");

  // ---- datasets: [dataset.json] SEP [files] SEP [splits.json].
  const std::string S(kSeparator);
  seed("dataset", "decathlon",
       R"({"name": "Liver", "labels": {"0": "background", "1": "liver", "2": "cancer"},
 "numTraining": 3, "training": [
  {"image": "./imagesTr/liver_0.nii.gz", "label": "./labelsTr/liver_0.nii.gz"},
  {"image": "./imagesTr/liver_1.nii.gz", "label": "./labelsTr/liver_1.nii.gz"},
  {"image": "./imagesTr/liver_2.nii.gz", "label": "./labelsTr/liver_2.nii.gz"}]})" +
           S +
           "imagesTr/liver_0.nii.gz\nlabelsTr/liver_0.nii.gz\nimagesTr/liver_1.nii.gz\n"
           "labelsTr/liver_1.nii.gz\nimagesTr/liver_2.nii.gz\nlabelsTr/liver_2.nii.gz\n" +
           S + R"({"seed": 0, "train": ["liver_0", "liver_1"], "val": ["liver_2"]})");
  seed("dataset", "nnunet_v2",
       R"({"channel_names": {"0": "CT"}, "labels": {"background": 0, "liver": 1, "tumour": 2},
 "numTraining": 2, "file_ending": ".nii.gz"})" +
           S +
           "imagesTr/case_0_0000.nii.gz\nlabelsTr/case_0.nii.gz\nimagesTr/case_1_0000.nii.gz\n"
           "labelsTr/case_1.nii.gz\nimagesTr/._case_1_0000.nii.gz\n");
  seed("dataset", "loose",
       S + "ct.nii.gz\nct_liver.nii.gz\nct_30slices.nii\n"
           "ct_30slices_organs.nii\nnotes.txt\n");

  fs::remove_all(g_tmp);
  return 0;
}
