// Training loop and run folder (see trainer.h).
#include "cuseg/pipeline/trainer.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cuseg/core/check.h"
#include "cuseg/core/clock.h"
#include "cuseg/core/random.h"
#include "cuseg/data/dataset.h"
#include "cuseg/data/metrics.h"
#include "cuseg/data/phantom.h"
#include "cuseg/data/samplers.h"
#include "cuseg/data/transforms.h"
#include "cuseg/engine/checkpoint.h"
#include "cuseg/engine/ops.h"
#include "cuseg/engine/optim.h"
#include "cuseg/model/unet3d.h"
#include "cuseg/pipeline/config.h"
#include "cuseg/pipeline/inference.h"
#include "cuseg/pipeline/report.h"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace cuseg {

namespace {

std::string hms(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  char b[32];
  const int t = int(std::lround(s));
  if (t >= 3600)
    std::snprintf(b, sizeof b, "%dh%02dm", t / 3600, (t / 60) % 60);
  else
    std::snprintf(b, sizeof b, "%dm%02ds", t / 60, t % 60);
  return b;
}

// Plain log: everything printed also goes to RUN_DIR/train.log.
class Log {
 public:
  explicit Log(const std::string& path) : f_(path, std::ios::app) {
    if (!f_) CUSEG_THROW(path << ": cannot open the log file");
  }
  void line(const std::string& s) {
    std::printf("%s\n", s.c_str());
    std::fflush(stdout);
    f_ << s << "\n";
    f_.flush();
  }

 private:
  std::ofstream f_;
};

std::string fmt(const char* f, ...) __attribute__((format(printf, 1, 2)));
std::string fmt(const char* f, ...) {
  char b[1024];
  va_list ap;
  va_start(ap, f);
  std::vsnprintf(b, sizeof b, f, ap);
  va_end(ap);
  return b;
}

// Per-epoch queue seed: stream `epoch` of the seed (SplitMix64), so epochs draw independent
// streams.
uint64_t epoch_seed(uint64_t seed, int epoch) {
  return stream_seed(seed, uint64_t(epoch));
}

struct Batch {
  Tensor image, label;  // on the training device
};

// Host buffers -> device tensors [N,1,D,H,W] float and [N,D,H,W] uint8.
Batch to_batch(const std::vector<data::Patch>& patches, Device dev) {
  std::vector<float> img;
  std::vector<uint8_t> lab;
  data::stack_patches(patches, &img, &lab);
  const auto& s = patches[0].size;
  const int64_t n = int64_t(patches.size());
  Tensor hi = Tensor::empty({n, 1, s[2], s[1], s[0]});
  Tensor hl = Tensor::empty({n, s[2], s[1], s[0]}, DType::U8);
  std::copy(img.begin(), img.end(), hi.f32());
  std::copy(lab.begin(), lab.end(), hl.data<uint8_t>());
  if (dev == Device::CPU) return {hi, hl};
  return {hi.to(dev), hl.to(dev)};
}

struct EpochRecord {
  int epoch = 0;
  double train_loss = NAN, val_loss = NAN, dice_liver = NAN, dice_tumour = NAN;
};

// Keeps metrics.jsonl consistent with a checkpoint: drops records after `step` and returns the
// per-epoch history for the curves.
std::vector<CurvePoint> trim_metrics(const std::string& path, int64_t step) {
  std::vector<CurvePoint> pts;
  std::ifstream f(path);
  if (!f) return pts;
  std::string line, kept;
  while (std::getline(f, line)) {
    if (line.empty()) continue;
    json j;
    try {
      j = json::parse(line);
    } catch (const json::exception&) {
      continue;  // a torn last line from a hard kill
    }
    if (j.value("step", int64_t(0)) > step) continue;
    kept += line + "\n";
    if (j.value("type", "") == "epoch") {
      CurvePoint p;
      p.epoch = j.value("epoch", 0);
      auto num = [&](const json& v) { return v.is_number() ? v.get<double>() : NAN; };
      p.train_loss = num(j["train_loss"]);
      p.val_loss = num(j["val_loss"]);
      p.dice_liver = j["dice"].is_object() ? num(j["dice"]["liver"]) : NAN;
      p.dice_tumour = j["dice"].is_object() ? num(j["dice"]["tumour"]) : NAN;
      pts.push_back(p);
    }
  }
  f.close();
  write_text_atomic(path, kept);
  return pts;
}

json num_or_null(double v) {
  return std::isfinite(v) ? json(v) : json(nullptr);
}

}  // namespace

