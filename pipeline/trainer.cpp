// The training loop (see trainer.h for the steps and where each lives).
#include "cuseg/pipeline/trainer.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <memory>

#include "cuseg/core/check.h"
#include "cuseg/core/clock.h"
#include "cuseg/engine/memory.h"
#include "cuseg/engine/ops.h"
#include "cuseg/engine/optim.h"
#include "cuseg/model/unet3d.h"
#include "cuseg/pipeline/batch_source.h"
#include "cuseg/pipeline/checkpointing.h"
#include "cuseg/pipeline/distributed.h"
#include "cuseg/pipeline/metrics_log.h"
#include "cuseg/pipeline/previews.h"
#include "cuseg/pipeline/run_folder.h"
#include "cuseg/pipeline/train_log.h"
#include "cuseg/pipeline/training_data.h"
#include "cuseg/pipeline/validation.h"

namespace fs = std::filesystem;

namespace cuseg {

namespace {

// Wall time of the whole run: earlier sessions (from the checkpoint) plus this one.
struct RunClock {
  double before = 0;       // seconds of earlier sessions
  double start = now_s();  // this session's start
  double total() const { return before + now_s() - start; }
  double session() const { return now_s() - start; }
};

// Everything the epoch steps share. Built once by run_training, in recipe order.
struct Run {
  const TrainOptions& opt;
  const RunFolder& folder;
  const RunConfig& cfg;
  TrainLog& log;
  Context& ctx;
  UNet3D& net;
  Adam& adam;
  BatchSource& batches;
  const ValidationSet& val;
  MetricsLog& metrics;
  TrainProgress& progress;
  RunClock& clock;
  TrainDist& dist;
  Tensor grad;  // d loss / d logits, reused while the batch shape stays
  double session_steps = 0, session_step_time = 0;  // for the ETA
  std::string last_good;  // what last.safetensors holds, for messages ("" = no checkpoint yet)
};

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

std::string checkpoint_note(const Run& r) {
  return r.last_good.empty()
             ? "no checkpoint was written yet (the first comes at the end of epoch 1)"
             : "the last good checkpoint, " + r.folder.last() + " (" + r.last_good +
                   "), is left as it was";
}

std::string progress_str(const TrainProgress& p) {
  return p.step_in_epoch == 0
             ? fmt("after epoch %d, global step %lld", p.epoch, (long long)p.global_step)
             : fmt("epoch %d step %lld, global step %lld", p.epoch + 1, (long long)p.step_in_epoch,
                   (long long)p.global_step);
}

// This rank's own reason to stop (Ctrl-C, --stop-after-steps) after the step in progress.
bool stop_requested(const Run& r) {
  return (r.opt.stop && r.opt.stop->load()) ||
         (r.opt.stop_after_steps >= 0 && r.progress.global_step + 1 >= r.opt.stop_after_steps);
}

struct StepResult {
  double loss = 0;    // of the global batch (every rank's patches)
  bool stop = false;  // some rank asked to stop after this step
};

// Forward and loss; leaves d loss / d logits in r.grad. With several ranks the loss is
// normalised by the whole global batch's class-weight sum (one allreduce, which also carries
// every rank's stop request; see distributed.h), so the averaged gradients are those of the
// global batch.
StepResult forward_loss(Run& r, const TrainBatch& batch) {
  const Tensor& logits = r.net.forward(r.ctx, batch.image);
  // Same dtype and layout as the logits (bf16: the padded channels-last head, zeroed).
  if (!r.grad.defined() || r.grad.shape() != logits.shape()) r.grad = Tensor::zeros_like(logits);
  StepResult s;
  if (!r.dist.distributed()) {
    s.loss = weighted_cross_entropy(r.ctx, logits, batch.label, r.cfg.class_weights, r.grad);
    s.stop = stop_requested(r);
    return s;
  }
  std::vector<double> v = {class_weight_sum(r.ctx, batch.label, r.cfg.class_weights),
                           stop_requested(r) ? 1.0 : 0.0};
  r.dist.sum(v);
  // Average-allreduce divides every gradient by the world size: normalise by the global sum
  // over the world size so that the average is the global batch's gradient.
  const double normaliser = v[0] / double(r.dist.world_size());
  const double local =
      weighted_cross_entropy(r.ctx, logits, batch.label, r.cfg.class_weights, r.grad, normaliser);
  s.loss = r.dist.average(local);
  s.stop = v[1] > 0;
  return s;
}

// Backward, then the optimiser step. Gradients are averaged across ranks in buckets while
// backward runs (TrainDist); TrainHooks::after_backward runs between backward and the step.
void backward_and_update(Run& r) {
  r.net.zero_grad();
  r.dist.begin_backward();
  r.net.backward(r.ctx, r.grad);
  r.dist.finish_backward(r.ctx);
  if (r.opt.hooks.after_backward) r.opt.hooks.after_backward(r.ctx, r.net.parameters());
  r.adam.step(r.ctx);
  r.ctx.synchronize();
}

struct EpochOutcome {
  double loss_sum = 0;
  int64_t steps = 0;    // steps this session (a resumed epoch counts only its remaining steps)
  int64_t skipped = 0;  // batches skipped for a non-finite loss (train.nonfinite_loss: skip)
  bool interrupted = false;
  double data_wait_s = 0;
  std::string data_summary;
};

// One epoch of optimiser steps from progress.step_in_epoch on; logs every train.log_every
// steps (a progress line and a metrics record). Stops early, with outcome.interrupted, when
// Ctrl-C or --stop-after-steps asks; progress then says where. A batch whose loss is not finite
// (the global batch's loss, so every rank decides alike) stops training (the error names the
// step and the batch's cases; last.safetensors keeps the last good state) or, with
// train.nonfinite_loss: skip, is skipped: no backward, no update, but it counts as a step of
// the stream so that --resume stays exact.
EpochOutcome train_one_epoch(Run& r) {
  const RunConfig& cfg = r.cfg;
  TrainProgress& p = r.progress;
  const int64_t steps_per_epoch = r.batches.batches_per_epoch();
  const int64_t total_steps = steps_per_epoch * cfg.epochs;
  r.batches.start_epoch(p.epoch, p.step_in_epoch);
  EpochOutcome out;
  double win_loss = 0, win_wait = 0, win_t0 = now_s();
  int64_t win_n = 0;
  while (p.step_in_epoch < steps_per_epoch) {
    const double t0 = now_s();
    const TrainBatch batch = r.batches.next();
    const double t1 = now_s();
    const StepResult step = forward_loss(r, batch);
    const double loss = step.loss;
    const bool finite = std::isfinite(loss);
    if (!finite) {
      const std::string what = fmt(
          "loss is %g at global step %lld (epoch %d, step %lld of %lld); the batch's cases%s: %s",
          loss, (long long)p.global_step + 1, p.epoch + 1, (long long)p.step_in_epoch + 1,
          (long long)steps_per_epoch,
          r.dist.distributed() ? fmt(" (rank %d's share)", r.dist.rank()).c_str() : "",
          join(batch.cases).c_str());
      if (cfg.nonfinite_loss != "skip") {
        r.log.line("training stopped: " + what);
        CUSEG_THROW("training stopped: "
                    << what << ". " << checkpoint_note(r)
                    << ". Lower train.lr or check those cases; train.nonfinite_loss: skip "
                       "skips such batches instead");
      }
      r.log.warn("skipped the batch: " + what + " (train.nonfinite_loss: skip)");
      ++out.skipped;
    } else {
      backward_and_update(r);
    }
    const double t2 = now_s();
    ++p.global_step, ++p.step_in_epoch;
    if (finite) {
      out.loss_sum += loss, ++out.steps;
      win_loss += loss, ++win_n;
    }
    win_wait += t1 - t0;
    r.session_steps += 1, r.session_step_time += t2 - t0;
    const bool stop_now = step.stop;
    if (p.global_step % cfg.log_every == 0 || p.step_in_epoch == steps_per_epoch || stop_now) {
      const double dt = now_s() - win_t0;
      TrainRecord rec;
      rec.step = p.global_step;
      rec.epoch = p.epoch + 1;
      rec.loss = win_loss / double(win_n);
      rec.last_loss = loss;
      rec.lr = cfg.lr;
      rec.patches_per_s = double(win_n * cfg.batch_size * r.dist.world_size()) / std::max(dt, 1e-9);
      rec.data_wait = win_wait / std::max(dt, 1e-9);
      rec.peak_mib = to_mib(memory_pool(r.ctx.device()).stats().peak);
      const double eta = r.session_step_time / std::max(r.session_steps, 1.0) *
                         double(total_steps - p.global_step);
      r.log.line(
          fmt("epoch %d/%d step %lld/%lld (global %lld) loss %.4f | %.1f patches/s | data "
              "wait %.0f%% | ETA %s | peak %.0f MiB",
              p.epoch + 1, cfg.epochs, (long long)p.step_in_epoch, (long long)steps_per_epoch,
              (long long)p.global_step, rec.loss, rec.patches_per_s, 100.0 * rec.data_wait,
              hms(eta).c_str(), rec.peak_mib));
      rec.seconds = r.clock.total();
      r.metrics.append(rec);
      win_loss = 0, win_n = 0, win_wait = 0, win_t0 = now_s();
    }
    if (stop_now) {
      out.interrupted = true;
      break;
    }
  }
  out.data_wait_s = r.batches.wait_seconds();
  out.data_summary = r.batches.summary();
  if (out.skipped == steps_per_epoch)
    CUSEG_THROW("training stopped: every batch of epoch "
                << p.epoch + 1 << " had a non-finite loss (the weights have diverged). "
                << checkpoint_note(r) << ". Lower train.lr");
  return out;
}

// Rank 0: saves last.safetensors (with the optimiser state; metrics.jsonl synced first so its
// records are on the disk before the checkpoint that follows them) and, when `best`,
// best.safetensors first (then TrainHooks::on_best_checkpoint), so a kill between the two
// leaves a best that the repeated epoch writes again. An error (full disk, file-size limit,
// read-only folder) stops training with a message that says the previous checkpoint is intact.
void save_checkpoints(Run& r, bool best, ValidationResult* v) {
  r.progress.elapsed_s = r.clock.total();
  if (!r.dist.is_root()) return;
  const RunConfig& cfg = r.cfg;
  try {
    r.metrics.sync();
    if (best) {
      save_training_checkpoint(r.folder.best(), cfg, r.ctx.device(), r.net, nullptr, r.progress);
      if (r.opt.hooks.on_best_checkpoint) {
        if (v->first_prediction.v.empty())
          v->first_prediction = predict_preprocessed(r.net, r.ctx, cfg, r.val.volumes[0]);
        const std::string path = r.folder.best();
        r.opt.hooks.on_best_checkpoint(BestCheckpoint{r.progress.epoch, path, r.folder.dir, cfg,
                                                      r.val.volumes[0], r.val.ids[0],
                                                      v->first_prediction});
      }
    }
    save_training_checkpoint(r.folder.last(), cfg, r.ctx.device(), r.net, &r.adam, r.progress);
  } catch (const Error& e) {
    CUSEG_THROW("training stopped: cannot save the checkpoint "
                << progress_str(r.progress) << ": " << e.what() << ". " << checkpoint_note(r)
                << "; once the run folder is writable again, continue with --resume -o "
                << r.folder.dir);
  }
  r.last_good = progress_str(r.progress);
}

// Saves last.safetensors mid-epoch (Ctrl-C, --stop-after-steps) and says how to continue.
// Rank 0 writes; every rank returns 130.
int save_interrupted(Run& r) {
  save_checkpoints(r, false, nullptr);
  r.log.line(fmt("interrupted at epoch %d step %lld: saved %s; continue with --resume -o %s",
                 r.progress.epoch + 1, (long long)r.progress.step_in_epoch, r.folder.last().c_str(),
                 r.folder.dir.c_str()));
  return 130;
}

// After an epoch's validation: the preview, the epoch's metrics record and curves, the
// checkpoints (best by validation loss, as the reference, then last with the optimiser state:
// save_checkpoints), the epoch's log line. Rank 0 writes; the others keep the progress in step.
// `val_start`: when validation began (its time, with the preview, goes into the log line).
void record_epoch(Run& r, const EpochOutcome& e, ValidationResult& v, double val_start,
                  bool with_preview) {
  const RunConfig& cfg = r.cfg;
  TrainProgress& p = r.progress;
  const int epoch = p.epoch;  // 0-based, just finished
  if (!r.dist.is_root()) {    // the other ranks only keep the progress in step with rank 0
    if (v.loss < p.best_val_loss) p.best_val_loss = v.loss;
    p.epoch = epoch + 1, p.step_in_epoch = 0;
    r.last_good = progress_str(p);
    return;
  }
  if (with_preview) {
    if (v.first_prediction.v.empty())
      v.first_prediction = predict_preprocessed(r.net, r.ctx, cfg, r.val.volumes[0]);
    write_epoch_preview(cfg, r.val.volumes[0], r.val.ids[0], v.first_prediction, epoch + 1,
                        r.folder.previews());
  }
  const double val_seconds = now_s() - val_start;
  const bool improved = v.loss < p.best_val_loss;
  if (improved) p.best_val_loss = v.loss;
  p.epoch = epoch + 1, p.step_in_epoch = 0;
  const double train_loss = e.steps ? e.loss_sum / double(e.steps) : NAN;
  // The epoch's record and curves go first: should the checkpoints below not land, a resumed
  // run drops the record (MetricsLog) and repeats the epoch.
  EpochRecord rec;
  rec.step = p.global_step;
  rec.epoch = epoch + 1;
  rec.train_loss = train_loss;
  rec.val_loss = v.loss;
  rec.dice_liver = v.dice_liver;
  rec.dice_tumour = v.dice_tumour;
  rec.best = improved;
  rec.lr = cfg.lr;
  rec.seconds = r.clock.total();
  rec.peak_mib = to_mib(memory_pool(r.ctx.device()).stats().peak);
  rec.data_wait_s = e.data_wait_s;
  rec.skipped_batches = e.skipped;
  r.metrics.append(rec);
  write_text_atomic(r.folder.curves(),
                    curves_svg(r.metrics.history(), "cuseg training: " + r.folder.dir));
  save_checkpoints(r, improved, &v);
  r.log.line(
      fmt("epoch %d/%d done: train loss %.4f, val loss %.4f%s%s, validation %.1f s, data "
          "wait %.1f s (%s)%s",
          epoch + 1, cfg.epochs, train_loss, v.loss,
          std::isfinite(v.dice_liver)
              ? fmt(", Dice liver %.4f tumour %.4f", v.dice_liver, v.dice_tumour).c_str()
              : "",
          improved ? " (best)" : "", val_seconds, e.data_wait_s, e.data_summary.c_str(),
          e.skipped
              ? fmt("; %lld batch(es) skipped for a non-finite loss", (long long)e.skipped).c_str()
              : ""));
}

std::string filters_str(const UNetConfig& m) {
  std::string s;
  for (int f : m.filters) s += (s.empty() ? "" : ",") + std::to_string(f);
  return s;
}

}  // namespace

int run_training(const TrainOptions& opt) {
  RunClock clock;
  // 0. Ranks: one process, or one of several (mpirun / srun / torchrun-style launch).
  const DistEnv env = TrainDist::environment(opt.dist);
  const bool root = env.rank == 0;
  // 1. Run folder and config (rank 0 alone writes; the others resolve the same config).
  const OpenedRun start = open_run_folder(opt.run_dir, opt.config_path, opt.overrides, opt.resume,
                                          opt.overwrite, /*writer=*/root);
  const RunFolder& folder = start.folder;
  const RunConfig& cfg = start.cfg;
  TrainLog log(folder.train_log(), /*write=*/root);
  for (const auto& w : start.warnings) log.warn(w);
  log.line(fmt("engine_train: %s run in %s (config %s)", start.resume ? "resuming" : "new",
               folder.dir.c_str(), cfg.source.c_str()));
  if (cfg.threads > 0) omp_set_num_threads(cfg.threads);
  const Device dev = resolve_device(cfg.device);
  if (env.distributed() && dev == Device::CUDA) select_cuda_device(env.local_rank);
  ContextOptions copt;
  copt.deterministic = cfg.deterministic;
  Context ctx(dev, copt);
  TrainDist dist(env, ctx, cfg.dist_timeout_s);
  log.line(fmt("device: %s (requested %s), CPU threads %d%s, precision %s", device_name(dev),
               cfg.device.c_str(), omp_get_max_threads(),
               cfg.deterministic ? ", deterministic" : "", precision_name(cfg.precision)));
  // Every record names the GPU libraries in use (cuDNN 9.8-9.10 got bf16 3-D convs wrong).
  log.line("libraries: " + gpu_library_versions());
  if (dev == Device::CPU && cfg.precision == Precision::BF16)
    log.line(
        "note: bf16 on the CPU runs the bf16 oracle (fp32 arithmetic on bf16-rounded "
        "tensors): numerically the GPU's bf16 path, slower than fp32 on the CPU");
  if (dist.distributed())
    log.line(
        fmt("distributed: %d ranks (%s, %s), batch %d per rank = %d per step; rank 0 "
            "writes the run folder",
            env.world_size, env.launcher.c_str(), dist.comm()->backend(), cfg.batch_size,
            cfg.batch_size * env.world_size));

  // 2. Data: dataset, split, preprocessing, validation set. 3. The training batch source.
  // Rank 0 first: it may generate the phantom and writes splits.json, which the others read.
  std::unique_ptr<TrainingData> data_ptr;
  if (root) data_ptr = std::make_unique<TrainingData>(cfg, folder.splits(), log);
  dist.barrier();
  if (!root) data_ptr = std::make_unique<TrainingData>(cfg, folder.splits(), log);
  const TrainingData& data = *data_ptr;
  const ValidationSet val = build_validation_set(cfg, data, log);
  const std::unique_ptr<BatchSource> batches =
      make_batch_source(cfg, data, ctx, env.rank, env.world_size);

  // 4. Model and optimiser; on --resume their state and the progress from last.safetensors.
  UNet3D net(cfg.model, dev, cfg.seed, cfg.precision);
  Adam adam(net.parameters(), AdamConfig{cfg.lr});
  TrainProgress progress;
  if (start.resume) {
    std::string warning;
    progress = restore_training_checkpoint(folder.last(), cfg, net, adam, &warning);
    if (!warning.empty()) log.warn(warning);
    clock.before = progress.elapsed_s;
    const int saved_world = progress.world_size;
    const int64_t again = resume_position(progress, cfg, env.world_size);
    if (saved_world != env.world_size)
      log.line(fmt("resuming a run of %d rank(s) on %d: position %lld patches into the epoch",
                   saved_world, env.world_size, (long long)progress.patches_in_epoch));
    if (again > 0)
      log.warn(
          fmt("%lld patch(es) of this epoch are drawn again: the position is not a whole "
              "number of global batches of %d",
              (long long)again, cfg.batch_size * env.world_size));
  }
  progress.world_size = env.world_size;
  // Same weights and optimiser state on every rank, then bucketed gradient averaging.
  dist.attach(net, adam, cfg.dist_bucket_mib);
  MetricsLog metrics(folder.metrics(), start.resume, progress.global_step, progress.epoch,
                     /*write=*/root);
  if (start.resume)
    log.line(
        fmt("resumed from %s: epoch %d, step %lld in epoch, global step %lld, best val "
            "loss %.5f",
            folder.last().c_str(), progress.epoch + 1, (long long)progress.step_in_epoch,
            (long long)progress.global_step, progress.best_val_loss));
  log.line(fmt("model: UNet3D filters [%s], %lld parameters; patch %dx%dx%d, batch %d, lr %g",
               filters_str(cfg.model).c_str(), (long long)net.num_parameters(), cfg.patch[0],
               cfg.patch[1], cfg.patch[2], cfg.batch_size, double(cfg.lr)));
  if (progress.epoch >= cfg.epochs) {
    log.line(fmt("nothing to do: %d of %d epochs done (raise train.epochs with --set)",
                 progress.epoch, cfg.epochs));
    return 0;
  }
  if (root) fs::create_directories(folder.previews());

  // 5-6. Epochs: train, validate, record (preview, checkpoints, metrics, curves).
  Run r{opt,
        folder,
        cfg,
        log,
        ctx,
        net,
        adam,
        *batches,
        val,
        metrics,
        progress,
        clock,
        dist,
        Tensor(),
        0,
        0,
        start.resume ? progress_str(progress) : std::string()};
  for (; progress.epoch < cfg.epochs;) {
    const EpochOutcome e = train_one_epoch(r);
    if (e.interrupted) return save_interrupted(r);

    const double tv0 = now_s();
    const int done = progress.epoch + 1;
    const bool last_epoch = done == cfg.epochs;
    const bool with_dice = cfg.dice_every > 0 && (done % cfg.dice_every == 0 || last_epoch);
    const bool with_preview =
        cfg.preview_every > 0 && (done % cfg.preview_every == 0 || last_epoch);
    ValidationResult v = validate(net, ctx, cfg, val, with_dice, &dist);
    record_epoch(r, e, v, tv0, with_preview);

    // Every rank must agree to stop here (the flag may have reached only some of them).
    std::vector<double> stop = {opt.stop && opt.stop->load() ? 1.0 : 0.0};
    dist.sum(stop);
    if (stop[0] > 0) {
      log.line(fmt("interrupted after epoch %d: saved %s; continue with --resume -o %s",
                   progress.epoch, folder.last().c_str(), folder.dir.c_str()));
      return 130;
    }
  }
  log.line(fmt("done: %d epochs, %lld steps in %s (this session %s); best val loss %.5f -> %s",
               cfg.epochs, (long long)progress.global_step, hms(clock.total()).c_str(),
               hms(clock.session()).c_str(), progress.best_val_loss, folder.best().c_str()));
  return 0;
}

}  // namespace cuseg
