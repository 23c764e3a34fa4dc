// cuDNN layers: conv3d forward / backward-data / backward-filter / backward-bias and
// max pooling, through the legacy (cuDNN 7-9) API, fp32, NCDHW with batch strides.
//
// Conventions (engine/ops.h): gx is OVERWRITTEN (beta = 0); gw and gb ACCUMULATE (beta = 1).
//
// Numerics: fp32 convolutions run with CUDNN_FMA_MATH (no TF32 tensor cores) and only with
// algorithms that sum products (no FFT / Winograd), so that the parity tests against the CPU
// reference hold exactly on integer inputs; CUSEG_ALLOW_TF32=1 switches to
// CUDNN_DEFAULT_MATH (TF32 allowed on Hopper, as PyTorch's default for cuDNN convs) and
// allows every algorithm. Algorithm choice, determinism and fallbacks: engine/conv_algo.h.
//
// Determinism (ContextOptions::deterministic, the default): only algorithms that cuDNN reports
// as CUDNN_DETERMINISTIC are kept (for the backward directions in practice ALGO_1 or its newer
// deterministic kin; ALGO_0 of both and BWD_FILTER_ALGO_3 use atomics). If none fits the
// workspace budget, that is an error naming the problem. Without deterministic mode the
// non-deterministic ones follow as fallbacks (engine/conv_algo.h).
// cudnnConvolutionBackwardBias is a plain reduction (not in cuDNN's list of
// non-reproducible routines).
//
// Fused conv + bias + ReLU: cudnnConvolutionBiasActivationForward computes
// y = relu(conv(x) + 0 * z + b) with z aliased to y (alpha2 = 0). cuDNN supports it only for
// some algorithm / layout combinations; a refusal moves the fused call to the next
// candidate algorithm, and only when every candidate refused does the problem run as
// conv + bias_relu_forward_cuda (kernels/elementwise.cu) for good.
//
// Max pooling uses CUDNN_POOLING_MAX_DETERMINISTIC with window 2, stride 2, no padding and
// CUDNN_PROPAGATE_NAN: a window holding a NaN gives NaN, as the CPU twin
// (kernels/maxpool3d.h) and PyTorch. Output extents are floor(n / 2) as the CPU. Tie rule:
// cuDNN does not document which element of a window receives the gradient when several
// equal the maximum; the CPU (and PyTorch) route it to the first in scan order.
// tests/cuda/test_parity.cpp checks ties explicitly (MaxPoolTies) so the device run records
// what cuDNN does. gx is zeroed before the backward so voxels outside every window (odd
// extents) are 0, as on the CPU.
#include "cuseg/engine/cuda/cudnn_ops.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "cuseg/core/check.h"
#include "cuseg/engine/cuda/cuda_check.h"
#include "cuseg/engine/cuda/cudnn_cache.h"
#include "cuseg/engine/cuda/runtime.h"
#include "cuseg/kernels/elementwise.h"

