// engine_infer: segment CT volumes with a trained model (liver 1, tumour 2).
// Thin: parse flags, walk the inputs, call model/inference.h, write + verify, report.
//
// INPUT may be a NIfTI/NRRD/MHA file, a DICOM series folder, or a folder of image files (then
// OUTPUT is a folder and a bad case is reported and skipped). Masks are uint8 on exactly the
// input grid; each is written to a temporary name, read back and checked, then renamed, so a
// failed case never leaves a partial file.
// Exit codes: 0 all cases done, 1 error (nothing written), 3 some cases of a folder failed.
#include <sys/resource.h>

#include <CLI/CLI.hpp>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "cuseg/core/check.h"
#include "cuseg/core/clock.h"
#include "cuseg/data/dicom_seg.h"
#include "cuseg/data/image.h"
#include "cuseg/data/metrics.h"
#include "cuseg/engine/context.h"
#include "cuseg/pipeline/animation.h"
#include "cuseg/pipeline/inference.h"
#include "cuseg/pipeline/report.h"

namespace fs = std::filesystem;
using json = nlohmann::json;
using namespace cuseg;

namespace {

bool is_image_file(const fs::path& p) {
  const std::string n = p.filename().string();
  return !n.empty() && n[0] != '.' && !data::image_extension(n).empty();
}

// Case id of an image file: the name without its image extension and nnU-Net's _0000 suffix.
std::string case_id(const fs::path& p) {
  std::string n = p.filename().string();
  n.resize(n.size() - data::image_extension(n).size());
  if (n.size() > 5 && n.compare(n.size() - 5, 5, "_0000") == 0) n.resize(n.size() - 5);
  return n;
}

// Temporary sibling with the same extension(s) so ITK picks the same format.
std::string temp_sibling(const std::string& path) {
  const fs::path p(path);
  return (p.parent_path() / (".partial-" + p.filename().string())).string();
}

data::Image read_input(const std::string& path) {
  data::Image img;
  if (fs::is_directory(path)) {
    if (data::dicom_series_uids(path).empty())
      CUSEG_THROW(path << ": folder holds no DICOM series");
    img = data::read_dicom_series(path);
  } else {
    if (!fs::exists(path)) CUSEG_THROW(path << ": no such file");
    img = data::read_image(path);
    // ITK's NIfTI reader turns NaN/Inf into 0 silently: scan the stored payload too.
    const std::string n = fs::path(path).filename().string();
    if (n.size() > 4 && (n.find(".nii") != std::string::npos)) {
      const data::NonFiniteScan sc = data::scan_nifti_nonfinite(path);
      if (sc.count > 0)
        CUSEG_THROW(path << ": image holds " << sc.count << " non-finite value(s) (" << sc.nan
                         << " NaN), first at voxel " << sc.first
                         << "; expected finite intensities (HU)");
    }
  }
  for (size_t n = 0; n < img.v.size(); ++n)
    if (!std::isfinite(img.v[n]))
      CUSEG_THROW(path << ": image holds a non-finite value (" << img.v[n] << ") at voxel " << n
                       << "; expected finite intensities (HU)");
  return img;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

struct Options {
  std::string model, input, output, device = "auto", mode, preview, stats, ref, summary;
  std::string output_type = "nifti", preview_format;
  int overlap = -1, batch = -1;
  double max_memory_mib = 0;
};

struct CaseOut {
  std::string id, input, output;
  json stats;
  std::optional<data::CaseMetrics> metrics;
};

CaseOut run_case(LoadedModel& m, Context& ctx, const GridOptions& gopt, size_t max_memory_bytes,
                 const std::string& input, const std::string& output, const std::string& preview,
                 const std::string& ref, const std::string& id, bool dicom_seg = false) {
  CaseOut out;
  out.id = id;
  out.input = input;
  out.output = output;
  StageTimes t;
  double t0 = now_s();
  const data::Image img = read_input(input);
  std::optional<data::LabelMap> reference;
  if (!ref.empty()) {
    if (!fs::exists(ref)) CUSEG_THROW(ref << ": no such reference label file");
    reference = data::read_label(ref);
    std::string why;
    if (!data::same_grid(img.geo, reference->geo, &why))
      CUSEG_THROW(ref << ": reference label grid differs from the image " << input << ": " << why);
    for (size_t n = 0; n < reference->v.size(); ++n)
      if (reference->v[n] >= m.cfg.classes)
        CUSEG_THROW(ref << ": label value " << int(reference->v[n]) << " at voxel " << n
                        << " is out of range; expected 0.." << m.cfg.classes - 1);
  }
  t.add("read", now_s() - t0);

  t0 = now_s();
  GridOptions run_opt = gopt;
  json plan;
  if (max_memory_bytes > 0) {
    // The whole-volume decision needs the preprocessed size (after resample / crop).
    const data::Index3 size = preprocess(m.cfg, img, nullptr, nullptr).image.geo.size;
    bool whole = false;
    run_opt = fit_to_memory(ctx, m.cfg.model, size, gopt, max_memory_bytes, &whole);
    std::printf(
        "  --max-memory %.0f MiB: %s, estimated %.0f MiB\n", to_mib(max_memory_bytes),
        whole ? ("whole volume in one pass (" + std::to_string(run_opt.patch[0]) + "x" +
                 std::to_string(run_opt.patch[1]) + "x" + std::to_string(run_opt.patch[2]) + ")")
                    .c_str()
              : ("grid, batch " + std::to_string(run_opt.batch)).c_str(),
        to_mib(inference_bytes(ctx, m.cfg.model, run_opt.patch, run_opt.batch)));
    plan = {
        {"whole_volume", whole},
        {"patch", {run_opt.patch[0], run_opt.patch[1], run_opt.patch[2]}},
        {"batch", run_opt.batch},
        {"max_memory_mib", to_mib(max_memory_bytes)},
        {"estimated_mib", to_mib(inference_bytes(ctx, m.cfg.model, run_opt.patch, run_opt.batch))}};
  }
  const Preprocessed pre = preprocess(m.cfg, img, nullptr, &run_opt.patch);
  t.add("preprocess", now_s() - t0);
  const data::LabelMap model_mask = predict_volume(*m.net, ctx, pre.image, run_opt, &t);
  t0 = now_s();
  const data::LabelMap mask = restore_geometry(pre, model_mask);
  t.add("restore", now_s() - t0);

  // Write to a temporary sibling, read back, verify the grid, then rename.
  t0 = now_s();
  const std::string tmp = temp_sibling(output);
  try {
    if (dicom_seg) {
      // A DICOM SEG referencing the input series, read back with DCMTK: the same voxels on
      // the same grid as the mask.
      data::write_dicom_seg(mask, input, tmp);
      const data::DicomSegContents back = data::read_dicom_seg(tmp);
      std::string why;
      CUSEG_REQUIRE(
          back.labels.geo.size == img.geo.size && data::same_grid(back.labels.geo, img.geo, &why),
          output << ": written DICOM SEG does not match the input grid: " << why);
      CUSEG_REQUIRE(back.labels.v == mask.v,
                    output << ": written DICOM SEG does not hold the mask's voxels");
    } else {
      data::write_label(mask, tmp);
      CUSEG_REQUIRE(fs::exists(tmp), output << ": the image writer did not create " << tmp);
      const data::FileInfo info = data::read_info(tmp);
      std::string why;
      CUSEG_REQUIRE(info.geo.size == img.geo.size && data::same_grid(info.geo, img.geo, &why),
                    output << ": written mask does not match the input grid: " << why);
      CUSEG_REQUIRE(info.component_type == "unsigned_char",
                    output << ": written mask is " << info.component_type << ", expected uint8");
    }
    fs::rename(tmp, output);
  } catch (...) {
    std::error_code ec;
    fs::remove(tmp, ec);
    throw;
  }
  t.add("write", now_s() - t0);

  if (!preview.empty()) {
    t0 = now_s();
    const data::Image ras = data::to_ras(img);
    const data::LabelMap ras_mask = data::to_ras(mask);
    // Abdomen window: level 40 HU, width 400 HU.
    if (ends_with(preview, ".gif"))
      write_overlay_gif(ras, ras_mask, -160.f, 240.f, preview);  // every slice, animated
    else
      write_png(axial_montage(ras, ras_mask, -160.f, 240.f), preview);
    t.add("preview", now_s() - t0);
  }

  // Per-structure statistics. "liver" in liver_ml follows LiTS (label >= 1, tumour included);
  // "labels" gives each label value on its own.
  const data::StructureStats liver = data::structure_stats(data::liver_mask(mask), mask.geo);
  const data::StructureStats parenchyma =
      data::structure_stats(data::mask_of(mask, 1, 1), mask.geo);
  const data::StructureStats tumour = data::structure_stats(data::tumour_mask(mask), mask.geo);
  auto structure_json = [](const data::StructureStats& s) {
    return json{{"voxels", s.voxels},
                {"ml", s.ml},
                {"components", s.components},
                {"largest_component_voxels", s.largest_voxels},
                {"largest_component_ml", s.largest_ml},
                {"touches_border", s.touches_border}};
  };
  json labels = {{"1", structure_json(parenchyma)}, {"2", structure_json(tumour)}};
  labels["1"]["name"] = "liver (without tumour)";
  labels["2"]["name"] = "tumour";
  json incomplete = json::array();
  if (liver.touches_border) incomplete.push_back("liver");
  if (tumour.touches_border) incomplete.push_back("tumour");
  json times = json::object();
  for (const auto& s : t.stages) times[s.first] = s.second;
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  out.stats = {{"case", id},
               {"input", input},
               {"output", output},
               {"size", img.geo.size},
               {"spacing_mm", img.geo.spacing},
               {"orientation", data::orientation_code(img.geo)},
               {"liver_ml", liver.ml},  // LiTS convention: liver includes tumour
               {"liver_voxels", liver.voxels},
               {"tumour_ml", tumour.ml},
               {"tumour_voxels", tumour.voxels},
               {"tumour_count", tumour.components},  // lesions: 26-connected components of label 2
               {"largest_lesion_ml", tumour.largest_ml},
               {"largest_lesion_voxels", tumour.largest_voxels},
               {"labels", labels},
               // Structures that reach the first or last slice of some axis: they may continue
               // outside the scan, so their volume is a lower bound.
               {"touches_border", incomplete},
               {"seconds", times},
               {"seconds_total", t.total()},
               {"device", device_name(ctx.device())},
               {"peak_device_pool_mib", to_mib(memory_pool(ctx.device()).stats().peak)},
               {"peak_rss_mib", double(ru.ru_maxrss) / 1024.0},
               {"checkpoint", m.checkpoint}};
  if (!preview.empty()) out.stats["preview"] = preview;
  if (!plan.is_null()) out.stats["plan"] = plan;
  std::string line;
  for (const auto& s : t.stages) {
    char b[64];
    std::snprintf(b, sizeof b, "%s%s %.2f s", line.empty() ? "" : " | ", s.first.c_str(), s.second);
    line += b;
  }
  std::printf(
      "%s: %s -> %s\n  time: %s (total %.2f s)\n  liver %.1f mL, tumour %.1f mL in %d "
      "lesion(s)\n",
      id.c_str(), input.c_str(), output.c_str(), line.c_str(), t.total(),
      out.stats["liver_ml"].get<double>(), out.stats["tumour_ml"].get<double>(),
      out.stats["tumour_count"].get<int>());
  if (tumour.components > 0)
    std::printf("  largest lesion %.2f mL (%lld voxels)\n", tumour.largest_ml,
                (long long)tumour.largest_voxels);
  for (const auto& name : incomplete)
    std::printf("  warning: the %s touches the image border: its volume is incomplete\n",
                name.get<std::string>().c_str());
  if (reference) {
    out.metrics = data::evaluate_case(mask, *reference, id, true);
    const auto& c = *out.metrics;
    std::printf("  vs %s: Dice liver %.4f tumour %.4f, HD95 liver %s mm tumour %s mm\n",
                ref.c_str(), c.dice_liver, c.dice_tumour,
                data::fmt_opt(c.liver_surface.hd95_mm).c_str(),
                data::fmt_opt(c.tumour_surface.hd95_mm).c_str());
  }
  std::fflush(stdout);
  return out;
}

json opt_json(const std::optional<double>& v) {
  return v ? json(*v) : json(nullptr);
}

// nnU-Net-like summary: metric_per_case, mean, foreground_mean (+ LiTS global Dice).
json summary_json(const std::vector<CaseOut>& cases) {
  json per = json::array();
  std::vector<data::CaseMetrics> ms;
  double s[2] = {0, 0};
  for (const auto& c : cases) {
    if (!c.metrics) continue;
    const auto& m = *c.metrics;
    ms.push_back(m);
    s[0] += m.dice_liver, s[1] += m.dice_tumour;
    per.push_back({{"case", c.id},
                   {"prediction_file", c.output},
                   {"reference_file", c.stats.value("reference", "")},
                   {"metrics",
                    {{"liver",
                      {{"Dice", m.dice_liver},
                       {"HD95_mm", opt_json(m.liver_surface.hd95_mm)},
                       {"ASSD_mm", opt_json(m.liver_surface.assd_mm)},
                       {"volume_pred_ml", m.liver_ml_pred},
                       {"volume_ref_ml", m.liver_ml_ref}}},
                     {"tumour",
                      {{"Dice", m.dice_tumour},
                       {"HD95_mm", opt_json(m.tumour_surface.hd95_mm)},
                       {"ASSD_mm", opt_json(m.tumour_surface.assd_mm)},
                       {"volume_pred_ml", m.tumour_ml_pred},
                       {"volume_ref_ml", m.tumour_ml_ref},
                       {"count_pred", m.tumours_pred},
                       {"count_ref", m.tumours_ref}}}}}});
  }
  const double n = std::max<size_t>(1, ms.size());
  const auto g = data::global_dice(ms);
  return {{"metric_per_case", per},
          {"mean", {{"liver", {{"Dice", s[0] / n}}}, {"tumour", {{"Dice", s[1] / n}}}}},
          {"foreground_mean", {{"Dice", (s[0] + s[1]) / (2 * n)}}},
          {"global_dice", {{"liver", g.liver}, {"tumour", g.tumour}}},
          {"conventions", "liver = label >= 1 (includes tumour), tumour = label 2 (LiTS)"}};
}

int run(const Options& o) {
  const double t_all = now_s();
  const Device dev = resolve_device(o.device);
  Context ctx(dev);
  double t0 = now_s();
  LoadedModel m = load_model(o.model, dev);
  GridOptions gopt = grid_options(m.cfg);
  if (o.overlap >= 0) gopt.overlap = o.overlap;
  if (o.batch > 0) gopt.batch = o.batch;
  if (!o.mode.empty()) gopt.mode = parse_mode(o.mode);
  for (int a = 0; a < 3; ++a)
    CUSEG_REQUIRE(gopt.overlap % 2 == 0 && gopt.overlap < gopt.patch[size_t(a)],
                  "--overlap " << gopt.overlap << ": must be even and smaller than the patch");
  std::printf(
      "model %s (%lld parameters, patch %dx%dx%d, overlap %d, batch %d, mode %s) on %s, "
      "loaded in %.2f s\n",
      m.checkpoint.c_str(), (long long)m.net->num_parameters(), gopt.patch[0], gopt.patch[1],
      gopt.patch[2], gopt.overlap, gopt.batch, o.mode.empty() ? m.cfg.mode.c_str() : o.mode.c_str(),
      device_name(dev), now_s() - t0);

  CUSEG_REQUIRE(o.max_memory_mib >= 0,
                "--max-memory " << o.max_memory_mib << ": expected MiB >= 0");
  const size_t mm = size_t(o.max_memory_mib * 1024.0 * 1024.0);
  const bool folder = fs::is_directory(o.input) && data::dicom_series_uids(o.input).empty();
  const bool dicom_seg = o.output_type == "dicom-seg";
  if (dicom_seg)
    CUSEG_REQUIRE(fs::is_directory(o.input) && !folder,
                  "--output-type dicom-seg: " << o.input
                                              << " is not a DICOM series folder; a DICOM SEG "
                                                 "references the DICOM images it segments, so "
                                                 "it needs a DICOM series as input (use "
                                                 "--output-type nifti for other inputs)");
  if (!o.preview.empty() && !folder)
    CUSEG_REQUIRE(
        ends_with(o.preview, ".png") || ends_with(o.preview, ".gif"),
        "--preview " << o.preview << ": expected a .png (montage) or .gif (every slice) file name");
  std::vector<CaseOut> done;
  int failed = 0;
  if (!folder) {
    if (!fs::is_directory(o.input) && !fs::exists(o.input))
      CUSEG_THROW(o.input << ": no such file or folder");
    if (!dicom_seg) {
      // The mask format follows the extension. niftilib cuts a name at its first ".nii", so
      // "a.nii.nii.gz" would land in "a.nii.gz": refuse such names up front.
      const std::string id = case_id(o.output);
      if (!is_image_file(o.output) || id.find(".nii") != std::string::npos)
        CUSEG_THROW(o.output << ": output must be a mask file name ending in .nii.gz, .nii, "
                                ".nrrd, .mha or .mhd (with no other '.nii' in the name)");
    }
    CUSEG_REQUIRE(!fs::is_directory(o.output),
                  o.output << ": is a folder; for a single input give the mask file name "
                              "(e.g. mask.nii.gz)");
    if (fs::path(o.output).has_parent_path())
      fs::create_directories(fs::path(o.output).parent_path());
    std::string id =
        fs::is_directory(o.input) ? fs::path(o.input).filename().string() : case_id(o.input);
    done.push_back(run_case(m, ctx, gopt, mm, o.input, o.output, o.preview, o.ref, id, dicom_seg));
    if (!o.ref.empty()) done.back().stats["reference"] = o.ref;
  } else {
    std::vector<fs::path> files;
    for (const auto& e : fs::directory_iterator(o.input))
      if (e.is_regular_file() && is_image_file(e.path())) files.push_back(e.path());
    std::sort(files.begin(), files.end());
    CUSEG_REQUIRE(!files.empty(), o.input << ": no image files (.nii, .nii.gz, .nrrd, .mha, .mhd)");
    fs::create_directories(o.output);
    if (!o.preview.empty()) fs::create_directories(o.preview);
    for (const auto& f : files) {
      const std::string id = case_id(f);
      const std::string out = (fs::path(o.output) / (id + ".nii.gz")).string();
      const std::string prev =
          o.preview.empty()
              ? ""
              : (fs::path(o.preview) / (id + (o.preview_format == "gif" ? ".gif" : ".png")))
                    .string();
      std::string ref;
      if (!o.ref.empty()) {
        for (const std::string& ext : data::image_extensions()) {
          const fs::path r = fs::path(o.ref) / (id + ext);
          if (fs::exists(r)) {
            ref = r.string();
            break;
          }
        }
      }
      try {
        done.push_back(run_case(m, ctx, gopt, mm, f.string(), out, prev, ref, id));
        if (!ref.empty()) done.back().stats["reference"] = ref;
      } catch (const std::exception& e) {
        ++failed;
        std::fprintf(stderr, "engine_infer: skipped %s: %s\n", f.string().c_str(), e.what());
      }
    }
    std::printf("%zu case(s) done, %d skipped\n", done.size(), failed);
  }

  if (!o.stats.empty()) {
    json s = folder ? json{{"cases", json::array()}} : done.empty() ? json() : done[0].stats;
    if (folder)
      for (const auto& c : done) s["cases"].push_back(c.stats);
    if (folder) s["skipped"] = failed;
    s["seconds_wall"] = now_s() - t_all;
    if (fs::path(o.stats).has_parent_path())
      fs::create_directories(fs::path(o.stats).parent_path());
    write_text_atomic(o.stats, s.dump(2) + "\n");
    std::printf("stats: %s\n", o.stats.c_str());
  }
  const bool any_metrics =
      std::any_of(done.begin(), done.end(), [](const CaseOut& c) { return bool(c.metrics); });
  if (any_metrics) {
    std::string sp = o.summary;
    if (sp.empty())
      sp =
          folder
              ? (fs::path(o.output) / "summary.json").string()
              : (fs::path(o.output).parent_path() / (case_id(o.output) + "_summary.json")).string();
    const json sj = summary_json(done);
    write_text_atomic(sp, sj.dump(2) + "\n");
    std::printf("summary: mean Dice liver %.4f tumour %.4f -> %s\n",
                sj["mean"]["liver"]["Dice"].get<double>(),
                sj["mean"]["tumour"]["Dice"].get<double>(), sp.c_str());
  }
  std::printf("peak memory: device pool %.1f MiB (%s)\n", to_mib(memory_pool(dev).stats().peak),
              device_name(dev));
  if (folder && done.empty()) return 1;
  return failed ? 3 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "engine_infer: segment liver (1) and liver tumour (2) in CT with a trained cuseg model.\n"
      "INPUT: a NIfTI/NRRD/MHA file, a DICOM series folder, or a folder of image files (then "
      "OUTPUT is a folder).\n"
      "Example: engine_infer -m runs/demo -i ct.nii.gz -o mask.nii.gz --preview mask.gif "
      "--stats stats.json\n"
      "DICOM: engine_infer -m runs/demo -i dicom_series/ -o seg.dcm --output-type dicom-seg"};
  Options o;
  app.add_option("-m,--model", o.model, "checkpoint file, or a run folder (uses best, else last)")
      ->required();
  app.add_option("-i,--input", o.input, "CT file, DICOM folder, or folder of CT files")->required();
  app.add_option("-o,--output", o.output,
                 "mask file (.nii.gz, .nii, .nrrd, .mha), a folder for folder input, or the "
                 "DICOM SEG file (e.g. seg.dcm) with --output-type dicom-seg")
      ->required();
  app.add_option("--device", o.device, "auto | cuda | cpu (auto = CUDA when a device answers)")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "cuda", "cpu"}));
  app.add_option("--overlap", o.overlap,
                 "grid overlap in voxels, even (default: the model's inference.overlap, 8 in "
                 "the reference)");
  app.add_option("--batch", o.batch,
                 "patches per network call (default: the model's "
                 "inference.batch, 4 in the reference)");
  app.add_option("--max-memory", o.max_memory_mib,
                 "memory budget in MiB for the network (0 = off): runs the whole volume in one "
                 "pass when it fits, else the largest patch batch that fits (overrides --batch)")
      ->capture_default_str();
  app.add_option("--mode", o.mode,
                 "aggregation of overlapping patches: crop | average | hann "
                 "(default: the model's inference.mode)")
      ->check(CLI::IsMember({"crop", "average", "hann"}));
  app.add_option("--output-type", o.output_type,
                 "nifti: a label mask file (see --output); dicom-seg: a DICOM Segmentation "
                 "object (liver and tumour segments, SNOMED CT coded) referencing the input "
                 "DICOM series (DICOM series input only)")
      ->capture_default_str()
      ->check(CLI::IsMember({"nifti", "dicom-seg"}));
  app.add_option("--preview", o.preview,
                 "picture of the CT with liver (green) and tumour (red) overlaid: x.png = axial "
                 "montage, x.gif = every slice, animated, with legend and slice index (a "
                 "folder for folder input, see --preview-format)");
  app.add_option("--preview-format", o.preview_format,
                 "for folder input: png (default) or gif previews")
      ->check(CLI::IsMember({"png", "gif"}));
  app.add_option("--stats", o.stats,
                 "JSON: liver/tumour mL, tumour count, seconds per stage, "
                 "peak memory, device");
  app.add_option("--ref", o.ref,
                 "reference label file (a folder of <case>.nii.gz for folder "
                 "input): Dice per class, HD95, ASSD, nnU-Net-like summary JSON");
  app.add_option("--summary", o.summary,
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
