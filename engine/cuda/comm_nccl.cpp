// NCCL communicator (engine/comm.h): one process per GPU, device = local rank.
//
// The communicator is created non-blocking (ncclConfig_t::blocking = 0) so that no NCCL call
// can hang the host: a call that returns ncclInProgress is polled with
// ncclCommGetAsyncError until it settles, under the collective timeout. Collectives run on a
// communication stream of their own; events order them after the compute stream's work (the
// gradients they read) and the compute stream's later work after them (the optimiser step).
// A timeout or an asynchronous NCCL error (a peer died: ncclRemoteError, a broken network)
// aborts the communicator and stops every rank (through MPI_Abort when MPI bootstrapped the
// job; otherwise this rank throws, and the other ranks see their own errors or timeouts).
#include <cuda_runtime.h>
#include <nccl.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <exception>
#include <thread>

#include "cuseg/core/check.h"
#include "cuseg/core/transfer_stats.h"
#include "cuseg/engine/comm_impl.h"
#include "cuseg/engine/cuda/cuda_check.h"
#include "cuseg/engine/cuda/cuda_context.h"
#include "cuseg/engine/rendezvous.h"
#include "cuseg/engine/tensor.h"

#if NCCL_VERSION_CODE < NCCL_VERSION(2, 14, 0)
#error "cuseg needs NCCL >= 2.14 (non-blocking communicators, ncclAvg)"
#endif

namespace cuseg {

namespace {

using Clock = std::chrono::steady_clock;

ncclRedOp_t nccl_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum:
      return ncclSum;
    case ReduceOp::Average:
      return ncclAvg;
    case ReduceOp::Max:
      return ncclMax;
  }
  return ncclSum;
}

struct Event {
  cudaEvent_t e = nullptr;
  Event() { CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming)); }
  ~Event() {
    if (e) CUDA_CHECK_PRINT(cudaEventDestroy(e));
  }
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
};