namespace cuseg {

namespace {

TensorKey key_of(const Vol& v) {
  return {v.n, v.c, v.d, v.h, v.w, v.sn};
}

// cuDNN 9 status codes come in families: 2xxx bad parameter, 3xxx not supported.
bool refused(cudnnStatus_t st) {
  const int s = int(st);
  return s == int(CUDNN_STATUS_NOT_SUPPORTED) || s == int(CUDNN_STATUS_BAD_PARAM) ||
         (s >= 2000 && s < 4000);
}

const float kOne = 1.f, kZero = 0.f;

}  // namespace

// ------------------------------------------------------------------------- CudnnCache

CudnnCache::~CudnnCache() {
  for (auto& kv : tensors_) cudnnDestroyTensorDescriptor(kv.second);
  for (auto& kv : biases_) cudnnDestroyTensorDescriptor(kv.second);
  for (auto& kv : filters_) cudnnDestroyFilterDescriptor(kv.second);
  for (auto& kv : convs_) cudnnDestroyConvolutionDescriptor(kv.second);
  if (pool_) cudnnDestroyPoolingDescriptor(pool_);
  if (relu_) cudnnDestroyActivationDescriptor(relu_);
}

bool CudnnCache::allow_tf32() {
  static const bool on = [] {
    const char* e = std::getenv("CUSEG_ALLOW_TF32");
    return e && e[0] == '1';
  }();
  return on;
}

cudnnTensorDescriptor_t CudnnCache::tensor(const Vol& v) {
  const TensorKey k = key_of(v);
  auto it = tensors_.find(k);
  if (it != tensors_.end()) return it->second;
  CUSEG_CHECK(v.n > 0 && v.c > 0 && v.d > 0 && v.h > 0 && v.w > 0,
              "cuDNN tensor with an empty extent " << v.n << "x" << v.c << "x" << v.d << "x" << v.h
                                                   << "x" << v.w);
  // cuDNN takes int dims/strides; a 5-D activation beyond 2^31 elements per batch element
  // is far outside this engine's sizes, but check rather than wrap.
  CUSEG_CHECK(v.sn < (int64_t(1) << 31), "cuDNN tensor batch stride " << v.sn << " overflows int");
  cudnnTensorDescriptor_t d;
  CUDNN_CHECK(cudnnCreateTensorDescriptor(&d));
  const int dims[5] = {v.n, v.c, v.d, v.h, v.w};
  const int strides[5] = {int(v.sn), int(v.spatial()), v.h * v.w, v.w, 1};
  CUDNN_CHECK(cudnnSetTensorNdDescriptor(d, CUDNN_DATA_FLOAT, 5, dims, strides));
  tensors_[k] = d;
  return d;
}

cudnnTensorDescriptor_t CudnnCache::bias(int c) {
  auto it = biases_.find(c);
  if (it != biases_.end()) return it->second;
  cudnnTensorDescriptor_t d;
  CUDNN_CHECK(cudnnCreateTensorDescriptor(&d));
  const int dims[5] = {1, c, 1, 1, 1};
  const int strides[5] = {c, 1, 1, 1, 1};
  CUDNN_CHECK(cudnnSetTensorNdDescriptor(d, CUDNN_DATA_FLOAT, 5, dims, strides));
  biases_[c] = d;
  return d;
}

cudnnFilterDescriptor_t CudnnCache::filter(int cout, int cin, int k) {
  const std::array<int, 3> key{cout, cin, k};
  auto it = filters_.find(key);
  if (it != filters_.end()) return it->second;
  cudnnFilterDescriptor_t d;
  CUDNN_CHECK(cudnnCreateFilterDescriptor(&d));
  const int dims[5] = {cout, cin, k, k, k};
  CUDNN_CHECK(cudnnSetFilterNdDescriptor(d, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, 5, dims));
  filters_[key] = d;
  return d;
}

cudnnConvolutionDescriptor_t CudnnCache::conv(int k) {
  auto it = convs_.find(k);
  if (it != convs_.end()) return it->second;
  cudnnConvolutionDescriptor_t d;
  CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&d));
  const int pad[3] = {k / 2, k / 2, k / 2}, stride[3] = {1, 1, 1}, dil[3] = {1, 1, 1};
  CUDNN_CHECK(cudnnSetConvolutionNdDescriptor(d, 3, pad, stride, dil, CUDNN_CROSS_CORRELATION,
                                              CUDNN_DATA_FLOAT));
  CUDNN_CHECK(cudnnSetConvolutionMathType(d, allow_tf32() ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH));
  convs_[k] = d;
  return d;
}

cudnnPoolingDescriptor_t CudnnCache::maxpool2() {
  if (pool_) return pool_;
  CUDNN_CHECK(cudnnCreatePoolingDescriptor(&pool_));
  const int win[3] = {2, 2, 2}, pad[3] = {0, 0, 0}, stride[3] = {2, 2, 2};
  // NaN propagates (a window holding a NaN gives NaN), as the CPU twin and PyTorch.
  CUDNN_CHECK(cudnnSetPoolingNdDescriptor(pool_, CUDNN_POOLING_MAX_DETERMINISTIC,
                                          CUDNN_PROPAGATE_NAN, 3, win, pad, stride));
  return pool_;
}

cudnnActivationDescriptor_t CudnnCache::relu() {
  if (relu_) return relu_;
  CUDNN_CHECK(cudnnCreateActivationDescriptor(&relu_));
  CUDNN_CHECK(
      cudnnSetActivationDescriptor(relu_, CUDNN_ACTIVATION_RELU, CUDNN_NOT_PROPAGATE_NAN, 0.0));
  return relu_;
}

