// The cuDNN algorithm rules (engine/conv_algo.h) without cuDNN: candidate order, exclusions,
// run-time fallback, fusion along the list, the one non-determinism warning.
#include <gtest/gtest.h>

#include <vector>

#include "cuseg/engine/conv_algo.h"

using namespace cuseg;
using namespace cuseg::conv_algo;

namespace {

std::vector<int> algos(const std::vector<ConvAlgoCandidate>& v) {
  std::vector<int> a;
  for (const auto& c : v) a.push_back(c.algo);
  return a;
}

// cuDNN's answer + the fixed fallbacks, as engine/cuda/cudnn_ops.cpp builds it.
std::vector<ConvAlgoCandidate> with_fallbacks(ConvDir d, std::vector<ConvAlgoCandidate> found) {
  for (ConvAlgoCandidate c : conv_fallback_algos(d)) found.push_back(c);
  return found;
}

TEST(ConvAlgo, ExactModeDropsFftAndWinogradEverywhere) {
  for (int a : {kFwdFft, kFwdFftTiling, kFwdWinograd, kFwdWinogradNonfused})
    EXPECT_FALSE(conv_algo_sums_products(ConvDir::Fwd, a)) << conv_algo_name(ConvDir::Fwd, a);
  for (int a : {kBwdDataFft, kBwdDataFftTiling, kBwdDataWinograd, kBwdDataWinogradNonfused})
    EXPECT_FALSE(conv_algo_sums_products(ConvDir::BwdData, a));
  for (int a : {kBwdFilterFft, kBwdFilterFftTiling, kBwdFilterWinograd, kBwdFilterWinogradNonfused})
    EXPECT_FALSE(conv_algo_sums_products(ConvDir::BwdFilter, a));
  // FFT_TILING forward reports itself deterministic and supports 3-D: still dropped.
  const auto v = order_conv_candidates(
      ConvDir::Fwd,
      with_fallbacks(ConvDir::Fwd, {{kFwdFftTiling, 100, true}, {kFwdGemm, 50, true}}), 1 << 20,
      /*exact_only=*/true);
  EXPECT_EQ(algos(v), (std::vector<int>{kFwdGemm, kFwdImplicitGemm, kFwdImplicitPrecompGemm}));
  // With TF32 allowed (exact_only false) every algorithm stays, in heuristic order.
  const auto all = order_conv_candidates(
      ConvDir::Fwd,
      with_fallbacks(ConvDir::Fwd, {{kFwdFftTiling, 100, true}, {kFwdGemm, 50, true}}), 1 << 20,
      false);
  EXPECT_EQ(algos(all).front(), kFwdFftTiling);
}

TEST(ConvAlgo, BackwardPutsDeterministicFirstAndKeepsAlgo0Reachable) {
  // cuDNN's heuristic order: ALGO_0 (atomics) best, then FFT_TILING, then ALGO_1.
  const std::vector<ConvAlgoCandidate> found = {
      {kBwdData0, 0, false}, {kBwdDataFftTiling, 10, true}, {kBwdData1, 0, true}};
  const auto v = order_conv_candidates(ConvDir::BwdData, with_fallbacks(ConvDir::BwdData, found),
                                       1 << 20, true);
  EXPECT_EQ(algos(v), (std::vector<int>{kBwdData1, kBwdData0}));
  EXPECT_TRUE(v[0].deterministic);
  EXPECT_FALSE(v[1].deterministic) << "the heuristic's own determinism report is kept";
  // Backward-filter: ALGO_3 is a sum of products but uses atomics; the fallback adds ALGO_0.
  const auto f = order_conv_candidates(
      ConvDir::BwdFilter, with_fallbacks(ConvDir::BwdFilter, {{kBwdFilter3, 8, false}}), 1 << 20,
      true);
  EXPECT_EQ(algos(f), (std::vector<int>{kBwdFilter1, kBwdFilter3, kBwdFilter0}));
}

TEST(ConvAlgo, OverBudgetCandidatesAreDropped) {
  const auto v = order_conv_candidates(
      ConvDir::BwdFilter,
      {{kBwdFilter1, 5000, true}, {kBwdFilter0, 100, false}, {kBwdFilter3, 0, false}}, 1000, true);
  EXPECT_EQ(algos(v), (std::vector<int>{kBwdFilter0, kBwdFilter3}));
  EXPECT_TRUE(order_conv_candidates(ConvDir::Fwd, {{kFwdGemm, 5000, true}}, 10, true).empty());
}

// Run-time refusals: every deterministic candidate refused -> the non-deterministic ALGO_0
// runs, once with the warning; the index remembers it.
TEST(ConvAlgo, RefusedDeterministicCandidatesFallBackToAlgo0WithOneWarning) {
  ConvAlgoChoice ch;
  ch.cands = order_conv_candidates(
      ConvDir::BwdData, with_fallbacks(ConvDir::BwdData, {{kBwdData1, 0, true}}), 1 << 20, true);
  ASSERT_EQ(algos(ch.cands), (std::vector<int>{kBwdData1, kBwdData0}));
  std::vector<int> tried;
  auto attempt = [&](const ConvAlgoCandidate& c) {
    tried.push_back(c.algo);
    return c.algo == kBwdData1 ? AttemptResult::Refused : AttemptResult::Ok;
  };
  const size_t ran = try_conv_candidates(ch.cands, ch.plain, false, attempt);
  ASSERT_EQ(ran, 1u);
  EXPECT_EQ(ch.plain, 1u);
  EXPECT_EQ(tried, (std::vector<int>{kBwdData1, kBwdData0}));
  EXPECT_TRUE(take_nondeterminism_warning(ch, ConvDir::BwdData, ran));
  EXPECT_FALSE(take_nondeterminism_warning(ch, ConvDir::BwdData, ran)) << "one warning only";
  EXPECT_NE(nondeterminism_warning(ConvDir::BwdData, ch.cands[ran], "1x2x3x4x5 -> 6 channels", 99)
                .find("ALGO_0"),
            std::string::npos);
  // The next call starts at the remembered candidate.
  tried.clear();
  EXPECT_EQ(try_conv_candidates(ch.cands, ch.plain, false, attempt), 1u);
  EXPECT_EQ(tried, (std::vector<int>{kBwdData0}));
  // Deterministic runs and the forward direction never warn.
  ConvAlgoChoice det;
  det.cands = {{kBwdData1, 0, true}};
  EXPECT_FALSE(take_nondeterminism_warning(det, ConvDir::BwdData, 0));
  ConvAlgoChoice fwd;
  fwd.cands = {{kFwdGemm, 0, false}};
  EXPECT_FALSE(take_nondeterminism_warning(fwd, ConvDir::Fwd, 0));
}

// All refused: an error for the caller, and the index stays inside the list (a later call
// must not index past the end).
TEST(ConvAlgo, ExhaustedPlainListKeepsAValidIndex) {
  ConvAlgoChoice ch;
  ch.cands = {{kFwdImplicitGemm, 0, true}, {kFwdImplicitPrecompGemm, 0, true}};
  auto refuse = [](const ConvAlgoCandidate&) { return AttemptResult::Refused; };
  EXPECT_EQ(try_conv_candidates(ch.cands, ch.plain, false, refuse), kNoCandidate);
  EXPECT_LT(ch.plain, ch.cands.size());
  // A hard error stops at once, index unchanged.
  int calls = 0;
  auto fail = [&](const ConvAlgoCandidate&) {
    ++calls;
    return AttemptResult::Failed;
  };
  EXPECT_EQ(try_conv_candidates(ch.cands, ch.plain, false, fail), kNoCandidate);
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(ch.plain, 0u);
}

// Fusion refused with the first algorithm is retried with the next (IMPLICIT_PRECOMP_GEMM
// fuses), independently of the plain call's position; only a refusal by every candidate
// turns fusion off for the problem.
TEST(ConvAlgo, FusionMovesAlongTheListBeforeGivingUp) {
  ConvAlgoChoice ch;
  ch.cands = order_conv_candidates(ConvDir::Fwd, conv_fallback_algos(ConvDir::Fwd), 1 << 20, true);
  ASSERT_EQ(algos(ch.cands), (std::vector<int>{kFwdImplicitGemm, kFwdImplicitPrecompGemm}));
  auto fuses_precomp = [](const ConvAlgoCandidate& c) {
    return c.algo == kFwdImplicitPrecompGemm ? AttemptResult::Ok : AttemptResult::Refused;
  };
  EXPECT_EQ(try_conv_candidates(ch.cands, ch.fused, true, fuses_precomp), 1u);
  EXPECT_TRUE(ch.fusion_possible());
  EXPECT_EQ(ch.plain, 0u) << "the plain call keeps its own algorithm";
  ConvAlgoChoice none;
  none.cands = ch.cands;
  auto refuse = [](const ConvAlgoCandidate&) { return AttemptResult::Refused; };
  EXPECT_EQ(try_conv_candidates(none.cands, none.fused, true, refuse), kNoCandidate);
  EXPECT_FALSE(none.fusion_possible());
  // Once off, nothing is tried again.
  int calls = 0;
  auto count = [&](const ConvAlgoCandidate&) {
    ++calls;
    return AttemptResult::Ok;
  };
  EXPECT_EQ(try_conv_candidates(none.cands, none.fused, true, count), kNoCandidate);
  EXPECT_EQ(calls, 0);
}

TEST(ConvAlgo, Names) {
  EXPECT_STREQ(conv_algo_name(ConvDir::Fwd, kFwdFftTiling), "FFT_TILING");
  EXPECT_STREQ(conv_algo_name(ConvDir::BwdFilter, kBwdFilterFftTiling), "FFT_TILING");
  EXPECT_STREQ(conv_algo_name(ConvDir::BwdData, kBwdData1), "ALGO_1");
  EXPECT_STREQ(conv_algo_name(ConvDir::Fwd, 99), "?");
  EXPECT_STREQ(conv_dir_name(ConvDir::BwdData), "backward-data");
}

}  // namespace
