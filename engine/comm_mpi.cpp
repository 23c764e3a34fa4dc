// MPI communicator (engine/comm.h) for CPU ranks, and the MPI side of NCCL's bootstrap.
//
// Every collective is non-blocking underneath (MPI_I*), completed by polling MPI_Test with a
// deadline: MPI has no timeout of its own, and a rank that is stopped (SIGSTOP) or stuck would
// otherwise leave the others waiting forever. A launcher such as mpirun already ends the job
// when a rank dies; the deadline covers the ranks that hang without dying.
#include <mpi.h>

#include <chrono>
#include <cstdio>
#include <exception>
#include <thread>

#include "cuseg/core/check.h"
#include "cuseg/engine/comm_impl.h"

namespace cuseg {

namespace {

using Clock = std::chrono::steady_clock;

MPI_Op mpi_op(ReduceOp op) {
  return op == ReduceOp::Max ? MPI_MAX : MPI_SUM;  // Average = Sum, then / world size
}

struct MpiRequest : CommRequest {
  MPI_Request req = MPI_REQUEST_NULL;
  float* data = nullptr;
  size_t n = 0;
  ReduceOp op = ReduceOp::Sum;
};

class MpiCommunicator final : public Communicator {
 public:
  MpiCommunicator(const DistEnv& env, const CommOptions& opt) : opt_(opt) {
    int inited = 0;
    MPI_Initialized(&inited);
    if (!inited) {
      int provided = 0;
      // Only the main thread calls MPI (worker threads load data, OpenMP computes).
      if (MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        CUSEG_THROW("MPI_Init failed (" << env.describe() << ")");
      owns_mpi_ = true;
    }
    MPI_Comm_dup(MPI_COMM_WORLD, &comm_);
    MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
    CUSEG_REQUIRE(rank_ == env.rank && size_ == env.world_size,
                  "MPI says rank " << rank_ << " of " << size_ << ", the environment says "
                                   << env.describe()
                                   << " (was this process started by a different launcher?)");
  }

  ~MpiCommunicator() override {
    if (std::uncaught_exceptions() > 0) {
      // Leaving because of an error: the other ranks may be waiting in a collective that this
      // rank will never join, and MPI_Finalize could wait for them. End the whole job instead.
      std::fprintf(stderr, "cuseg: rank %d: stopping every rank after an error on this rank\n",
                   rank_);
      std::fflush(stderr);
      MPI_Abort(MPI_COMM_WORLD, 1);
    }
    MPI_Comm_free(&comm_);
    if (owns_mpi_) MPI_Finalize();
  }

  int rank() const override { return rank_; }
  int world_size() const override { return size_; }
  const char* backend() const override { return "mpi"; }
  Device device() const override { return Device::CPU; }

  void allreduce(float* data, size_t n, ReduceOp op) override {
    MpiRequest r;
    start(r, data, n, op);
    complete(r, "allreduce");
  }

  void allreduce_host(double* data, size_t n, ReduceOp op) override {
    MPI_Request req;
    check(MPI_Iallreduce(MPI_IN_PLACE, data, count(n), MPI_DOUBLE, mpi_op(op), comm_, &req),
          "MPI_Iallreduce");
    wait(req, "allreduce of host values");
    if (op == ReduceOp::Average)
      for (size_t i = 0; i < n; ++i) data[i] /= double(size_);
  }

  void broadcast(void* data, size_t bytes, int root) override {
    MPI_Request req;
    check(MPI_Ibcast(data, count(bytes), MPI_BYTE, root, comm_, &req), "MPI_Ibcast");
    wait(req, "broadcast");
  }

  void barrier() override {
    MPI_Request req;
    check(MPI_Ibarrier(comm_, &req), "MPI_Ibarrier");
    wait(req, "barrier");
  }

  std::unique_ptr<CommRequest> start_allreduce(Context&, float* data, size_t n,
                                               ReduceOp op) override {
    auto r = std::make_unique<MpiRequest>();
    start(*r, data, n, op);
    return r;
  }

  void finish(Context&, CommRequest& req) override {
    auto* r = dynamic_cast<MpiRequest*>(&req);
    CUSEG_CHECK(r, "MPI communicator: a request of another backend");
    complete(*r, "gradient allreduce");
  }

  [[noreturn]] void abort(const std::string& why) override {
    std::fprintf(stderr, "cuseg: rank %d: %s; stopping every rank\n", rank_, why.c_str());
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
    std::abort();  // MPI_Abort does not return; this is for a broken MPI
  }

 private:
  int count(size_t n) {
    CUSEG_CHECK(n <= size_t(1) << 30, "MPI message of " << n << " elements (split it)");
    return int(n);
  }

  void check(int rc, const char* call) {
    if (rc == MPI_SUCCESS) return;
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    abort(std::string(call) + " failed: " + std::string(msg, size_t(len)));
  }

  void start(MpiRequest& r, float* data, size_t n, ReduceOp op) {
    r.data = data;
    r.n = n;
    r.op = op;
    check(MPI_Iallreduce(MPI_IN_PLACE, data, count(n), MPI_FLOAT, mpi_op(op), comm_, &r.req),
          "MPI_Iallreduce");
  }

  void complete(MpiRequest& r, const char* what) {
    wait(r.req, what);
    if (r.op == ReduceOp::Average) {
      const float w = float(size_);
      for (size_t i = 0; i < r.n; ++i) r.data[i] /= w;  // as DDP: sum, then divide
    }
  }

  // Polls until the request completes; past the deadline, stops the job with a message.
  void wait(MPI_Request& req, const char* what) {
    const auto deadline =
        Clock::now() + std::chrono::milliseconds(int64_t(opt_.timeout_s * 1000.0));
    int spins = 0;
    for (;;) {
      int done = 0;
      check(MPI_Test(&req, &done, MPI_STATUS_IGNORE), "MPI_Test");
      if (done) return;
      if (Clock::now() > deadline) {
        abort(collective_timeout_message(what, opt_.timeout_s));
      }
      // Spin briefly (collectives of a training step complete in micro- to milliseconds),
      // then yield the core: ranks oversubscribe the CPU cores when testing on one machine.
      if (++spins > 100) std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  }

  CommOptions opt_;
  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0, size_ = 1;
  bool owns_mpi_ = false;
};

}  // namespace

std::unique_ptr<Communicator> make_mpi_communicator(const DistEnv& env, const CommOptions& opt) {
  return std::make_unique<MpiCommunicator>(env, opt);
}

}  // namespace cuseg
