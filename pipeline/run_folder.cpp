// Run folder: names, new / resume / start over (see run_folder.h).
#include "cuseg/pipeline/run_folder.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "cuseg/core/atomic_file.h"
#include "cuseg/core/check.h"
#include "cuseg/pipeline/report.h"
#include "cuseg/pipeline/train_log.h"

namespace fs = std::filesystem;

namespace cuseg {

std::string RunFolder::file(const std::string& name) const {
  return (fs::path(dir) / name).string();
}

namespace {

std::string read_text(const std::string& path) {
  std::ifstream f(path);
  if (!f) CUSEG_THROW(path << ": cannot read");
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Outputs of an earlier run in the folder (train.log is handled by the caller).
void remove_outputs(const RunFolder& run) {
  std::error_code ec;
  for (const char* f : {"last.safetensors", "last.optim.safetensors", "last.optim.safetensors.next",
                        "best.safetensors", "best.optim.safetensors", "best.optim.safetensors.next",
                        "metrics.jsonl", "splits.json", "curves.svg"})
    fs::remove(run.file(f), ec);
  fs::remove_all(run.previews(), ec);
  for (const auto& e : fs::directory_iterator(run.dir, ec)) {  // best_<case>.gif
    const std::string n = e.path().filename().string();
    if (n.rfind("best_", 0) == 0 && n.size() > 4 && n.compare(n.size() - 4, 4, ".gif") == 0)
      fs::remove(e.path(), ec);
  }
}

}  // namespace

OpenedRun open_run_folder(const std::string& run_dir, const std::string& config_path,
                          const std::vector<std::string>& overrides, bool resume, bool overwrite,
                          bool writer) {
  OpenedRun r;
  r.folder.dir = run_dir;
  const RunFolder& run = r.folder;
  std::error_code ec;
  if (writer) {
    fs::create_directories(run.dir, ec);
    if (ec || !fs::is_directory(run.dir))
      CUSEG_THROW(run.dir << ": cannot create the run folder (" << ec.message() << ")");
    const int stale = remove_stale_temporaries(run.dir) + remove_stale_temporaries(run.previews());
    if (stale > 0)
      r.warnings.push_back(
          fmt("removed %d temporary file(s) left by an interrupted session", stale));
  }

  const bool has_checkpoint = fs::exists(run.last());
  if (resume && has_checkpoint) {
    r.resume = true;
    if (!fs::exists(run.config_yaml()))
      CUSEG_THROW(run.config_yaml() << ": --resume needs the run's saved config");
    r.cfg = parse_config(read_text(run.config_yaml()), run.config_yaml(), overrides);
    if (!config_path.empty())
      r.warnings.push_back("resuming with the run's own " + run.config_yaml() + "; -c " +
                           config_path + " is not used");
  } else if (resume) {
    // Nothing to resume: start a new run, as nnU-Net's --c does.
    const bool own = config_path.empty();
    if (own && !fs::exists(run.config_yaml()))
      CUSEG_THROW(run.dir << ": nothing to resume (no last.safetensors) and no config to start "
                             "a new run from: give -c CONFIG");
    r.cfg = own ? parse_config(read_text(run.config_yaml()), run.config_yaml(), overrides)
                : load_config(config_path, overrides);
    r.warnings.push_back("--resume: " + run.dir +
                         " holds no checkpoint (last.safetensors) to continue; starting a new "
                         "run from " +
                         (own ? run.config_yaml() : config_path));
    if (writer) remove_outputs(run);  // a killed session's records and pictures; its log stays
  } else {
    if (config_path.empty()) CUSEG_THROW("a config is required: -c configs/demo.yaml");
    r.cfg = load_config(config_path, overrides);
    if (has_checkpoint && !overwrite)
      CUSEG_THROW(run.dir << ": already holds a run (last.safetensors); continue it with "
                             "--resume, or start over with --overwrite");
    // Starting over: drop the previous run's outputs so nothing stale is mixed in.
    if (writer) {
      remove_outputs(run);
      fs::remove(run.train_log(), ec);
    }
  }
  if (!writer) {
    r.warnings.clear();  // rank 0 reports them
    return r;
  }
  write_text_atomic(run.config_yaml(), r.cfg.resolved_yaml);
  return r;
}

}  // namespace cuseg
