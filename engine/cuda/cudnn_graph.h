// cuDNN graph (backend) API through cudnn-frontend: the convolutions of the bf16 channels-last
// path. Only included by code built with CUSEG_HAVE_CUDA; the implementation is
// engine/cuda/cudnn_graph.cpp when cudnn-frontend was found at configure time, else
// engine/cuda/cudnn_graph_none.cpp, whose functions answer "refused" so every caller takes its
// legacy fp32 fallback. No cudnn-frontend type appears here.
//
// Graphs (dims NCDHW, layout in the strides; padding k/2, stride 1; bf16 I/O, fp32 compute and
// intermediates):
//   forward          y = relu?(conv(x, w) + b)             conv_fprop -> ADD -> RELU_FWD
//   backward-data    dx = dgrad(dy, w) [* (mask > 0)]      conv_dgrad -> RELU_BWD(mask)
//   backward-filter  dw = wgrad(x, dy)                     conv_wgrad (dw fp32, or bf16)
// x, y, dy, dx, mask: bf16 channels-last (Tensor::is_channels_last(), channel slices allowed);
// w: the bf16 channels-last filter [K, C, k, k, k] (strides {k^3 C, 1, k^2 C, k C, C}); b: bf16
// [K]; dw: [K, C, k, k, k] channels-last, fp32 or bf16.
//
// Plans: built once per problem (op, every operand's dims, strides, dtype and pointer alignment,
// flags) from heuristics modes A then FALLBACK, keeping only engines without the numerical notes
// NONDETERMINISTIC (deterministic by default; ContextOptions::deterministic = false keeps them),
// REDUCED_PRECISION_REDUCTION, DOWN_CONVERT_INPUTS, FFT and WINOGRAD (so every plan sums exact
// bf16 x bf16 products in fp32 by a direct method: the premise of the parity tolerances), and
// whose workspace fits the context's budget. With ContextOptions::cudnn_autotune (or
// CUSEG_CUDNN_AUTOTUNE=1) every such plan is built and the fastest, timed on the first call (the
// warm-up), is kept; autotuning still picks among deterministic plans, but which plan wins can
// change from run to run, and with it the rounding of the results.
//
// A problem that cuDNN refuses (no plan, or the first execution fails) is remembered as refused
// and the call answers Refused with the reason; callers then run the problem another way and
// warn once (engine/cuda/conv_cl.cpp).
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "cuseg/engine/context.h"
#include "cuseg/engine/tensor.h"

namespace cuseg {

class CudaContext;
class GraphCache;
struct GraphCacheDeleter {
  void operator()(GraphCache* c) const;
};
using GraphCachePtr = std::unique_ptr<GraphCache, GraphCacheDeleter>;
GraphCachePtr make_graph_cache(const ContextOptions& opt);

enum class GraphOutcome { Ran, Refused };

// Compiled with cudnn-frontend and the runtime cuDNN is >= 9.0. `why` says why not.
bool cudnn_graph_usable(std::string* why = nullptr);
// The cudnn-frontend version compiled in ("none" without it).
const char* cudnn_frontend_version();

GraphOutcome graph_conv_forward(CudaContext& ctx, const Tensor& x, const Tensor& w, const Tensor& b,
                                const Tensor& y, bool relu, std::string* why);
GraphOutcome graph_conv_backward_data(CudaContext& ctx, const Tensor& w, const Tensor& dy,
                                      const Tensor& mask, const Tensor& dx, std::string* why);
GraphOutcome graph_conv_backward_filter(CudaContext& ctx, const Tensor& x, const Tensor& dy,
                                        const Tensor& dw, std::string* why);

// What the cache holds (for benchmark records).
struct GraphCacheStats {
  int plans = 0;             // problems with a plan
  int refused = 0;           // problems cuDNN refused
  size_t max_workspace = 0;  // bytes, largest plan workspace
};
GraphCacheStats graph_cache_stats(CudaContext& ctx);

}  // namespace cuseg
