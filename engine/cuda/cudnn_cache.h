// CudnnCache: cuDNN descriptors, chosen algorithms and the workspace of one CudaContext.
//
// - Tensor descriptors are cached by (n, c, d, h, w, batch stride): dims are always NCDHW
//   and a channel slice of a wider tensor (zero-copy concat) differs only in its batch
//   stride, which is described to cuDNN through the strides.
// - Algorithms are chosen once per problem key (input + output descriptor keys, kernel
//   size, direction) from cuDNN's heuristics (cudnnGet*Algorithm_v7: no timing runs, no
//   allocation) plus fixed fallbacks, by the rules of engine/conv_algo.h (exact-sum
//   algorithms only unless TF32 is allowed, deterministic first for backward, workspace
//   budget, run-time fallback on refusal, fusion tried along the list).
//   In deterministic mode (ContextOptions::deterministic, the default) only the candidates
//   cuDNN reports as deterministic are kept: none inside the budget is an error.
// - The workspace is one device-pool buffer, grown to the largest chosen algorithm's need
//   and never above the budget, zeroed when it grows (cuDNN may read parts of it it did not
//   write in this call; zeroed memory keeps compute-sanitizer's initcheck about our own
//   buffers). All use is ordered on the context's one stream.
// Only included by code built with CUSEG_HAVE_CUDA.
#pragma once
#include <cuda_runtime.h>
#include <cudnn.h>

#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "cuseg/engine/conv_algo.h"
#include "cuseg/engine/tensor.h"

namespace cuseg {

using TensorKey = std::array<int64_t, 6>;  // n, c, d, h, w, batch stride

// One convolution problem: its direction, a readable description and its algorithms.
struct ConvProblem {
  ConvDir dir = ConvDir::Fwd;
  std::string text;  // "2x8x12x10x9 -> 8 channels, k 3, batch strides 8640 / 8640"
  ConvAlgoChoice choice;
};

class CudnnCache {
 public:
  // `deterministic`: keep only algorithms cuDNN reports as deterministic (ContextOptions).
  CudnnCache(size_t budget, cudaStream_t stream, bool deterministic)
      : budget_(budget), stream_(stream), deterministic_(deterministic) {}
  ~CudnnCache();
  CudnnCache(const CudnnCache&) = delete;
  CudnnCache& operator=(const CudnnCache&) = delete;

  cudnnTensorDescriptor_t tensor(const Vol& v);
  cudnnTensorDescriptor_t bias(int c);                       // 1 x c x 1 x 1 x 1
  cudnnFilterDescriptor_t filter(int cout, int cin, int k);  // [cout, cin, k, k, k]
  cudnnConvolutionDescriptor_t conv(int k);                  // pad k/2, stride 1, dilation 1
  cudnnPoolingDescriptor_t maxpool2();                       // window 2, stride 2, no pad
  cudnnActivationDescriptor_t relu();

  // The problem's algorithm list (chosen on first use). x / y are the input / output of
  // the forward convolution (for BwdData, x is the input gradient).
  ConvProblem& problem(cudnnHandle_t h, ConvDir dir, const Vol& x, const Vol& y, int k);
  const std::map<std::vector<int64_t>, ConvProblem>& problems() const { return problems_; }

  // A device buffer of at least `bytes` (<= budget) from the device pool.
  void* workspace(size_t bytes);
  size_t budget() const { return budget_; }
  bool deterministic() const { return deterministic_; }
  // Whether TF32 tensor cores may be used for fp32 convolutions and GEMMs
  // (CUSEG_ALLOW_TF32=1; read once per process).
  static bool allow_tf32();

 private:
  size_t budget_;
  cudaStream_t stream_;
  bool deterministic_;
  std::map<TensorKey, cudnnTensorDescriptor_t> tensors_;
  std::map<int, cudnnTensorDescriptor_t> biases_;
  std::map<std::array<int, 3>, cudnnFilterDescriptor_t> filters_;
  std::map<int, cudnnConvolutionDescriptor_t> convs_;
  cudnnPoolingDescriptor_t pool_ = nullptr;
  cudnnActivationDescriptor_t relu_ = nullptr;
  std::map<std::vector<int64_t>, ConvProblem> problems_;
  Tensor workspace_;
};

}  // namespace cuseg