int run_training(const TrainOptions& opt) {
  const double t_start = now_s();
  fs::create_directories(opt.run_dir);
  const std::string cfg_path = (fs::path(opt.run_dir) / "config.yaml").string();
  const std::string last_path = (fs::path(opt.run_dir) / "last.safetensors").string();
  const std::string best_path = (fs::path(opt.run_dir) / "best.safetensors").string();
  const std::string metrics_path = (fs::path(opt.run_dir) / "metrics.jsonl").string();

  // ---------------------------------------------------------------- config
  RunConfig cfg;
  if (opt.resume) {
    if (!fs::exists(last_path))
      CUSEG_THROW(opt.run_dir << ": --resume but there is no last.safetensors in this run folder");
    std::ifstream f(cfg_path);
    if (!f) CUSEG_THROW(cfg_path << ": --resume needs the run's saved config");
    std::stringstream ss;
    ss << f.rdbuf();
    cfg = parse_config(ss.str(), cfg_path, opt.overrides);
  } else {
    if (opt.config_path.empty()) CUSEG_THROW("a config is required: -c configs/demo.yaml");
    cfg = load_config(opt.config_path, opt.overrides);
    if (fs::exists(last_path) && !opt.overwrite)
      CUSEG_THROW(opt.run_dir << ": already holds a run (last.safetensors); continue it with "
                                 "--resume, or start over with --overwrite");
    // Starting over: drop the previous run's outputs so nothing stale is mixed in.
    std::error_code ec;
    for (const char* f :
         {"last.safetensors", "last.optim.safetensors", "best.safetensors",
          "best.optim.safetensors", "metrics.jsonl", "train.log", "splits.json", "curves.svg"})
      fs::remove(fs::path(opt.run_dir) / f, ec);
    fs::remove_all(fs::path(opt.run_dir) / "previews", ec);
  }
  Log log((fs::path(opt.run_dir) / "train.log").string());
  log.line(fmt("engine_train: %s run in %s (config %s)", opt.resume ? "resuming" : "new",
               opt.run_dir.c_str(), cfg.source.c_str()));
  write_text_atomic(cfg_path, cfg.resolved_yaml);
  if (cfg.threads > 0) omp_set_num_threads(cfg.threads);

  const Device dev = resolve_device(cfg.device);
  Context ctx(dev);
  log.line(fmt("device: %s (requested %s), CPU threads %d", device_name(dev), cfg.device.c_str(),
               omp_get_max_threads()));

  // ---------------------------------------------------------------- dataset
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
  std::map<std::string, data::CaseFiles> by_id;
  std::vector<std::string> ids;
  for (const auto& c : ds.cases) {
    if (c.label.empty()) CUSEG_THROW(c.image << ": training case without a label map");
    by_id[c.id] = c;
    ids.push_back(c.id);
  }
  const data::Split split = data::load_or_create_split(
      (fs::path(opt.run_dir) / "splits.json").string(), ids, cfg.val_fraction, cfg.split_seed);
  log.line(fmt("split: %zu train, %zu validation (seed %llu, %s/splits.json)", split.train.size(),
               split.val.size(), (unsigned long long)cfg.split_seed, opt.run_dir.c_str()));
  CUSEG_CHECK(!split.train.empty() && !split.val.empty(), "split needs train and validation cases");

  // Preprocessed volumes (deterministic steps only), cached per subject when data.cache.
  struct Slot {
    std::once_flag once;
    std::shared_ptr<const Preprocessed> pre;
  };
  std::vector<std::unique_ptr<Slot>> slots;
  for (size_t i = 0; i < split.train.size(); ++i) slots.push_back(std::make_unique<Slot>());
  auto load_pre = [&](const std::string& id) {
    const auto& c = by_id.at(id);
    const data::Image img = data::read_image(c.image);
    const data::LabelMap lab = data::read_label(c.label);
    return std::make_shared<const Preprocessed>(preprocess(cfg, img, &lab));
  };
  auto get_train = [&](int s) -> std::shared_ptr<const Preprocessed> {
    if (!cfg.cache) return load_pre(split.train[size_t(s)]);
    Slot& sl = *slots[size_t(s)];
    std::call_once(sl.once, [&] { sl.pre = load_pre(split.train[size_t(s)]); });
    return sl.pre;
  };
  const data::Index3 patch = cfg.patch;
  data::PatchQueue::Loader loader = [&](int s, std::mt19937_64& rng) {
    auto pre = get_train(s);
    data::Subject sub;
    sub.id = split.train[size_t(s)];
    sub.image = pre->image;
    sub.label = pre->label;
    if (cfg.random_affine) data::random_affine(sub.image, sub.label, cfg.affine, rng);
    data::pad_to_patch(sub.image, &sub.label, patch, cfg.rescale_lo);
    return sub;
  };
  data::PatchQueue::Sampler sampler = [&](const data::Subject& sub, int count,
                                          std::mt19937_64& rng) {
    data::LabelSampler ls(patch, cfg.label_probabilities);
    ls.prepare(sub.label);
    std::vector<data::Patch> out;
    for (int i = 0; i < count; ++i)
      out.push_back(data::extract_patch(sub.image, &sub.label, ls.sample(rng), patch));
    return out;
  };

  // Validation: whole preprocessed volumes + a fixed set of label-sampled patches.
  const double t_val0 = now_s();
  std::vector<Preprocessed> val;
  std::vector<std::vector<data::Patch>> val_batches;
  {
    std::vector<data::Patch> vp;
    for (size_t v = 0; v < split.val.size(); ++v) {
      val.push_back(*load_pre(split.val[v]));
      data::Image img = val.back().image;
      data::LabelMap lab = val.back().label;
      data::pad_to_patch(img, &lab, patch, cfg.rescale_lo);
      std::mt19937_64 rng(epoch_seed(cfg.seed ^ 0x56414cull, int(v)));
      data::LabelSampler ls(patch, cfg.label_probabilities);
      ls.prepare(lab);
      for (int i = 0; i < cfg.val_patches_per_volume; ++i)
        vp.push_back(data::extract_patch(img, &lab, ls.sample(rng), patch));
    }
    for (size_t i = 0; i < vp.size(); i += size_t(cfg.batch_size))
      val_batches.emplace_back(vp.begin() + long(i),
                               vp.begin() + long(std::min(vp.size(), i + size_t(cfg.batch_size))));
  }
  log.line(fmt("validation: %zu volumes, %d patches each, prepared in %.1f s", val.size(),
               cfg.val_patches_per_volume, now_s() - t_val0));

  // ---------------------------------------------------------------- model + optimiser
  UNet3D net(cfg.model, dev, cfg.seed);
  Adam adam(net.parameters(), AdamConfig{cfg.lr});
  int start_epoch = 0;
  int64_t start_step_in_epoch = 0, global_step = 0;
  double best_val = INFINITY, elapsed_before = 0;
  std::vector<CurvePoint> history;
  if (opt.resume) {
    const Metadata meta = load_checkpoint(last_path, net.parameters(), &adam);
    auto geti = [&](const char* k) -> int64_t {
      auto it = meta.find(k);
      if (it == meta.end()) CUSEG_THROW(last_path << ": checkpoint metadata lacks '" << k << "'");
      return std::stoll(it->second);
    };
    start_epoch = int(geti("cuseg.epoch"));
    start_step_in_epoch = geti("cuseg.step_in_epoch");
    global_step = geti("cuseg.global_step");
    best_val = std::stod(meta.at("cuseg.best_val_loss"));
    elapsed_before = std::stod(meta.at("cuseg.elapsed_s"));
    CUSEG_CHECK(
        uint64_t(std::stoull(meta.at("cuseg.rng_seed"))) == cfg.seed,
        last_path << ": train.seed differs from the checkpoint's; a resumed run must keep it");
    adam.config().lr = cfg.lr;
    history = trim_metrics(metrics_path, global_step);
    log.line(
        fmt("resumed from %s: epoch %d, step %lld in epoch, global step %lld, best val "
            "loss %.5f",
            last_path.c_str(), start_epoch + 1, (long long)start_step_in_epoch,
            (long long)global_step, best_val));
  } else {
    std::error_code ec;
    fs::remove(metrics_path, ec);
  }
  log.line(fmt(
      "model: UNet3D filters [%s], %lld parameters; patch %dx%dx%d, batch %d, lr %g",
      [&] {
        std::string s;
        for (int f : cfg.model.filters) s += (s.empty() ? "" : ",") + std::to_string(f);
        return s;
      }()
          .c_str(),
      (long long)net.num_parameters(), patch[0], patch[1], patch[2], cfg.batch_size,
      double(cfg.lr)));
  if (start_epoch >= cfg.epochs) {
    log.line(fmt("nothing to do: %d of %d epochs done (raise train.epochs with --set)", start_epoch,
                 cfg.epochs));
    return 0;
  }

  std::ofstream metrics(metrics_path, std::ios::app);
  const int64_t patches_per_epoch = int64_t(split.train.size()) * cfg.queue.samples_per_volume;
  // As a DataLoader with drop_last: full batches only (fixed shapes, planned once).
  const int64_t steps_per_epoch = std::max<int64_t>(1, patches_per_epoch / cfg.batch_size);
  const int64_t total_steps = steps_per_epoch * cfg.epochs;
  const GridOptions gopt = grid_options(cfg);
  fs::create_directories(fs::path(opt.run_dir) / "previews");

  auto save = [&](const std::string& path, int epoch, int64_t step_in_epoch, bool with_opt) {
    Metadata meta;
    meta[kConfigKey] = cfg.resolved_yaml;
    meta["cuseg.epoch"] = std::to_string(epoch);
    meta["cuseg.step_in_epoch"] = std::to_string(step_in_epoch);
    meta["cuseg.global_step"] = std::to_string(global_step);
    meta["cuseg.best_val_loss"] = fmt("%.17g", best_val);
    meta["cuseg.elapsed_s"] = fmt("%.3f", elapsed_before + now_s() - t_start);
    meta["cuseg.rng_seed"] = std::to_string(cfg.seed);
    meta["cuseg.rng"] =
        fmt("patch stream: PatchQueue seeded splitmix(%llu, epoch %d), %lld "
            "patches consumed",
            (unsigned long long)cfg.seed, epoch, (long long)(step_in_epoch * cfg.batch_size));
    meta["cuseg.device"] = device_name(dev);
    save_checkpoint(path, net.parameters(), meta, with_opt ? &adam : nullptr);
  };

  const std::vector<float>& weights = cfg.class_weights;
  Tensor grad;
  double session_steps = 0, session_step_time = 0;
  for (int epoch = start_epoch; epoch < cfg.epochs; ++epoch) {
    cuseg::data::QueueConfig qc = cfg.queue;
    qc.seed = epoch_seed(cfg.seed, epoch);
    data::PatchQueue queue(int(split.train.size()), loader, sampler, qc);
    int64_t first = 0;
    if (epoch == start_epoch && start_step_in_epoch > 0) {
      first = start_step_in_epoch;
      for (int64_t i = 0; i < first * cfg.batch_size; ++i) queue.next();  // replay the stream
    }
    double epoch_loss = 0, win_loss = 0, win_wait = 0, win_t0 = now_s();
    int64_t epoch_n = 0, win_n = 0;
    for (int64_t s = first; s < steps_per_epoch; ++s) {
      const double t0 = now_s();
      std::vector<data::Patch> ps;
      for (int b = 0; b < cfg.batch_size; ++b) ps.push_back(queue.next());
      const double t1 = now_s();
      Batch bt = to_batch(ps, dev);
      const Tensor& logits = net.forward(ctx, bt.image);
      if (!grad.defined() || grad.shape() != logits.shape())
        grad = Tensor::empty(logits.shape(), DType::F32, dev);
      const double loss = weighted_cross_entropy(ctx, logits, bt.label, weights, grad);
      CUSEG_CHECK(std::isfinite(loss),
                  "training diverged: loss is " << loss << " at step " << global_step + 1);
      net.zero_grad();
      net.backward(ctx, grad);
      adam.step(ctx);
      ctx.synchronize();
      const double t2 = now_s();
      ++global_step;
      epoch_loss += loss, ++epoch_n;
      win_loss += loss, ++win_n, win_wait += t1 - t0;
      session_steps += 1, session_step_time += t2 - t0;
      const bool stop_now = (opt.stop && opt.stop->load()) ||
                            (opt.stop_after_steps >= 0 && global_step >= opt.stop_after_steps);
      if (global_step % cfg.log_every == 0 || s + 1 == steps_per_epoch || stop_now) {
        const double dt = now_s() - win_t0;
        const double pps = double(win_n * cfg.batch_size) / std::max(dt, 1e-9);
        const double wait = 100.0 * win_wait / std::max(dt, 1e-9);
        const double eta =
            session_step_time / std::max(session_steps, 1.0) * double(total_steps - global_step);
        const double peak = to_mib(memory_pool(dev).stats().peak);
        log.line(fmt(
            "epoch %d/%d step %lld/%lld (global %lld) loss %.4f | %.1f patches/s | data "
            "wait %.0f%% | ETA %s | peak %.0f MiB",
            epoch + 1, cfg.epochs, (long long)(s + 1), (long long)steps_per_epoch,
            (long long)global_step, win_loss / double(win_n), pps, wait, hms(eta).c_str(), peak));
        json j = {{"type", "train"},
                  {"step", global_step},
                  {"epoch", epoch + 1},
                  {"loss", win_loss / double(win_n)},
                  {"last_loss", loss},
                  {"lr", cfg.lr},
                  {"patches_per_s", pps},
                  {"data_wait", wait / 100.0},
                  {"seconds", elapsed_before + now_s() - t_start},
                  {"peak_mib", peak}};
        metrics << j.dump() << "\n";
        metrics.flush();
        win_loss = 0, win_n = 0, win_wait = 0, win_t0 = now_s();
      }
      if (stop_now) {
        save(last_path, epoch, s + 1, true);
        log.line(fmt("interrupted at epoch %d step %lld: saved %s; continue with --resume -o %s",
                     epoch + 1, (long long)(s + 1), last_path.c_str(), opt.run_dir.c_str()));
        return 130;
      }
    }
    const data::QueueStats qs = queue.stats();

    // ---- validation loss on the fixed patches
    const double tv0 = now_s();
    double val_loss = 0;
    for (const auto& vb : val_batches) {
      Batch bt = to_batch(vb, dev);
      const Tensor& logits = net.forward(ctx, bt.image);
      val_loss += weighted_cross_entropy(ctx, logits, bt.label, weights, Tensor());
    }
    val_loss /= double(val_batches.size());
    // ---- whole-volume Dice (grid inference on the preprocessed grid) every dice_every epochs
    const bool last_epoch = epoch + 1 == cfg.epochs;
    const bool do_dice = cfg.dice_every > 0 && ((epoch + 1) % cfg.dice_every == 0 || last_epoch);
    const bool do_preview =
        cfg.preview_every > 0 && ((epoch + 1) % cfg.preview_every == 0 || last_epoch);
    double dl = NAN, dt = NAN;
    data::LabelMap preview_pred;
    auto predict = [&](const Preprocessed& p) {
      data::Image img = p.image;
      data::pad_to_patch(img, nullptr, gopt.patch, cfg.rescale_lo);
      data::LabelMap m = predict_volume(net, ctx, img, gopt);
      if (m.geo.size != p.image.geo.size) m = data::crop_or_pad_inverse(m, p.image.geo, uint8_t(0));
      return m;
    };
    if (do_dice) {
      double sl = 0, st = 0;
      for (size_t v = 0; v < val.size(); ++v) {
        data::LabelMap m = predict(val[v]);
        const auto cm = data::evaluate_case(m, val[v].label, split.val[v], false);
        sl += cm.dice_liver, st += cm.dice_tumour;
        if (v == 0) preview_pred = std::move(m);
      }
      dl = sl / double(val.size()), dt = st / double(val.size());
    }
    if (do_preview) {
      if (preview_pred.v.empty()) preview_pred = predict(val[0]);
      const Preprocessed& p = val[0];
      const int k = most_informative_slice(p.label);
      const int sc = display_scale(p.image.geo, 192);
      const RGBImage a = render_axial(p.image, nullptr, k, cfg.rescale_lo, cfg.rescale_hi, sc);
      const RGBImage b = render_axial(p.image, &p.label, k, cfg.rescale_lo, cfg.rescale_hi, sc);
      const RGBImage c =
          render_axial(p.image, &preview_pred, k, cfg.rescale_lo, cfg.rescale_hi, sc);
      RGBImage panel = RGBImage::make(a.width * 3 + 8, a.height, 32);
      panel.blit(a, 0, 0);
      panel.blit(b, a.width + 4, 0);
      panel.blit(c, 2 * a.width + 8, 0);
      const std::string pp = (fs::path(opt.run_dir) / "previews" /
                              fmt("epoch_%03d_%s_z%d.png", epoch + 1, split.val[0].c_str(), k))
                                 .string();
      write_png(panel, pp);
    }
    const double val_s = now_s() - tv0;

    // ---- checkpoints: last (with optimiser), best by validation loss (as the reference)
    const bool improved = val_loss < best_val;
    if (improved) best_val = val_loss;
    save(last_path, epoch + 1, 0, true);
    if (improved) save(best_path, epoch + 1, 0, false);
    const double peak = to_mib(memory_pool(dev).stats().peak);
    const double train_loss = epoch_n ? epoch_loss / double(epoch_n) : NAN;
    log.line(
        fmt("epoch %d/%d done: train loss %.4f, val loss %.4f%s%s, validation %.1f s, data "
            "wait %.1f s (%s)",
            epoch + 1, cfg.epochs, train_loss, val_loss,
            std::isfinite(dl) ? fmt(", Dice liver %.4f tumour %.4f", dl, dt).c_str() : "",
            improved ? " (best)" : "", val_s, qs.wait_seconds, qs.summary().c_str()));
    json j = {{"type", "epoch"},
              {"step", global_step},
              {"epoch", epoch + 1},
              {"train_loss", num_or_null(train_loss)},
              {"val_loss", val_loss},
              {"dice", std::isfinite(dl) ? json{{"liver", dl}, {"tumour", dt}} : json(nullptr)},
              {"best", improved},
              {"lr", cfg.lr},
              {"seconds", elapsed_before + now_s() - t_start},
              {"peak_mib", peak},
              {"data_wait_s", qs.wait_seconds}};
    metrics << j.dump() << "\n";
    metrics.flush();
    CurvePoint cp;
    cp.epoch = epoch + 1;
    cp.train_loss = train_loss;
    cp.val_loss = val_loss;
    cp.dice_liver = dl;
    cp.dice_tumour = dt;
    history.push_back(cp);
    write_text_atomic((fs::path(opt.run_dir) / "curves.svg").string(),
                      curves_svg(history, "cuseg training: " + opt.run_dir));
    if (opt.stop && opt.stop->load()) {
      log.line(fmt("interrupted after epoch %d: saved %s; continue with --resume -o %s", epoch + 1,
                   last_path.c_str(), opt.run_dir.c_str()));
      return 130;
    }
  }
  log.line(fmt("done: %d epochs, %lld steps in %s (this session %s); best val loss %.5f -> %s",
               cfg.epochs, (long long)global_step, hms(elapsed_before + now_s() - t_start).c_str(),
               hms(now_s() - t_start).c_str(), best_val, best_path.c_str()));
  return 0;
}

}  // namespace cuseg
