// Builds against the installed cuseg package, runs one forward/backward of a tiny U-Net on
// the CPU and prints the reference network's parameter count.
#include <cstdio>

#include "cuseg/engine/ops.h"
#include "cuseg/model/unet3d.h"

int main() {
  cuseg::Context ctx(cuseg::Device::CPU);
  cuseg::UNet3D net(cuseg::UNetConfig{1, 3, {2, 4}}, cuseg::Device::CPU, 1);
  cuseg::Tensor x = cuseg::Tensor::zeros({1, 1, 4, 4, 4});
  const cuseg::Tensor& y = net.forward(ctx, x);
  std::printf("logits %s, reference parameters %lld\n", cuseg::shape_str(y.shape()).c_str(),
              static_cast<long long>(cuseg::unet_parameter_count(cuseg::UNetConfig{})));
  return y.dim(1) == 3 ? 0 : 1;
}
