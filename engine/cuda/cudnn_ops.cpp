// cuDNN layers: conv3d forward / backward-data / backward-filter / backward-bias and
// max pooling, through the legacy (cuDNN 7-9) API, fp32, NCDHW with batch strides.
//
// Conventions (engine/ops.h): gx is OVERWRITTEN (beta = 0); gw and gb ACCUMULATE (beta = 1).
//
// Numerics: fp32 convolutions run with CUDNN_FMA_MATH (no TF32 tensor cores) so that the
// parity tests against the CPU reference hold at fp32 rounding; CUSEG_ALLOW_TF32=1 switches
// to CUDNN_DEFAULT_MATH (TF32 allowed on Hopper, as PyTorch's default for cuDNN convs).
//
// Determinism (ContextOptions::deterministic, the default): every direction only takes
// algorithms that cuDNN's heuristics report as CUDNN_DETERMINISTIC (for the backward
// directions in practice BWD_DATA_ALGO_1 / BWD_FILTER_ALGO_1 or their newer deterministic kin;
// ALGO_0 of both and BWD_FILTER_ALGO_3 use atomics). If none fits the workspace budget, that
// is an error naming the problem. Without deterministic mode cuDNN's heuristic order decides.
// cudnnConvolutionBackwardBias is a plain reduction (not in cuDNN's list of
// non-reproducible routines).
//
// Fused conv + bias + ReLU: cudnnConvolutionBiasActivationForward computes
// y = relu(conv(x) + 0 * z + b) with z aliased to y (alpha2 = 0). cuDNN supports it only for
// some algorithm / layout combinations; when it answers NOT_SUPPORTED for a problem, that
// problem is marked and runs as conv + bias_relu_forward_cuda (kernels/elementwise.cu).
//
// Max pooling uses CUDNN_POOLING_MAX_DETERMINISTIC with window 2, stride 2, no padding;
// output extents are floor(n / 2) as the CPU. Tie rule: cuDNN does not document which
// element of a window receives the gradient when several equal the maximum; the CPU (and
// PyTorch) route it to the first in scan order. tests/cuda/test_parity.cpp checks ties
// explicitly (MaxPoolTies) so the device run records what cuDNN does. gx is zeroed before
// the backward so voxels outside every window (odd extents) are 0, as on the CPU.
#include "cuseg/engine/cuda/cudnn_ops.h"

#include <cstdio>
#include <cstdlib>
#include <string>

#include "cuseg/core/check.h"
#include "cuseg/engine/cuda/cuda_check.h"
#include "cuseg/engine/cuda/cudnn_cache.h"
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
  CUDNN_CHECK(cudnnSetPoolingNdDescriptor(pool_, CUDNN_POOLING_MAX_DETERMINISTIC,
                                          CUDNN_NOT_PROPAGATE_NAN, 3, win, pad, stride));
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
  if (!workspace_.defined() || size_t(workspace_.numel()) < bytes)
    // The old buffer returns to the pool; any later user is ordered after the queued work
    // on this context's single stream.
    workspace_ = Tensor::empty({int64_t(bytes)}, DType::U8, Device::CUDA);
  return workspace_.raw();
}

