// Probability maps back onto the input grid (see probabilities.h).
#include "cuseg/pipeline/probabilities.h"

#include "cuseg/core/check.h"
#include "cuseg/data/transforms.h"

namespace cuseg {

std::vector<data::Image> restore_probabilities(const Preprocessed& p,
                                               const std::vector<data::Image>& model_grid) {
  std::vector<data::Image> out;
  for (size_t c = 0; c < model_grid.size(); ++c) {
    CUSEG_CHECK(model_grid[c].geo.size == p.image.geo.size,
                "restore_probabilities: class " << c << " is not on the model grid");
    const float fill = c == 0 ? 1.f : 0.f;  // outside the model grid: certainly background
    data::Image m = model_grid[c];
    if (p.padded_to_patch) m = data::crop_or_pad_inverse(m, p.before_patch_pad, fill);
    if (p.cropped) m = data::crop_or_pad_inverse(m, p.before_crop, fill);
    if (p.resampled) m = data::resample_to(m, p.before_resample, data::Interp::Linear, fill);
    m = data::reorient_back(m, p.reorientation);
    m.geo = p.reorientation.original;  // the undo steps restore it; pin it exactly
    out.push_back(std::move(m));
  }
  return out;
}

data::LabelMap argmax_classes(const std::vector<data::Image>& classes) {
  CUSEG_CHECK(!classes.empty(), "argmax_classes: no classes");
  data::LabelMap m = data::LabelMap::make(classes[0].geo, 0);
  for (size_t i = 0; i < m.v.size(); ++i) {
    float best = classes[0].v[i];
    for (size_t c = 1; c < classes.size(); ++c)
      if (classes[c].v[i] > best) best = classes[c].v[i], m.v[i] = uint8_t(c);
  }
  return m;
}

}  // namespace cuseg
