// Training batches from the host patch queue (see batch_source.h).
#include "cuseg/pipeline/batch_source.h"

#include <algorithm>

#include "cuseg/core/random.h"
#include "cuseg/data/transforms.h"
#include "cuseg/pipeline/train_log.h"
#include "cuseg/pipeline/training_data.h"

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

class HostQueueSource : public BatchSource {
 public:
  HostQueueSource(const RunConfig& cfg, const TrainingData& data, Device dev)
      : cfg_(cfg), data_(data), dev_(dev) {
    const int64_t patches = int64_t(data.split().train.size()) * cfg.queue.samples_per_volume;
    batches_ = std::max<int64_t>(1, patches / cfg.batch_size);
  }

  int64_t batches_per_epoch() const override { return batches_; }

  void start_epoch(int epoch, int64_t skip_batches) override {
    queue_.reset();  // joins the previous epoch's workers first
    data::QueueConfig qc = cfg_.queue;
    qc.seed = stream_seed(cfg_.seed, uint64_t(epoch));
    const data::Index3 patch = cfg_.patch;
    data::PatchQueue::Loader loader = [this, patch](int s, std::mt19937_64& rng) {
      auto pre = data_.train_case(s);
      data::Subject sub;
      sub.id = data_.split().train[size_t(s)];
      sub.image = pre->image;
      sub.label = pre->label;
      if (cfg_.random_affine) data::random_affine(sub.image, sub.label, cfg_.affine, rng);
      data::pad_to_patch(sub.image, &sub.label, patch, cfg_.rescale_lo);
      return sub;
    };
    data::PatchQueue::Sampler sampler = [this, patch](const data::Subject& sub, int count,
                                                      std::mt19937_64& rng) {
      data::LabelSampler ls(patch, cfg_.label_probabilities);
      ls.prepare(sub.label);
      std::vector<data::Patch> out;
      for (int i = 0; i < count; ++i)
        out.push_back(data::extract_patch(sub.image, &sub.label, ls.sample(rng), patch));
      return out;
    };
    queue_ =
        std::make_unique<data::PatchQueue>(int(data_.split().train.size()), loader, sampler, qc);
    for (int64_t i = 0; i < skip_batches * cfg_.batch_size; ++i) queue_->next();  // replay
  }

  TrainBatch next() override {
    std::vector<data::Patch> ps;
    std::vector<std::string> cases;
    for (int b = 0; b < cfg_.batch_size; ++b) {
      ps.push_back(queue_->next());
      cases.push_back(data_.split().train[size_t(ps.back().subject)]);
    }
    return to_batch(ps, dev_, std::move(cases));
  }

  double wait_seconds() const override { return queue_ ? queue_->stats().wait_seconds : 0.0; }
  std::string summary() const override { return queue_ ? queue_->stats().summary() : ""; }

 private:
  const RunConfig& cfg_;
  const TrainingData& data_;
  Device dev_;
  int64_t batches_ = 0;
  std::unique_ptr<data::PatchQueue> queue_;
};

}  // namespace

std::unique_ptr<BatchSource> make_batch_source(const RunConfig& cfg, const TrainingData& data,
                                               Device dev) {
  return std::make_unique<HostQueueSource>(cfg, data, dev);
}

}  // namespace cuseg
