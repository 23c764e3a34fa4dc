// Validation loss and Dice (see validation.h).
#include "cuseg/pipeline/validation.h"

#include "cuseg/data/metrics.h"
#include "cuseg/data/transforms.h"
#include "cuseg/engine/ops.h"
#include "cuseg/pipeline/batch_source.h"
#include "cuseg/pipeline/distributed.h"
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
                          bool with_dice, TrainDist* dist) {
  auto mine = [&](size_t i) { return !dist || dist->owns(i); };
  ValidationResult r;
  // sums: loss, Dice liver, Dice tumour (over this rank's share; then over all ranks)
  std::vector<double> sums(3, 0.0);
  for (size_t i = 0; i < val.batches.size(); ++i) {
    if (!mine(i)) continue;
    TrainBatch bt = to_batch(val.batches[i], ctx.device());
    const Tensor& logits = net.forward(ctx, bt.image);
    sums[0] += weighted_cross_entropy(ctx, logits, bt.label, cfg.class_weights, Tensor());
  }
  if (with_dice) {
    for (size_t v = 0; v < val.volumes.size(); ++v) {
      if (!mine(v)) continue;
      data::LabelMap m = predict_preprocessed(net, ctx, cfg, val.volumes[v]);
      const auto cm = data::evaluate_case(m, val.volumes[v].label, val.ids[v], false);
      sums[1] += cm.dice_liver, sums[2] += cm.dice_tumour;
      if (v == 0) r.first_prediction = std::move(m);
    }
  }
  if (dist) dist->sum(sums);
  r.loss = sums[0] / double(val.batches.size());
  if (with_dice) {
    r.dice_liver = sums[1] / double(val.volumes.size());
    r.dice_tumour = sums[2] / double(val.volumes.size());
  }
  return r;
}

}  // namespace cuseg
