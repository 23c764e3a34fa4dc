// The fused training-patch op: label-sampler centre + RandomAffine map + crop + gather.
//
// What it replaces (the reference chain, data/transforms.h + data/samplers.h): resample the
// whole preprocessed volume with RandomAffine (image trilinear padded with the image minimum,
// label nearest padded with 0), pad it to at least the patch (pad_to_patch: image
// `patch_pad`, label 0), draw a centre with the LabelSampler rule on the transformed label map,
// crop. Here nothing is resampled as a whole: each patch voxel o (an index of the padded output
// grid) is gathered from the ORIGINAL volume at G(o - pad_off), G being the output -> input
// index map of apply_affine (data::affine_index_map), with the same interpolation, border and
// pad rules as the chain. The centre is drawn from exactly the chain's distribution (see
// "Centre" below) without building the transformed label map.
//
// Coordinates are fixed point (Q.40 in int64): G and its inverse F are quantised once per visit
// on the host, so every coordinate is an exact integer computation, identical on the CPU and
// the GPU and identical whether computed directly or by stepping along a row. The chain works
// in double; the quantisation moves a coordinate by at most (|i| + |j| + |k| + 1) 2^-41 voxel
// (2^-41 per quantised entry), 3.3e-10 voxel for a 256 x 256 x 200 grid: labels differ from
// the chain only where the chain's coordinate lies within that distance of a rounding tie, and
// images by at most that distance times the local intensity step (tests/cpu/test_affine_patch).
//
// Interpolation arithmetic is double, written as the chain writes it
// (c = v0 * (1 - f) + v1 * f, then along y, then z) with explicit round-to-nearest operations
// (dmul/dadd below: __dmul_rn/__dadd_rn on the device, which nvcc never fuses into an FMA; plain
// operations on the host, whose file is compiled with -ffp-contract=off), so the CUDA kernel
// and the CPU twin produce bit-identical patches: labels and images exact (0 ulp).
//
// Centre (two stages, like data::LabelSampler): the label is chosen on the host
// (choose_patch_label, probabilities renormalised over the labels PRESENT in the valid centre
// region of the transformed map, which the presence op decides exactly); then the voxel is
// drawn uniformly among the valid centres o whose transformed label is that label, by rejection:
// - box mode (label 0, the pad label, and labels that fill >= 1/8 of their bounding box): a
//   candidate is uniform in a box R of the padded grid that contains every such o (the image of
//   the label's input bounding box under F, intersected with the valid region; for label 0 the
//   whole valid region, since padding is label 0 too); accepted when its label is the label.
// - list mode (sparse labels): a candidate is an input voxel x uniform in the list of the
//   label's voxels, then o uniform in a fixed-size box around F(x) that contains every output
//   voxel whose nearest input voxel is x; accepted when o is a valid centre and nearest(G(o))
//   is x. Each admissible o is reached from exactly one x, with probability
//   1 / (list length * box volume): uniform again.
// Accepting the first hit of a fixed candidate sequence (Philox counter = candidate number) is
// exactly uniform over the admissible set. After kMaxCentreCandidates misses (acceptance
// below ~1e-4 only) the presence op's witness (the first admissible voxel in scan order) is
// used instead and counted; tests bound how often that happens.
//
// Layout: volumes are i fastest (data::Volume, NCDHW's W); a patch is written i fastest into
// image_out (float or bf16) and label_out (uint8): one [1, D, H, W] slice of the batch tensor.
#pragma once
#include <cstdint>

#include "cuseg/core/philox.h"
#include "cuseg/kernels/bf16.h"
#include "cuseg/kernels/common.h"