struct NcclRequest : CommRequest {
  Event ready, done;
};

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(Context& ctx, const DistEnv& env, const CommOptions& opt)
      : opt_(opt), rank_(env.rank), size_(env.world_size), stream_(ctx.cuda().stream()) {
    ncclUniqueId id;
    std::memset(&id, 0, sizeof id);
    if (rank_ == 0) check_now(ncclGetUniqueId(&id), "ncclGetUniqueId");
#if CUSEG_HAVE_MPI
    if (env.launcher == "mpirun" || env.launcher == "srun") {
      mpi_ = make_mpi_communicator(env, opt);
      mpi_->broadcast(&id, sizeof id, 0);
      bootstrap_ = "MPI_Bcast";
    }
#endif
    if (!mpi_) {
      RendezvousConfig rc;
      rc.master_addr = env.master_addr;
      rc.master_port = env.master_port;
      rc.rank = rank_;
      rc.world_size = size_;
      rc.timeout_s = opt.timeout_s;
      const auto* b = reinterpret_cast<const uint8_t*>(&id);
      const std::vector<uint8_t> got =
          tcp_rendezvous_broadcast(rc, std::vector<uint8_t>(b, b + sizeof id));
      CUSEG_CHECK(got.size() == sizeof id, "rendezvous: NCCL id of " << got.size() << " bytes");
      std::memcpy(&id, got.data(), sizeof id);
      bootstrap_ = "TCP rendezvous";
    }
    ncclConfig_t cfg = NCCL_CONFIG_INITIALIZER;
    cfg.blocking = 0;
    settle(ncclCommInitRankConfig(&comm_, size_, id, rank_, &cfg), "ncclCommInitRankConfig");
    CUDA_CHECK(cudaStreamCreateWithFlags(&comm_stream_, cudaStreamNonBlocking));
    scratch_ = Tensor::empty({int64_t(kScratchBytes)}, DType::U8, Device::CUDA);
  }

  ~NcclCommunicator() override {
    if (comm_) {
      if (std::uncaught_exceptions() > 0) {
        std::fprintf(stderr, "cuseg: rank %d: aborting NCCL after an error on this rank\n", rank_);
        ncclCommAbort(comm_);
      } else {
        if (comm_stream_) CUDA_CHECK_PRINT(cudaStreamSynchronize(comm_stream_));
        ncclResult_t r = ncclCommFinalize(comm_);
        const auto deadline = Clock::now() + std::chrono::seconds(30);
        while (r == ncclInProgress && Clock::now() < deadline) {
          std::this_thread::sleep_for(std::chrono::milliseconds(1));
          ncclCommGetAsyncError(comm_, &r);
        }
        if (r == ncclSuccess)
          ncclCommDestroy(comm_);
        else
          ncclCommAbort(comm_);
      }
    }
    if (comm_stream_) CUDA_CHECK_PRINT(cudaStreamDestroy(comm_stream_));
    // mpi_ (if any) finalises or aborts MPI after NCCL is gone.
  }

  int rank() const override {
    return rank_;
  }
  int world_size() const override {
    return size_;
  }
  const char* backend() const override {
    return "nccl";
  }
  Device device() const override {
    return Device::CUDA;
  }

  void allreduce(float* data, size_t n, ReduceOp op) override {
    NcclRequest r;
    enqueue_after(stream_, r);
    settle(ncclAllReduce(data, data, n, ncclFloat32, nccl_op(op), comm_, comm_stream_),
           "ncclAllReduce");
    complete(stream_, r, "allreduce");
  }

  void allreduce_host(double* data, size_t n, ReduceOp op) override {
    CUSEG_CHECK(n * sizeof(double) <= kScratchBytes, "allreduce_host of " << n << " values");
    auto* dev = static_cast<double*>(scratch_.raw());
    NcclRequest r;
    enqueue_after(stream_, r);
    CUDA_CHECK(
        cudaMemcpyAsync(dev, data, n * sizeof(double), cudaMemcpyHostToDevice, comm_stream_));
    count_transfer(TransferDirection::HostToDevice, n * sizeof(double));
    settle(ncclAllReduce(dev, dev, n, ncclFloat64, nccl_op(op), comm_, comm_stream_),
           "ncclAllReduce (host values)");
    CUDA_CHECK(
        cudaMemcpyAsync(data, dev, n * sizeof(double), cudaMemcpyDeviceToHost, comm_stream_));
    count_transfer(TransferDirection::DeviceToHost, n * sizeof(double));
    complete(stream_, r, "allreduce of host values");
  }

  void broadcast(void* data, size_t bytes, int root) override {
    NcclRequest r;
    enqueue_after(stream_, r);
    settle(ncclBroadcast(data, data, bytes, ncclUint8, root, comm_, comm_stream_), "ncclBroadcast");
    complete(stream_, r, "broadcast");
  }

  void barrier() override {
    double one = 1;
    allreduce_host(&one, 1, ReduceOp::Sum);
  }

  std::unique_ptr<CommRequest> start_allreduce(Context& ctx, float* data, size_t n,
                                               ReduceOp op) override {
    auto r = std::make_unique<NcclRequest>();
    enqueue_after(ctx.cuda().stream(), *r);
    settle(ncclAllReduce(data, data, n, ncclFloat32, nccl_op(op), comm_, comm_stream_),
           "ncclAllReduce (gradients)");
    CUDA_CHECK(cudaEventRecord(r->done.e, comm_stream_));
    return r;
  }

  void finish(Context& ctx, CommRequest& req) override {
    auto* r = dynamic_cast<NcclRequest*>(&req);
    CUSEG_CHECK(r, "NCCL communicator: a request of another backend");
    wait_event(r->done.e, "gradient allreduce");
    CUDA_CHECK(cudaStreamWaitEvent(ctx.cuda().stream(), r->done.e, 0));
  }

  [[noreturn]] void abort(const std::string& why) override {
    std::fprintf(stderr, "cuseg: rank %d: %s; stopping every rank\n", rank_, why.c_str());
    std::fflush(stderr);
    if (comm_) ncclCommAbort(comm_);
    comm_ = nullptr;
    if (mpi_) mpi_->abort(why);
    CUSEG_THROW("rank " << rank_ << ": " << why);
  }

 private:
  static constexpr size_t kScratchBytes = 64 << 10;

  // The collective about to be enqueued on the communication stream waits for what `s` has
  // queued so far.
  void enqueue_after(cudaStream_t s, NcclRequest& r) {
    CUDA_CHECK(cudaEventRecord(r.ready.e, s));
    CUDA_CHECK(cudaStreamWaitEvent(comm_stream_, r.ready.e, 0));
  }

  // Blocking form: waits for the communication stream, then orders `s` after it.
  void complete(cudaStream_t s, NcclRequest& r, const char* what) {
    CUDA_CHECK(cudaEventRecord(r.done.e, comm_stream_));
    wait_event(r.done.e, what);
    CUDA_CHECK(cudaStreamWaitEvent(s, r.done.e, 0));
  }

  void check_now(ncclResult_t r, const char* what) {
    if (r != ncclSuccess)
      CUSEG_THROW("rank " << rank_ << ": " << what << " failed: " << ncclGetErrorString(r));
  }

  std::string error_text(ncclResult_t r) const {
    std::string s = ncclGetErrorString(r);
    const char* last = ncclGetLastError(comm_);
    if (last && *last) s += std::string(" (") + last + ")";
    return s;
  }

  // Polls a call that may return ncclInProgress until it settles, under the timeout.
  void settle(ncclResult_t r, const char* what) {
    const auto deadline =
        Clock::now() + std::chrono::milliseconds(int64_t(opt_.timeout_s * 1000.0));
    while (r == ncclInProgress) {
      if (Clock::now() > deadline)
        abort(std::string(what) + " did not settle within the timeout (dist.timeout_s)");
      std::this_thread::sleep_for(std::chrono::microseconds(100));
      ncclCommGetAsyncError(comm_, &r);
    }
    if (r != ncclSuccess) abort(std::string(what) + " failed: " + error_text(r));
  }

  // Waits for an event on the communication stream, watching NCCL's asynchronous errors.
  void wait_event(cudaEvent_t e, const char* what) {
    const auto deadline =
        Clock::now() + std::chrono::milliseconds(int64_t(opt_.timeout_s * 1000.0));
    int spins = 0;
    for (;;) {
      const cudaError_t q = cudaEventQuery(e);
      if (q == cudaSuccess) return;
      if (q != cudaErrorNotReady) CUDA_CHECK(q);
      ncclResult_t async = ncclSuccess;
      ncclCommGetAsyncError(comm_, &async);
      if (async != ncclSuccess && async != ncclInProgress)
        abort(std::string(what) + ": NCCL reported " + error_text(async));
      if (Clock::now() > deadline) {
        abort(collective_timeout_message(what, opt_.timeout_s));
      }
      if (++spins > 1000) std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  }

  CommOptions opt_;
  int rank_, size_;
  cudaStream_t stream_;  // the compute stream of the context this communicator serves
  cudaStream_t comm_stream_ = nullptr;
  ncclComm_t comm_ = nullptr;
  std::unique_ptr<Communicator> mpi_;  // bootstrap (and job-wide abort) when launched by MPI
  std::string bootstrap_;
  Tensor scratch_;
};

}  // namespace

std::unique_ptr<Communicator> make_nccl_communicator(Context& ctx, const DistEnv& env,
                                                     const CommOptions& opt) {
  return std::make_unique<NcclCommunicator>(ctx, env, opt);
}

}  // namespace cuseg
