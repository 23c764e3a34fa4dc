// Dataset, split, preprocessing cache and validation set (see training_data.h).
#include "cuseg/pipeline/training_data.h"

#include <algorithm>
#include <filesystem>
#include <random>
#include <sstream>

#include "cuseg/core/check.h"
#include "cuseg/core/clock.h"
#include "cuseg/core/random.h"
#include "cuseg/data/phantom.h"

namespace fs = std::filesystem;

namespace cuseg {

TrainingData::TrainingData(const RunConfig& cfg, const std::string& splits_path, TrainLog& log)
    : cfg_(cfg) {
  if (cfg.phantom_generate && !fs::exists(fs::path(cfg.data_dir) / "dataset.json")) {
    const double t0 = now_s();
    data::PhantomConfig pc;
    pc.size = cfg.phantom_size;
    pc.seed = cfg.phantom_seed;
    data::write_phantom_dataset(cfg.data_dir, cfg.phantom_cases, pc);
    log.line(fmt("generated %d phantom cases (%dx%dx%d, seed %llu) in %s in %.1f s",
                 cfg.phantom_cases, pc.size[0], pc.size[1], pc.size[2], (unsigned long long)pc.seed,
                 cfg.data_dir.c_str(), now_s() - t0));
  }
  if (!fs::is_directory(cfg.data_dir))
    CUSEG_THROW(cfg.data_dir << ": dataset folder not found (set data.dir or -d)");
  const data::Dataset ds = data::discover(cfg.data_dir);
  for (const auto& n : ds.notes) log.line("dataset note: " + n);
  if (ds.cases.size() < 2)
    CUSEG_THROW(cfg.data_dir << ": need at least 2 labelled cases, found " << ds.cases.size());
  {
    const double t0 = now_s();
    const auto problems = data::check_dataset(ds, cfg.classes);
    if (!problems.empty()) {
      std::ostringstream os;
      os << cfg.data_dir << ": integrity check found " << problems.size() << " problem(s):";
      for (size_t i = 0; i < problems.size() && i < 20; ++i)
        os << "\n  " << problems[i].file << ": " << problems[i].what;
      CUSEG_THROW(os.str());
    }
    log.line(fmt("integrity check: %zu cases OK (%s) in %.1f s", ds.cases.size(), ds.source.c_str(),
                 now_s() - t0));
  }
  std::vector<std::string> ids;
  for (const auto& c : ds.cases) {
    if (c.label.empty()) CUSEG_THROW(c.image << ": training case without a label map");
    by_id_[c.id] = c;
    ids.push_back(c.id);
  }
  split_ = data::load_or_create_split(splits_path, ids, cfg.val_fraction, cfg.split_seed);
  log.line(fmt("split: %zu train, %zu validation (seed %llu, %s)", split_.train.size(),
               split_.val.size(), (unsigned long long)cfg.split_seed, splits_path.c_str()));
  CUSEG_CHECK(!split_.train.empty() && !split_.val.empty(),
              "split needs train and validation cases");
  for (size_t i = 0; i < split_.train.size(); ++i) cache_.push_back(std::make_unique<Slot>());
}

Preprocessed TrainingData::load_case(const std::string& id) const {
  const auto& c = by_id_.at(id);
  const data::Image img = data::read_image(c.image);
  const data::LabelMap lab = data::read_label(c.label);
  return preprocess(cfg_, img, &lab);
}

std::shared_ptr<const Preprocessed> TrainingData::train_case(int s) const {
  const std::string& id = split_.train[size_t(s)];
  if (!cfg_.cache) return std::make_shared<const Preprocessed>(load_case(id));
  Slot& sl = *cache_[size_t(s)];
  std::call_once(sl.once, [&] { sl.pre = std::make_shared<const Preprocessed>(load_case(id)); });
  return sl.pre;
}

ValidationSet build_validation_set(const RunConfig& cfg, const TrainingData& data, TrainLog& log) {
  const double t0 = now_s();
  ValidationSet vs;
  vs.ids = data.split().val;
  std::vector<data::Patch> vp;
  for (size_t v = 0; v < vs.ids.size(); ++v) {
    vs.volumes.push_back(data.load_case(vs.ids[v]));
    data::Image img = vs.volumes.back().image;
    data::LabelMap lab = vs.volumes.back().label;
    data::pad_to_patch(img, &lab, cfg.patch, cfg.rescale_lo);
    std::mt19937_64 rng(stream_seed(cfg.seed ^ 0x56414cull, uint64_t(v)));
    data::LabelSampler ls(cfg.patch, cfg.label_probabilities);
    ls.prepare(lab);
    for (int i = 0; i < cfg.val_patches_per_volume; ++i)
      vp.push_back(data::extract_patch(img, &lab, ls.sample(rng), cfg.patch));
  }
  const size_t bs = size_t(cfg.batch_size);
  for (size_t i = 0; i < vp.size(); i += bs)
    vs.batches.emplace_back(vp.begin() + long(i), vp.begin() + long(std::min(vp.size(), i + bs)));
  log.line(fmt("validation: %zu volumes, %d patches each, prepared in %.1f s", vs.volumes.size(),
               cfg.val_patches_per_volume, now_s() - t0));
  return vs;
}

}  // namespace cuseg
