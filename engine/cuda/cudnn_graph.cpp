// cuDNN graph convolutions through cudnn-frontend (see cudnn_graph.h for what and why).
// Built only when CMake found cudnn-frontend and cuDNN >= 9 (else cudnn_graph_none.cpp).
#include "cuseg/engine/cuda/cudnn_graph.h"

#include <cudnn_frontend.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <sstream>
#include <unordered_map>
#include <vector>

#include "cuseg/core/check.h"
#include "cuseg/engine/cuda/cuda_check.h"
#include "cuseg/engine/cuda/cuda_context.h"
#include "cuseg/engine/cuda/cudnn_cache.h"

namespace fe = cudnn_frontend;

namespace cuseg {

namespace {

enum class GraphOp : int64_t { Forward = 1, BackwardData = 2, BackwardFilter = 3 };

// Operand uids in every graph's variant pack.
constexpr int64_t kUidA = 1, kUidB = 2, kUidC = 3, kUidOut = 4;

fe::DataType_t fe_type(DType t) {
  switch (t) {
    case DType::F32:
      return fe::DataType_t::FLOAT;
    case DType::BF16:
      return fe::DataType_t::BFLOAT16;
    default:
      CUSEG_THROW("cuDNN graph operand of dtype " << dtype_name(t)
                                                  << " (expected float32 or bfloat16)");
  }
}

// Largest power of two (<= 16) that divides the address: plans are built for the alignment the
// pointers have (a channel slice starts c0 * 2 bytes into its buffer).
int64_t alignment_of(const void* p) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  int64_t al = 16;
  while (al > 1 && a % uintptr_t(al) != 0) al /= 2;
  return al;
}

// One operand as the cache key and the graph see it.
struct Operand {
  std::vector<int64_t> dims, strides;
  DType dtype = DType::BF16;
  int64_t alignment = 16;
  void* ptr = nullptr;
};

Operand operand(const Tensor& t) {
  Operand o;
  o.dims.assign(t.shape().begin(), t.shape().end());
  o.strides.assign(t.strides().begin(), t.strides().end());
  o.dtype = t.dtype();
  o.ptr = t.raw();
  o.alignment = alignment_of(o.ptr);
  return o;
}

Operand bias_operand(const Tensor& b) {
  Operand o;
  const int64_t k = b.numel();
  o.dims = {1, k, 1, 1, 1};
  o.strides = {k, 1, k, k, k};
  o.dtype = b.dtype();
  o.ptr = b.raw();
  o.alignment = alignment_of(o.ptr);
  return o;
}

void append_key(std::vector<int64_t>& key, const Operand& o) {
  key.insert(key.end(), o.dims.begin(), o.dims.end());
  key.insert(key.end(), o.strides.begin(), o.strides.end());
  key.push_back(int64_t(o.dtype));
  key.push_back(o.alignment);
}

std::shared_ptr<fe::graph::Tensor_attributes> add_tensor(fe::graph::Graph& g, const Operand& o,
                                                         int64_t uid, const char* name) {
  return g.tensor(fe::graph::Tensor_attributes()
                      .set_name(name)
                      .set_uid(uid)
                      .set_dim(o.dims)
                      .set_stride(o.strides)
                      .set_data_type(fe_type(o.dtype))
                      .set_alignment(o.alignment));
}

void set_output(const std::shared_ptr<fe::graph::Tensor_attributes>& t, const Operand& o,
                int64_t uid) {
  t->set_output(true)
      .set_uid(uid)
      .set_dim(o.dims)
      .set_stride(o.strides)
      .set_data_type(fe_type(o.dtype))
      .set_alignment(o.alignment);
}

struct Plan {
  std::shared_ptr<fe::graph::Graph> graph;
  bool refused = false;
  bool executed = false;  // first execution done (refusals after it are errors)
  std::string why;
  int64_t workspace = 0;
  std::string engine;  // name of the plan in use (for messages)
};

std::string str(fe::error_t e) {
  return e.get_message();
}

}  // namespace

