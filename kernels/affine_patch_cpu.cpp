// CPU twin of kernels/affine_patch.cu. Shares every decision with the CUDA kernel through the
// CUSEG_HD functions of kernels/affine_patch.h; this file only orders the loops. It is compiled
// with -ffp-contract=off (CMakeLists.txt) so no host compiler fuses the interpolation's
// multiply-adds: the patches are bit-identical to the kernel's.
#include <algorithm>

#include "cuseg/core/check.h"
#include "cuseg/kernels/affine_patch.h"

namespace cuseg {

namespace {

void check_visit(const PatchVisit& v) {
  CUSEG_CHECK(v.src.image && v.src.label, "affine_patch: the visit has no volume");
  CUSEG_CHECK(v.num_labels >= 0 && v.num_labels <= kMaxPatchLabels,
              "affine_patch: " << v.num_labels << " labels (at most " << kMaxPatchLabels << ")");
}

// Centre of the job's patch (padded grid); stats: candidates tried, witness used.
void draw_centre(const PatchVisit& v, const PatchJob& job, int centre[3], int32_t* tried,
                 int32_t* fallback) {
  CUSEG_CHECK(job.label_slot >= 0 && job.label_slot < v.num_labels,
              "affine_patch: label slot " << job.label_slot << " of " << v.num_labels);
  const PatchLabel& L = v.labels[job.label_slot];
  for (uint32_t k = 0; k < kMaxCentreCandidates; ++k) {
    int o[3];
    if (centre_candidate(v, L, job.patch, k, o)) {
      std::copy(o, o + 3, centre);
      *tried = int32_t(k + 1);
      *fallback = 0;
      return;
    }
  }
  std::copy(job.witness, job.witness + 3, centre);
  *tried = int32_t(kMaxCentreCandidates);
  *fallback = 1;
}

}  // namespace

void affine_patch_presence_cpu(const PatchVisit& v, uint8_t* present, int32_t* witness) {
  check_visit(v);
  for (int l = 0; l < v.num_labels; ++l) {
    const PatchLabel& L = v.labels[l];
    const int64_t n = presence_scan_length(L);
    present[l] = 0;
    witness[3 * l] = witness[3 * l + 1] = witness[3 * l + 2] = -1;
    for (int64_t s = 0; s < n; ++s) {
      int o[3];
      if (presence_candidate(v, L, s, o)) {
        present[l] = 1;
        std::copy(o, o + 3, witness + 3 * l);
        break;
      }
    }
  }
}

namespace {

// The gather, row by row: stepping along i adds column 0 of G, the same integers as fix_row()
// at every voxel. Voxels whose 8 neighbours are all inside the grid take a path without the
// clamps (which are then identities: same operations, same bits as trilinear_fix).
template <int S>
void gather_patch(const PatchVisit& v, const PatchJob& job, const int ini[3]) {
  const int P0 = job.patch_size[0], P1 = job.patch_size[1], P2 = job.patch_size[2];
  const int W = v.src.size[0], H = v.src.size[1], D = v.src.size[2];
  const int64_t hi_x = int64_t(W - 1) * kFixOne, hi_y = int64_t(H - 1) * kFixOne,
                hi_z = int64_t(D - 1) * kFixOne;
  const int64_t plane = int64_t(W) * H;
  const uint8_t* lab = v.src.label;
  int64_t q = 0;
  for (int p2 = 0; p2 < P2; ++p2)
    for (int p1 = 0; p1 < P1; ++p1) {
      const int u1 = ini[1] + p1 - v.pad_off[1], u2 = ini[2] + p2 - v.pad_off[2];
      const bool row_in = u1 >= 0 && u2 >= 0 && u1 < v.out[1] && u2 < v.out[2];
      const int u0_first = ini[0] - v.pad_off[0];
      int64_t cx = fix_row(v.out_to_in, 0, u0_first, u1, u2);
      int64_t cy = fix_row(v.out_to_in, 1, u0_first, u1, u2);
      int64_t cz = fix_row(v.out_to_in, 2, u0_first, u1, u2);
      for (int p0 = 0; p0 < P0;
           ++p0, ++q, cx += v.out_to_in.m[0], cy += v.out_to_in.m[3], cz += v.out_to_in.m[6]) {
        const int u0 = u0_first + p0;
        double value;
        uint8_t label;
        if (!row_in || u0 < 0 || u0 >= v.out[0]) {
          value = v.patch_pad;
          label = 0;
        } else if (cx >= 0 && cy >= 0 && cz >= 0 && cx < hi_x && cy < hi_y && cz < hi_z) {
          const int64_t x0 = cx >> kFixBits, y0 = cy >> kFixBits, z0 = cz >> kFixBits;
          const int64_t fxq = cx - (x0 << kFixBits), fyq = cy - (y0 << kFixBits),
                        fzq = cz - (z0 << kFixBits);
          const int64_t r0 = (z0 * H + y0) * W + x0;
          const void* im = v.src.image;
          const double n8[8] = {raw_value<S>(im, r0),
                                raw_value<S>(im, r0 + 1),
                                raw_value<S>(im, r0 + W),
                                raw_value<S>(im, r0 + W + 1),
                                raw_value<S>(im, r0 + plane),
                                raw_value<S>(im, r0 + plane + 1),
                                raw_value<S>(im, r0 + plane + W),
                                raw_value<S>(im, r0 + plane + W + 1)};
          value = finish_value<S>(v.src, trilinear_mix(n8, double(fxq) * (1.0 / double(kFixOne)),
                                                       double(fyq) * (1.0 / double(kFixOne)),
                                                       double(fzq) * (1.0 / double(kFixOne))));
          // Nearest (round half up) = floor + (fraction >= 1/2); never clamped in here.
          label = lab[r0 + (fxq >= kFixHalf) + (fyq >= kFixHalf) * W + (fzq >= kFixHalf) * plane];
        } else {
          value = trilinear_fix<S>(v.src, cx, cy, cz, v.image_pad);
          label = (fix_inside(cx, W) && fix_inside(cy, H) && fix_inside(cz, D))
                      ? lab[(int64_t(fix_nearest(cz, D)) * H + fix_nearest(cy, H)) * W +
                            fix_nearest(cx, W)]
                      : uint8_t(0);
        }
        store_patch_value(job.image_out, job.out_type, q, value);
        job.label_out[q] = label;
      }
    }
}

}  // namespace

void affine_patch_cpu(const PatchVisit& v, const PatchJob& job) {
  check_visit(v);
  int centre[3] = {0, 0, 0};
  int32_t tried = 0, fallback = 0;
  draw_centre(v, job, centre, &tried, &fallback);
  const int ini[3] = {centre[0] - job.patch_size[0] / 2, centre[1] - job.patch_size[1] / 2,
                      centre[2] - job.patch_size[2] / 2};
  if (job.centre_out) {
    job.centre_out[0] = centre[0];
    job.centre_out[1] = centre[1];
    job.centre_out[2] = centre[2];
    job.centre_out[3] = tried;
    job.centre_out[4] = fallback;
  }
  switch (v.src.storage) {
    case kStoreF32:
      return gather_patch<kStoreF32>(v, job, ini);
    case kStoreBF16:
      return gather_patch<kStoreBF16>(v, job, ini);
    case kStoreI16:
      return gather_patch<kStoreI16>(v, job, ini);
  }
  CUSEG_CHECK(false, "affine_patch: unknown storage " << v.src.storage);
}

}  // namespace cuseg
