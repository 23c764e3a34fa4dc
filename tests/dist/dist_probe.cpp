// A tiny MPI job for the failure tests (tests/e2e/test_dist.cpp): every rank joins one
// allreduce, except that rank 1 misbehaves first.
//   dist_probe hang TIMEOUT_S   rank 1 stops itself (SIGSTOP) and never joins
//   dist_probe die TIMEOUT_S    rank 1 kills itself (SIGKILL)
//   dist_probe ok TIMEOUT_S     everybody joins (exit 0)
// Prints "probe: rank R done" after the allreduce.
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "cuseg/engine/comm.h"
#include "cuseg/engine/context.h"

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: dist_probe hang|die|ok TIMEOUT_S\n");
    return 2;
  }
  const std::string mode = argv[1];
  cuseg::Context ctx(cuseg::Device::CPU);
  const cuseg::DistEnv env = cuseg::detect_dist_env();
  auto comm = cuseg::make_communicator(ctx, env, cuseg::CommOptions{std::atof(argv[2])});
  if (comm->rank() == 1 && mode == "hang") raise(SIGSTOP);
  if (comm->rank() == 1 && mode == "die") raise(SIGKILL);
  float x = 1.f;
  comm->allreduce(&x, 1, cuseg::ReduceOp::Sum);
  std::printf("probe: rank %d done (sum %g)\n", comm->rank(), double(x));
  return 0;
}
