// Training checkpoints (see checkpointing.h).
#include "cuseg/pipeline/checkpointing.h"

#include <omp.h>

#include "cuseg/core/check.h"
#include "cuseg/engine/checkpoint.h"
#include "cuseg/pipeline/inference.h"
#include "cuseg/pipeline/train_log.h"

namespace cuseg {

void save_training_checkpoint(const std::string& path, const RunConfig& cfg, Device dev,
                              UNet3D& net, const Adam* adam, const TrainProgress& p) {
  Metadata meta;
  meta[kConfigKey] = cfg.resolved_yaml;
  meta["cuseg.epoch"] = std::to_string(p.epoch);
  meta["cuseg.step_in_epoch"] = std::to_string(p.step_in_epoch);
  meta["cuseg.world_size"] = std::to_string(p.world_size);
  meta["cuseg.patches_in_epoch"] =
      std::to_string(p.step_in_epoch * int64_t(cfg.batch_size) * p.world_size);
  meta["cuseg.global_step"] = std::to_string(p.global_step);
  meta["cuseg.best_val_loss"] = fmt("%.17g", p.best_val_loss);
  meta["cuseg.elapsed_s"] = fmt("%.3f", p.elapsed_s);
  meta["cuseg.rng_seed"] = std::to_string(cfg.seed);
  meta["cuseg.rng"] =
      fmt("patch stream: Philox4x32-10 keyed by (seed %llu, epoch %d, rank 0, patch index); "
          "%lld patches of the epoch consumed",
          (unsigned long long)cfg.seed, p.epoch,
          (long long)(p.step_in_epoch * cfg.batch_size * p.world_size));
  meta["cuseg.device"] = device_name(dev);
  // The CPU backend's sums are chunked by thread, so its bits depend on the thread count:
  // recorded so that a resume with another count can say it will not repeat them.
  meta["cuseg.threads"] = std::to_string(omp_get_max_threads());
  meta["cuseg.precision"] = precision_name(net.precision());
  meta["cuseg.libraries"] = gpu_library_versions();
  save_checkpoint(path, net.parameters(), meta, adam);
}

TrainProgress restore_training_checkpoint(const std::string& path, const RunConfig& cfg,
                                          UNet3D& net, Adam& adam, std::string* warning) {
  const Metadata meta = load_checkpoint(path, net.parameters(), &adam);
  auto get = [&](const char* k) -> const std::string& {
    auto it = meta.find(k);
    if (it == meta.end()) CUSEG_THROW(path << ": checkpoint metadata lacks '" << k << "'");
    return it->second;
  };
  TrainProgress p;
  p.epoch = int(std::stoll(get("cuseg.epoch")));
  p.step_in_epoch = std::stoll(get("cuseg.step_in_epoch"));
  p.global_step = std::stoll(get("cuseg.global_step"));
  p.best_val_loss = std::stod(get("cuseg.best_val_loss"));
  p.elapsed_s = std::stod(get("cuseg.elapsed_s"));
  // Checkpoints of single-process runs before data-parallel training have neither key.
  p.world_size = meta.count("cuseg.world_size") ? int(std::stoll(get("cuseg.world_size"))) : 1;
  p.patches_in_epoch = meta.count("cuseg.patches_in_epoch")
                           ? std::stoll(get("cuseg.patches_in_epoch"))
                           : p.step_in_epoch * int64_t(cfg.batch_size);
  CUSEG_CHECK(uint64_t(std::stoull(get("cuseg.rng_seed"))) == cfg.seed,
              path << ": train.seed differs from the checkpoint's; a resumed run must keep it");
  adam.config().lr = cfg.lr;
  const auto threads = meta.find("cuseg.threads");
  const auto device = meta.find("cuseg.device");
  if (warning && net.device() == Device::CPU && device != meta.end() &&
      device->second == device_name(Device::CPU) && threads != meta.end() &&
      threads->second != std::to_string(omp_get_max_threads()))
    *warning =
        fmt("%s was written with %s CPU threads, this session has %d: the run continues, but not "
            "bit for bit as it would have (set train.threads to keep it)",
            path.c_str(), threads->second.c_str(), omp_get_max_threads());
  return p;
}

int64_t resume_position(TrainProgress& p, const RunConfig& cfg, int world_size) {
  const int64_t global_batch = int64_t(cfg.batch_size) * world_size;
  p.world_size = world_size;
  p.step_in_epoch = p.patches_in_epoch / global_batch;
  return p.patches_in_epoch % global_batch;
}

}  // namespace cuseg