namespace cuseg {

// ---------------------------------------------------------------- fixed point
constexpr int kFixBits = 40;
constexpr int64_t kFixOne = int64_t(1) << kFixBits;
constexpr int64_t kFixHalf = kFixOne / 2;
// Largest grid extent the fixed-point maps support: coordinates and the products m * index
// then stay far inside int64 (|m| < 2^43, index < 2^16).
constexpr int kAffinePatchMaxExtent = 65535;

// y = m x + t in Q.40, x an integer index triple (i, j, k); m row-major.
struct FixAffine {
  int64_t m[9];
  int64_t t[3];
};

CUSEG_HD int64_t fix_row(const FixAffine& a, int r, int64_t x, int64_t y, int64_t z) {
  return a.m[3 * r] * x + a.m[3 * r + 1] * y + a.m[3 * r + 2] * z + a.t[r];
}
// floor(c / 2^40) (written without relying on the sign behaviour of >>).
CUSEG_HD int64_t fix_floor(int64_t c) {
  return c >= 0 ? (c >> kFixBits) : -(((-c) + kFixOne - 1) >> kFixBits);
}
// ceil(c / 2^40).
CUSEG_HD int64_t fix_ceil(int64_t c) {
  return -fix_floor(-c);
}

// ITK's IsInsideBuffer along one axis: continuous index within [-0.5, n - 0.5].
CUSEG_HD bool fix_inside(int64_t c, int n) {
  return c >= -kFixHalf && c <= int64_t(n) * kFixOne - kFixHalf;
}
// Nearest neighbour as ITK (round half up), clamped to n - 1 (the chain's std::min(W - 1, ..)).
// c must be inside (fix_inside), so the result is >= 0.
CUSEG_HD int fix_nearest(int64_t c, int n) {
  const int64_t v = fix_floor(c + kFixHalf);
  return int(v < n - 1 ? v : n - 1);
}

// ---------------------------------------------------------------- exact arithmetic
// Round-to-nearest double operations that no compiler fuses into an FMA, so both sides
// compute the same bits.
CUSEG_HD double dmul(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}
CUSEG_HD double dadd(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dadd_rn(a, b);
#else
  return a + b;
#endif
}
CUSEG_HD double dsub(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dsub_rn(a, b);
#else
  return a - b;
#endif
}
// double -> float, round to nearest (the chain's T(double) cast).
CUSEG_HD float d2f(double v) {
#if defined(__CUDA_ARCH__)
  return __double2float_rn(v);
#else
  return float(v);
#endif
}

// ---------------------------------------------------------------- the stored volume
// How a subject's image is stored: value = stored (F32, BF16) or q * scale + offset (I16).
enum PatchStorage : int32_t { kStoreF32 = 0, kStoreBF16 = 1, kStoreI16 = 2 };
// The dtype of the image patches written.
enum PatchOutType : int32_t { kOutF32 = 0, kOutBF16 = 1 };

struct PatchSource {
  const void* image = nullptr;     // size[0] * size[1] * size[2] values, i fastest
  const uint8_t* label = nullptr;  // same grid
  int32_t storage = kStoreF32;
  double scale = 1.0, offset = 0.0;  // kStoreI16 only
  int32_t size[3] = {0, 0, 0};       // i, j, k
};

// The value the interpolation works on: the stored float (F32, BF16) or the integer q (I16,
// whose scale and offset are applied once to the interpolated result: the weights sum to one,
// so that is the same linear map, with 16 fewer operations per voxel).
template <int S>
CUSEG_HD double raw_value(const void* image, int64_t idx) {
  if (S == kStoreF32) return double(static_cast<const float*>(image)[idx]);
  if (S == kStoreBF16) return double(to_float(static_cast<const bf16*>(image)[idx]));
  return double(static_cast<const int16_t*>(image)[idx]);
}
template <int S>
CUSEG_HD double finish_value(const PatchSource& s, double raw) {
  return S == kStoreI16 ? dadd(dmul(raw, s.scale), s.offset) : raw;
}
// One stored voxel as a value (tables, the image minimum, tests).
CUSEG_HD double stored_value(const PatchSource& s, int64_t idx) {
  if (s.storage == kStoreF32) return finish_value<kStoreF32>(s, raw_value<kStoreF32>(s.image, idx));
  if (s.storage == kStoreBF16)
    return finish_value<kStoreBF16>(s, raw_value<kStoreBF16>(s.image, idx));
  return finish_value<kStoreI16>(s, raw_value<kStoreI16>(s.image, idx));
}

// Fraction of a fixed-point coordinate above its floor x0, as an exact double.
CUSEG_HD double fix_fraction(int64_t c, int64_t x0) {
  return double(c - x0 * kFixOne) * (1.0 / double(kFixOne));
}

// The chain's interpolation (data/transforms.cpp resample_affine): along x, then y, then z,
// each as a * (1 - f) + b * f. v = the 8 neighbours, x fastest (v[0] = (x0, y0, z0),
// v[1] = (x1, y0, z0), v[2] = (x0, y1, z0), ..., v[7] = (x1, y1, z1)).
CUSEG_HD double trilinear_mix(const double v[8], double fx, double fy, double fz) {
  const double gx = dsub(1.0, fx), gy = dsub(1.0, fy), gz = dsub(1.0, fz);
  const double c00 = dadd(dmul(v[0], gx), dmul(v[1], fx));
  const double c10 = dadd(dmul(v[2], gx), dmul(v[3], fx));
  const double c01 = dadd(dmul(v[4], gx), dmul(v[5], fx));
  const double c11 = dadd(dmul(v[6], gx), dmul(v[7], fx));
  const double c0 = dadd(dmul(c00, gy), dmul(c10, fy));
  const double c1 = dadd(dmul(c01, gy), dmul(c11, fy));
  return dadd(dmul(c0, gz), dmul(c1, fz));
}

// The chain's trilinear sample: neighbours clamped to the grid, `pad` outside
// [-0.5, n - 0.5] on any axis.
template <int S>
CUSEG_HD double trilinear_fix(const PatchSource& s, int64_t cx, int64_t cy, int64_t cz,
                              double pad) {
  const int W = s.size[0], H = s.size[1], D = s.size[2];
  if (!fix_inside(cx, W) || !fix_inside(cy, H) || !fix_inside(cz, D)) return pad;
  const int64_t x0 = fix_floor(cx), y0 = fix_floor(cy), z0 = fix_floor(cz);
  auto cl = [](int64_t v, int n) { return v < 0 ? 0 : (v >= n ? n - 1 : int(v)); };
  const int xa = cl(x0, W), xb = cl(x0 + 1, W), ya = cl(y0, H), yb = cl(y0 + 1, H);
  const int za = cl(z0, D), zb = cl(z0 + 1, D);
  const int64_t pa = int64_t(za) * H, pb = int64_t(zb) * H;
  const int64_t r0 = (pa + ya) * W, r1 = (pa + yb) * W, r2 = (pb + ya) * W, r3 = (pb + yb) * W;
  const double v[8] = {raw_value<S>(s.image, r0 + xa), raw_value<S>(s.image, r0 + xb),
                       raw_value<S>(s.image, r1 + xa), raw_value<S>(s.image, r1 + xb),
                       raw_value<S>(s.image, r2 + xa), raw_value<S>(s.image, r2 + xb),
                       raw_value<S>(s.image, r3 + xa), raw_value<S>(s.image, r3 + xb)};
  return finish_value<S>(
      s, trilinear_mix(v, fix_fraction(cx, x0), fix_fraction(cy, y0), fix_fraction(cz, z0)));
}

// ---------------------------------------------------------------- one visit
// A subject visit: one random affine shared by the visit's patches (torchio's Queue transforms
// a subject once per visit and samples all its patches from that one transformed volume).
constexpr int kMaxPatchLabels = 8;
enum PatchLabelMode : int32_t { kLabelBox = 0, kLabelList = 1 };

struct PatchLabel {
  int32_t label = 0;
  int32_t mode = kLabelBox;
  // Box mode: candidate box R in the padded output grid (len 0 on an axis: empty), and the
  // presence scan's stride through it (coprime with its volume: every voxel once, spread out,
  // so a label that fills part of R is usually found within a few steps).
  int32_t lo[3] = {0, 0, 0}, len[3] = {0, 0, 0};
  int64_t scan_stride = 1;
  // List mode: linear input indices (i fastest) of every voxel with this label, and the box
  // around F(x): per axis nbox voxels from ceil(F(x) - reach) (reach in Q.40).
  const int32_t* list = nullptr;
  int64_t list_len = 0;
  int64_t reach[3] = {0, 0, 0};
  int32_t nbox[3] = {1, 1, 1};
};

struct PatchVisit {
  PatchSource src;
  FixAffine out_to_in;  // G: unpadded output index -> input continuous index
  FixAffine in_to_out;  // F = G^-1 (list-mode candidate boxes only)
  int32_t out[3];       // unpadded output grid (RandomAffine keeps the input grid)
  int32_t pad_off[3];   // padded index = unpadded index + pad_off (pad_to_patch's ceil(diff/2))
  int32_t grid[3];      // padded grid
  int32_t valid_lo[3], valid_hi[3];  // valid centres [lo, hi) in the padded grid
  double image_pad;  // outside the input (RandomAffine's default pad: the image minimum)
  double patch_pad;  // outside the unpadded grid (pad_to_patch's value)
  int32_t num_labels;
  PatchLabel labels[kMaxPatchLabels];
  PhiloxStream stream;  // seed, epoch, rank
};

// Label of padded-grid voxel o after the transform (0 in either padding).
CUSEG_HD int transformed_label(const PatchVisit& v, int o0, int o1, int o2) {
  const int u0 = o0 - v.pad_off[0], u1 = o1 - v.pad_off[1], u2 = o2 - v.pad_off[2];
  if (u0 < 0 || u1 < 0 || u2 < 0 || u0 >= v.out[0] || u1 >= v.out[1] || u2 >= v.out[2]) return 0;
  const int64_t cx = fix_row(v.out_to_in, 0, u0, u1, u2);
  const int64_t cy = fix_row(v.out_to_in, 1, u0, u1, u2);
  const int64_t cz = fix_row(v.out_to_in, 2, u0, u1, u2);
  const int W = v.src.size[0], H = v.src.size[1], D = v.src.size[2];
  if (!fix_inside(cx, W) || !fix_inside(cy, H) || !fix_inside(cz, D)) return 0;
  return v.src
      .label[(int64_t(fix_nearest(cz, D)) * H + fix_nearest(cy, H)) * W + fix_nearest(cx, W)];
}

CUSEG_HD bool in_valid(const PatchVisit& v, int o0, int o1, int o2) {
  return o0 >= v.valid_lo[0] && o0 < v.valid_hi[0] && o1 >= v.valid_lo[1] && o1 < v.valid_hi[1] &&
         o2 >= v.valid_lo[2] && o2 < v.valid_hi[2];
}

// List mode: is o (padded) a valid centre whose nearest input voxel is x = (x0, x1, x2)?
CUSEG_HD bool maps_to_voxel(const PatchVisit& v, int o0, int o1, int o2, int x0, int x1, int x2) {
  if (!in_valid(v, o0, o1, o2)) return false;
  const int u0 = o0 - v.pad_off[0], u1 = o1 - v.pad_off[1], u2 = o2 - v.pad_off[2];
  if (u0 < 0 || u1 < 0 || u2 < 0 || u0 >= v.out[0] || u1 >= v.out[1] || u2 >= v.out[2])
    return false;
  const int64_t cx = fix_row(v.out_to_in, 0, u0, u1, u2);
  const int64_t cy = fix_row(v.out_to_in, 1, u0, u1, u2);
  const int64_t cz = fix_row(v.out_to_in, 2, u0, u1, u2);
  const int W = v.src.size[0], H = v.src.size[1], D = v.src.size[2];
  if (!fix_inside(cx, W) || !fix_inside(cy, H) || !fix_inside(cz, D)) return false;
  return fix_nearest(cx, W) == x0 && fix_nearest(cy, H) == x1 && fix_nearest(cz, D) == x2;
}

// First padded-grid voxel of the list-mode box around input voxel x, per axis.
CUSEG_HD int list_box_start(const PatchVisit& v, const PatchLabel& L, int axis, int x0, int x1,
                            int x2) {
  const int64_t f = fix_row(v.in_to_out, axis, x0, x1, x2);
  return int(fix_ceil(f - L.reach[axis])) + v.pad_off[axis];
}

CUSEG_HD int64_t label_box_volume(const PatchLabel& L) {
  return int64_t(L.nbox[0]) * L.nbox[1] * L.nbox[2];
}

// Number of positions the presence scan visits for a label (box voxels, or list entries times
// box volume).
CUSEG_HD int64_t presence_scan_length(const PatchLabel& L) {
  if (L.mode == kLabelBox) return int64_t(L.len[0]) * L.len[1] * L.len[2];
  return L.list_len * label_box_volume(L);
}

// Scan position s of the presence op: the candidate voxel (padded grid) and whether it is an
// admissible centre of the label. Box: voxel (s * scan_stride) mod |R| of R in raster order (i
// fastest). List: list entry s / box volume, box offset s % box volume (i fastest).
CUSEG_HD bool presence_candidate(const PatchVisit& v, const PatchLabel& L, int64_t s, int o[3]) {
  if (L.mode == kLabelBox) {
    const int64_t r = (s * L.scan_stride) % presence_scan_length(L);
    o[0] = L.lo[0] + int(r % L.len[0]);
    o[1] = L.lo[1] + int((r / L.len[0]) % L.len[1]);
    o[2] = L.lo[2] + int(r / (int64_t(L.len[0]) * L.len[1]));
    return transformed_label(v, o[0], o[1], o[2]) == L.label;
  }
  const int64_t nb = label_box_volume(L);
  const int32_t x = L.list[s / nb];
  const int64_t r = s % nb;
  const int W = v.src.size[0], H = v.src.size[1];
  const int x0 = x % W, x1 = (x / W) % H, x2 = x / (W * H);
  o[0] = list_box_start(v, L, 0, x0, x1, x2) + int(r % L.nbox[0]);
  o[1] = list_box_start(v, L, 1, x0, x1, x2) + int((r / L.nbox[0]) % L.nbox[1]);
  o[2] = list_box_start(v, L, 2, x0, x1, x2) + int(r / (int64_t(L.nbox[0]) * L.nbox[1]));
  return maps_to_voxel(v, o[0], o[1], o[2], x0, x1, x2);
}

// ---------------------------------------------------------------- one patch
// Candidate k of patch `patch` (Philox counter blocks 2k and 2k + 1): the voxel it proposes and
// whether it is accepted.
constexpr uint32_t kMaxCentreCandidates = 1u << 16;

CUSEG_HD bool centre_candidate(const PatchVisit& v, const PatchLabel& L, uint32_t patch, uint32_t k,
                               int o[3]) {
  const Philox4 a = v.stream.draw(PhiloxPurpose::CentreCandidate, patch, 2 * k);
  if (L.mode == kLabelBox) {
    for (int ax = 0; ax < 3; ++ax)
      o[ax] = L.lo[ax] + int(philox_below(a.v[ax], uint32_t(L.len[ax])));
    return transformed_label(v, o[0], o[1], o[2]) == L.label;
  }
  const Philox4 b = v.stream.draw(PhiloxPurpose::CentreCandidate, patch, 2 * k + 1);
  const int32_t x = L.list[philox_below64(a.v[0], a.v[1], uint64_t(L.list_len))];
  const int W = v.src.size[0], H = v.src.size[1];
  const int x0 = x % W, x1 = (x / W) % H, x2 = x / (W * H);
  for (int ax = 0; ax < 3; ++ax)
    o[ax] = list_box_start(v, L, ax, x0, x1, x2) + int(philox_below(b.v[ax], uint32_t(L.nbox[ax])));
  return maps_to_voxel(v, o[0], o[1], o[2], x0, x1, x2);
}

struct PatchJob {
  uint32_t patch = 0;              // index of the patch in its epoch (the Philox item)
  int32_t label_slot = 0;          // entry of PatchVisit::labels chosen for the centre
  int32_t witness[3] = {0, 0, 0};  // the presence op's first admissible voxel of that label
  int32_t patch_size[3] = {0, 0, 0};
  void* image_out = nullptr;  // patch_size voxels, i fastest, float or bf16 (out_type)
  int32_t out_type = kOutF32;
  uint8_t* label_out = nullptr;
  // Optional: receives centre (i, j, k), candidates tried, and 1 when the witness was used.
  int32_t* centre_out = nullptr;
};

// Patch voxel p = (p0, p1, p2) of a patch whose first voxel is ini (padded grid): image value
// (before the output cast) and label.
template <int S>
CUSEG_HD void gather_voxel(const PatchVisit& v, const int ini[3], int p0, int p1, int p2,
                           double* value, uint8_t* label) {
  const int u0 = ini[0] + p0 - v.pad_off[0], u1 = ini[1] + p1 - v.pad_off[1],
            u2 = ini[2] + p2 - v.pad_off[2];
  if (u0 < 0 || u1 < 0 || u2 < 0 || u0 >= v.out[0] || u1 >= v.out[1] || u2 >= v.out[2]) {
    *value = v.patch_pad;
    *label = 0;
    return;
  }
  const int64_t cx = fix_row(v.out_to_in, 0, u0, u1, u2);
  const int64_t cy = fix_row(v.out_to_in, 1, u0, u1, u2);
  const int64_t cz = fix_row(v.out_to_in, 2, u0, u1, u2);
  *value = trilinear_fix<S>(v.src, cx, cy, cz, v.image_pad);
  const int W = v.src.size[0], H = v.src.size[1], D = v.src.size[2];
  *label = (fix_inside(cx, W) && fix_inside(cy, H) && fix_inside(cz, D))
               ? v.src.label[(int64_t(fix_nearest(cz, D)) * H + fix_nearest(cy, H)) * W +
                             fix_nearest(cx, W)]
               : uint8_t(0);
}

CUSEG_HD void store_patch_value(void* out, int32_t out_type, int64_t idx, double value) {
  const float f = d2f(value);
  if (out_type == kOutBF16)
    static_cast<bf16*>(out)[idx] = to_bf16(f);  // kernels/bf16.h: RNE, as bf16 tensors store
  else
    static_cast<float*>(out)[idx] = f;
}

// ---------------------------------------------------------------- launchers
// Presence: for each label of the visit, present[l] = 1 when some valid centre of the padded
// grid has that label after the transform, and witness[3l..3l+2] = the first such voxel in
// scan order (presence_candidate); present[l] = 0 and witness (-1, -1, -1) otherwise.
void affine_patch_presence_cpu(const PatchVisit& v, uint8_t* present, int32_t* witness);
// The patch: centre (candidates 0, 1, ... until one is accepted, else the witness), then the
// gather of patch_size voxels from ini = centre - patch_size / 2 into the job's outputs.
// No OpenMP inside: callers run one patch per worker thread.
void affine_patch_cpu(const PatchVisit& v, const PatchJob& job);

#if CUSEG_HAVE_CUDA
// Device versions (the visit's pointers are device pointers). present / witness: device
// arrays of v.num_labels / 3 * v.num_labels entries.
void affine_patch_presence_cuda(const PatchVisit& v, uint8_t* present, int32_t* witness, Stream s);
// One kernel: every block draws the (same) centre, then gathers its share of the patch.
void affine_patch_cuda(const PatchVisit& v, const PatchJob& job, Stream s);
#endif

}  // namespace cuseg
