// Communicators for data-parallel training, and bucketed gradient averaging on top of them.
//
// Backends: NCCL between GPUs (one process per GPU, device = local rank) and MPI (Open MPI)
// between CPU processes, so the same training code path runs and is tested on machines without
// a GPU. The NCCL unique id travels by MPI_Bcast when the job was started by an MPI launcher
// (mpirun, srun), else through the TCP rendezvous at MASTER_ADDR:MASTER_PORT
// (engine/rendezvous.h). A world of size 1 gets no communicator at all.
//
// Buffers live on the communicator's device (host memory for MPI, device memory for NCCL);
// host-scalar calls (allreduce_host) accept host memory on every backend.
//
// Failure handling: every collective is bounded by CommOptions::timeout_s. A collective that
// does not complete in time (a rank died, hangs, or stopped), or an asynchronous NCCL error,
// makes this rank print "cuseg: rank R: <what> ... stopping every rank" on stderr and abort the
// whole job (MPI_Abort / ncclCommAbort), so no rank is left waiting. A communicator destroyed
// while an exception unwinds the stack aborts the job too instead of finalising (a finalise
// would wait for ranks that are not coming).
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "cuseg/engine/context.h"
#include "cuseg/engine/dist_env.h"
#include "cuseg/engine/param.h"

namespace cuseg {

enum class ReduceOp { Sum, Average, Max };

struct CommOptions {
  double timeout_s = 600;  // bound on any one collective (and on the rendezvous)
};

// An asynchronous collective in flight (backend-specific state behind it).
struct CommRequest {
  virtual ~CommRequest() = default;
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  virtual const char* backend() const = 0;  // "mpi" or "nccl"
  virtual Device device() const = 0;        // where buffers passed to allreduce() live

  // In place over all ranks, blocking (bounded by the timeout).
  virtual void allreduce(float* data, size_t n, ReduceOp op) = 0;
  // Host doubles (losses, counts, flags): small, in place, on every backend.
  virtual void allreduce_host(double* data, size_t n, ReduceOp op) = 0;
  // Bytes on the communicator's device from `root` to everyone.
  virtual void broadcast(void* data, size_t bytes, int root) = 0;
  virtual void barrier() = 0;

  // Asynchronous float allreduce, ordered after the work already queued on ctx (its stream
  // on CUDA); finish() makes ctx's later work wait for it (bounded by the timeout).
  virtual std::unique_ptr<CommRequest> start_allreduce(Context& ctx, float* data, size_t n,
                                                       ReduceOp op) = 0;
  virtual void finish(Context& ctx, CommRequest& req) = 0;

  // Prints the reason and stops every rank of the job (does not return).
  [[noreturn]] virtual void abort(const std::string& why) = 0;
};

// The communicator for `env` on ctx's device: NCCL for CUDA, MPI for the CPU. Throws with a
// clear message when the build lacks the backend (e.g. a CPU run under torchrun-style
// variables, which has no MPI launcher behind it). Training creates one only for world size
// > 1; world size 1 is accepted (a single GPU exercising NCCL in tests and benchmarks).
std::unique_ptr<Communicator> make_communicator(Context& ctx, const DistEnv& env,
                                                const CommOptions& opt = {});
// "<what> did not complete within T s (dist.timeout_s): another rank died, hangs or was
// stopped": the message every backend gives when a collective times out.
std::string collective_timeout_message(const char* what, double timeout_s);
// Which backends this build has ("mpi", "nccl").
std::vector<std::string> comm_backends();

// Data-parallel gradient averaging as PyTorch DDP does it: parameters are cut into buckets of
// about `bucket_bytes` in the order backward produces their gradients (reverse parameter
// order); when every gradient of a bucket is final (mark_ready(), called by the model's
// gradient hook), the bucket is packed into one flat buffer and its average-allreduce starts
// on the communication stream while backward goes on; finish() waits for the last bucket and
// writes the averaged gradients back before the optimiser step.
class GradientSync {
 public:
  GradientSync(Communicator& comm, std::vector<Param*> params, size_t bucket_bytes = 25u << 20);
  ~GradientSync();
  GradientSync(const GradientSync&) = delete;
  GradientSync& operator=(const GradientSync&) = delete;

  // Call once before each backward.
  void begin();
  // The gradient of `p` is final for this step.
  void mark_ready(Context& ctx, const Param* p);
  // Every bucket averaged and written back (buckets whose parameters never got a gradient
  // are averaged here too, so all ranks issue the same collectives in the same order).
  void finish(Context& ctx);

  int buckets() const { return int(buckets_.size()); }
  size_t bucket_floats(int b) const;
  // Seconds from a bucket's start to its completion seen by finish(), last step (per bucket),
  // and the host seconds finish() waited.
  const std::vector<double>& bucket_seconds() const { return bucket_s_; }
  double finish_wait_seconds() const { return finish_wait_s_; }

 private:
  struct Bucket;
  void launch(Context& ctx, Bucket& b);
  Communicator& comm_;
  std::vector<std::unique_ptr<Bucket>> buckets_;
  std::vector<int> bucket_of_;  // param index -> bucket
  std::vector<Param*> params_;
  std::vector<double> bucket_s_;
  double finish_wait_s_ = 0;
};

// Rank 0's parameter values to every rank, then check_parameters_equal.
void broadcast_parameters(Communicator& comm, const std::vector<Param*>& params);
// Compares a checksum of every parameter across ranks; throws (on every rank alike) naming the
// first parameter whose values differ between ranks.
void check_parameters_equal(Communicator& comm, const std::vector<Param*>& params);
// FNV-1a over the parameter bytes (host copy), in parameter order.
uint64_t parameter_checksum(const std::vector<Param*>& params);

}  // namespace cuseg
