// Images with geometry, file I/O (through ITK, kept inside data/image_io.cpp; builds configured
// with CUSEG_WITH_ITK=OFF compile data/image_io_noitk.cpp instead, whose functions throw a clear
// error) and orientation handling (data/geometry.cpp, no ITK).
//
// Conventions (the whole data/ folder follows them):
// - Buffer order is ITK's: index (i, j, k) with i fastest. In engine tensors (NCDHW, W fastest)
//   i -> W, j -> H, k -> D, so a Volume's buffer is directly one C=1 channel of a tensor.
// - Geometry is ITK's: world coordinates in mm in the LPS+ frame (x toward the patient's Left,
//   y Posterior, z Superior), direction is a 3x3 matrix whose COLUMN a is the world direction
//   of index axis a (row-major storage: direction[3 * row + col]), and the world position of
//   index (i, j, k) is origin + direction * diag(spacing) * (i, j, k).
// - Orientation codes follow nibabel / torchio (what "RAS" means in the reference recipe):
//   letter a names the anatomical direction index axis a points TOWARD, e.g. "RAS" = i grows
//   toward the patient's Right, j toward Anterior, k toward Superior. An identity ITK
//   direction (LPS world) is therefore "LPS", and a NIfTI with an identity affine is "RAS".
// - CT intensities are Hounsfield units (HU) as stored in the file (after the file's own
//   slope/intercept); label maps are uint8 class indices (0 background, 1 liver, 2 tumour).
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace cuseg {
namespace data {

struct Geometry {
  std::array<int, 3> size{0, 0, 0};              // voxels along i, j, k
  std::array<double, 3> spacing{1.0, 1.0, 1.0};  // mm along i, j, k
  std::array<double, 3> origin{0.0, 0.0, 0.0};   // mm, LPS world, centre of voxel (0,0,0)
  std::array<double, 9> direction{1, 0, 0, 0, 1, 0, 0, 0, 1};  // row-major, column = axis

  int64_t numel() const { return int64_t(size[0]) * size[1] * size[2]; }
  int64_t index(int i, int j, int k) const { return (int64_t(k) * size[1] + j) * size[0] + i; }
  // World position (mm, LPS) of a (possibly fractional) continuous index.
  std::array<double, 3> world(double i, double j, double k) const;
  // Voxel volume in mL (spacing is mm; 1 mL = 1000 mm^3).
  double voxel_ml() const { return spacing[0] * spacing[1] * spacing[2] / 1000.0; }
};

// Whether two geometries describe the same grid. The tolerances are ITK's own defaults for
// "same physical space" (ImageToImageFilter: coordinate tolerance 1e-6 x spacing, direction
// tolerance 1e-6), so we accept exactly what ITK filters accept.
bool same_grid(const Geometry& a, const Geometry& b, std::string* why = nullptr);
std::string describe(const Geometry& g);  // "122x101x112 @ 3x3x3 mm, LPS, origin (...)"

template <class T>
struct Volume {
  Geometry geo;
  std::vector<T> v;  // geo.numel() values, i fastest

  T& at(int i, int j, int k) { return v[size_t(geo.index(i, j, k))]; }
  const T& at(int i, int j, int k) const { return v[size_t(geo.index(i, j, k))]; }
  static Volume make(const Geometry& g, T fill = T(0)) {
    Volume r;
    r.geo = g;
    r.v.assign(size_t(g.numel()), fill);
    return r;
  }
};
using Image = Volume<float>;       // intensities (HU or normalised, as the caller says)
using LabelMap = Volume<uint8_t>;  // class indices

// What a file holds before it is converted (used by the integrity check and the summary).
struct FileInfo {
  std::string path;
  int dimensions = 0;           // as stored (a 4-D file with a 4th extent of 1 still says 4)
  std::vector<int64_t> extent;  // per stored dimension
  int components = 1;           // >1: vector/RGB pixels (rejected by the readers)
  std::string component_type;   // ITK's name: "short", "float", "double", "unsigned_char", ...
  int component_bytes = 0;      // bytes per stored component (2 for "short")
  Geometry geo;                 // first three dimensions (size 0 where an extent exceeds int)
  uint64_t buffer_bytes = 0;    // allocated by the read besides the voxels (MetaImage:
                                // CompressedDataSize)
};

// Reads the header only (no voxel buffer). Throws cuseg::Error naming the file when ITK cannot
// read it.
FileInfo read_info(const std::string& path);

// Memory guard of the readers. Every reader checks the header BEFORE any voxel buffer exists:
// the peak the read needs (read_peak_bytes) must fit max_bytes, otherwise it throws naming the
// file, the size the header asks for and the limit (`limit_name` says whose limit it is, e.g.
// "--max-memory"). max_bytes 0 means the machine's memory (machine_memory_bytes()).
struct ReadLimits {
  uint64_t max_bytes = 0;
  std::string limit_name;  // empty: "this machine's memory"
};
// Physical memory, lowered by RLIMIT_AS / RLIMIT_DATA and a cgroup v2 memory.max when set.
uint64_t machine_memory_bytes();
// Peak bytes of reading `voxels` voxels stored as `component_bytes`-byte values into a volume of
// `out_bytes` per voxel: ITK's output buffer (out_bytes; double for labels, float for images),
// ITK's buffer in the file's type when it converts (component_bytes), niftilib's own copy of the
// payload for NIfTI (component_bytes again) and the Volume handed back (result_bytes). A double,
// so absurd headers (2^31 per axis) neither overflow nor wrap.
double read_peak_bytes(double voxels, int component_bytes, int out_bytes, int result_bytes,
                       bool nifti);

// Readers accept NIfTI (.nii, .nii.gz), NRRD (.nrrd, .nhdr), MetaImage (.mha, .mhd) and, for a
// directory, a DICOM series (the first series GDCM finds, or `series_uid`). What they accept:
// a 3-D scalar image (a 4-D file whose 4th extent is 1 counts as 3-D); every extent >= 1 and
// < 2^31; spacing finite and > 0; origin finite; an orthonormal direction matrix (within 1e-3,
// see image_io.cpp); a read that fits `limits`; for NIfTI, a header that niftilib would not
// silently repair (extents < 1, spacing 0 or NaN), a complete payload, and no <name>.nii next to
// a <name>.nii.gz (niftilib would read that file's voxels). Anything else throws an error naming
// the file and what was expected; the header checks come before any voxel buffer exists.
// NaN/Inf values are returned as stored, in every format.
Image read_image(const std::string& path, const ReadLimits& limits = {});
// The file extensions of those formats, ".nii.gz" before ".nii" (the first that a name ends
// with is its whole extension).
const std::vector<std::string>& image_extensions();
// The image extension `name` ends with (case-sensitive), "" when it is not an image file
// name. A name that is only an extension (".nii") has none.
std::string image_extension(const std::string& name);
// Labels may be stored as any numeric type: every value must be an exact integer in [0, 255]
// (otherwise: error naming the file, the offending value and its voxel index).
LabelMap read_label(const std::string& path, const ReadLimits& limits = {});
Image read_dicom_series(const std::string& dir, const std::string& series_uid = "",
                        const ReadLimits& limits = {});
std::vector<std::string> dicom_series_uids(const std::string& dir);
// The files of the series read_dicom_series(dir, series_uid) reads, in GDCM's order.
std::vector<std::string> dicom_series_files(const std::string& dir,
                                            const std::string& series_uid = "");
// The geometry checks of the readers (extents, spacing, origin, direction); throws naming `what`.
void check_geometry(const Geometry& g, const std::string& what);

// NaN/Inf stored in a NIfTI file. ITK's NIfTI reader (its bundled niftilib, nifti_read_buffer)
// silently replaces every non-finite float with 0 and fills a truncated file's missing voxels
// with 0. read_image / read_label therefore check every NIfTI file after ITK's read: a payload
// shorter than the header declares is an error, and NaN/Inf are written back into the result,
// so the values read are the values stored, in every format. This function is that check on its
// own, for callers who want the counts: it streams the file's float32/float64 payload (zlib,
// from the header's vox_offset), throws naming the file when it is not a single-file NIfTI-1/2,
// is truncated or its header is unusable. checked = false for integer datatypes (they cannot
// hold NaN). `first` is the linear index (i fastest) of the first bad voxel in `size`.
struct NonFiniteScan {
  bool checked = false;
  int64_t count = 0, nan = 0, first = -1;
  std::array<int, 3> size{0, 0, 0};
};
NonFiniteScan scan_nifti_nonfinite(const std::string& path);

enum class PixelType { Int16, Float32, UInt8 };
// Writes with the volume's geometry. The format follows the extension (.nii, .nii.gz, .nrrd,
// .mha, .mhd). Int16 rounds to nearest and throws if a value is outside int16 range.
void write_image(const Image& img, const std::string& path, PixelType type = PixelType::Float32);
void write_label(const LabelMap& lab, const std::string& path);
// Class probabilities (e.g. a softmax) as ONE 4-D NIfTI, dimensions (i, j, k, class) on the
// grid of classes[0] (all classes must share it), stored as scaled uint8: q = round(255 p),
// p clamped to [0, 1], with scl_slope = 1/255 and scl_inter = 0 in the header, so readers that
// apply the NIfTI scaling (nibabel, ITK, SimpleITK) get p back within 1/510. The 4th axis has
// spacing 1 and no orientation. `path` must end in .nii or .nii.gz. ITK reports such a file's
// component type as float (it applies the scaling); on disk it is uint8.
void write_probabilities(const std::vector<Image>& classes, const std::string& path);
// Reads such a file back: one Image per class, values q / 255 (the header's scaling applied).
std::vector<Image> read_probabilities(const std::string& path);

// Writes an int16 CT DICOM series (one file per k-slice, IM0000.dcm, ...) into `dir` with
// ImagePositionPatient / ImageOrientationPatient / PixelSpacing set from the geometry.
// DICOM slice stacks are right-handed (normal = row x column direction), so the direction
// must have determinant +1; reorient first otherwise.
void write_dicom_series(const Image& img, const std::string& dir);

// ---------------------------------------------------------------- orientation
// Orientation code of a geometry (nibabel convention, see the file comment): the letter of
// the dominant world component of each direction column.
std::string orientation_code(const Geometry& g);

// A pure index permutation + flips (no resampling) that takes an image to a target
// orientation; `original` is kept so the inverse restores voxels AND geometry exactly.
struct Reorientation {
  std::array<int, 3> perm{0, 1, 2};               // new axis a reads old axis perm[a]
  std::array<bool, 3> flip{false, false, false};  // new axis a runs backwards along it
  Geometry original;
  std::string from_code, to_code;
};
Reorientation plan_reorientation(const Geometry& g, const std::string& target = "RAS");
Geometry reoriented_geometry(const Reorientation& r);

template <class T>
Volume<T> reorient(const Volume<T>& in, const Reorientation& r);
template <class T>
Volume<T> reorient_back(const Volume<T>& in, const Reorientation& r);

// Convenience: to RAS for the model, and back to the file's orientation for output.
template <class T>
Volume<T> to_ras(const Volume<T>& in, Reorientation* r_out = nullptr) {
  Reorientation r = plan_reorientation(in.geo, "RAS");
  if (r_out) *r_out = r;
  return reorient(in, r);
}

}  // namespace data
}  // namespace cuseg
