#include "cuseg/kernels/adam.h"

namespace cuseg {

void adam_step_cpu(const AdamTensor* tensors, int count, const AdamCoeffs& c) {
  for (int t = 0; t < count; ++t) {
    const AdamTensor& a = tensors[t];
#pragma omp parallel for schedule(static) if (a.n >= kOmpMinWork)
    for (int64_t i = 0; i < a.n; ++i) adam_element(a, i, c);
  }
}

}  // namespace cuseg
