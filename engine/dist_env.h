// Where this process stands in a distributed run, read from the launcher's environment.
//
// Launchers and the variables they set (the first family found wins, in this order):
//   mpirun / mpiexec (Open MPI): OMPI_COMM_WORLD_RANK, OMPI_COMM_WORLD_SIZE,
//                                OMPI_COMM_WORLD_LOCAL_RANK
//   Slurm srun:                  SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID
//   torchrun-style environment:  RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT
// Without any of them the run is a single process (world size 1). A world of size 1 never
// creates a communicator: training runs exactly as without a launcher.
#pragma once
#include <functional>
#include <string>

namespace cuseg {

struct DistEnv {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;             // index among the ranks on this node: the CUDA device to use
  std::string launcher = "none";  // "mpirun", "srun", "env" or "none"
  std::string master_addr;        // "env" launcher only (TCP rendezvous), may be empty otherwise
  int master_port = 0;
  bool distributed() const { return world_size > 1; }
  std::string describe() const;  // "rank 1 of 4 (local 1), launched by srun"
};

// Reads the variables through `get` (nullptr = unset), so tests can pass their own map.
// A family that is present but incomplete or inconsistent (rank >= size, a non-number, a
// torchrun-style world > 1 without MASTER_ADDR/MASTER_PORT) is an error naming the variable.
DistEnv dist_env_from(const std::function<const char*(const char*)>& get);
// The same from the process environment.
DistEnv detect_dist_env();

}  // namespace cuseg
