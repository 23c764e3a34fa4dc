// Training patches for the trainer (see training_patches.h).
#include "cuseg/pipeline/training_patches.h"

#include <atomic>
#include <exception>
#include <mutex>
#include <sstream>
#include <thread>
#include <vector>

#include "cuseg/core/check.h"
#include "cuseg/data/device_patches.h"

namespace cuseg {

data::PatchSpec patch_spec(const RunConfig& cfg) {
  data::PatchSpec s;
  s.patch = cfg.patch;
  s.label_probabilities = cfg.label_probabilities;
  s.random_affine = cfg.random_affine;
  s.affine = cfg.affine;
  s.patch_pad_value = cfg.rescale_lo;
  s.storage = data::parse_patch_storage(cfg.storage, "data.storage");
  s.out_type = kOutF32;
  return s;
}

data::PatchOrder patch_order(const RunConfig& cfg, int num_subjects, uint32_t rank) {
  data::PatchOrder o;
  o.num_subjects = num_subjects;
  o.samples_per_volume = cfg.queue.samples_per_volume;
  o.max_length = cfg.queue.max_length;
  o.shuffle_subjects = cfg.queue.shuffle_subjects;
  o.shuffle_patches = cfg.queue.shuffle_patches;
  o.seed = cfg.seed;
  o.rank = rank;
  return o;
}

bool uses_device_pipeline(const RunConfig& cfg, Device dev) {
  if (cfg.pipeline == "device")
    CUSEG_REQUIRE(dev == Device::CUDA,
                  "data.pipeline: device needs training on a CUDA device (train.device is "
                      << device_name(dev) << "); use host or auto");
  return dev == Device::CUDA && cfg.pipeline != "host";
}

TrainingPatches::TrainingPatches(const RunConfig& cfg, Context& ctx, int num_subjects, Load load,
                                 uint32_t rank, PatchOutType out)
    : ctx_(ctx), spec_(patch_spec(cfg)) {
  spec_.out_type = out;
  const data::PatchOrder order = patch_order(cfg, num_subjects, rank);
  const bool device = uses_device_pipeline(cfg, ctx.device());
  std::ostringstream d;
  if (device) {
    // Every subject once, in parallel (reading and preprocessing dominate), then uploaded.
    std::vector<std::shared_ptr<const data::PatchSubject>> subs(static_cast<size_t>(num_subjects));
    std::atomic<int> next{0};
    std::exception_ptr error;
    std::mutex mu;
    std::vector<std::thread> threads;
    const int workers = std::max(1, std::min(cfg.queue.num_workers, num_subjects));
    for (int w = 0; w < workers; ++w)
      threads.emplace_back([&] {
        for (int s = next++; s < num_subjects; s = next++) {
          try {
            subs[size_t(s)] = load(s);
          } catch (...) {
            std::lock_guard<std::mutex> lk(mu);
            if (!error) error = std::current_exception();
          }
        }
      });
    for (auto& t : threads) t.join();
    if (error) std::rethrow_exception(error);
    device_ = std::make_unique<data::DevicePatchPipeline>(
        subs, spec_, order, ctx, size_t(cfg.device_budget_mib * 1024.0 * 1024.0));
    d << "device pipeline (fused patch kernel), volumes " << cfg.storage << ": "
      << device_->info().summary();
  } else {
    host_ = std::make_unique<data::HostPatchPipeline>(std::move(load), spec_, order,
                                                      cfg.queue.num_workers);
    d << "host pipeline (fused patch op, worker threads: " << cfg.queue.num_workers << "), volumes "
      << cfg.storage << (cfg.cache ? ", cached" : ", loaded on each visit");
  }
  d << "; Philox stream seed " << cfg.seed << ", rank " << rank << ", queue " << order.max_length
    << "/" << order.samples_per_volume;
  describe_ = d.str();
}

TrainingPatches::~TrainingPatches() = default;

std::string TrainingPatches::describe() const {
  return describe_;
}

int64_t TrainingPatches::patches_per_epoch() const {
  return device_ ? device_->schedule().patches_per_epoch() : host_->schedule().patches_per_epoch();
}

void TrainingPatches::seek(int epoch, int64_t patch) {
  if (device_)
    device_->seek(uint32_t(epoch), patch);
  else
    host_->seek(uint32_t(epoch), patch);
}

void TrainingPatches::next(Tensor& image, Tensor& label, std::vector<int>* subjects) {
  const int n = int(image.dim(0));
  if (subjects) {
    const data::PatchSchedule& sch = device_ ? device_->schedule() : host_->schedule();
    const uint32_t e = device_ ? device_->epoch() : host_->epoch();
    const int64_t p = device_ ? device_->position() : host_->position();
    subjects->clear();
    for (int i = 0; i < n; ++i) {
      const int64_t g = p + i;  // may run into the next epoch
      subjects->push_back(
          sch.locate(e + uint32_t(g / sch.patches_per_epoch()), g % sch.patches_per_epoch())
              .subject);
    }
  }
  const DType want = spec_.out_type == kOutBF16 ? DType::BF16 : DType::F32;
  CUSEG_CHECK(
      image.dtype() == want && label.dtype() == DType::U8 && label.dim(0) == n &&
          image.is_contiguous() && label.is_contiguous(),
      "training patches: need contiguous " << dtype_name(want) << " image and uint8 label batches");
  CUSEG_CHECK(image.numel() == int64_t(n) * spec_.patch[0] * spec_.patch[1] * spec_.patch[2] &&
                  label.numel() == image.numel(),
              "training patches: batch tensors of shape " << shape_str(image.shape()) << " / "
                                                          << shape_str(label.shape()));
  if (device_) {
    CUSEG_CHECK(image.device() == Device::CUDA && label.device() == Device::CUDA,
                "device pipeline: batch tensors must be on the device");
    device_->next(n, image.raw(), label.data<uint8_t>());
    return;
  }
  if (image.device() == Device::CPU && label.device() == Device::CPU) {
    host_->next(n, image.raw(), label.data<uint8_t>());
    return;
  }
  if (!host_image_.defined() || host_image_.shape() != image.shape()) {
    host_image_ = Tensor::empty(image.shape(), want);
    host_label_ = Tensor::empty(label.shape(), DType::U8);
  }
  host_->next(n, host_image_.raw(), host_label_.data<uint8_t>());
  image.copy_from(host_image_);
  label.copy_from(host_label_);
}

data::PatchStats TrainingPatches::stats() const {
  return device_ ? device_->stats() : host_->stats();
}

}  // namespace cuseg