class GraphCache {
 public:
  explicit GraphCache(const ContextOptions& opt) : opt_(opt) {
    const char* e = std::getenv("CUSEG_CUDNN_AUTOTUNE");
    autotune_ = opt.cudnn_autotune || (e && e[0] == '1');
  }

  // The plan of a problem, built on first use by `build` (which fills the graph).
  template <class Build>
  Plan& get(CudaContext& ctx, const std::vector<int64_t>& key, Build build) {
    auto it = plans_.find(key);
    if (it != plans_.end()) return it->second;
    Plan& p = plans_[key];
    std::string why;
    if (!cudnn_graph_usable(&why)) {
      p.refused = true;
      p.why = why;
      return p;
    }
    // cudnn-frontend reports most failures as error_t, some as exceptions: both mean "refused".
    try {
      build_plan(ctx, p, build);
    } catch (const std::exception& e) {
      p.refused = true;
      p.why = std::string("exception: ") + e.what();
      p.graph.reset();
    }
    return p;
  }

 private:
  template <class Build>
  void build_plan(CudaContext& ctx, Plan& p, Build& build) {
    p.graph = std::make_shared<fe::graph::Graph>();
    p.graph->set_io_data_type(fe::DataType_t::BFLOAT16)
        .set_intermediate_data_type(fe::DataType_t::FLOAT)
        .set_compute_data_type(fe::DataType_t::FLOAT);
    build(*p.graph);
    auto fail = [&](const char* stage, fe::error_t e) -> void {
      p.refused = true;
      p.why = std::string(stage) + ": " + str(e);
      p.graph.reset();
    };
    fe::error_t st = p.graph->validate();
    if (st.is_bad()) return fail("validate", st);
    st = p.graph->build_operation_graph(ctx.cudnn());
    if (st.is_bad()) return fail("build_operation_graph", st);
    st = p.graph->create_execution_plans({fe::HeurMode_t::A, fe::HeurMode_t::FALLBACK});
    if (st.is_bad()) return fail("create_execution_plans", st);
    std::vector<fe::NumericalNote_t> barred = {fe::NumericalNote_t::REDUCED_PRECISION_REDUCTION,
                                               fe::NumericalNote_t::DOWN_CONVERT_INPUTS,
                                               fe::NumericalNote_t::FFT,
                                               fe::NumericalNote_t::WINOGRAD,
                                               fe::NumericalNote_t::WINOGRAD_TILE_4x4,
                                               fe::NumericalNote_t::WINOGRAD_TILE_6x6,
                                               fe::NumericalNote_t::WINOGRAD_TILE_13x13};
    if (opt_.deterministic) barred.push_back(fe::NumericalNote_t::NONDETERMINISTIC);
    p.graph->deselect_numeric_notes(barred);
    p.graph->deselect_workspace_greater_than(int64_t(ctx.workspace_budget()));
    st = p.graph->check_support();
    if (st.is_bad()) return fail("check_support", st);
    st = p.graph->build_plans(autotune_ ? fe::BuildPlanPolicy_t::ALL
                                        : fe::BuildPlanPolicy_t::HEURISTICS_CHOICE);
    if (st.is_bad()) return fail("build_plans", st);
    p.workspace = p.graph->get_workspace_size();
    (void)p.graph->get_plan_name(p.engine);
  }

