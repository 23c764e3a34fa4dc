// Choosing and falling back between cuDNN convolution algorithms, as plain logic without
// cuDNN types, so that the rules are tested on the CPU (tests/cpu/test_conv_algo.cpp) and
// engine/cuda/cudnn_ops.cpp only feeds them cuDNN's answers.
//
// Rules (why):
// - Exact mode (the default; TF32 off): only algorithms that compute every output as a sum
//   of the products x * w, in whatever order, are candidates. The CUDA-vs-CPU parity tests
//   feed small integers, whose products and sums are exact in fp32 in ANY order, so atol 0
//   holds for these. FFT, FFT_TILING and the WINOGRAD variants transform the operands
//   (multiplications by non-dyadic constants, e.g. cos(2 pi k / n)): their results carry
//   rounding of ~1e-6 relative to the operands' norms even on integer inputs (~1e-4..1e-3
//   absolute on the parity shapes), i.e. they would break the exact contract. They are left
//   out rather than tested with a looser tolerance. With CUSEG_ALLOW_TF32=1 every algorithm
//   is allowed (parity tolerances then no longer hold anyway).
// - Backward directions: deterministic candidates first (heuristic order), then the
//   non-deterministic ones (atomics: BWD_DATA_ALGO_0, BWD_FILTER_ALGO_0 / ALGO_3). ALGO_1 of
//   both directions (deterministic) and ALGO_0 (not) are always added after cuDNN's own list,
//   so a refusal of every deterministic candidate at run time falls back to ALGO_0 instead
//   of failing; the first time a problem runs a non-deterministic algorithm one warning is
//   printed.
// - Forward: heuristic order (all forward algorithms are deterministic); IMPLICIT_GEMM (no
//   workspace) and IMPLICIT_PRECOMP_GEMM are always added.
// - Candidates whose workspace exceeds the budget are dropped.
// - At run time a candidate that cuDNN refuses (NOT_SUPPORTED / BAD_PARAM, e.g. for a
//   strided view) is skipped and the next tried; the one that ran is remembered. The fused
//   conv + bias + ReLU keeps its own position in the list: a refusal there moves fusion to
//   the next candidate (IMPLICIT_PRECOMP_GEMM is the one cuDNN fuses with ReLU), and only
//   when every candidate refused is the problem run unfused for good.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace cuseg {

class Context;

enum class ConvDir { Fwd = 0, BwdData = 1, BwdFilter = 2 };
const char* conv_dir_name(ConvDir d);

// cuDNN's algorithm numbers (cudnnConvolution{Fwd,BwdData,BwdFilter}Algo_t; checked against
// cudnn.h by static_asserts in engine/cuda/cudnn_ops.cpp).
namespace conv_algo {
constexpr int kFwdImplicitGemm = 0, kFwdImplicitPrecompGemm = 1, kFwdGemm = 2, kFwdDirect = 3,
              kFwdFft = 4, kFwdFftTiling = 5, kFwdWinograd = 6, kFwdWinogradNonfused = 7;
constexpr int kBwdData0 = 0, kBwdData1 = 1, kBwdDataFft = 2, kBwdDataFftTiling = 3,
              kBwdDataWinograd = 4, kBwdDataWinogradNonfused = 5;
constexpr int kBwdFilter0 = 0, kBwdFilter1 = 1, kBwdFilterFft = 2, kBwdFilter3 = 3,
              kBwdFilterWinograd = 4, kBwdFilterWinogradNonfused = 5, kBwdFilterFftTiling = 6;
}  // namespace conv_algo

// "IMPLICIT_PRECOMP_GEMM", "ALGO_1", ... ("?" for numbers cuDNN does not define).
const char* conv_algo_name(ConvDir d, int algo);
// Whether the algorithm computes outputs as sums of products x * w (see the rules above).
bool conv_algo_sums_products(ConvDir d, int algo);

struct ConvAlgoCandidate {
  int algo = 0;
  size_t bytes = 0;  // workspace
  bool deterministic = true;
};

// The classic algorithms added after cuDNN's heuristic list (with their known
// determinism), so a fallback always exists.
std::vector<ConvAlgoCandidate> conv_fallback_algos(ConvDir d);

// The candidate list of one problem from cuDNN's heuristic answers (best first) followed by
// conv_fallback_algos' entries (each with its workspace size): duplicates keep their first
// occurrence; over-budget and (in exact mode) non-sum-of-products algorithms are dropped;
// backward directions put deterministic candidates first. May be empty.
std::vector<ConvAlgoCandidate> order_conv_candidates(ConvDir d,
                                                     const std::vector<ConvAlgoCandidate>& found,
                                                     size_t budget, bool exact_only);

// The algorithms of one problem and where each call path stands in the list.
struct ConvAlgoChoice {
  std::vector<ConvAlgoCandidate> cands;
  size_t plain = 0;  // first candidate to try for the plain call (the last one that ran)
  size_t fused = 0;  // same for the fused conv + bias + ReLU; cands.size(): all refused
  bool warned = false;
  bool plain_ran = false, fused_ran = false;  // for reports
  bool fusion_possible() const { return fused < cands.size(); }
};

enum class AttemptResult { Ok, Refused, Failed };

// Tries cands[at], cands[at + 1], ... with `attempt` until one returns Ok (then at = its
// index, returned) or Failed (returned as npos, at unchanged). When every one from `at` on
// is Refused: npos, and `at` is set to cands.size() if `exhaust` (fusion off for good), else
// left unchanged (a later call tries again from there: the index never points past the end
// of a non-empty list unless exhausted on purpose).
constexpr size_t kNoCandidate = size_t(-1);
size_t try_conv_candidates(const std::vector<ConvAlgoCandidate>& cands, size_t& at, bool exhaust,
                           const std::function<AttemptResult(const ConvAlgoCandidate&)>& attempt);

// True once per problem: when candidate `ran` is non-deterministic in a backward direction
// (the caller then prints nondeterminism_warning()).
bool take_nondeterminism_warning(ConvAlgoChoice& ch, ConvDir d, size_t ran);
std::string nondeterminism_warning(ConvDir d, const ConvAlgoCandidate& c,
                                   const std::string& problem, size_t budget);

// What a CUDA context chose, per problem (for tests and the GPU kit's record).
struct ConvAlgoUse {
  ConvDir dir = ConvDir::Fwd;
  std::string problem;  // "NxCxDxHxW -> Cout, k K, batch strides X / Y"
  std::string plain;    // algorithm of the plain call ("" if never run)
  std::string fused;    // algorithm of the fused call, "" if never tried, "refused" if all refused
  bool plain_deterministic = true;
  bool sums_products = true;  // of every algorithm that ran
};
// Empty for a CPU context or a build without CUDA.
std::vector<ConvAlgoUse> conv_algorithms_used(Context& ctx);

}  // namespace cuseg
