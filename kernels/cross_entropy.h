// Fused weighted softmax cross-entropy (PyTorch CrossEntropyLoss(weight=w), reduction mean):
//   loss = sum_v w[y_v] * (logsumexp(x_v) - x_v[y_v]) / sum_v w[y_v]
//   dloss/dx_v[k] = w[y_v] / sum_v w[y_v] * (softmax(x_v)[k] - [k == y_v])
// over every voxel v of the batch. The normaliser sum_v w[y_v] comes from a class histogram
// of the labels (1 byte per voxel, cheap), so one pass over the logits yields both the loss
// terms and the gradient. The loss sum is reduced deterministically: fixed-size chunks of
// kCeChunk voxels, a double partial per chunk, partials summed in chunk order (CPU and CUDA
// use the same chunking, so the result does not depend on thread count).
#pragma once
#include <cmath>
#include <cstdint>

#include "cuseg/kernels/bf16.h"
#include "cuseg/kernels/common.h"

namespace cuseg {

constexpr int kCeMaxClasses = 16;
constexpr int64_t kCeChunk = 4096;

// One voxel: logits x[k * cs] for k < K, label y. Returns w_y * (lse - x_y); when g is not
// null writes g[k * cs] = gscale * w_y * (p_k - [k == y]). T: float, or bf16 for the
// mixed-precision path (logits read as stored, every step in fp32, the gradient rounded once
// to bf16 when g is bf16).
template <class T>
CUSEG_HD float ce_voxel(const T* x, int64_t cs, int K, int y, float wy, float gscale, T* g) {
  // log-softmax as (x - max) - log(sum exp(x - max)), as PyTorch: forming lse = max + log(sum)
  // first would round it to float32 spacing at |max| and lose p - 1 for confident voxels.
  float mx = to_float(x[0]);
  for (int k = 1; k < K; ++k) mx = fmaxf(mx, to_float(x[k * cs]));
  float se = 0.f;
  for (int k = 0; k < K; ++k) se += expf(to_float(x[k * cs]) - mx);
  const float ls = logf(se);
  if (g) {
    const float a = gscale * wy;
    for (int k = 0; k < K; ++k)
      store(g[k * cs], a * (expf((to_float(x[k * cs]) - mx) - ls) - (k == y ? 1.f : 0.f)));
  }
  return wy * (ls - (to_float(x[y * cs]) - mx));
}

// Index of the largest of x[k * cs], k < K; the first maximum wins ties (torch.argmax).
template <class T>
CUSEG_HD int argmax_voxel(const T* x, int64_t cs, int K) {
  int best = 0;
  float bv = to_float(x[0]);
  for (int k = 1; k < K; ++k)
    if (to_float(x[k * cs]) > bv) {
      bv = to_float(x[k * cs]);
      best = k;
    }
  return best;
}

struct CeArgs {
  Vol logits;             // N x K x D x H x W
  const uint8_t* labels;  // N x D x H x W packed
  const float* weights;   // K
  float gscale;           // 1 / sum_v w[y_v]
  Vol grad;               // like logits; grad.p == nullptr: loss only
};

// The mixed-precision path: logits bf16 channels-last, a channel slice [0, K) of the network's
// output padded to a multiple of 8 channels (logits.cs = 8 for 3 classes; the padded channels
// are never read), gradient written in the same layout (grad.p == nullptr: loss only); the
// padded channels of grad are not written (the caller keeps them zero). Same chunking, same
// double partial sums as CeArgs: only the element reads and the gradient's rounding differ.
struct CeArgsCL {
  VolCL<const bf16> logits;
  const uint8_t* labels;  // N x D x H x W packed
  const float* weights;   // K
  float gscale;           // 1 / sum_v w[y_v]
  VolCL<bf16> grad;
};

// Class histogram of labels (n voxels); returns false if a label is >= K (first bad value
// in *bad).
bool label_histogram_cpu(const uint8_t* labels, int64_t n, int K, int64_t* counts, int* bad);
// Returns the un-normalised sum of w_y * (lse - x_y) (divide by sum w for the mean).
double cross_entropy_cpu(const CeArgs& a);

double cross_entropy_cl_cpu(const CeArgsCL& a);

// Per-voxel argmax over channels (first maximum wins, as torch.argmax).
void argmax_channels_cpu(const Vol& logits, uint8_t* labels);
void argmax_channels_cl_cpu(const VolCL<const bf16>& logits, uint8_t* labels);

// Device scratch (caller-provided, any alignment the allocator gives >= 8 bytes) of the CUDA
// launchers below: 256 64-bit counters for the histogram; one double per chunk plus the total
// for the loss.
constexpr size_t kLabelHistogramWorkspaceBytes = 256 * sizeof(unsigned long long);
inline size_t cross_entropy_workspace_bytes(int n, int64_t spatial) {
  const int64_t chunks = int64_t(n) * ((spatial + kCeChunk - 1) / kCeChunk);
  return size_t(chunks + 1) * sizeof(double);
}
inline size_t cross_entropy_workspace_bytes(const Vol& logits) {
  return cross_entropy_workspace_bytes(logits.n, logits.spatial());
}

#if CUSEG_HAVE_CUDA
// Histogram on the device; counts is a host array of K entries. Synchronises the stream.
// workspace: kLabelHistogramWorkspaceBytes of device memory.
bool label_histogram_cuda(const uint8_t* labels, int64_t n, int K, int64_t* counts, int* bad,
                          void* workspace, size_t workspace_bytes, Stream s);
// Loss sum (synchronises to read the scalar back; the gradient stays on the device).
// workspace: cross_entropy_workspace_bytes(a.logits) of device memory.
double cross_entropy_cuda(const CeArgs& a, void* workspace, size_t workspace_bytes, Stream s);
double cross_entropy_cl_cuda(const CeArgsCL& a, void* workspace, size_t workspace_bytes, Stream s);
void argmax_channels_cuda(const Vol& logits, uint8_t* labels, Stream s);
void argmax_channels_cl_cuda(const VolCL<const bf16>& logits, uint8_t* labels, Stream s);
#endif

}  // namespace cuseg
