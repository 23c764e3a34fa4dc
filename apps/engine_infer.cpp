// engine_infer: segment CT volumes with a trained model (liver 1, tumour 2).
// The command line of pipeline/infer_job.h: flags in, run_infer_job(), print.
// Exit codes: 0 all cases done, 1 error (nothing written), 3 some cases of a folder failed.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <optional>

#include "cuseg/core/check.h"
#include "cuseg/core/clock.h"
#include "cuseg/engine/context.h"
#include "cuseg/engine/memory.h"
#include "cuseg/engine/precision.h"
#include "cuseg/pipeline/infer_job.h"
#include "cuseg/pipeline/inference.h"

using namespace cuseg;

namespace {

struct Options {
  std::string model, device = "auto", mode, output_type = "nifti", precision;
  InferJob job;
  int overlap = -1, batch = -1;
  double max_memory_mib = 0;
  bool tta = false;
};

void print_case(const CaseResult& c) {
  const InferencePlan& p = c.plan;
  if (p.budget_bytes > 0)
    std::printf("  --max-memory %.0f MiB: %s, estimated %.0f MiB\n", to_mib(p.budget_bytes),
                p.whole_volume ? ("whole volume in one pass (" + std::to_string(p.grid.patch[0]) +
                                  "x" + std::to_string(p.grid.patch[1]) + "x" +
                                  std::to_string(p.grid.patch[2]) + ")")
                                     .c_str()
                               : ("grid, batch " + std::to_string(p.grid.batch)).c_str(),
                to_mib(p.estimated_bytes));
  std::string line;
  for (const auto& s : c.times.stages) {
    char b[64];
    std::snprintf(b, sizeof b, "%s%s %.2f s", line.empty() ? "" : " | ", s.first.c_str(), s.second);
    line += b;
  }
  std::printf(
      "%s: %s -> %s\n  time: %s (total %.2f s)\n  moved: %.1f MiB to the device, %.1f MiB back\n"
      "  liver %.1f mL, tumour %.1f mL in %d lesion(s)\n",
      c.id.c_str(), c.input.c_str(),
      (c.output + (c.probabilities.empty() ? "" : " + " + c.probabilities)).c_str(), line.c_str(),
      c.times.total(), to_mib(c.transfers.host_to_device_bytes),
      to_mib(c.transfers.device_to_host_bytes), c.liver.ml, c.tumour.ml, c.tumour.components);
  if (c.tumour.components > 0)
    std::printf("  largest lesion %.2f mL (%lld voxels)\n", c.tumour.largest_ml,
                (long long)c.tumour.largest_voxels);
  for (const auto& name : c.touches_border)
    std::printf("  warning: the %s touches the image border: its volume is incomplete\n",
                name.c_str());
  if (c.metrics) {
    const auto& m = *c.metrics;
    std::printf("  vs %s: Dice liver %.4f tumour %.4f, HD95 liver %s mm tumour %s mm\n",
                c.reference.c_str(), m.dice_liver, m.dice_tumour,
                data::fmt_opt(m.liver_surface.hd95_mm).c_str(),
                data::fmt_opt(m.tumour_surface.hd95_mm).c_str());
  }
  std::fflush(stdout);
}

int run(Options o) {
  const double t_all = now_s();
  const Device dev = resolve_device(o.device);
  Context ctx(dev);
  std::optional<Precision> precision;
  if (!o.precision.empty()) precision = parse_precision(o.precision, "--precision");
  LoadedModel m = load_model(o.model, dev, precision);
  GridOptions& g = o.job.segment.grid;
  g = grid_options(m.cfg);
  if (o.overlap >= 0) g.overlap = o.overlap;
  if (o.batch > 0) g.batch = o.batch;
  if (!o.mode.empty()) g.mode = parse_mode(o.mode);
  g.tta = o.tta;
  std::printf(
      "model %s (%lld parameters, patch %dx%dx%d, overlap %d, batch %d, mode %s%s) on %s, "
      "precision %s, loaded in %.2f s\n",
      m.checkpoint.c_str(), (long long)m.net->num_parameters(), g.patch[0], g.patch[1], g.patch[2],
      g.overlap, g.batch, mode_name(g.mode), g.tta ? ", tta: 8 mirrored passes" : "",
      device_name(dev), precision_name(m.precision), now_s() - t_all);
  std::printf("libraries: %s\n", gpu_library_versions().c_str());
  // Bounded before the conversion to bytes (a double beyond size_t, or inf, does not convert).
  CUSEG_REQUIRE(o.max_memory_mib >= 0 && o.max_memory_mib <= 1e9,
                "--max-memory " << o.max_memory_mib << ": expected MiB in [0, 1e9]");
  o.job.segment.max_memory_bytes = size_t(o.max_memory_mib * 1024.0 * 1024.0);
  o.job.seconds_before = now_s() - t_all;
  o.job.format = o.output_type == "dicom-seg" ? MaskFormat::DicomSeg : MaskFormat::Image;

  InferJobProgress progress;
  progress.done = print_case;
  progress.skipped = [](const std::string& input, const std::string& why) {
    std::fprintf(stderr, "engine_infer: skipped %s: %s\n", input.c_str(), why.c_str());
  };
  const InferJobResult r = run_infer_job(m, ctx, o.job, progress);
  if (r.folder) std::printf("%zu case(s) done, %zu skipped\n", r.done.size(), r.skipped.size());
  if (!r.stats_path.empty()) std::printf("stats: %s\n", r.stats_path.c_str());
  if (!r.summary_path.empty())
    std::printf("summary: mean Dice liver %.4f tumour %.4f -> %s\n", r.mean_dice_liver,
                r.mean_dice_tumour, r.summary_path.c_str());
  std::printf("peak memory: device pool %.1f MiB (%s)\n", to_mib(memory_pool(dev).stats().peak),
              device_name(dev));
  return r.exit_code();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "engine_infer: segment liver (1) and liver tumour (2) in CT with a trained cuseg model.\n"
      "INPUT: a NIfTI/NRRD/MHA file, a DICOM series folder, or a folder of image files (then "
      "OUTPUT is a folder).\n"
      "Example: engine_infer -m runs/demo -i ct.nii.gz -o mask.nii.gz --preview mask.gif "
      "--stats stats.json\n"
      "TTA + probabilities: engine_infer -m runs/demo -i ct.nii.gz -o mask.nii.gz --tta "
      "--probabilities probs.nii.gz\n"
      "DICOM: engine_infer -m runs/demo -i dicom_series/ -o seg.dcm --output-type dicom-seg"};
  Options o;
  app.add_option("-m,--model", o.model, "checkpoint file, or a run folder (uses best, else last)")
      ->required();
  app.add_option("-i,--input", o.job.input, "CT file, DICOM folder, or folder of CT files")
      ->required();
  app.add_option("-o,--output", o.job.output,
                 "mask file (.nii.gz, .nii, .nrrd, .mha), a folder for folder input, or the "
                 "DICOM SEG file (e.g. seg.dcm) with --output-type dicom-seg")
      ->required();
  app.add_option("--device", o.device, "auto | cuda | cpu (auto = CUDA when a device answers)")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "cuda", "cpu"}));
  app.add_option("--precision", o.precision,
                 "fp32 | bf16 (default: the model's config, inference.precision else "
                 "train.precision); bf16 = channels-last mixed precision, fp32 aggregation")
      ->check(CLI::IsMember({"fp32", "bf16"}));
  app.add_option("--overlap", o.overlap,
                 "grid overlap in voxels, even (default: the model's inference.overlap, 8 in "
                 "the reference)");
  app.add_option("--batch", o.batch,
                 "patches per network call (default: the model's "
                 "inference.batch, 4 in the reference)");
  app.add_option("--max-memory", o.max_memory_mib,
                 "memory budget in MiB (0 = off): an input whose header asks for more is "
                 "refused before it is read; the network and the pipeline's device buffers "
                 "run the whole volume in one pass when it fits, else the largest patch batch "
                 "that fits (overrides --batch)")
      ->capture_default_str();
  app.add_option("--mode", o.mode,
                 "aggregation of overlapping patches: crop | average | hann | gaussian "
                 "(nnU-Net's, sigma = patch / 8) (default: the model's inference.mode)")
      ->check(CLI::IsMember({"crop", "average", "hann", "gaussian"}));
  app.add_option("--output-type", o.output_type,
                 "nifti: a label mask file (see --output); dicom-seg: a DICOM Segmentation "
                 "object (liver and tumour segments, SNOMED CT coded) referencing the input "
                 "DICOM series (DICOM series input only)")
      ->capture_default_str()
      ->check(CLI::IsMember({"nifti", "dicom-seg"}));
  app.add_option("--preview", o.job.preview,
                 "picture of the CT with liver (green) and tumour (red) overlaid: x.png = axial "
                 "montage, x.gif = every slice, animated, with legend and slice index (a "
                 "folder for folder input, see --preview-format)");
  app.add_option("--preview-format", o.job.preview_format,
                 "for folder input: png (default) or gif previews")
      ->check(CLI::IsMember({"png", "gif"}));
  app.add_flag("--tta", o.tta,
               "test-time augmentation as nnU-Net: every patch also mirrored along each subset "
               "of the three axes (8 network passes, 8x the network time), the softmax of the "
               "8 outputs (flipped back) averaged, then aggregated; the mask is its argmax");
  app.add_option("--probabilities", o.job.probabilities,
                 "also write the class probabilities (softmax of the aggregated logits; with "
                 "--tta the averaged softmax), as nnU-Net's --save_probabilities: one 4-D "
                 "NIfTI x.nii.gz (i, j, k, class 0 background / 1 liver / 2 tumour) on the "
                 "input's grid, stored as uint8 q with scl_slope 1/255 (p = q / 255, within "
                 "1/510); a folder of <case>.nii.gz for folder input");
  app.add_option("--stats", o.job.stats,
                 "JSON: per-structure voxels, mL, lesions, largest lesion, border flags; seconds "
                 "per stage, plan, bytes moved between host and device, peak memory, device");
  app.add_option("--ref", o.job.ref,
                 "reference label file (a folder of <case>.nii.gz for folder "
                 "input): Dice per class, HD95, ASSD, nnU-Net-like summary JSON");
  app.add_option("--summary", o.job.summary,
                 "where --ref writes the summary JSON (default: "
                 "OUTPUT/summary.json or <output>_summary.json)");
  CLI11_PARSE(app, argc, argv);
  try {
    return run(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "engine_infer: error: %s\n", e.what());
    return 1;
  }
}
