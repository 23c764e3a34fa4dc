// Numeric precision of a network's compute (docs/ARCHITECTURE.md, "Precision and layout").
//   fp32: float32 activations in NCDHW, the legacy cuDNN convolutions (the reference path).
//   bf16: bfloat16 activations and weight copies in channels-last (NDHWC) order, fp32
//         accumulation, fp32 master weights, weight gradients, Adam state and loss; the
//         convolutions run as cuDNN graphs (engine/cuda/cudnn_graph.h). On the CPU the same
//         precision runs the bf16 oracle (every tensor the GPU stores in bf16 rounded to bf16).
#pragma once
#include <string>

#include "cuseg/core/check.h"

namespace cuseg {

enum class Precision { F32, BF16 };

inline const char* precision_name(Precision p) {
  return p == Precision::BF16 ? "bf16" : "fp32";
}

// "fp32" | "bf16" (also "float32" / "bfloat16"); `what` names the flag or key in the error.
inline Precision parse_precision(const std::string& s, const std::string& what = "precision") {
  if (s == "fp32" || s == "float32") return Precision::F32;
  if (s == "bf16" || s == "bfloat16") return Precision::BF16;
  CUSEG_THROW(what << ": unknown precision '" << s << "' (expected fp32 or bf16)");
}

}  // namespace cuseg
