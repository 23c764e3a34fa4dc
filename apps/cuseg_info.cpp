// cuseg_info: what this build has (backends, devices) and the U-Net's size.
//   cuseg_info                      reference network
//   cuseg_info --filters 8,16,32,64 --in 1 --classes 3
#include <CLI/CLI.hpp>
#include <cstdio>

#include "cuseg/engine/context.h"
#include "cuseg/engine/tensor.h"
#include "cuseg/model/unet3d.h"

int main(int argc, char** argv) {
  CLI::App app{"cuseg build and model information"};
  cuseg::UNetConfig cfg;
  app.add_option("--filters", cfg.filters, "filters per level")
      ->delimiter(',')
      ->capture_default_str();
  app.add_option("--in", cfg.in_channels, "input channels")->capture_default_str();
  app.add_option("--classes", cfg.classes, "output classes")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  try {
#if CUSEG_HAVE_CUDA
    std::printf("backends: cpu, cuda (built)\n");
#else
    std::printf("backends: cpu (built without CUDA)\n");
#endif
    std::printf("cuda device answers: %s\n", cuseg::cuda_available() ? "yes" : "no");
    std::printf("device for --device auto: %s\n",
                cuseg::device_name(cuseg::resolve_device("auto")));
    std::string f;
    for (size_t i = 0; i < cfg.filters.size(); ++i)
      f += (i ? "," : "") + std::to_string(cfg.filters[i]);
    const long long n = static_cast<long long>(cuseg::unet_parameter_count(cfg));
    std::printf("UNet3D in=%d classes=%d filters=%s: %lld parameters", cfg.in_channels, cfg.classes,
                f.c_str(), n);
    // Thousands separators for the headline figure.
    std::string s = std::to_string(n), g;
    for (size_t i = 0; i < s.size(); ++i) {
      if (i && (s.size() - i) % 3 == 0) g += ',';
      g += s[i];
    }
    std::printf(" (%s)\n", g.c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cuseg_info: %s\n", e.what());
    return 1;
  }
  return 0;
}