 public:
  // Runs a built plan (autotuning on the first call when asked). Returns false when the first
  // execution fails (then the problem counts as refused); later failures throw.
  bool run(CudaContext& ctx, Plan& p, std::unordered_map<int64_t, void*>& pack, const char* what) {
    int64_t ws_bytes = p.workspace;
    if (autotune_ && !p.executed)
      ws_bytes = std::max<int64_t>(ws_bytes, p.graph->get_autotune_workspace_size());
    CUSEG_CHECK(size_t(ws_bytes) <= ctx.workspace_budget(), what << ": plan workspace " << ws_bytes
                                                                 << " B over the budget "
                                                                 << ctx.workspace_budget() << " B");
    void* ws = ctx.cudnn_cache().workspace(size_t(ws_bytes));
    if (autotune_ && !p.executed) {
      fe::error_t st;
      try {
        st = p.graph->autotune(ctx.cudnn(), pack, ws);
      } catch (const std::exception& e) {
        st = fe::error_t(fe::error_code_t::GRAPH_EXECUTION_FAILED, e.what());
      }
      if (st.is_bad()) {
        p.refused = true;
        p.why = "autotune: " + str(st);
        p.graph.reset();
        return false;
      }
      p.workspace = p.graph->get_workspace_size();
      (void)p.graph->get_plan_name(p.engine);
      ws = ctx.cudnn_cache().workspace(size_t(p.workspace));
    }
    fe::error_t st;
    try {
      st = p.graph->execute(ctx.cudnn(), pack, ws);
    } catch (const std::exception& e) {
      st = fe::error_t(fe::error_code_t::GRAPH_EXECUTION_FAILED, e.what());
    }
    if (st.is_bad()) {
      CUSEG_CHECK(!p.executed,
                  what << ": cuDNN graph execution failed (plan " << p.engine << "): " << str(st));
      // Refused at its first execution (e.g. an operand layout the plan cannot address).
      cudaGetLastError();
      p.refused = true;
      p.why = "execute: " + str(st);
      p.graph.reset();
      return false;
    }
    p.executed = true;
    if (sync_debug()) CUDA_CHECK(cudaStreamSynchronize(ctx.stream()));
    return true;
  }

  GraphCacheStats stats() const {
    GraphCacheStats s;
    for (const auto& kv : plans_) {
      if (kv.second.refused)
        ++s.refused;
      else
        ++s.plans;
      s.max_workspace = std::max(s.max_workspace, size_t(kv.second.workspace));
    }
    return s;
  }

 private:
  ContextOptions opt_;
  bool autotune_ = false;
  std::map<std::vector<int64_t>, Plan> plans_;
};

void GraphCacheDeleter::operator()(GraphCache* c) const {
  delete c;
}

GraphCachePtr make_graph_cache(const ContextOptions& opt) {
  return GraphCachePtr(new GraphCache(opt));
}

const char* cudnn_frontend_version() {
#define CUSEG_STR2(x) #x
#define CUSEG_STR(x) CUSEG_STR2(x)
  return CUSEG_STR(CUDNN_FRONTEND_MAJOR_VERSION) "." CUSEG_STR(
      CUDNN_FRONTEND_MINOR_VERSION) "." CUSEG_STR(CUDNN_FRONTEND_PATCH_VERSION);
#undef CUSEG_STR
#undef CUSEG_STR2
}

bool cudnn_graph_usable(std::string* why) {
  static const size_t version = cudnnGetVersion();
  if (version < 90000) {
    if (why) {
      std::ostringstream os;
      os << "runtime cuDNN " << version << " is older than 9.0 (the graph path needs 9.0+)";
      *why = os.str();
    }
    return false;
  }
  return true;
}

namespace {

// Conv attributes for a cubic kernel of edge k (padding k/2, stride 1).
template <class Attr>
Attr conv_attrs(int64_t k) {
  return Attr().set_padding({k / 2, k / 2, k / 2}).set_stride({1, 1, 1}).set_dilation({1, 1, 1});
}

GraphOutcome finish(GraphCache& cache, CudaContext& ctx, Plan& p,
                    std::unordered_map<int64_t, void*>& pack, const char* what, std::string* why) {
  if (!p.refused && cache.run(ctx, p, pack, what)) return GraphOutcome::Ran;
  if (why) *why = p.why;
  return GraphOutcome::Refused;
}

}  // namespace

