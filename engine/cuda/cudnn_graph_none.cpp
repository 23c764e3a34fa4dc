// Stand-in for engine/cuda/cudnn_graph.cpp in CUDA builds without cudnn-frontend (CMake did not
// find it; scripts/setup.sh fetches it): every graph is "refused", so the bf16 convolutions run
// on the legacy fp32 cuDNN API (engine/cuda/conv_cl.cpp warns once per problem).
#include "cuseg/engine/cuda/cudnn_graph.h"

namespace cuseg {

class GraphCache {};

void GraphCacheDeleter::operator()(GraphCache* c) const {
  delete c;
}

GraphCachePtr make_graph_cache(const ContextOptions&) {
  return GraphCachePtr(new GraphCache);
}

namespace {
const char* kWhy =
    "this build has no cuDNN graph path (cudnn-frontend was not found at configure time: run "
    "scripts/setup.sh, or set CUSEG_CUDNN_FRONTEND_INCLUDE)";
GraphOutcome refused(std::string* why) {
  if (why) *why = kWhy;
  return GraphOutcome::Refused;
}
}  // namespace

const char* cudnn_frontend_version() {
  return "none";
}

bool cudnn_graph_usable(std::string* why) {
  if (why) *why = kWhy;
  return false;
}

GraphOutcome graph_conv_forward(CudaContext&, const Tensor&, const Tensor&, const Tensor&,
                                const Tensor&, bool, std::string* why) {
  return refused(why);
}
GraphOutcome graph_conv_backward_data(CudaContext&, const Tensor&, const Tensor&, const Tensor&,
                                      const Tensor&, std::string* why) {
  return refused(why);
}
GraphOutcome graph_conv_backward_filter(CudaContext&, const Tensor&, const Tensor&, const Tensor&,
                                        std::string* why) {
  return refused(why);
}
GraphCacheStats graph_cache_stats(CudaContext&) {
  return {};
}

}  // namespace cuseg