namespace {

bool tensor_math_ok(cudnnMathType_t m) {
  return CudnnCache::allow_tf32() ||
         (m != CUDNN_TENSOR_OP_MATH && m != CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION);
}

// Collects candidates: (algo, workspace bytes, deterministic) in heuristic order, plus a
// classic zero-or-small-workspace deterministic fallback at the end.
struct Cand {
  int algo;
  size_t bytes;
  bool det;
};

std::vector<Cand> candidates(cudnnHandle_t h, ConvDir dir, cudnnTensorDescriptor_t xd,
                             cudnnFilterDescriptor_t wd, cudnnConvolutionDescriptor_t cd,
                             cudnnTensorDescriptor_t yd) {
  std::vector<Cand> out;
  auto add = [&](int algo, bool det, size_t bytes) {
    for (const Cand& c : out)
      if (c.algo == algo) return;
    out.push_back(Cand{algo, bytes, det});
  };
  if (dir == ConvDir::Fwd) {
    cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
    int n = 0;
    CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(h, xd, wd, cd, yd,
                                                       CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &n, perf));
    for (int i = 0; i < n; ++i) {
      if (perf[i].status != CUDNN_STATUS_SUCCESS || !tensor_math_ok(perf[i].mathType)) continue;
      size_t b = 0;
      if (cudnnGetConvolutionForwardWorkspaceSize(h, xd, wd, cd, yd, perf[i].algo, &b) !=
          CUDNN_STATUS_SUCCESS)
        continue;
      add(int(perf[i].algo), perf[i].determinism == CUDNN_DETERMINISTIC, b);
    }
    size_t b = 0;
    if (cudnnGetConvolutionForwardWorkspaceSize(h, xd, wd, cd, yd,
                                                CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM,
                                                &b) == CUDNN_STATUS_SUCCESS)
      add(int(CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM), true, b);
  } else if (dir == ConvDir::BwdData) {
    cudnnConvolutionBwdDataAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
    int n = 0;
    CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithm_v7(
        h, wd, yd, cd, xd, CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &n, perf));
    for (int i = 0; i < n; ++i) {
      if (perf[i].status != CUDNN_STATUS_SUCCESS || !tensor_math_ok(perf[i].mathType)) continue;
      size_t b = 0;
      if (cudnnGetConvolutionBackwardDataWorkspaceSize(h, wd, yd, cd, xd, perf[i].algo, &b) !=
          CUDNN_STATUS_SUCCESS)
        continue;
      add(int(perf[i].algo), perf[i].determinism == CUDNN_DETERMINISTIC, b);
    }
    size_t b = 0;
    if (cudnnGetConvolutionBackwardDataWorkspaceSize(
            h, wd, yd, cd, xd, CUDNN_CONVOLUTION_BWD_DATA_ALGO_1, &b) == CUDNN_STATUS_SUCCESS)
      add(int(CUDNN_CONVOLUTION_BWD_DATA_ALGO_1), true, b);
  } else {
    cudnnConvolutionBwdFilterAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
    int n = 0;
    CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithm_v7(
        h, xd, yd, cd, wd, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &n, perf));
    for (int i = 0; i < n; ++i) {
      if (perf[i].status != CUDNN_STATUS_SUCCESS || !tensor_math_ok(perf[i].mathType)) continue;
      size_t b = 0;
      if (cudnnGetConvolutionBackwardFilterWorkspaceSize(h, xd, yd, cd, wd, perf[i].algo, &b) !=
          CUDNN_STATUS_SUCCESS)
        continue;
      add(int(perf[i].algo), perf[i].determinism == CUDNN_DETERMINISTIC, b);
    }
    size_t b = 0;
    if (cudnnGetConvolutionBackwardFilterWorkspaceSize(
            h, xd, yd, cd, wd, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1, &b) == CUDNN_STATUS_SUCCESS)
      add(int(CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1), true, b);
  }
  return out;
}

const char* dir_name(ConvDir d) {
  return d == ConvDir::Fwd       ? "forward"
         : d == ConvDir::BwdData ? "backward-data"
                                 : "backward-filter";
}

}  // namespace

AlgoChoice& CudnnCache::algos(cudnnHandle_t h, ConvDir dir, const Vol& x, const Vol& y, int k) {
  std::vector<int64_t> key = {int64_t(dir), k};
  for (int64_t v : key_of(x)) key.push_back(v);
  for (int64_t v : key_of(y)) key.push_back(v);
  auto it = algos_.find(key);
  if (it != algos_.end()) return it->second;

  const std::vector<Cand> all =
      candidates(h, dir, tensor(x), filter(y.c, x.c, k), conv(k), tensor(y));
  AlgoChoice ch;
  for (const Cand& c : all)
    if (c.bytes <= budget_ && (c.det || !deterministic_)) {
      ch.algos.push_back(c.algo);
      ch.bytes.push_back(c.bytes);
    }
  if (ch.algos.empty() && deterministic_)
    CUSEG_THROW("no deterministic cuDNN conv3d "
                << dir_name(dir) << " algorithm fits the workspace budget of " << budget_
                << " B for " << x.n << "x" << x.c << "x" << x.d << "x" << x.h << "x" << x.w
                << " -> " << y.c
                << " channels: raise the budget, or allow non-deterministic algorithms "
                   "(train.deterministic: false)");
  CUSEG_CHECK(!ch.algos.empty(), "no cuDNN conv3d " << dir_name(dir) << " algorithm for " << x.n
                                                    << "x" << x.c << "x" << x.d << "x" << x.h << "x"
                                                    << x.w << " -> " << y.c << " channels, k " << k
                                                    << " within the workspace budget " << budget_
                                                    << " B");
  return algos_.emplace(key, std::move(ch)).first->second;
}

