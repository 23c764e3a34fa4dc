// See engine/conv_algo.h.
#include "cuseg/engine/conv_algo.h"

#include <algorithm>
#include <cstdio>

#include "cuseg/engine/context.h"
#if CUSEG_HAVE_CUDA
#include "cuseg/engine/cuda/cuda_context.h"
#include "cuseg/engine/cuda/cudnn_ops.h"
#endif

namespace cuseg {

using namespace conv_algo;

const char* conv_dir_name(ConvDir d) {
  return d == ConvDir::Fwd       ? "forward"
         : d == ConvDir::BwdData ? "backward-data"
                                 : "backward-filter";
}

const char* conv_algo_name(ConvDir d, int a) {
  if (d == ConvDir::Fwd) {
    static const char* n[] = {
        "IMPLICIT_GEMM", "IMPLICIT_PRECOMP_GEMM", "GEMM", "DIRECT", "FFT", "FFT_TILING",
        "WINOGRAD",      "WINOGRAD_NONFUSED"};
    return a >= 0 && a < 8 ? n[a] : "?";
  }
  if (d == ConvDir::BwdData) {
    static const char* n[] = {"ALGO_0",     "ALGO_1",   "FFT",
                              "FFT_TILING", "WINOGRAD", "WINOGRAD_NONFUSED"};
    return a >= 0 && a < 6 ? n[a] : "?";
  }
  static const char* n[] = {"ALGO_0",    "ALGO_1", "FFT", "ALGO_3", "WINOGRAD", "WINOGRAD_NONFUSED",
                            "FFT_TILING"};
  return a >= 0 && a < 7 ? n[a] : "?";
}

bool conv_algo_sums_products(ConvDir d, int a) {
  switch (d) {
    case ConvDir::Fwd:
      return a == kFwdImplicitGemm || a == kFwdImplicitPrecompGemm || a == kFwdGemm ||
             a == kFwdDirect;
    case ConvDir::BwdData:
      return a == kBwdData0 || a == kBwdData1;
    case ConvDir::BwdFilter:
      return a == kBwdFilter0 || a == kBwdFilter1 || a == kBwdFilter3;
  }
  return false;
}

std::vector<ConvAlgoCandidate> conv_fallback_algos(ConvDir d) {
  switch (d) {
    case ConvDir::Fwd:
      return {{kFwdImplicitGemm, 0, true}, {kFwdImplicitPrecompGemm, 0, true}};
    case ConvDir::BwdData:
      return {{kBwdData1, 0, true}, {kBwdData0, 0, false}};
    case ConvDir::BwdFilter:
      return {{kBwdFilter1, 0, true}, {kBwdFilter0, 0, false}};
  }
  return {};
}

std::vector<ConvAlgoCandidate> order_conv_candidates(ConvDir d,
                                                     const std::vector<ConvAlgoCandidate>& found,
                                                     size_t budget, bool exact_only) {
  // The first occurrence of an algorithm decides (cuDNN's answer, with the determinism it
  // reports, before a fallback entry repeating it).
  std::vector<int> seen;
  std::vector<ConvAlgoCandidate> out;
  for (const ConvAlgoCandidate& c : found) {
    if (std::find(seen.begin(), seen.end(), c.algo) != seen.end()) continue;
    seen.push_back(c.algo);
    if (c.bytes <= budget && (!exact_only || conv_algo_sums_products(d, c.algo))) out.push_back(c);
  }
  if (d != ConvDir::Fwd)
    std::stable_partition(out.begin(), out.end(),
                          [](const ConvAlgoCandidate& c) { return c.deterministic; });
  return out;
}

size_t try_conv_candidates(const std::vector<ConvAlgoCandidate>& cands, size_t& at, bool exhaust,
                           const std::function<AttemptResult(const ConvAlgoCandidate&)>& attempt) {
  for (size_t i = at; i < cands.size(); ++i) {
    const AttemptResult r = attempt(cands[i]);
    if (r == AttemptResult::Ok) {
      at = i;
      return i;
    }
    if (r == AttemptResult::Failed) return kNoCandidate;
  }
  if (exhaust) at = cands.size();
  return kNoCandidate;
}

bool take_nondeterminism_warning(ConvAlgoChoice& ch, ConvDir d, size_t ran) {
  if (d == ConvDir::Fwd || ran >= ch.cands.size() || ch.cands[ran].deterministic || ch.warned)
    return false;
  ch.warned = true;
  return true;
}

std::string nondeterminism_warning(ConvDir d, const ConvAlgoCandidate& c,
                                   const std::string& problem, size_t budget) {
  char buf[512];
  std::snprintf(buf, sizeof buf,
                "cuseg: warning: cuDNN conv3d %s %s: every deterministic algorithm was refused "
                "or needs more than the %zu B workspace budget; running the non-deterministic "
                "%s (atomics: results may differ between runs in the last bits)\n",
                conv_dir_name(d), problem.c_str(), budget, conv_algo_name(d, c.algo));
  return buf;
}

std::vector<ConvAlgoUse> conv_algorithms_used(Context& ctx) {
#if CUSEG_HAVE_CUDA
  if (ctx.device() == Device::CUDA) return cudnn_conv_algorithms_used(ctx.cuda());
#endif
  (void)ctx;
  return {};
}

}  // namespace cuseg
