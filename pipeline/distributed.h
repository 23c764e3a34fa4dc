// Data-parallel training across ranks (docs/ARCHITECTURE.md, "Distributed training").
//
// One process per rank: a GPU per rank over NCCL (device = local rank), or CPU ranks over MPI,
// launched by mpirun, srun or a torchrun-style environment (engine/dist_env.h). World size 1
// (no launcher, or --dist none) creates no communicator and trains exactly as before.
//
// What each rank does, and why the result is the single-process result:
// - Batches: every rank runs the same patch stream of the epoch (keyed by seed and epoch) and
//   takes its own slice of each global batch of W x B patches (W ranks, B = train.batch_size
//   per rank): rank r gets patches [r B, (r+1) B) of it. So W ranks with batch B see exactly
//   the patches one rank with batch W B sees, and a run resumed on another world size continues
//   the same stream (the position is kept in patches).
// - Loss: the weighted cross-entropy's normaliser (the sum of the class weights of the
//   labels) is summed over the ranks before the loss (one small allreduce, which also carries
//   every rank's stop request), and the gradients are average-allreduced in buckets while
//   backward runs (engine/comm.h, GradientSync). The product is the gradient of the global
//   batch's loss: W ranks x batch B = 1 rank x batch W B, up to float summation order.
// - Weights: broadcast from rank 0 at the start (and after --resume, with the optimiser
//   state), then compared across ranks by checksum.
// - Validation: volumes and patch batches are dealt out round-robin, the sums allreduced.
// - Writes: rank 0 alone writes the run folder (config, log, metrics, curves, previews,
//   checkpoints, the split, a generated phantom); the other ranks wait for it where they read.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "cuseg/engine/comm.h"
#include "cuseg/engine/context.h"
#include "cuseg/engine/dist_env.h"
#include "cuseg/engine/optim.h"
#include "cuseg/model/unet3d.h"

namespace cuseg {

class TrainDist {
 public:
  // mode "auto": ranks from the launcher's environment; "none": one process, whatever the
  // environment says. Throws on another mode or an inconsistent environment.
  static DistEnv environment(const std::string& mode);

  // For a distributed env: the communicator on ctx's device (the CUDA device must already be
  // the local rank's: select_cuda_device before the Context). Single process otherwise.
  TrainDist(const DistEnv& env, Context& ctx, double timeout_s);
  ~TrainDist();
  TrainDist(const TrainDist&) = delete;
  TrainDist& operator=(const TrainDist&) = delete;

  bool distributed() const { return comm_ != nullptr; }
  int rank() const { return env_.rank; }
  int world_size() const { return env_.world_size; }
  bool is_root() const { return env_.rank == 0; }
  const DistEnv& env() const { return env_; }
  Communicator* comm() { return comm_.get(); }

  // Rank 0's weights and Adam state to every rank, checked by checksum; then gradient
  // averaging in buckets of `bucket_mib` hooked into net's backward.
  void attach(UNet3D& net, Adam& adam, double bucket_mib);
  // Around backward (no-ops for a single process).
  void begin_backward();
  void finish_backward(Context& ctx);

  // Sum over ranks, in place (host values; no-op for a single process).
  void sum(std::vector<double>& v);
  double average(double x);
  // Waits for every rank (no-op for a single process).
  void barrier();
  // Round-robin share: whether item i (of a list every rank holds) is this rank's.
  bool owns(size_t i) const { return int(i % size_t(env_.world_size)) == env_.rank; }

  // Exposed wait of the last finish_backward (seconds; 0 for a single process).
  double last_sync_wait_s() const;

 private:
  DistEnv env_;
  std::unique_ptr<Communicator> comm_;
  std::unique_ptr<GradientSync> sync_;
};

}  // namespace cuseg
