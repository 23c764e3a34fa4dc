// cuseg_dataset: dataset summary / integrity check, phantom generation and train/val splits.
// Thin: parse, call data/, print.
#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <map>

#include "cuseg/core/check.h"
#include "cuseg/data/dataset.h"
#include "cuseg/data/image.h"
#include "cuseg/data/phantom.h"

using namespace cuseg::data;
namespace fs = std::filesystem;

namespace {

int summary(const std::string& dir, int classes, bool check) {
  const Dataset d = discover(dir);
  std::printf("dataset %s (%s): %zu cases\n", d.root.c_str(), d.source.c_str(), d.cases.size());
  std::printf("classes:");
  for (const auto& kv : d.labels) std::printf(" %d=%s", kv.first, kv.second.c_str());
  std::printf("\n");
  for (const auto& n : d.notes) std::printf("note: %s\n", n.c_str());
  std::printf("%-28s %-14s %-22s %-4s %-10s %s\n", "case", "shape", "spacing (mm)", "orient",
              "type", "label voxels");
  std::map<std::string, int> shapes;
  for (const auto& c : d.cases) {
    std::string shape = "?", spacing = "?", orient = "?", type = "?", counts = "-";
    try {
      const FileInfo info = read_info(c.image);
      char b[96];
      std::snprintf(b, sizeof b, "%dx%dx%d", info.geo.size[0], info.geo.size[1], info.geo.size[2]);
      shape = b;
      std::snprintf(b, sizeof b, "%.3gx%.3gx%.3g", info.geo.spacing[0], info.geo.spacing[1],
                    info.geo.spacing[2]);
      spacing = b;
      orient = orientation_code(info.geo);
      type = info.component_type;
      shapes[shape]++;
    } catch (const std::exception& e) {
      shape = "unreadable";
    }
    if (!c.label.empty()) {
      try {
        const LabelMap lab = read_label(c.label);
        std::map<int, int64_t> h;
        for (uint8_t v : lab.v) h[v]++;
        counts.clear();
        for (const auto& kv : h) {
          if (h.size() > 8 && kv.first != 0 && kv.first > 2 && counts.size() > 60) {
            counts += " ...";
            break;
          }
          counts += (counts.empty() ? "" : " ") + std::to_string(kv.first) + ":" +
                    std::to_string(kv.second);
        }
      } catch (const std::exception& e) {
        counts = "unreadable label";
      }
    }
    std::printf("%-28s %-14s %-22s %-4s %-10s %s\n", c.id.c_str(), shape.c_str(), spacing.c_str(),
                orient.c_str(), type.c_str(), counts.c_str());
  }
  std::printf("shapes:");
  for (const auto& kv : shapes) std::printf(" %s (x%d)", kv.first.c_str(), kv.second);
  std::printf("\n");
  if (!check) return 0;
  const auto problems = check_dataset(d, classes);
  std::printf("integrity check (%d classes): %zu problem(s)\n", classes, problems.size());
  for (const auto& p : problems) std::printf("  %s: %s\n", p.file.c_str(), p.what.c_str());
  return problems.empty() ? 0 : 2;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"cuseg_dataset: inspect, check, split or generate CT segmentation datasets"};
  app.require_subcommand(1);

  auto* sum = app.add_subcommand("summary",
                                 "print cases, shapes, spacings, orientation, label "
                                 "counts and integrity problems of a folder");
  std::string sum_dir;
  int classes = 3;
  bool no_check = false;
  sum->add_option("dir", sum_dir,
                  "Decathlon folder (dataset.json / imagesTr+labelsTr) or a "
                  "folder of loose CT files")
      ->required();
  sum->add_option("--classes", classes, "number of label classes expected (0..classes-1)");
  sum->add_flag("--no-check", no_check, "skip the integrity check (headers only)");

  auto* ph = app.add_subcommand("phantom",
                                "write a synthetic abdominal CT dataset "
                                "(Decathlon layout, NIfTI)");
  std::string out_dir;
  int cases = 8;
  uint64_t seed = 0;
  std::vector<int> size{128, 128, 64};
  ph->add_option("-o,--out", out_dir, "output folder")->required();
  ph->add_option("--cases", cases, "number of cases")->check(CLI::Range(1, 100000));
  ph->add_option("--seed", seed, "random seed");
  ph->add_option("--size", size, "volume size X,Y,Z in voxels")->delimiter(',')->expected(3);

  auto* sp = app.add_subcommand("split", "make (or reuse) a deterministic train/val split");
  std::string sp_dir, sp_out;
  double val_fraction = 0.11;
  sp->add_option("dir", sp_dir, "dataset folder")->required();
  sp->add_option("-o,--out", sp_out, "split file (default DIR/splits.json)");
  sp->add_option("--val", val_fraction, "validation fraction (118 cases -> 13 at 0.11)");
  sp->add_option("--seed", seed, "random seed");

  auto* dc = app.add_subcommand("to-dicom",
                                "write a CT file (NIfTI, NRRD, MHA) as an int16 DICOM series, one "
                                "file per axial slice (to try DICOM input and DICOM SEG output)");
  std::string dc_in, dc_out;
  dc->add_option("image", dc_in, "CT file (HU)")->required();
  dc->add_option("-o,--out", dc_out, "output folder (created; must not hold a series yet)")
      ->required();

  CLI11_PARSE(app, argc, argv);
  try {
    if (*sum) return summary(sum_dir, classes, !no_check);
    if (*ph) {
      PhantomConfig cfg;
      cfg.size = {size[0], size[1], size[2]};
      cfg.seed = seed;
      const auto t0 = std::chrono::steady_clock::now();
      write_phantom_dataset(out_dir, cases, cfg);
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      std::printf("wrote %d phantom cases (%dx%dx%d, seed %llu) to %s in %.2f s\n", cases, size[0],
                  size[1], size[2], static_cast<unsigned long long>(seed), out_dir.c_str(), s);
      return 0;
    }
    if (*dc) {
      if (fs::exists(dc_out) && !fs::is_empty(dc_out))
        CUSEG_THROW(dc_out << ": folder exists and is not empty");
      Image img = read_image(dc_in);
      // A DICOM slice stack is right-handed (normal = row x column direction); a left-handed
      // file is reoriented to LPS first (a pure permutation / flip, no resampling).
      const auto& d = img.geo.direction;
      const double det = d[0] * (d[4] * d[8] - d[5] * d[7]) - d[1] * (d[3] * d[8] - d[5] * d[6]) +
                         d[2] * (d[3] * d[7] - d[4] * d[6]);
      if (det < 0) img = reorient(img, plan_reorientation(img.geo, "LPS"));
      write_dicom_series(img, dc_out);
      std::printf("%s -> %s: %d slices of %dx%d, %s\n", dc_in.c_str(), dc_out.c_str(),
                  img.geo.size[2], img.geo.size[0], img.geo.size[1], describe(img.geo).c_str());
      return 0;
    }
    if (*sp) {
      const Dataset d = discover(sp_dir);
      std::vector<std::string> ids;
      for (const auto& c : d.cases) ids.push_back(c.id);
      const std::string path = sp_out.empty() ? sp_dir + "/splits.json" : sp_out;
      const Split s = load_or_create_split(path, ids, val_fraction, seed);
      std::printf("%s: %zu train, %zu val\n", path.c_str(), s.train.size(), s.val.size());
      return 0;
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cuseg_dataset: %s\n", e.what());
    return 1;
  }
  return 0;
}