// ------------------------------------------------------------------------- conv3d

namespace {

// Runs `call(algo, workspace, bytes)` with the problem's algorithms in order until one is
// accepted; remembers it. Errors other than "refused" throw at once.
template <class F>
void run_with_fallback(CudnnCache& cache, AlgoChoice& ch, const char* what, F call) {
  cudnnStatus_t last = CUDNN_STATUS_SUCCESS;
  for (; ch.current < ch.algos.size(); ++ch.current) {
    void* ws = cache.workspace(ch.bytes[ch.current]);
    last = call(ch.algos[ch.current], ws, ch.bytes[ch.current]);
    if (last == CUDNN_STATUS_SUCCESS) return;
    if (!refused(last)) break;
  }
  ::cuseg::fail(cudnnGetErrorString(last), what, __func__, __FILE__, __LINE__);
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
  AlgoChoice& ch = c.algos(h, ConvDir::Fwd, xv, yv, k);

  if (relu && b.defined() && ch.fused_ok) {
    // y = relu(1 * conv(x) + 0 * z + b), z = y.
    const size_t at = ch.current;
    const cudnnStatus_t st = cudnnConvolutionBiasActivationForward(
        h, &kOne, xd, x.raw(), wd, w.raw(), cd, cudnnConvolutionFwdAlgo_t(ch.algos[at]),
        c.workspace(ch.bytes[at]), ch.bytes[at], &kZero, yd, y.raw(), c.bias(yv.c), b.raw(),
        c.relu(), yd, y.raw());
    if (st == CUDNN_STATUS_SUCCESS) {
      // CUSEG_SYNC_DEBUG=1 must localise a fault to this op, as every other op does.
      if (sync_debug()) CUDA_CHECK(cudaStreamSynchronize(ctx.stream()));
      return;
    }
    CUSEG_CHECK(refused(st), "cudnnConvolutionBiasActivationForward: " << cudnnGetErrorString(st));
    ch.fused_ok = false;  // unfused from now on for this problem
  }
  run_with_fallback(c, ch, "cudnnConvolutionForward", [&](int algo, void* ws, size_t bytes) {
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
    AlgoChoice& ch = c.algos(h, ConvDir::BwdFilter, xv, gyv, k);
    run_with_fallback(
        c, ch, "cudnnConvolutionBackwardFilter", [&](int algo, void* ws, size_t bytes) {
          return cudnnConvolutionBackwardFilter(h, &kOne, xd, x.raw(), gyd, gy.raw(), cd,
                                                cudnnConvolutionBwdFilterAlgo_t(algo), ws, bytes,
                                                &kOne, wd, gw.raw());
        });
  }
  if (gx.defined()) {
    const Vol gxv = gx.vol();
    cudnnTensorDescriptor_t gxd = c.tensor(gxv);
    AlgoChoice& ch = c.algos(h, ConvDir::BwdData, gxv, gyv, k);
    run_with_fallback(c, ch, "cudnnConvolutionBackwardData", [&](int algo, void* ws, size_t bytes) {
      return cudnnConvolutionBackwardData(h, &kOne, wd, w.raw(), gyd, gy.raw(), cd,
                                          cudnnConvolutionBwdDataAlgo_t(algo), ws, bytes, &kZero,
                                          gxd, gx.raw());
    });
  }
  if (sync_debug()) CUDA_CHECK(cudaStreamSynchronize(ctx.stream()));
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
  // gradient from cuDNN, and must read 0 as on the CPU.
  CUDA_CHECK(cudaMemset2DAsync(gxv.p, size_t(gxv.sn) * sizeof(float), 0,
                               size_t(gxv.per_batch()) * sizeof(float), size_t(gxv.n),
                               ctx.stream()));
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
