// A trainable parameter: its value, its gradient (same shape/device), and the name the
// PyTorch reference module gives it (e.g. "layer1.step.0.weight").
#pragma once
#include <string>

#include "cuseg/engine/tensor.h"

namespace cuseg {

struct Param {
  std::string name;
  Tensor value;
  Tensor grad;
};

}  // namespace cuseg
