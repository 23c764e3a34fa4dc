// Training batches from the fused patch pipeline (see batch_source.h).
#include "cuseg/pipeline/batch_source.h"

#include <algorithm>
#include <mutex>

#include "cuseg/core/clock.h"
#include "cuseg/pipeline/training_data.h"
#include "cuseg/pipeline/training_patches.h"

namespace cuseg {

TrainBatch to_batch(const std::vector<data::Patch>& patches, Device dev,
                    std::vector<std::string> cases) {
  std::vector<float> img;
  std::vector<uint8_t> lab;
  data::stack_patches(patches, &img, &lab);
  const auto& s = patches[0].size;
  const int64_t n = int64_t(patches.size());
  Tensor hi = Tensor::empty({n, 1, s[2], s[1], s[0]});
  Tensor hl = Tensor::empty({n, s[2], s[1], s[0]}, DType::U8);
  std::copy(img.begin(), img.end(), hi.f32());
  std::copy(lab.begin(), lab.end(), hl.data<uint8_t>());
  if (dev == Device::CPU) return {hi, hl, std::move(cases)};
  return {hi.to(dev), hl.to(dev), std::move(cases)};
}

namespace {

// The fused patch pipeline as the trainer's batch source.
class FusedPatchSource : public BatchSource {
 public:
  FusedPatchSource(const RunConfig& cfg, const TrainingData& data, Context& ctx, int rank,
                   int world)
      : cfg_(cfg), data_(data), ctx_(ctx), rank_(rank), world_(world) {
    const int n = int(data.split().train.size());
    const data::PatchSpec spec = patch_spec(cfg);
    for (int s = 0; s < n; ++s) cache_.push_back(std::make_unique<Slot>());
    // A case as the op stores it (data.storage); the host pipeline caches it when data.cache,
    // the device pipeline loads each case once and keeps it on the device only.
    auto load = [this, spec](int s) {
      const std::string& id = data_.split().train[size_t(s)];
      const Preprocessed pre = data_.load_case(id);
      return std::make_shared<const data::PatchSubject>(
          data::make_patch_subject(id, pre.image, pre.label, spec));
    };
    TrainingPatches::Load source = load;
    if (cfg.cache && !uses_device_pipeline(cfg, ctx.device()))
      source = [this, load](int s) {
        Slot& sl = *cache_[size_t(s)];
        std::call_once(sl.once, [&] { sl.sub = load(s); });
        return sl.sub;
      };
    patches_ = std::make_unique<TrainingPatches>(cfg, ctx, n, source);
    // Every rank follows the rank-0 stream (the shared stream of batch_source.h); global
    // batches of world x batch patches, full ones only.
    global_batch_ = int64_t(cfg.batch_size) * world;
    batches_ = std::max<int64_t>(1, patches_->patches_per_epoch() / global_batch_);
    const data::Index3 p = cfg.patch;
    image_shape_ = {cfg.batch_size, 1, p[2], p[1], p[0]};
    label_shape_ = {cfg.batch_size, p[2], p[1], p[0]};
  }

  int64_t batches_per_epoch() const override { return batches_; }

  void start_epoch(int epoch, int64_t skip_batches) override {
    epoch_ = epoch;
    batch_in_epoch_ = skip_batches;
    patches_->seek(epoch, first_patch());
    wait_ = 0;
  }

  TrainBatch next() override {
    TrainBatch b{Tensor::empty(image_shape_, DType::F32, ctx_.device()),
                 Tensor::empty(label_shape_, DType::U8, ctx_.device()),
                 {}};
    std::vector<int> subjects;
    const double t0 = now_s();
    // This rank's slice of the global batch (a no-op seek for a single process, where the
    // slices are contiguous).
    patches_->seek(epoch_, first_patch());
    patches_->next(b.image, b.label, &subjects);
    ++batch_in_epoch_;
    wait_ += now_s() - t0;
    for (int s : subjects) b.cases.push_back(data_.split().train[size_t(s)]);
    return b;
  }

  double wait_seconds() const override { return wait_; }
  std::string summary() const override {
    return patches_->describe().substr(0, patches_->describe().find(';')) + ": " +
           patches_->stats().summary();
  }

 private:
  struct Slot {
    std::once_flag once;
    std::shared_ptr<const data::PatchSubject> sub;
  };
  const RunConfig& cfg_;
  const TrainingData& data_;
  Context& ctx_;
  std::vector<std::unique_ptr<Slot>> cache_;
  std::unique_ptr<TrainingPatches> patches_;
  int rank_ = 0, world_ = 1;
  int64_t global_batch_ = 1;
  int epoch_ = 0;
  int64_t batch_in_epoch_ = 0;
  // First patch of this rank's slice of the current global batch.
  int64_t first_patch() const {
    return batch_in_epoch_ * global_batch_ + int64_t(rank_) * cfg_.batch_size;
  }
  int64_t batches_ = 0;
  Shape image_shape_, label_shape_;
  double wait_ = 0;
};

}  // namespace

std::unique_ptr<BatchSource> make_batch_source(const RunConfig& cfg, const TrainingData& data,
                                               Context& ctx, int rank, int world_size) {
  return std::make_unique<FusedPatchSource>(cfg, data, ctx, rank, world_size);
}

}  // namespace cuseg
