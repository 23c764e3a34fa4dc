// CUDA twin of kernels/affine_patch_cpu.cpp (semantics: kernels/affine_patch.h). Every
// decision comes from the header's CUSEG_HD functions, so a patch is bit-identical to the CPU
// twin's: same candidates (Philox counters), same fixed-point coordinates, same
// round-to-nearest double operations (__dmul_rn/__dadd_rn are never contracted into FMAs).
#include <climits>

#include "cuseg/core/check.h"
#include "cuseg/kernels/affine_patch.h"
#include "cuseg/kernels/cuda_launch.cuh"

namespace cuseg {

namespace {

constexpr int kPresenceThreads = 256;
constexpr int kPresencePerThread = 4;  // scan positions per thread per round
constexpr int kPatchThreads = 256;
constexpr int kVoxelsPerBlock = 2048;  // gather share of one block (8 voxels per thread)

// One block per label: the scan runs in rounds of kPresenceThreads * kPresencePerThread
// positions, in order; the first round with a hit ends it and the smallest hit position of
// that round is the witness, the same position the CPU twin's sequential scan stops at.
__global__ void presence_kernel(PatchVisit v, uint8_t* present, int32_t* witness) {
  const int l = blockIdx.x;
  const PatchLabel& L = v.labels[l];
  const int64_t n = presence_scan_length(L);
  __shared__ unsigned long long first;
  if (threadIdx.x == 0) first = ULLONG_MAX;
  __syncthreads();
  const int64_t round = int64_t(kPresenceThreads) * kPresencePerThread;
  for (int64_t base = 0; base < n; base += round) {
    for (int j = 0; j < kPresencePerThread; ++j) {
      const int64_t s = base + int64_t(j) * kPresenceThreads + threadIdx.x;
      int o[3];
      if (s < n && presence_candidate(v, L, s, o)) atomicMin(&first, (unsigned long long)s);
    }
    __syncthreads();
    const bool done = first != ULLONG_MAX;
    __syncthreads();  // nobody writes `first` again before everyone has read it
    if (done) break;
  }
  if (threadIdx.x == 0) {
    if (first == ULLONG_MAX) {
      present[l] = 0;
      witness[3 * l] = witness[3 * l + 1] = witness[3 * l + 2] = -1;
    } else {
      int o[3];
      presence_candidate(v, L, int64_t(first), o);
      present[l] = 1;
      witness[3 * l] = o[0];
      witness[3 * l + 1] = o[1];
      witness[3 * l + 2] = o[2];
    }
  }
}

// Warp 0 of every block: candidates k = 32 r + lane in rounds r; the lowest accepted lane of
// the first round with any acceptance is candidate number min k, as on the CPU.
__device__ void warp_centre(const PatchVisit& v, const PatchJob& job, int* centre, int* tried,
                            int* fallback) {
  const PatchLabel& L = v.labels[job.label_slot];
  const int lane = threadIdx.x & 31;
  for (uint32_t base = 0; base < kMaxCentreCandidates; base += 32) {
    int o[3];
    const bool ok = centre_candidate(v, L, job.patch, base + uint32_t(lane), o);
    const unsigned mask = __ballot_sync(0xffffffffu, ok);
    if (mask) {
      const int winner = __ffs(int(mask)) - 1;
      const int c0 = __shfl_sync(0xffffffffu, o[0], winner);
      const int c1 = __shfl_sync(0xffffffffu, o[1], winner);
      const int c2 = __shfl_sync(0xffffffffu, o[2], winner);
      if (lane == 0) {
        centre[0] = c0;
        centre[1] = c1;
        centre[2] = c2;
        *tried = int(base) + winner + 1;
        *fallback = 0;
      }
      return;
    }
  }
  if (lane == 0) {
    centre[0] = job.witness[0];
    centre[1] = job.witness[1];
    centre[2] = job.witness[2];
    *tried = int(kMaxCentreCandidates);
    *fallback = 1;
  }
}

template <int S>
__global__ void __launch_bounds__(kPatchThreads)
    patch_kernel(PatchVisit v, PatchJob job, int64_t total) {
  __shared__ int centre[3];
  __shared__ int tried, fallback;
  if (threadIdx.x < 32) warp_centre(v, job, centre, &tried, &fallback);
  __syncthreads();
  const int P0 = job.patch_size[0], P1 = job.patch_size[1], P2 = job.patch_size[2];
  const int ini[3] = {centre[0] - P0 / 2, centre[1] - P1 / 2, centre[2] - P2 / 2};
  if (blockIdx.x == 0 && threadIdx.x == 0 && job.centre_out) {
    job.centre_out[0] = centre[0];
    job.centre_out[1] = centre[1];
    job.centre_out[2] = centre[2];
    job.centre_out[3] = tried;
    job.centre_out[4] = fallback;
  }
  const int64_t begin = int64_t(blockIdx.x) * kVoxelsPerBlock;
  const int64_t end = begin + kVoxelsPerBlock < total ? begin + kVoxelsPerBlock : total;
  // A patch has fewer than 2^31 voxels (checked by the launcher): 32-bit index maths.
  for (int64_t q = begin + threadIdx.x; q < end; q += kPatchThreads) {
    const int qi = int(q);
    const int p0 = qi % P0, p1 = (qi / P0) % P1, p2 = qi / (P0 * P1);
    double value;
    uint8_t label;
    gather_voxel<S>(v, ini, p0, p1, p2, &value, &label);
    store_patch_value(job.image_out, job.out_type, q, value);
    job.label_out[q] = label;
  }
}

}  // namespace

void affine_patch_presence_cuda(const PatchVisit& v, uint8_t* present, int32_t* witness, Stream s) {
  CUSEG_CHECK(v.num_labels >= 0 && v.num_labels <= kMaxPatchLabels,
              "affine_patch: " << v.num_labels << " labels (at most " << kMaxPatchLabels << ")");
  if (v.num_labels == 0) return;
  presence_kernel<<<v.num_labels, kPresenceThreads, 0, cu(s)>>>(v, present, witness);
  CUSEG_LAUNCH_CHECK();
}

void affine_patch_cuda(const PatchVisit& v, const PatchJob& job, Stream s) {
  CUSEG_CHECK(job.label_slot >= 0 && job.label_slot < v.num_labels,
              "affine_patch: label slot " << job.label_slot << " of " << v.num_labels);
  const int64_t total = int64_t(job.patch_size[0]) * job.patch_size[1] * job.patch_size[2];
  if (total == 0) return;
  CUSEG_CHECK(total < INT_MAX, "affine_patch: patch of " << total << " voxels is too large");
  const int64_t blocks = (total + kVoxelsPerBlock - 1) / kVoxelsPerBlock;
  switch (v.src.storage) {
    case kStoreF32:
      patch_kernel<kStoreF32><<<unsigned(blocks), kPatchThreads, 0, cu(s)>>>(v, job, total);
      break;
    case kStoreBF16:
      patch_kernel<kStoreBF16><<<unsigned(blocks), kPatchThreads, 0, cu(s)>>>(v, job, total);
      break;
    case kStoreI16:
      patch_kernel<kStoreI16><<<unsigned(blocks), kPatchThreads, 0, cu(s)>>>(v, job, total);
      break;
    default:
      CUSEG_CHECK(false, "affine_patch: unknown storage " << v.src.storage);
  }
  CUSEG_LAUNCH_CHECK();
}

}  // namespace cuseg