void* CudnnCache::workspace(size_t bytes) {
  if (bytes == 0) return nullptr;
  CUSEG_CHECK(bytes <= budget_,
              "cuDNN workspace " << bytes << " B over the budget " << budget_ << " B");
  if (!workspace_.defined() || size_t(workspace_.numel()) < bytes) {
    // The old buffer returns to the pool; any later user is ordered after the queued work
    // on this context's single stream.
    workspace_ = Tensor::empty({int64_t(bytes)}, DType::U8, Device::CUDA);
    CUDA_CHECK(cudaMemsetAsync(workspace_.raw(), 0, bytes, stream_));
  }
  return workspace_.raw();
}

namespace {

// cuDNN's numbers are the ones engine/conv_algo.h names (its logic is tested without cuDNN).
static_assert(int(CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM) == conv_algo::kFwdImplicitGemm &&
                  int(CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM) ==
                      conv_algo::kFwdImplicitPrecompGemm &&
                  int(CUDNN_CONVOLUTION_FWD_ALGO_GEMM) == conv_algo::kFwdGemm &&
                  int(CUDNN_CONVOLUTION_FWD_ALGO_DIRECT) == conv_algo::kFwdDirect &&
                  int(CUDNN_CONVOLUTION_FWD_ALGO_FFT) == conv_algo::kFwdFft &&
                  int(CUDNN_CONVOLUTION_FWD_ALGO_FFT_TILING) == conv_algo::kFwdFftTiling &&
                  int(CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD) == conv_algo::kFwdWinograd &&
                  int(CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED) ==
                      conv_algo::kFwdWinogradNonfused,
              "cuDNN forward algorithm numbers");
static_assert(int(CUDNN_CONVOLUTION_BWD_DATA_ALGO_0) == conv_algo::kBwdData0 &&
                  int(CUDNN_CONVOLUTION_BWD_DATA_ALGO_1) == conv_algo::kBwdData1 &&
                  int(CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT) == conv_algo::kBwdDataFft &&
                  int(CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT_TILING) == conv_algo::kBwdDataFftTiling &&
                  int(CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD) == conv_algo::kBwdDataWinograd &&
                  int(CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD_NONFUSED) ==
                      conv_algo::kBwdDataWinogradNonfused,
              "cuDNN backward-data algorithm numbers");
static_assert(int(CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0) == conv_algo::kBwdFilter0 &&
                  int(CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1) == conv_algo::kBwdFilter1 &&
                  int(CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT) == conv_algo::kBwdFilterFft &&
                  int(CUDNN_CONVOLUTION_BWD_FILTER_ALGO_3) == conv_algo::kBwdFilter3 &&
                  int(CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD) ==
                      conv_algo::kBwdFilterWinograd &&
                  int(CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD_NONFUSED) ==
                      conv_algo::kBwdFilterWinogradNonfused &&
                  int(CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT_TILING) ==
                      conv_algo::kBwdFilterFftTiling,
              "cuDNN backward-filter algorithm numbers");

bool tensor_math_ok(cudnnMathType_t m) {
  return CudnnCache::allow_tf32() ||
         (m != CUDNN_TENSOR_OP_MATH && m != CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION);
}

// The descriptors of one convolution problem, named as in the forward direction: x input,
// w filter, y output (for backward-data, x is the input gradient; for backward-filter, w
// is the filter gradient).
struct ConvDescs {
  cudnnTensorDescriptor_t x;
  cudnnFilterDescriptor_t w;
  cudnnConvolutionDescriptor_t c;
  cudnnTensorDescriptor_t y;
};

// The three directions' heuristic and workspace queries behind one interface.
template <ConvDir D>
struct DirApi;
template <>
struct DirApi<ConvDir::Fwd> {
  using Perf = cudnnConvolutionFwdAlgoPerf_t;
  using Algo = cudnnConvolutionFwdAlgo_t;
  static constexpr int kCount = CUDNN_CONVOLUTION_FWD_ALGO_COUNT;
  static cudnnStatus_t heuristics(cudnnHandle_t h, const ConvDescs& d, int* n, Perf* p) {
    return cudnnGetConvolutionForwardAlgorithm_v7(h, d.x, d.w, d.c, d.y, kCount, n, p);
  }
  static cudnnStatus_t bytes(cudnnHandle_t h, const ConvDescs& d, Algo a, size_t* b) {
    return cudnnGetConvolutionForwardWorkspaceSize(h, d.x, d.w, d.c, d.y, a, b);
  }
};
template <>
struct DirApi<ConvDir::BwdData> {
  using Perf = cudnnConvolutionBwdDataAlgoPerf_t;
  using Algo = cudnnConvolutionBwdDataAlgo_t;
  static constexpr int kCount = CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT;
  static cudnnStatus_t heuristics(cudnnHandle_t h, const ConvDescs& d, int* n, Perf* p) {
    return cudnnGetConvolutionBackwardDataAlgorithm_v7(h, d.w, d.y, d.c, d.x, kCount, n, p);
  }
  static cudnnStatus_t bytes(cudnnHandle_t h, const ConvDescs& d, Algo a, size_t* b) {
    return cudnnGetConvolutionBackwardDataWorkspaceSize(h, d.w, d.y, d.c, d.x, a, b);
  }
};
template <>
struct DirApi<ConvDir::BwdFilter> {
  using Perf = cudnnConvolutionBwdFilterAlgoPerf_t;
  using Algo = cudnnConvolutionBwdFilterAlgo_t;
  static constexpr int kCount = CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT;
  static cudnnStatus_t heuristics(cudnnHandle_t h, const ConvDescs& d, int* n, Perf* p) {
    return cudnnGetConvolutionBackwardFilterAlgorithm_v7(h, d.x, d.y, d.c, d.w, kCount, n, p);
  }
  static cudnnStatus_t bytes(cudnnHandle_t h, const ConvDescs& d, Algo a, size_t* b) {
    return cudnnGetConvolutionBackwardFilterWorkspaceSize(h, d.x, d.y, d.c, d.w, a, b);
  }
};

// cuDNN's heuristic answers (usable ones, with their workspace and reported determinism),
// then the fixed fallbacks of engine/conv_algo.h.
template <ConvDir D>
std::vector<ConvAlgoCandidate> query_candidates(cudnnHandle_t h, const ConvDescs& d) {
  using Api = DirApi<D>;
  typename Api::Perf perf[Api::kCount];
  int n = 0;
  CUDNN_CHECK(Api::heuristics(h, d, &n, perf));
  std::vector<ConvAlgoCandidate> found;
  auto add = [&](int algo, bool det) {
    size_t b = 0;
    if (Api::bytes(h, d, typename Api::Algo(algo), &b) == CUDNN_STATUS_SUCCESS)
      found.push_back(ConvAlgoCandidate{algo, b, det});
  };
  for (int i = 0; i < n; ++i)
    if (perf[i].status == CUDNN_STATUS_SUCCESS && tensor_math_ok(perf[i].mathType))
      add(int(perf[i].algo), perf[i].determinism == CUDNN_DETERMINISTIC);
  for (const ConvAlgoCandidate& c : conv_fallback_algos(D)) add(c.algo, c.deterministic);
  return found;
}

std::string vol_str(const Vol& v) {
  return std::to_string(v.n) + "x" + std::to_string(v.c) + "x" + std::to_string(v.d) + "x" +
         std::to_string(v.h) + "x" + std::to_string(v.w);
}

AttemptResult classify(cudnnStatus_t st) {
  return st == CUDNN_STATUS_SUCCESS ? AttemptResult::Ok
         : refused(st)              ? AttemptResult::Refused
                                    : AttemptResult::Failed;
}

}  // namespace

