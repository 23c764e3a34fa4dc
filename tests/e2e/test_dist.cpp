// Distributed runs as a user starts them (mpirun, oversubscribed on this machine's cores):
// failures stop every rank within the stated timeout, with a message, instead of hanging.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <chrono>
#include <cstdio>
#include <string>

namespace {

struct Result {
  int rc = -1;
  std::string out;
  double seconds = 0;
};

Result run(const std::string& cmd) {
  Result r;
  const auto t0 = std::chrono::steady_clock::now();
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  const int st = pclose(p);
  r.rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

std::string mpirun(int ranks) {
  return std::string("OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 ") +
         CUSEG_MPIEXEC + " -np " + std::to_string(ranks) + " --oversubscribe ";
}

#define REQUIRE_MPI() \
  if (std::string(CUSEG_MPIEXEC).empty()) GTEST_SKIP() << "built without MPI"

TEST(Dist, ProbeRunsOnTwoRanks) {
  REQUIRE_MPI();
  const Result r = run(mpirun(2) + CUSEG_DIST_PROBE + " ok 30");
  EXPECT_EQ(r.rc, 0) << r.out;
  EXPECT_NE(r.out.find("probe: rank 1 done (sum 2)"), std::string::npos) << r.out;
}

TEST(Dist, AStoppedRankEndsTheJobAfterTheTimeout) {
  REQUIRE_MPI();
  // Rank 1 stops itself (SIGSTOP): nothing tells the launcher, only rank 0's 3 s timeout can.
  const Result r = run(mpirun(2) + CUSEG_DIST_PROBE + " hang 3");
  EXPECT_NE(r.rc, 0) << r.out;
  EXPECT_NE(r.out.find("cuseg: rank 0: allreduce did not complete within 3 s"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("stopping every rank"), std::string::npos) << r.out;
  EXPECT_LT(r.seconds, 30.0) << r.out;  // 3 s timeout + launcher teardown
}

TEST(Dist, AKilledRankEndsTheJob) {
  REQUIRE_MPI();
  const Result r = run(mpirun(2) + CUSEG_DIST_PROBE + " die 60");
  EXPECT_NE(r.rc, 0) << r.out;
  EXPECT_LT(r.seconds, 30.0) << r.out;  // the launcher notices the death; no timeout needed
}

}  // namespace
