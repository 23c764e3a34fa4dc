// A trainable parameter: its value, its gradient (same shape/device), and the name the
// PyTorch reference module gives it (e.g. "layer1.step.0.weight").
//
// Mixed precision (bf16): `value` stays the fp32 master (what Adam updates and checkpoints
// store) and `copy` is the bf16 compute copy the bf16 convolutions read, in their layout
// (channels-last filter, channels padded: kernels/weight_copy.h); element i of value lives at
// copy_map.of_linear(i) in copy, the padding of copy is zero. Adam::step writes the copy in the
// same pass as the master. Any other code that writes `value` (initialisation, loading a
// checkpoint, broadcasting weights between ranks, a test) sets copy_stale, and the model
// refreshes stale copies before its next forward. In fp32 `copy` is undefined.
#pragma once
#include <string>

#include "cuseg/engine/tensor.h"
#include "cuseg/kernels/weight_copy.h"

namespace cuseg {

struct Param {
  std::string name;
  Tensor value;
  Tensor grad;
  Tensor copy;
  FilterMap copy_map;
  bool copy_stale = true;
};

}  // namespace cuseg
