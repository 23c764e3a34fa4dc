// CudnnCache: cuDNN descriptors, chosen algorithms and the workspace of one CudaContext.
//
// - Tensor descriptors are cached by (n, c, d, h, w, batch stride): dims are always NCDHW
//   and a channel slice of a wider tensor (zero-copy concat) differs only in its batch
//   stride, which is described to cuDNN through the strides.
// - Algorithms are chosen once per problem key (input + output descriptor keys, kernel
//   size, direction) from cuDNN's heuristics (cudnnGet*Algorithm_v7: no timing runs, no
//   allocation), keeping only candidates whose workspace fits the budget and, in
//   deterministic mode (the default), that cuDNN reports as deterministic. Every candidate is kept
//   in heuristic order: if the first is refused at execution (NOT_SUPPORTED / BAD_PARAM, e.g. for a
//   strided view), the next is tried and the one that ran is remembered.
// - The workspace is one device-pool buffer, grown to the largest chosen algorithm's need
//   and never above the budget. All use is ordered on the context's one stream.
// Only included by code built with CUSEG_HAVE_CUDA.
#pragma once
#include <cudnn.h>

#include <array>
#include <cstdint>
#include <map>
#include <vector>

#include "cuseg/engine/tensor.h"

namespace cuseg {

using TensorKey = std::array<int64_t, 6>;  // n, c, d, h, w, batch stride

struct AlgoChoice {
  std::vector<int> algos;     // cudnnConvolution{Fwd,BwdData,BwdFilter}Algo_t, best first
  std::vector<size_t> bytes;  // workspace per algorithm
  size_t current = 0;         // index of the one in use
  bool fused_ok = true;       // conv + bias + ReLU in one cudnnConvolutionBiasActivationForward
};

enum class ConvDir { Fwd = 0, BwdData = 1, BwdFilter = 2 };

class CudnnCache {
 public:
  // `deterministic`: keep only algorithms cuDNN reports as deterministic (ContextOptions).
  CudnnCache(size_t budget, bool deterministic) : budget_(budget), deterministic_(deterministic) {}
  ~CudnnCache();
  CudnnCache(const CudnnCache&) = delete;
  CudnnCache& operator=(const CudnnCache&) = delete;

  cudnnTensorDescriptor_t tensor(const Vol& v);
  cudnnTensorDescriptor_t bias(int c);                       // 1 x c x 1 x 1 x 1
  cudnnFilterDescriptor_t filter(int cout, int cin, int k);  // [cout, cin, k, k, k]
  cudnnConvolutionDescriptor_t conv(int k);                  // pad k/2, stride 1, dilation 1
  cudnnPoolingDescriptor_t maxpool2();                       // window 2, stride 2, no pad
  cudnnActivationDescriptor_t relu();

  // The algorithm list of one problem (chosen on first use).
  AlgoChoice& algos(cudnnHandle_t h, ConvDir dir, const Vol& x, const Vol& y, int k);

  // A device buffer of at least `bytes` (<= budget) from the device pool.
  void* workspace(size_t bytes);
  size_t budget() const { return budget_; }
  bool deterministic() const { return deterministic_; }
  // Whether TF32 tensor cores may be used for fp32 convolutions (CUSEG_ALLOW_TF32=1).
  static bool allow_tf32();

 private:
  size_t budget_;
  bool deterministic_;
  std::map<TensorKey, cudnnTensorDescriptor_t> tensors_;
  std::map<int, cudnnTensorDescriptor_t> biases_;
  std::map<std::array<int, 3>, cudnnFilterDescriptor_t> filters_;
  std::map<int, cudnnConvolutionDescriptor_t> convs_;
  cudnnPoolingDescriptor_t pool_ = nullptr;
  cudnnActivationDescriptor_t relu_ = nullptr;
  std::map<std::vector<int64_t>, AlgoChoice> algos_;
  Tensor workspace_;
};

}  // namespace cuseg
