// Backend constructors behind make_communicator() (engine/comm.h). Not for library users.
#pragma once
#include <memory>

#include "cuseg/engine/comm.h"

namespace cuseg {

#if CUSEG_HAVE_MPI
// MPI_COMM_WORLD of an MPI launcher (mpirun, srun); initialises MPI when nobody did.
std::unique_ptr<Communicator> make_mpi_communicator(const DistEnv& env, const CommOptions& opt);
#endif
#if CUSEG_HAVE_CUDA && CUSEG_HAVE_NCCL
// NCCL on ctx's device; the unique id travels over MPI (when built with it and launched by an
// MPI launcher) or the TCP rendezvous.
std::unique_ptr<Communicator> make_nccl_communicator(Context& ctx, const DistEnv& env,
                                                     const CommOptions& opt);
#endif

}  // namespace cuseg
