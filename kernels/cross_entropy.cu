// CUDA twin of kernels/cross_entropy_cpu.cpp: label histogram, fused weighted softmax
// cross-entropy (loss terms + logits gradient in one pass over the logits), argmax.
//
// Deterministic loss: the voxels of each batch element are cut into the same kCeChunk
// chunks as on the CPU; one block per chunk sums its voxels' terms in double (per-thread
// partial, then a fixed shared-memory tree), one partial per chunk; a single thread then
// adds the partials in chunk order, as the CPU does. No float atomics anywhere; the only
// atomics are the integer ones of the label histogram (exact, order-free).
// Host syncs: label_histogram_cuda and cross_entropy_cuda each read a result back
// (the class counts, the loss sum) and so synchronise the stream; nothing else here does.
#include <cuda_runtime.h>

#include "cuseg/core/check.h"
#include "cuseg/core/transfer_stats.h"
#include "cuseg/kernels/cross_entropy.h"
#include "cuseg/kernels/cuda_launch.cuh"

namespace cuseg {

namespace {

constexpr int kCeThreads = 256;

__global__ void label_histogram_kernel(const uint8_t* __restrict__ labels, int64_t n,
                                       unsigned long long* __restrict__ hist) {
  __shared__ unsigned int local[256];
  for (int i = threadIdx.x; i < 256; i += blockDim.x) local[i] = 0;
  __syncthreads();
  CUSEG_GRID_STRIDE(i, n) {
    atomicAdd(&local[labels[i]], 1u);
  }
  __syncthreads();
  for (int i = threadIdx.x; i < 256; i += blockDim.x)
    if (local[i]) atomicAdd(&hist[i], (unsigned long long)local[i]);
}

__global__ void cross_entropy_kernel(CeArgs a, int64_t chunks_per_n, double* __restrict__ partial) {
  const Vol& x = a.logits;
  const int64_t dhw = x.spatial();
  const int64_t t = blockIdx.x;
  const int n = int(t / chunks_per_n);
  const int64_t v0 = (t % chunks_per_n) * kCeChunk;
  const int64_t v1 = v0 + kCeChunk < dhw ? v0 + kCeChunk : dhw;
  const float* xn = x.p + n * x.sn;
  float* gn = a.grad.p ? a.grad.p + n * a.grad.sn : nullptr;
  const uint8_t* yn = a.labels + n * dhw;
  double s = 0;
  for (int64_t v = v0 + threadIdx.x; v < v1; v += blockDim.x) {
    const int y = yn[v];
    s += ce_voxel(xn + v, dhw, x.c, y, a.weights[y], a.gscale, gn ? gn + v : nullptr);
  }
  __shared__ double red[kCeThreads];
  red[threadIdx.x] = s;
  __syncthreads();
  for (int off = kCeThreads / 2; off > 0; off >>= 1) {
    if (int(threadIdx.x) < off) red[threadIdx.x] += red[threadIdx.x + off];
    __syncthreads();
  }
  if (threadIdx.x == 0) partial[t] = red[0];
}

// The bf16 channels-last twin (CeArgsCL): the same chunks, threads and reduction tree.
__global__ void cross_entropy_cl_kernel(CeArgsCL a, int64_t chunks_per_n,
                                        double* __restrict__ partial) {
  const VolCL<const bf16>& x = a.logits;
  const int64_t dhw = x.spatial();
  const int64_t t = blockIdx.x;
  const int n = int(t / chunks_per_n);
  const int64_t v0 = (t % chunks_per_n) * kCeChunk;
  const int64_t v1 = v0 + kCeChunk < dhw ? v0 + kCeChunk : dhw;
  const uint8_t* yn = a.labels + n * dhw;
  double s = 0;
  for (int64_t v = v0 + threadIdx.x; v < v1; v += blockDim.x) {
    const int y = yn[v];
    s += ce_voxel(x.at(n, v), 1, x.c, y, a.weights[y], a.gscale,
                  a.grad.p ? a.grad.at(n, v) : static_cast<bf16*>(nullptr));
  }
  __shared__ double red[kCeThreads];
  red[threadIdx.x] = s;
  __syncthreads();
  for (int off = kCeThreads / 2; off > 0; off >>= 1) {
    if (int(threadIdx.x) < off) red[threadIdx.x] += red[threadIdx.x + off];
    __syncthreads();
  }
  if (threadIdx.x == 0) partial[t] = red[0];
}

__global__ void argmax_cl_kernel(VolCL<const bf16> logits, uint8_t* __restrict__ labels,
                                 int64_t total) {
  const int64_t dhw = logits.spatial();
  CUSEG_GRID_STRIDE(i, total) {
    labels[i] = uint8_t(argmax_voxel(logits.at(int(i / dhw), i % dhw), 1, logits.c));
  }
}

// Partials in chunk order, one thread: the CPU's order.
__global__ void sum_in_order_kernel(const double* __restrict__ partial, int64_t count,
                                    double* out) {
  if (blockIdx.x == 0 && threadIdx.x == 0) {
    double total = 0;
    for (int64_t i = 0; i < count; ++i) total += partial[i];
    *out = total;
  }
}

__global__ void argmax_kernel(Vol logits, uint8_t* __restrict__ labels, int64_t total) {
  const int64_t dhw = logits.spatial();
  CUSEG_GRID_STRIDE(i, total) {
    const int64_t n = i / dhw, v = i % dhw;
    labels[i] = uint8_t(argmax_voxel(logits.p + n * logits.sn + v, dhw, logits.c));
  }
}

}  // namespace

bool label_histogram_cuda(const uint8_t* labels, int64_t n, int K, int64_t* counts, int* bad,
                          void* workspace, size_t workspace_bytes, Stream s) {
  CUSEG_CHECK(workspace_bytes >= kLabelHistogramWorkspaceBytes,
              "label histogram: workspace " << workspace_bytes << " bytes, needs "
                                            << kLabelHistogramWorkspaceBytes);
  auto* h = static_cast<unsigned long long*>(workspace);
  CUDA_CHECK(cudaMemsetAsync(h, 0, 256 * sizeof(unsigned long long), cu(s)));
  if (n > 0) {
    label_histogram_kernel<<<grid_for(n, 1024), kThreads, 0, cu(s)>>>(labels, n, h);
    CUSEG_LAUNCH_CHECK();
  }
  unsigned long long host[256];
  CUDA_CHECK(cudaMemcpyAsync(host, h, sizeof(host), cudaMemcpyDeviceToHost, cu(s)));
  count_transfer(TransferDirection::DeviceToHost, sizeof(host));
  CUDA_CHECK(cudaStreamSynchronize(cu(s)));
  for (int k = 0; k < K; ++k) counts[k] = int64_t(host[k]);
  for (int v = K; v < 256; ++v)
    if (host[v]) {
      *bad = v;
      return false;
    }
  return true;
}

double cross_entropy_cuda(const CeArgs& a, void* workspace, size_t workspace_bytes, Stream s) {
  const Vol& x = a.logits;
  const int64_t dhw = x.spatial();
  const int64_t chunks_per_n = (dhw + kCeChunk - 1) / kCeChunk;
  const int64_t chunks = int64_t(x.n) * chunks_per_n;
  if (chunks == 0) return 0.0;
  CUSEG_CHECK(workspace_bytes >= cross_entropy_workspace_bytes(x),
              "cross-entropy: workspace " << workspace_bytes << " bytes, needs "
                                          << cross_entropy_workspace_bytes(x));
  // partials, then 1 slot for the total.
  double* partial = static_cast<double*>(workspace);
  double* total = partial + chunks;
  cross_entropy_kernel<<<unsigned(chunks), kCeThreads, 0, cu(s)>>>(a, chunks_per_n, partial);
  CUSEG_LAUNCH_CHECK();
  sum_in_order_kernel<<<1, 1, 0, cu(s)>>>(partial, chunks, total);
  CUSEG_LAUNCH_CHECK();
  double host = 0;
  CUDA_CHECK(cudaMemcpyAsync(&host, total, sizeof(double), cudaMemcpyDeviceToHost, cu(s)));
  count_transfer(TransferDirection::DeviceToHost, sizeof(double));
  CUDA_CHECK(cudaStreamSynchronize(cu(s)));  // the one read-back of the training step's loss
  return host;
}

double cross_entropy_cl_cuda(const CeArgsCL& a, void* workspace, size_t workspace_bytes, Stream s) {
  const VolCL<const bf16>& x = a.logits;
  const int64_t dhw = x.spatial();
  const int64_t chunks_per_n = (dhw + kCeChunk - 1) / kCeChunk;
  const int64_t chunks = int64_t(x.n) * chunks_per_n;
  if (chunks == 0) return 0.0;
  CUSEG_CHECK(workspace_bytes >= cross_entropy_workspace_bytes(x.n, dhw),
              "cross-entropy: workspace " << workspace_bytes << " bytes, needs "
                                          << cross_entropy_workspace_bytes(x.n, dhw));
  double* partial = static_cast<double*>(workspace);
  double* total = partial + chunks;
  cross_entropy_cl_kernel<<<unsigned(chunks), kCeThreads, 0, cu(s)>>>(a, chunks_per_n, partial);
  CUSEG_LAUNCH_CHECK();
  sum_in_order_kernel<<<1, 1, 0, cu(s)>>>(partial, chunks, total);
  CUSEG_LAUNCH_CHECK();
  double host = 0;
  CUDA_CHECK(cudaMemcpyAsync(&host, total, sizeof(double), cudaMemcpyDeviceToHost, cu(s)));
  count_transfer(TransferDirection::DeviceToHost, sizeof(double));
  CUDA_CHECK(cudaStreamSynchronize(cu(s)));
  return host;
}

void argmax_channels_cl_cuda(const VolCL<const bf16>& logits, uint8_t* labels, Stream s) {
  const int64_t total = int64_t(logits.n) * logits.spatial();
  if (total == 0) return;
  argmax_cl_kernel<<<grid_for(total), kThreads, 0, cu(s)>>>(logits, labels, total);
  CUSEG_LAUNCH_CHECK();
}

void argmax_channels_cuda(const Vol& logits, uint8_t* labels, Stream s) {
  const int64_t total = int64_t(logits.n) * logits.spatial();
  if (total == 0) return;
  argmax_kernel<<<grid_for(total), kThreads, 0, cu(s)>>>(logits, labels, total);
  CUSEG_LAUNCH_CHECK();
}

}  // namespace cuseg