ConvProblem& CudnnCache::problem(cudnnHandle_t h, ConvDir dir, const Vol& x, const Vol& y, int k) {
  std::vector<int64_t> key = {int64_t(dir), k};
  for (int64_t v : key_of(x)) key.push_back(v);
  for (int64_t v : key_of(y)) key.push_back(v);
  auto it = problems_.find(key);
  if (it != problems_.end()) return it->second;

  const ConvDescs d{tensor(x), filter(y.c, x.c, k), conv(k), tensor(y)};
  const std::vector<ConvAlgoCandidate> found =
      dir == ConvDir::Fwd       ? query_candidates<ConvDir::Fwd>(h, d)
      : dir == ConvDir::BwdData ? query_candidates<ConvDir::BwdData>(h, d)
                                : query_candidates<ConvDir::BwdFilter>(h, d);
  ConvProblem p;
  p.dir = dir;
  p.text = vol_str(x) + " -> " + std::to_string(y.c) + " channels, k " + std::to_string(k) +
           ", batch strides " + std::to_string(x.sn) + " / " + std::to_string(y.sn);
  p.choice.cands = order_conv_candidates(dir, found, budget_, !allow_tf32());
  if (deterministic_) {
    auto& c = p.choice.cands;
    c.erase(std::remove_if(c.begin(), c.end(),
                           [](const ConvAlgoCandidate& a) { return !a.deterministic; }),
            c.end());
    if (c.empty())
      CUSEG_THROW("no deterministic cuDNN conv3d "
                  << conv_dir_name(dir) << " algorithm fits the workspace budget of " << budget_
                  << " B for " << p.text
                  << ": raise the budget, or allow non-deterministic algorithms "
                     "(train.deterministic: false)");
  }
  CUSEG_CHECK(!p.choice.cands.empty(), "no cuDNN conv3d "
                                           << conv_dir_name(dir) << " algorithm for " << p.text
                                           << " within the workspace budget " << budget_ << " B");
  return problems_.emplace(key, std::move(p)).first->second;
}

