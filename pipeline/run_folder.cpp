// Run folder: names, new / resume / start over (see run_folder.h).
#include "cuseg/pipeline/run_folder.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "cuseg/core/check.h"
#include "cuseg/pipeline/report.h"

namespace fs = std::filesystem;

namespace cuseg {

std::string RunFolder::file(const std::string& name) const {
  return (fs::path(dir) / name).string();
}

OpenedRun open_run_folder(const std::string& run_dir, const std::string& config_path,
                          const std::vector<std::string>& overrides, bool resume, bool overwrite,
                          bool writer) {
  OpenedRun r;
  r.folder.dir = run_dir;
  r.resume = resume;
  const RunFolder& run = r.folder;
  if (writer) fs::create_directories(run.dir);
  if (resume) {
    if (!fs::exists(run.last()))
      CUSEG_THROW(run.dir << ": --resume but there is no last.safetensors in this run folder");
    std::ifstream f(run.config_yaml());
    if (!f) CUSEG_THROW(run.config_yaml() << ": --resume needs the run's saved config");
    std::stringstream ss;
    ss << f.rdbuf();
    r.cfg = parse_config(ss.str(), run.config_yaml(), overrides);
  } else {
    if (config_path.empty()) CUSEG_THROW("a config is required: -c configs/demo.yaml");
    r.cfg = load_config(config_path, overrides);
    if (fs::exists(run.last()) && !overwrite)
      CUSEG_THROW(run.dir << ": already holds a run (last.safetensors); continue it with "
                             "--resume, or start over with --overwrite");
    if (!writer) return r;
    // Starting over: drop the previous run's outputs so nothing stale is mixed in.
    std::error_code ec;
    for (const char* f :
         {"last.safetensors", "last.optim.safetensors", "best.safetensors",
          "best.optim.safetensors", "metrics.jsonl", "train.log", "splits.json", "curves.svg"})
      fs::remove(run.file(f), ec);
    fs::remove_all(run.previews(), ec);
    for (const auto& e : fs::directory_iterator(run.dir, ec)) {  // best_<case>.gif
      const std::string n = e.path().filename().string();
      if (n.rfind("best_", 0) == 0 && n.size() > 4 && n.compare(n.size() - 4, 4, ".gif") == 0)
        fs::remove(e.path(), ec);
    }
  }
  if (writer) write_text_atomic(run.config_yaml(), r.cfg.resolved_yaml);
  return r;
}

}  // namespace cuseg