GraphOutcome graph_conv_forward(CudaContext& ctx, const Tensor& x, const Tensor& w, const Tensor& b,
                                const Tensor& y, bool relu, std::string* why) {
  const Operand ox = operand(x), ow = operand(w), oy = operand(y);
  const bool has_bias = b.defined();
  Operand ob;
  if (has_bias) ob = bias_operand(b);
  const int64_t k = w.dim(2);
  std::vector<int64_t> key = {int64_t(GraphOp::Forward), relu, has_bias};
  for (const Operand* o : {&ox, &ow, &oy}) append_key(key, *o);
  if (has_bias) append_key(key, ob);
  GraphCache& cache = ctx.graph_cache();
  Plan& p = cache.get(ctx, key, [&](fe::graph::Graph& g) {
    auto X = add_tensor(g, ox, kUidA, "x");
    auto W = add_tensor(g, ow, kUidB, "w");
    auto t = g.conv_fprop(X, W, conv_attrs<fe::graph::Conv_fprop_attributes>(k));
    if (has_bias) {
      auto B = add_tensor(g, ob, kUidC, "b");
      t = g.pointwise(t, B, fe::graph::Pointwise_attributes().set_mode(fe::PointwiseMode_t::ADD));
    }
    if (relu)
      t = g.pointwise(t, fe::graph::Pointwise_attributes().set_mode(fe::PointwiseMode_t::RELU_FWD));
    set_output(t, oy, kUidOut);
  });
  std::unordered_map<int64_t, void*> pack = {{kUidA, ox.ptr}, {kUidB, ow.ptr}, {kUidOut, oy.ptr}};
  if (has_bias) pack[kUidC] = ob.ptr;
  return finish(cache, ctx, p, pack, "cuDNN graph conv forward", why);
}

GraphOutcome graph_conv_backward_data(CudaContext& ctx, const Tensor& w, const Tensor& dy,
                                      const Tensor& mask, const Tensor& dx, std::string* why) {
  const Operand ow = operand(w), ody = operand(dy), odx = operand(dx);
  const bool has_mask = mask.defined();
  Operand om;
  if (has_mask) om = operand(mask);
  const int64_t k = w.dim(2);
  std::vector<int64_t> key = {int64_t(GraphOp::BackwardData), has_mask};
  for (const Operand* o : {&ow, &ody, &odx}) append_key(key, *o);
  if (has_mask) append_key(key, om);
  GraphCache& cache = ctx.graph_cache();
  Plan& p = cache.get(ctx, key, [&](fe::graph::Graph& g) {
    auto DY = add_tensor(g, ody, kUidA, "dy");
    auto W = add_tensor(g, ow, kUidB, "w");
    auto t = g.conv_dgrad(DY, W, conv_attrs<fe::graph::Conv_dgrad_attributes>(k));
    t->set_dim(odx.dims);
    if (has_mask) {
      auto M = add_tensor(g, om, kUidC, "relu_mask");
      t = g.pointwise(t, M,
                      fe::graph::Pointwise_attributes().set_mode(fe::PointwiseMode_t::RELU_BWD));
    }
    set_output(t, odx, kUidOut);
  });
  std::unordered_map<int64_t, void*> pack = {{kUidA, ody.ptr}, {kUidB, ow.ptr}, {kUidOut, odx.ptr}};
  if (has_mask) pack[kUidC] = om.ptr;
  return finish(cache, ctx, p, pack, "cuDNN graph conv backward-data", why);
}

GraphOutcome graph_conv_backward_filter(CudaContext& ctx, const Tensor& x, const Tensor& dy,
                                        const Tensor& dw, std::string* why) {
  const Operand ox = operand(x), ody = operand(dy), odw = operand(dw);
  const int64_t k = dw.dim(2);
  std::vector<int64_t> key = {int64_t(GraphOp::BackwardFilter)};
  for (const Operand* o : {&ox, &ody, &odw}) append_key(key, *o);
  GraphCache& cache = ctx.graph_cache();
  Plan& p = cache.get(ctx, key, [&](fe::graph::Graph& g) {
    auto X = add_tensor(g, ox, kUidA, "x");
    auto DY = add_tensor(g, ody, kUidB, "dy");
    auto t = g.conv_wgrad(DY, X, conv_attrs<fe::graph::Conv_wgrad_attributes>(k));
    set_output(t, odw, kUidOut);
  });
  std::unordered_map<int64_t, void*> pack = {{kUidA, ox.ptr}, {kUidB, ody.ptr}, {kUidOut, odw.ptr}};
  return finish(cache, ctx, p, pack, "cuDNN graph conv backward-filter", why);
}

GraphCacheStats graph_cache_stats(CudaContext& ctx) {
  return ctx.graph_cache().stats();
}

}  // namespace cuseg