// ------------------------------------------------------------------------- conv3d

namespace {

// Runs `call(algo, workspace, bytes)` along the problem's candidates from the last one that
// ran; remembers the one accepted. Throws when none is (naming every status) or on an error
// other than a refusal.
template <class F>
void run_plain(CudnnCache& cache, ConvProblem& pb, const char* what, F call) {
  ConvAlgoChoice& ch = pb.choice;
  std::string tried;
  cudnnStatus_t last = CUDNN_STATUS_SUCCESS;
  const size_t ran =
      try_conv_candidates(ch.cands, ch.plain, /*exhaust=*/false, [&](const ConvAlgoCandidate& c) {
        last = call(c.algo, cache.workspace(c.bytes), c.bytes);
        if (last != CUDNN_STATUS_SUCCESS)
          tried += std::string(tried.empty() ? "" : ", ") + conv_algo_name(pb.dir, c.algo) + ": " +
                   cudnnGetErrorString(last);
        return classify(last);
      });
  if (ran == kNoCandidate)
    ::cuseg::fail(cudnnGetErrorString(last),
                  (std::string(what) + " for " + pb.text + " (tried " + tried + ")").c_str(),
                  __func__, __FILE__, __LINE__);
  ch.plain_ran = true;
  if (take_nondeterminism_warning(ch, pb.dir, ran))
    std::fputs(nondeterminism_warning(pb.dir, ch.cands[ran], pb.text, cache.budget()).c_str(),
               stderr);
}

}  // namespace

