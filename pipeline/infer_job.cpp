// engine_infer's work as a library call (see infer_job.h).
#include "cuseg/pipeline/infer_job.h"

#include <sys/resource.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "cuseg/core/check.h"
#include "cuseg/core/clock.h"
#include "cuseg/data/dicom_seg.h"
#include "cuseg/data/image.h"
#include "cuseg/engine/context.h"
#include "cuseg/engine/memory.h"
#include "cuseg/engine/precision.h"
#include "cuseg/pipeline/animation.h"
#include "cuseg/pipeline/report.h"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace cuseg {

namespace {

std::string temp_sibling(const std::string& path) {
  const fs::path p(path);
  return (p.parent_path() / (".partial-" + p.filename().string())).string();
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

double peak_rss_mib() {
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  return double(ru.ru_maxrss) / 1024.0;  // KiB on Linux
}

json opt_json(const std::optional<double>& v) {
  return v ? json(*v) : json(nullptr);
}

json transfers_json(const TransferStats& t) {
  return {{"host_to_device_bytes", t.host_to_device_bytes},
          {"device_to_host_bytes", t.device_to_host_bytes},
          {"host_to_device_copies", t.host_to_device_copies},
          {"device_to_host_copies", t.device_to_host_copies}};
}

json plan_json(const InferencePlan& p) {
  const GridOptions& g = p.grid;
  return {{"whole_volume", p.whole_volume},
          {"patch", {g.patch[0], g.patch[1], g.patch[2]}},
          {"overlap", g.overlap},
          {"batch", g.batch},
          {"mode", mode_name(g.mode)},
          {"precision", precision_name(p.precision)},
          {"tta", g.tta},
          {"patches", p.patches},
          {"padded_grid", {p.padded[0], p.padded[1], p.padded[2]}},
          {"max_memory_mib", to_mib(p.budget_bytes)},
          {"estimated_mib", to_mib(p.estimated_bytes)}};
}

// One case: read (+ reference), segment, write, preview, volumes, metrics.
CaseResult run_case(LoadedModel& m, Context& ctx, const SegmentOptions& seg, MaskFormat format,
                    const std::string& input, const std::string& output, const std::string& preview,
                    const std::string& probabilities, const std::string& ref,
                    const std::string& id) {
  CaseResult out;
  out.id = id;
  out.input = input;
  out.output = output;
  out.reference = ref;
  out.preview = preview;
  out.probabilities = probabilities;
  SegmentOptions so = seg;
  so.probabilities = !probabilities.empty();
  double t0 = now_s();
  // --max-memory bounds the reads too: a header asking for more is refused before any voxel
  // buffer exists (without it, the machine's memory is the bound).
  data::ReadLimits limits;
  limits.max_bytes = seg.max_memory_bytes;
  limits.limit_name = "--max-memory";
  const data::Image img = read_ct(input, limits);
  std::optional<data::LabelMap> reference;
  if (!ref.empty()) reference = read_reference(ref, img, input, m.cfg.classes, limits);
  out.times.add("read", now_s() - t0);
  out.input_grid = img.geo;
  out.orientation = data::orientation_code(img.geo);

  Segmentation s = segment(*m.net, ctx, m.cfg, img, so);
  out.plan = s.plan;
  out.transfers = s.transfers;
  for (const auto& st : s.times.stages) out.times.add(st.first, st.second);

  t0 = now_s();
  if (format == MaskFormat::DicomSeg)
    write_dicom_seg_verified(s.mask, input, output, img.geo);
  else
    write_mask_verified(s.mask, output, img.geo);
  if (!probabilities.empty()) {
    write_probabilities_verified(s.probabilities, probabilities, img.geo);
    s.probabilities.clear();
    s.probabilities.shrink_to_fit();
  }
  out.times.add("write", now_s() - t0);

  if (!preview.empty()) {
    t0 = now_s();
    const data::Image ras = data::to_ras(img);
    const data::LabelMap ras_mask = data::to_ras(s.mask);
    // Abdomen window: level 40 HU, width 400 HU.
    if (ends_with(preview, ".gif"))
      write_overlay_gif(ras, ras_mask, -160.f, 240.f, preview);  // every slice, animated
    else
      write_png(axial_montage(ras, ras_mask, -160.f, 240.f), preview);
    out.times.add("preview", now_s() - t0);
  }

  out.liver = data::structure_stats(data::liver_mask(s.mask), s.mask.geo);
  out.parenchyma = data::structure_stats(data::mask_of(s.mask, 1, 1), s.mask.geo);
  out.tumour = data::structure_stats(data::tumour_mask(s.mask), s.mask.geo);
  if (out.liver.touches_border) out.touches_border.push_back("liver");
  if (out.tumour.touches_border) out.touches_border.push_back("tumour");
  if (reference) out.metrics = data::evaluate_case(s.mask, *reference, id, true);
  out.peak_device_pool_mib = to_mib(memory_pool(ctx.device()).stats().peak);
  out.peak_rss_mib = peak_rss_mib();
  return out;
}

}  // namespace

std::string case_id(const std::string& path) {
  std::string n = fs::path(path).filename().string();
  n.resize(n.size() - data::image_extension(n).size());
  if (n.size() > 5 && n.compare(n.size() - 5, 5, "_0000") == 0) n.resize(n.size() - 5);
  return n;
}

bool is_image_file(const std::string& path) {
  const std::string n = fs::path(path).filename().string();
  return !n.empty() && n[0] != '.' && !data::image_extension(n).empty();
}

data::Image read_ct(const std::string& path, const data::ReadLimits& limits) {
  data::Image img;
  if (fs::is_directory(path)) {
    if (data::dicom_series_uids(path).empty())
      CUSEG_THROW(path << ": folder holds no DICOM series");
    img = data::read_dicom_series(path, "", limits);
  } else {
    if (!fs::exists(path)) CUSEG_THROW(path << ": no such file");
    img = data::read_image(path, limits);
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

data::LabelMap read_reference(const std::string& path, const data::Image& ct,
                              const std::string& ct_path, int classes,
                              const data::ReadLimits& limits) {
  if (!fs::exists(path)) CUSEG_THROW(path << ": no such reference label file");
  data::LabelMap ref = data::read_label(path, limits);
  std::string why;
  if (!data::same_grid(ct.geo, ref.geo, &why))
    CUSEG_THROW(path << ": reference label grid differs from the image " << ct_path << ": " << why);
  for (size_t n = 0; n < ref.v.size(); ++n)
    if (ref.v[n] >= classes)
      CUSEG_THROW(path << ": label value " << int(ref.v[n]) << " at voxel " << n
                       << " is out of range; expected 0.." << classes - 1);
  return ref;
}

void write_mask_verified(const data::LabelMap& mask, const std::string& path,
                         const data::Geometry& expected) {
  const std::string tmp = temp_sibling(path);
  try {
    data::write_label(mask, tmp);
    CUSEG_REQUIRE(fs::exists(tmp), path << ": the image writer did not create " << tmp);
    const data::FileInfo info = data::read_info(tmp);
    std::string why;
    CUSEG_REQUIRE(info.geo.size == expected.size && data::same_grid(info.geo, expected, &why),
                  path << ": written mask does not match the input grid: " << why);
    CUSEG_REQUIRE(info.component_type == "unsigned_char",
                  path << ": written mask is " << info.component_type << ", expected uint8");
    fs::rename(tmp, path);
  } catch (...) {
    std::error_code ec;
    fs::remove(tmp, ec);
    throw;
  }
}

void write_dicom_seg_verified(const data::LabelMap& mask, const std::string& series_dir,
                              const std::string& path, const data::Geometry& expected) {
  const std::string tmp = temp_sibling(path);
  try {
    data::write_dicom_seg(mask, series_dir, tmp);
    const data::DicomSegContents back = data::read_dicom_seg(tmp);
    std::string why;
    CUSEG_REQUIRE(
        back.labels.geo.size == expected.size && data::same_grid(back.labels.geo, expected, &why),
        path << ": written DICOM SEG does not match the input grid: " << why);
    CUSEG_REQUIRE(back.labels.v == mask.v,
                  path << ": written DICOM SEG does not hold the mask's voxels");
    fs::rename(tmp, path);
  } catch (...) {
    std::error_code ec;
    fs::remove(tmp, ec);
    throw;
  }
}

void write_probabilities_verified(const std::vector<data::Image>& classes, const std::string& path,
                                  const data::Geometry& expected) {
  const std::string tmp = temp_sibling(path);
  try {
    data::write_probabilities(classes, tmp);
    const data::FileInfo info = data::read_info(tmp);
    CUSEG_REQUIRE(
        info.dimensions == 4 && info.extent.size() == 4 && info.extent[3] == int(classes.size()),
        path << ": written probabilities are not 4-D with " << classes.size() << " classes");
    std::string why;
    CUSEG_REQUIRE(info.geo.size == expected.size && data::same_grid(info.geo, expected, &why),
                  path << ": written probabilities do not match the input grid: " << why);
    fs::rename(tmp, path);
  } catch (...) {
    std::error_code ec;
    fs::remove(tmp, ec);
    throw;
  }
}

int InferJobResult::exit_code() const {
  if (folder && done.empty()) return 1;
  return skipped.empty() ? 0 : 3;
}

InferJobResult run_infer_job(LoadedModel& m, Context& ctx, const InferJob& job,
                             const InferJobProgress& progress) {
  const double t_start = now_s();
  InferJobResult r;
  const GridOptions& g = job.segment.grid;
  for (int a = 0; a < 3; ++a)
    CUSEG_REQUIRE(g.overlap >= 0 && g.overlap % 2 == 0 && g.overlap < g.patch[size_t(a)],
                  "--overlap " << g.overlap << ": must be even and smaller than the patch");
  r.folder = fs::is_directory(job.input) && data::dicom_series_uids(job.input).empty();
  if (job.format == MaskFormat::DicomSeg)
    CUSEG_REQUIRE(fs::is_directory(job.input) && !r.folder,
                  "--output-type dicom-seg: " << job.input
                                              << " is not a DICOM series folder; a DICOM SEG "
                                                 "references the DICOM images it segments, so "
                                                 "it needs a DICOM series as input (use "
                                                 "--output-type nifti for other inputs)");
  if (!job.preview.empty() && !r.folder)
    CUSEG_REQUIRE(ends_with(job.preview, ".png") || ends_with(job.preview, ".gif"),
                  "--preview " << job.preview
                               << ": expected a .png (montage) or .gif (every slice) file name");
  CUSEG_REQUIRE(job.preview_format == "png" || job.preview_format == "gif",
                "--preview-format " << job.preview_format << ": expected png or gif");
  if (!job.probabilities.empty() && !r.folder)
    CUSEG_REQUIRE(ends_with(job.probabilities, ".nii.gz") || ends_with(job.probabilities, ".nii"),
                  "--probabilities " << job.probabilities
                                     << ": expected a .nii.gz or .nii file name (one 4-D NIfTI: "
                                        "i, j, k, class)");
  if (!r.folder) {
    if (!fs::is_directory(job.input) && !fs::exists(job.input))
      CUSEG_THROW(job.input << ": no such file or folder");
    if (job.format == MaskFormat::Image) {
      // The mask format follows the extension. niftilib cuts a name at its first ".nii", so
      // "a.nii.nii.gz" would land in "a.nii.gz": refuse such names up front.
      const std::string id = case_id(job.output);
      if (!is_image_file(job.output) || id.find(".nii") != std::string::npos)
        CUSEG_THROW(job.output << ": output must be a mask file name ending in .nii.gz, .nii, "
                                  ".nrrd, .mha or .mhd (with no other '.nii' in the name)");
    }
    CUSEG_REQUIRE(!fs::is_directory(job.output),
                  job.output << ": is a folder; for a single input give the mask file name "
                                "(e.g. mask.nii.gz)");
    if (fs::path(job.output).has_parent_path())
      fs::create_directories(fs::path(job.output).parent_path());
    const std::string id =
        fs::is_directory(job.input) ? fs::path(job.input).filename().string() : case_id(job.input);
    CUSEG_REQUIRE(job.probabilities.empty() || !fs::is_directory(job.probabilities),
                  "--probabilities " << job.probabilities
                                     << ": is a folder; for a single input give the file name "
                                        "(e.g. probabilities.nii.gz)");
    if (!job.probabilities.empty() && fs::path(job.probabilities).has_parent_path())
      fs::create_directories(fs::path(job.probabilities).parent_path());
    r.done.push_back(run_case(m, ctx, job.segment, job.format, job.input, job.output, job.preview,
                              job.probabilities, job.ref, id));
    if (progress.done) progress.done(r.done.back());
  } else {
    std::vector<fs::path> files;
    for (const auto& e : fs::directory_iterator(job.input))
      if (e.is_regular_file() && is_image_file(e.path().string())) files.push_back(e.path());
    std::sort(files.begin(), files.end());
    CUSEG_REQUIRE(!files.empty(),
                  job.input << ": no image files (.nii, .nii.gz, .nrrd, .mha, .mhd)");
    fs::create_directories(job.output);
    if (!job.preview.empty()) fs::create_directories(job.preview);
    if (!job.probabilities.empty()) fs::create_directories(job.probabilities);
    for (const auto& f : files) {
      const std::string id = case_id(f.string());
      const std::string out = (fs::path(job.output) / (id + ".nii.gz")).string();
      const std::string prev =
          job.preview.empty() ? ""
                              : (fs::path(job.preview) / (id + "." + job.preview_format)).string();
      const std::string probs = job.probabilities.empty()
                                    ? ""
                                    : (fs::path(job.probabilities) / (id + ".nii.gz")).string();
      std::string ref;  // the first existing <id><ext>, in the readers' extension order
      if (!job.ref.empty()) {
        for (const std::string& ext : data::image_extensions()) {
          const fs::path p = fs::path(job.ref) / (id + ext);
          if (fs::exists(p)) {
            ref = p.string();
            break;
          }
        }
      }
      try {
        r.done.push_back(run_case(m, ctx, job.segment, MaskFormat::Image, f.string(), out, prev,
                                  probs, ref, id));
        if (progress.done) progress.done(r.done.back());
      } catch (const std::exception& e) {
        r.skipped.emplace_back(f.string(), e.what());
        if (progress.skipped) progress.skipped(f.string(), e.what());
      }
    }
  }

  const std::string device = device_name(ctx.device());
  if (!job.stats.empty()) {
    json s;
    if (r.folder) {
      s = {{"cases", json::array()}, {"skipped", r.skipped.size()}};
      for (const auto& c : r.done)
        s["cases"].push_back(json::parse(case_stats_json(c, device, m.checkpoint)));
    } else if (!r.done.empty()) {
      s = json::parse(case_stats_json(r.done[0], device, m.checkpoint));
    }
    s["seconds_wall"] = job.seconds_before + (now_s() - t_start);
    if (fs::path(job.stats).has_parent_path())
      fs::create_directories(fs::path(job.stats).parent_path());
    write_text_atomic(job.stats, s.dump(2) + "\n");
    r.stats_path = job.stats;
  }
  const bool any_metrics = std::any_of(r.done.begin(), r.done.end(),
                                       [](const CaseResult& c) { return bool(c.metrics); });
  if (any_metrics) {
    std::string sp = job.summary;
    if (sp.empty())
      sp = r.folder ? (fs::path(job.output) / "summary.json").string()
                    : (fs::path(job.output).parent_path() / (case_id(job.output) + "_summary.json"))
                          .string();
    const std::string text = summary_json(r.done);
    write_text_atomic(sp, text);
    const json sj = json::parse(text);
    r.summary_path = sp;
    r.mean_dice_liver = sj["mean"]["liver"]["Dice"].get<double>();
    r.mean_dice_tumour = sj["mean"]["tumour"]["Dice"].get<double>();
  }
  return r;
}

std::string case_stats_json(const CaseResult& c, const std::string& device,
                            const std::string& checkpoint) {
  json times = json::object();
  for (const auto& s : c.times.stages) times[s.first] = s.second;
  auto structure_json = [](const data::StructureStats& s) {
    return json{{"voxels", s.voxels},
                {"ml", s.ml},
                {"components", s.components},
                {"largest_component_voxels", s.largest_voxels},
                {"largest_component_ml", s.largest_ml},
                {"touches_border", s.touches_border}};
  };
  json labels = {{"1", structure_json(c.parenchyma)}, {"2", structure_json(c.tumour)}};
  labels["1"]["name"] = "liver (without tumour)";
  labels["2"]["name"] = "tumour";
  json j = {{"case", c.id},
            {"input", c.input},
            {"output", c.output},
            {"size", c.input_grid.size},
            {"spacing_mm", c.input_grid.spacing},
            {"orientation", c.orientation},
            {"liver_ml", c.liver.ml},  // LiTS convention: liver includes tumour
            {"liver_voxels", c.liver.voxels},
            {"tumour_ml", c.tumour.ml},
            {"tumour_voxels", c.tumour.voxels},
            {"tumour_count", c.tumour.components},  // lesions: 26-connected components of label 2
            {"largest_lesion_ml", c.tumour.largest_ml},
            {"largest_lesion_voxels", c.tumour.largest_voxels},
            {"labels", labels},
            // Structures that reach the first or last slice of some axis: they may continue
            // outside the scan, so their volume is a lower bound.
            {"touches_border", c.touches_border},
            {"seconds", times},
            {"seconds_total", c.times.total()},
            {"device", device},
            // The network's compute precision (aggregation is fp32 in both) and the GPU
            // libraries this process ran with (cuDNN 9.8-9.10 got bf16 3-D convolutions wrong).
            {"precision", precision_name(c.plan.precision)},
            {"libraries", gpu_library_versions()},
            {"plan", plan_json(c.plan)},
            {"transfers", transfers_json(c.transfers)},
            {"peak_device_pool_mib", c.peak_device_pool_mib},
            {"peak_rss_mib", c.peak_rss_mib},
            {"checkpoint", checkpoint}};
  if (!c.preview.empty()) j["preview"] = c.preview;
  if (!c.probabilities.empty()) {
    j["probabilities"] = c.probabilities;
    j["probabilities_encoding"] =
        "4-D NIfTI (i, j, k, class), uint8 q with scl_slope 1/255: p = q / 255";
  }
  if (!c.reference.empty()) j["reference"] = c.reference;
  return j.dump(2) + "\n";
}

std::string summary_json(const std::vector<CaseResult>& cases) {
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
                   {"reference_file", c.reference},
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
  const json j = {{"metric_per_case", per},
                  {"mean", {{"liver", {{"Dice", s[0] / n}}}, {"tumour", {{"Dice", s[1] / n}}}}},
                  {"foreground_mean", {{"Dice", (s[0] + s[1]) / (2 * n)}}},
                  {"global_dice", {{"liver", g.liver}, {"tumour", g.tumour}}},
                  {"conventions", "liver = label >= 1 (includes tumour), tumour = label 2 (LiTS)"}};
  return j.dump(2) + "\n";
}

}  // namespace cuseg
