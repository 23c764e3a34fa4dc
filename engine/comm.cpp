// make_communicator, GradientSync and the parameter broadcast (engine/comm.h).
#include "cuseg/engine/comm.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <unordered_map>

#include "cuseg/core/check.h"
#include "cuseg/core/clock.h"
#include "cuseg/engine/comm_impl.h"
#include "cuseg/engine/tensor.h"
#if CUSEG_HAVE_CUDA
#include "cuseg/engine/cuda/cuda_context.h"
#include "cuseg/engine/cuda/runtime.h"
#endif

namespace cuseg {

std::string collective_timeout_message(const char* what, double timeout_s) {
  char b[256];
  std::snprintf(b, sizeof b,
                "%s did not complete within %.0f s (dist.timeout_s): another rank died, hangs or "
                "was stopped",
                what, timeout_s);
  return b;
}

std::vector<std::string> comm_backends() {
  std::vector<std::string> b;
#if CUSEG_HAVE_MPI
  b.push_back("mpi");
#endif
#if CUSEG_HAVE_CUDA && CUSEG_HAVE_NCCL
  b.push_back("nccl");
#endif
  return b;
}

std::unique_ptr<Communicator> make_communicator(Context& ctx, const DistEnv& env,
                                                const CommOptions& opt) {
  // World size 1 gets no communicator in training; it is allowed here so that a single GPU
  // can exercise the NCCL path (the GPU check kit's test and benchmark).
  CUSEG_CHECK(env.world_size >= 1, "make_communicator: world size " << env.world_size);
  if (ctx.device() == Device::CUDA) {
#if CUSEG_HAVE_CUDA && CUSEG_HAVE_NCCL
    return make_nccl_communicator(ctx, env, opt);
#else
    CUSEG_THROW(
        "distributed training on CUDA needs NCCL, and this build has none "
        "(rebuild with NCCL found, or train with --dist none)");
#endif
  }
#if CUSEG_HAVE_MPI
  CUSEG_REQUIRE(env.launcher == "mpirun" || env.launcher == "srun",
                "distributed training on the CPU runs over MPI and needs an MPI launcher "
                "(mpirun or srun); this process was started with "
                    << env.launcher << " variables (" << env.describe() << ")");
  return make_mpi_communicator(env, opt);
#else
  CUSEG_THROW(
      "distributed training on the CPU needs MPI, and this build has none (install "
      "libopenmpi-dev and rebuild, or train with --dist none)");
#endif
}

// ---------------------------------------------------------------- GradientSync

struct GradientSync::Bucket {
  std::vector<int> params;      // indices into params_
  std::vector<size_t> offsets;  // float offset of each parameter in `flat`
  size_t floats = 0;
  Tensor flat;  // on the communicator's device
  int ready = 0;
  bool launched = false;
  std::unique_ptr<CommRequest> request;
};

namespace {

// Copies `bytes` between two buffers of ctx's device, in ctx's stream order.
void copy_in_stream(Context& ctx, void* dst, const void* src, size_t bytes) {
  if (ctx.device() == Device::CPU) {
    std::memcpy(dst, src, bytes);
    return;
  }
#if CUSEG_HAVE_CUDA
  cuda_copy_async(dst, src, bytes, ctx.cuda().stream());
#endif
}

}  // namespace

GradientSync::GradientSync(Communicator& comm, std::vector<Param*> params, size_t bucket_bytes)
    : comm_(comm), params_(std::move(params)) {
  CUSEG_CHECK(bucket_bytes >= sizeof(float), "GradientSync: bucket of " << bucket_bytes << " B");
  bucket_of_.assign(params_.size(), -1);
  // Backward produces gradients in about the reverse of the parameter order (PyTorch DDP's
  // assumption too): fill buckets from the last parameter back.
  std::unique_ptr<Bucket> cur;
  for (int i = int(params_.size()) - 1; i >= 0; --i) {
    const Param* p = params_[size_t(i)];
    CUSEG_CHECK(p->grad.defined() && p->grad.is_contiguous() && p->grad.dtype() == DType::F32 &&
                    p->grad.device() == comm_.device(),
                "GradientSync: gradient of " << p->name << " must be a packed float32 tensor on "
                                             << device_name(comm_.device()));
    const size_t n = size_t(p->grad.numel());
    if (cur && cur->floats > 0 && (cur->floats + n) * sizeof(float) > bucket_bytes) {
      buckets_.push_back(std::move(cur));
    }
    if (!cur) cur = std::make_unique<Bucket>();
    bucket_of_[size_t(i)] = int(buckets_.size());
    cur->params.push_back(i);
    cur->offsets.push_back(cur->floats);
    cur->floats += n;
  }
  if (cur) buckets_.push_back(std::move(cur));
  for (auto& b : buckets_)
    b->flat = Tensor::empty({int64_t(b->floats)}, DType::F32, comm_.device());
}

GradientSync::~GradientSync() = default;

size_t GradientSync::bucket_floats(int b) const {
  return buckets_.at(size_t(b))->floats;
}

void GradientSync::begin() {
  for (auto& b : buckets_) {
    CUSEG_CHECK(!b->request, "GradientSync::begin: the previous step was not finished");
    b->ready = 0;
    b->launched = false;
  }
}

void GradientSync::launch(Context& ctx, Bucket& b) {
  float* flat = b.flat.f32();
  for (size_t k = 0; k < b.params.size(); ++k) {
    const Param* p = params_[size_t(b.params[k])];
    copy_in_stream(ctx, flat + b.offsets[k], p->grad.raw(), p->grad.nbytes());
  }
  b.request = comm_.start_allreduce(ctx, flat, b.floats, ReduceOp::Average);
  b.launched = true;
}

void GradientSync::mark_ready(Context& ctx, const Param* p) {
  // Parameters are few (tens): a linear search costs nothing next to a convolution.
  const auto it = std::find(params_.begin(), params_.end(), p);
  CUSEG_CHECK(it != params_.end(), "GradientSync: unknown parameter " << p->name);
  Bucket& b = *buckets_[size_t(bucket_of_[size_t(it - params_.begin())])];
  ++b.ready;
  CUSEG_CHECK(b.ready <= int(b.params.size()),
              "GradientSync: gradient of " << p->name << " marked ready twice in one step");
  // Every rank must issue the same collectives in the same order: launch buckets strictly in
  // index order, each as soon as it and all before it are complete.
  for (auto& q : buckets_) {
    if (q->launched) continue;
    if (q->ready < int(q->params.size())) break;
    launch(ctx, *q);
  }
}

void GradientSync::finish(Context& ctx) {
  const double t0 = now_s();
  for (auto& b : buckets_)
    if (!b->launched) launch(ctx, *b);
  for (auto& b : buckets_) {
    comm_.finish(ctx, *b->request);
    b->request.reset();
    const float* flat = b->flat.f32();
    for (size_t k = 0; k < b->params.size(); ++k) {
      Param* p = params_[size_t(b->params[k])];
      copy_in_stream(ctx, p->grad.raw(), flat + b->offsets[k], p->grad.nbytes());
    }
  }
  finish_wait_s_ = now_s() - t0;
}

// ---------------------------------------------------------------- parameters

namespace {

uint64_t fnv1a(const uint8_t* p, size_t n, uint64_t h = 1469598103934665603ull) {
  for (size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= 1099511628211ull;
  }
  return h;
}

uint64_t checksum_of(const Param& p) {
  const Tensor h = p.value.device() == Device::CPU ? p.value : p.value.to(Device::CPU);
  return fnv1a(static_cast<const uint8_t*>(h.raw()), h.nbytes());
}

}  // namespace

uint64_t parameter_checksum(const std::vector<Param*>& params) {
  uint64_t h = 1469598103934665603ull;
  for (const Param* p : params) {
    const uint64_t c = checksum_of(*p);
    h = fnv1a(reinterpret_cast<const uint8_t*>(&c), sizeof c, h);
  }
  return h;
}

void broadcast_parameters(Communicator& comm, const std::vector<Param*>& params) {
  for (Param* p : params) {
    CUSEG_CHECK(p->value.is_contiguous() && p->value.device() == comm.device(),
                "broadcast_parameters: " << p->name << " not a packed tensor on "
                                         << device_name(comm.device()));
    comm.broadcast(p->value.raw(), p->value.nbytes(), 0);
    p->copy_stale = true;  // a bf16 copy is refreshed from the new value before the next forward
  }
  check_parameters_equal(comm, params);
}

void check_parameters_equal(Communicator& comm, const std::vector<Param*>& params) {
  // Every rank's checksum per parameter, as two exactly representable 32-bit halves; the
  // maximum of x and of -x over ranks agree only when every rank holds the same value.
  const size_t n = params.size();
  std::vector<double> mx(4 * n);
  for (size_t i = 0; i < n; ++i) {
    const uint64_t c = checksum_of(*params[i]);
    mx[4 * i] = double(c >> 32);
    mx[4 * i + 1] = double(c & 0xffffffffu);
    mx[4 * i + 2] = -mx[4 * i];
    mx[4 * i + 3] = -mx[4 * i + 1];
  }
  comm.allreduce_host(mx.data(), mx.size(), ReduceOp::Max);
  for (size_t i = 0; i < n; ++i)
    CUSEG_CHECK(mx[4 * i] == -mx[4 * i + 2] && mx[4 * i + 1] == -mx[4 * i + 3],
                "parameter " << params[i]->name << " differs between ranks (checksums disagree)");
}

}  // namespace cuseg