void cudnn_conv3d_forward(CudaContext& ctx, const Tensor& x, const Tensor& w, const Tensor& b,
                          const Tensor& y, bool relu) {
  const Vol xv = x.vol(), yv = y.vol();
  const int k = int(w.dim(2));
  CudnnCache& c = ctx.cudnn_cache();
  cudnnHandle_t h = ctx.cudnn();
  cudnnTensorDescriptor_t xd = c.tensor(xv), yd = c.tensor(yv);
  cudnnFilterDescriptor_t wd = c.filter(yv.c, xv.c, k);
  cudnnConvolutionDescriptor_t cd = c.conv(k);
  ConvProblem& pb = c.problem(h, ConvDir::Fwd, xv, yv, k);
  ConvAlgoChoice& ch = pb.choice;

  if (relu && b.defined() && ch.fusion_possible()) {
    // y = relu(1 * conv(x) + 0 * z + b), z = y. A refusal moves fusion to the next
    // candidate; after the last, this problem runs unfused.
    cudnnStatus_t last = CUDNN_STATUS_SUCCESS;
    const size_t ran =
        try_conv_candidates(ch.cands, ch.fused, /*exhaust=*/true, [&](const ConvAlgoCandidate& a) {
          last = cudnnConvolutionBiasActivationForward(
              h, &kOne, xd, x.raw(), wd, w.raw(), cd, cudnnConvolutionFwdAlgo_t(a.algo),
              c.workspace(a.bytes), a.bytes, &kZero, yd, y.raw(), c.bias(yv.c), b.raw(), c.relu(),
              yd, y.raw());
          return classify(last);
        });
    if (ran != kNoCandidate) {
      ch.fused_ran = true;
      // CUSEG_SYNC_DEBUG=1 must localise a fault to this op, as every other op does.
      if (sync_debug()) CUDA_CHECK(cudaStreamSynchronize(ctx.stream()));
      return;
    }
    CUSEG_CHECK(!ch.fusion_possible(), "cudnnConvolutionBiasActivationForward for "
                                           << pb.text << ": " << cudnnGetErrorString(last));
  }
  run_plain(c, pb, "cudnnConvolutionForward", [&](int algo, void* ws, size_t bytes) {
    return cudnnConvolutionForward(h, &kOne, xd, x.raw(), wd, w.raw(), cd,
                                   cudnnConvolutionFwdAlgo_t(algo), ws, bytes, &kZero, yd, y.raw());
  });
  if (b.defined() || relu)
    bias_relu_forward_cuda(yv, b.defined() ? b.f32() : nullptr, relu, ctx.stream());
  if (sync_debug()) CUDA_CHECK(cudaStreamSynchronize(ctx.stream()));
}

void cudnn_conv3d_backward(CudaContext& ctx, const Tensor& x, const Tensor& w, const Tensor& gy,
                           const Tensor& gx, const Tensor& gw, const Tensor& gb) {
  const Vol xv = x.vol(), gyv = gy.vol();
  const int k = int(w.dim(2));
  CudnnCache& c = ctx.cudnn_cache();
  cudnnHandle_t h = ctx.cudnn();
  cudnnTensorDescriptor_t xd = c.tensor(xv), gyd = c.tensor(gyv);
  cudnnFilterDescriptor_t wd = c.filter(gyv.c, xv.c, k);
  cudnnConvolutionDescriptor_t cd = c.conv(k);

  if (gb.defined()) {
    CUSEG_CHECK(gb.numel() == gyv.c && gb.is_contiguous(),
                "conv3d bias grad " << shape_str(gb.shape()));
    CUDNN_CHECK(
        cudnnConvolutionBackwardBias(h, &kOne, gyd, gy.raw(), &kOne, c.bias(gyv.c), gb.raw()));
  }
  if (gw.defined()) {
    CUSEG_CHECK(gw.is_contiguous(), "conv3d weight grad must be contiguous");
    run_plain(c, c.problem(h, ConvDir::BwdFilter, xv, gyv, k), "cudnnConvolutionBackwardFilter",
              [&](int algo, void* ws, size_t bytes) {
                return cudnnConvolutionBackwardFilter(h, &kOne, xd, x.raw(), gyd, gy.raw(), cd,
                                                      cudnnConvolutionBwdFilterAlgo_t(algo), ws,
                                                      bytes, &kOne, wd, gw.raw());
              });
  }
  if (gx.defined()) {
    const Vol gxv = gx.vol();
    cudnnTensorDescriptor_t gxd = c.tensor(gxv);
    run_plain(c, c.problem(h, ConvDir::BwdData, gxv, gyv, k), "cudnnConvolutionBackwardData",
              [&](int algo, void* ws, size_t bytes) {
                return cudnnConvolutionBackwardData(h, &kOne, wd, w.raw(), gyd, gy.raw(), cd,
                                                    cudnnConvolutionBwdDataAlgo_t(algo), ws, bytes,
                                                    &kZero, gxd, gx.raw());
              });
  }
  if (sync_debug()) CUDA_CHECK(cudaStreamSynchronize(ctx.stream()));
}

