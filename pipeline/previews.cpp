// Epoch preview panels (see previews.h).
#include "cuseg/pipeline/previews.h"

#include <filesystem>

#include "cuseg/pipeline/animation.h"
#include "cuseg/pipeline/report.h"
#include "cuseg/pipeline/train_log.h"

namespace fs = std::filesystem;

namespace cuseg {

std::string write_epoch_preview(const RunConfig& cfg, const Preprocessed& p,
                                const std::string& case_id, const data::LabelMap& prediction,
                                int epoch, const std::string& previews_dir) {
  const int k = most_informative_slice(p.label);
  const int sc = display_scale(p.image.geo, 192);
  const RGBImage a = render_axial(p.image, nullptr, k, cfg.rescale_lo, cfg.rescale_hi, sc);
  const RGBImage b = render_axial(p.image, &p.label, k, cfg.rescale_lo, cfg.rescale_hi, sc);
  const RGBImage c = render_axial(p.image, &prediction, k, cfg.rescale_lo, cfg.rescale_hi, sc);
  RGBImage panel = RGBImage::make(a.width * 3 + 8, a.height, 32);
  panel.blit(a, 0, 0);
  panel.blit(b, a.width + 4, 0);
  panel.blit(c, 2 * a.width + 8, 0);
  const std::string path =
      (fs::path(previews_dir) / fmt("epoch_%03d_%s_z%d.png", epoch, case_id.c_str(), k)).string();
  write_png(panel, path);
  return path;
}

std::string write_best_preview_gif(const BestCheckpoint& b) {
  const std::string path = (fs::path(b.run_dir) / ("best_" + b.case_id + ".gif")).string();
  // The animation shows RAS volumes; the model grid is in cfg.orientation (RAS by default).
  data::Reorientation r = data::plan_reorientation(b.volume.image.geo, "RAS");
  write_overlay_gif(data::reorient(b.volume.image, r), data::reorient(b.prediction, r),
                    b.cfg.rescale_lo, b.cfg.rescale_hi, path);
  return path;
}

}  // namespace cuseg
