// Validation loss and Dice (see validation.h).
#include "cuseg/pipeline/validation.h"

#include "cuseg/data/metrics.h"
#include "cuseg/data/transforms.h"
#include "cuseg/engine/ops.h"
#include "cuseg/pipeline/batch_source.h"
#include "cuseg/pipeline/inference.h"

namespace cuseg {

data::LabelMap predict_preprocessed(UNet3D& net, Context& ctx, const RunConfig& cfg,
                                    const Preprocessed& p) {
  const GridOptions gopt = grid_options(cfg);
  data::Image img = p.image;
  data::pad_to_patch(img, nullptr, gopt.patch, cfg.rescale_lo);
  data::LabelMap m = predict_volume(net, ctx, img, gopt);
  if (m.geo.size != p.image.geo.size) m = data::crop_or_pad_inverse(m, p.image.geo, uint8_t(0));
  return m;
}

ValidationResult validate(UNet3D& net, Context& ctx, const RunConfig& cfg, const ValidationSet& val,
                          bool with_dice) {
  ValidationResult r;
  double loss = 0;
  for (const auto& vb : val.batches) {
    TrainBatch bt = to_batch(vb, ctx.device());
    const Tensor& logits = net.forward(ctx, bt.image);
    loss += weighted_cross_entropy(ctx, logits, bt.label, cfg.class_weights, Tensor());
  }
  r.loss = loss / double(val.batches.size());
  if (with_dice) {
    double sl = 0, st = 0;
    for (size_t v = 0; v < val.volumes.size(); ++v) {
      data::LabelMap m = predict_preprocessed(net, ctx, cfg, val.volumes[v]);
      const auto cm = data::evaluate_case(m, val.volumes[v].label, val.ids[v], false);
      sl += cm.dice_liver, st += cm.dice_tumour;
      if (v == 0) r.first_prediction = std::move(m);
    }
    r.dice_liver = sl / double(val.volumes.size());
    r.dice_tumour = st / double(val.volumes.size());
  }
  return r;
}

}  // namespace cuseg