std::vector<ConvAlgoUse> cudnn_conv_algorithms_used(CudaContext& ctx) {
  std::vector<ConvAlgoUse> out;
  for (const auto& kv : ctx.cudnn_cache().problems()) {
    const ConvProblem& p = kv.second;
    const ConvAlgoChoice& ch = p.choice;
    ConvAlgoUse u;
    u.dir = p.dir;
    u.problem = p.text;
    if (ch.plain_ran) {
      const ConvAlgoCandidate& a = ch.cands[ch.plain];
      u.plain = conv_algo_name(p.dir, a.algo);
      u.plain_deterministic = a.deterministic;
      u.sums_products = conv_algo_sums_products(p.dir, a.algo);
    }
    if (ch.fused_ran && ch.fusion_possible()) {
      u.fused = conv_algo_name(p.dir, ch.cands[ch.fused].algo);
      u.sums_products = u.sums_products && conv_algo_sums_products(p.dir, ch.cands[ch.fused].algo);
    } else if (!ch.fusion_possible()) {
      u.fused = "refused";
    }
    out.push_back(u);
  }
  return out;
}

// ------------------------------------------------------------------------- max pooling

void cudnn_maxpool3d_forward(CudaContext& ctx, const Tensor& x, const Tensor& y) {
  CudnnCache& c = ctx.cudnn_cache();
  CUDNN_CHECK(cudnnPoolingForward(ctx.cudnn(), c.maxpool2(), &kOne, c.tensor(x.vol()), x.raw(),
                                  &kZero, c.tensor(y.vol()), y.raw()));
  if (sync_debug()) CUDA_CHECK(cudaStreamSynchronize(ctx.stream()));
}

namespace {
// A packed copy of a batch-strided view (the tensor itself when already packed). The copy is
// a synchronous-API device-to-device copy on the legacy default stream, which is ordered
// with the context's blocking stream (engine/cuda/cuda_context.cpp).
Tensor packed(const Tensor& t) {
  if (t.is_contiguous()) return t;
  Tensor p = Tensor::empty(t.shape(), t.dtype(), t.device());
  p.copy_from(t);
  return p;
}
}  // namespace

void cudnn_maxpool3d_backward(CudaContext& ctx, const Tensor& x, const Tensor& y, const Tensor& gy,
                              const Tensor& gx) {
  CudnnCache& c = ctx.cudnn_cache();
  // cudnnPoolingBackward answers CUDNN_STATUS_BAD_PARAM when xDesc and dxDesc (or yDesc and
  // dyDesc) have different strides. The U-Net pools skip[l], a channel slice of the concat
  // buffer (batch-strided), while its gradient g_skip[l] is a packed tensor: every training
  // step would throw. A mismatched pair is therefore run on packed operands: x (and y / gy)
  // copied packed, the result computed into a packed gx and copied into gx when gx is a view.
  const bool x_ok = x.vol().sn == gx.vol().sn, y_ok = y.vol().sn == gy.vol().sn;
  const Tensor xs = x_ok ? x : packed(x);
  const Tensor ys = y_ok ? y : packed(y), gys = y_ok ? gy : packed(gy);
  const bool gx_direct = x_ok || gx.is_contiguous();
  const Tensor gxs = gx_direct ? gx : Tensor::empty(gx.shape(), DType::F32, Device::CUDA);
  const Vol gxv = gxs.vol();
  // Zero gx first (on the stream): voxels outside every window of an odd extent get no
  // gradient from cuDNN, and must read 0 as on the CPU. The batch pitch of a concat slice
  // can exceed cudaMemset2D's 2 GiB limit: cuda_memset_2d_async splits such rows.
  cuda_memset_2d_async(gxv.p, size_t(gxv.sn) * sizeof(float), 0,
                       size_t(gxv.per_batch()) * sizeof(float), size_t(gxv.n), ctx.stream());
  CUDNN_CHECK(cudnnPoolingBackward(ctx.cudnn(), c.maxpool2(), &kOne, c.tensor(ys.vol()), ys.raw(),
                                   c.tensor(gys.vol()), gys.raw(), c.tensor(xs.vol()), xs.raw(),
                                   &kZero, c.tensor(gxv), gxs.raw()));
  // Ordered after the pooling kernel: the legacy default stream waits for the blocking stream.
  if (!gx_direct) {
    Tensor dst = gx;  // a view sharing gx's storage
    dst.copy_from(gxs);
  }
  if (sync_debug()) CUDA_CHECK(cudaStreamSynchronize(ctx.stream()));
}

}  // namespace cuseg
