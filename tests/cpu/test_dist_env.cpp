// Launcher environments (engine/dist_env.h) and the TCP rendezvous that carries the NCCL id
// when no MPI is there (engine/rendezvous.h), on one machine: ranks are threads.
#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "cuseg/core/check.h"
#include "cuseg/engine/dist_env.h"
#include "cuseg/engine/rendezvous.h"

using namespace cuseg;

namespace {

DistEnv from(const std::map<std::string, std::string>& vars) {
  return dist_env_from([&](const char* name) -> const char* {
    auto it = vars.find(name);
    return it == vars.end() ? nullptr : it->second.c_str();
  });
}

std::string error_of(const std::map<std::string, std::string>& vars) {
  try {
    from(vars);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(DistEnv, NoLauncherIsASingleProcess) {
  const DistEnv e = from({{"PATH", "/bin"}});
  EXPECT_EQ(e.launcher, "none");
  EXPECT_EQ(e.world_size, 1);
  EXPECT_FALSE(e.distributed());
}

TEST(DistEnv, EachLauncherFamily) {
  DistEnv e = from({{"OMPI_COMM_WORLD_RANK", "3"},
                    {"OMPI_COMM_WORLD_SIZE", "8"},
                    {"OMPI_COMM_WORLD_LOCAL_RANK", "1"}});
  EXPECT_EQ(e.launcher, "mpirun");
  EXPECT_EQ(e.rank, 3);
  EXPECT_EQ(e.world_size, 8);
  EXPECT_EQ(e.local_rank, 1);
  e = from({{"SLURM_PROCID", "5"}, {"SLURM_NTASKS", "6"}, {"SLURM_LOCALID", "2"}});
  EXPECT_EQ(e.launcher, "srun");
  EXPECT_EQ(e.rank, 5);
  EXPECT_EQ(e.local_rank, 2);
  e = from({{"RANK", "1"},
            {"WORLD_SIZE", "2"},
            {"LOCAL_RANK", "1"},
            {"MASTER_ADDR", "node7"},
            {"MASTER_PORT", "29500"}});
  EXPECT_EQ(e.launcher, "env");
  EXPECT_EQ(e.master_addr, "node7");
  EXPECT_EQ(e.master_port, 29500);
  EXPECT_TRUE(e.distributed());
  EXPECT_EQ(e.describe(), "rank 1 of 2 (local 1), launched by env");
}

TEST(DistEnv, MpirunWinsOverSlurmVariablesOfTheAllocation) {
  // mpirun inside a Slurm allocation: SLURM_* describe the allocation, OMPI_* the job.
  const DistEnv e = from({{"SLURM_PROCID", "0"},
                          {"SLURM_NTASKS", "1"},
                          {"OMPI_COMM_WORLD_RANK", "1"},
                          {"OMPI_COMM_WORLD_SIZE", "4"}});
  EXPECT_EQ(e.launcher, "mpirun");
  EXPECT_EQ(e.world_size, 4);
  EXPECT_EQ(e.local_rank, 0);  // no local-rank variable: 0
}

TEST(DistEnv, InconsistentVariablesNameTheVariable) {
  EXPECT_NE(
      error_of({{"RANK", "2"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "a"}, {"MASTER_PORT", "1"}})
          .find("RANK=2 but WORLD_SIZE=2"),
      std::string::npos);
  EXPECT_NE(error_of({{"SLURM_PROCID", "x1"}, {"SLURM_NTASKS", "2"}}).find("SLURM_PROCID='x1'"),
            std::string::npos);
  EXPECT_NE(error_of({{"OMPI_COMM_WORLD_RANK", "0"}}).find("OMPI_COMM_WORLD_SIZE is missing"),
            std::string::npos);
  EXPECT_NE(error_of({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_PORT", "1234"}})
                .find("needs MASTER_ADDR"),
            std::string::npos);
  EXPECT_NE(error_of({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "h"}})
                .find("needs MASTER_PORT"),
            std::string::npos);
  // World size 1 under torchrun-style variables needs no rendezvous address.
  EXPECT_EQ(error_of({{"RANK", "0"}, {"WORLD_SIZE", "1"}}), "");
}

// A random port in 20000..39999: tests run in parallel processes, and a fixed port would make
// two of them collide. A port in use makes rank 0's bind fail with a message naming it.
int free_port() {
  static std::mt19937 rng(std::random_device{}());
  return 20000 + int(rng() % 20000);
}

TEST(Rendezvous, RankZeroHandsItsBlobToEveryRank) {
  const int W = 4, port = free_port();
  std::vector<uint8_t> blob(128);
  for (size_t i = 0; i < blob.size(); ++i) blob[i] = uint8_t(i * 37 + 11);
  std::vector<std::vector<uint8_t>> got(W);
  std::vector<std::string> errors(W);
  std::vector<std::thread> ranks;
  for (int r = W - 1; r >= 0; --r)  // clients first: they must wait for rank 0 to listen
    ranks.emplace_back([&, r] {
      try {
        RendezvousConfig c{"127.0.0.1", port, r, W, 20};
        got[r] = tcp_rendezvous_broadcast(c, r == 0 ? blob : std::vector<uint8_t>{});
      } catch (const std::exception& e) {
        errors[r] = e.what();
      }
    });
  for (auto& t : ranks) t.join();
  for (int r = 0; r < W; ++r) {
    EXPECT_EQ(errors[r], "") << "rank " << r;
    EXPECT_EQ(got[r], blob) << "rank " << r;
  }
}

TEST(Rendezvous, MissingRankTimesOutWithAClearMessage) {
  const int port = free_port();
  std::string error;
  const auto t0 = std::chrono::steady_clock::now();
  std::thread rank1([&] {
    RendezvousConfig c{"localhost", port, 1, 3, 5};
    tcp_rendezvous_broadcast(c, {});
  });
  try {
    RendezvousConfig c{"localhost", port, 0, 3, 1.5};  // rank 2 never comes
    tcp_rendezvous_broadcast(c, {1, 2, 3});
  } catch (const Error& e) {
    error = e.what();
  }
  rank1.join();
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_NE(error.find("1 rank(s) never connected"), std::string::npos) << error;
  EXPECT_LT(s, 10.0);
}

TEST(Rendezvous, UnreachableRankZeroTimesOut) {
  std::string error;
  try {
    RendezvousConfig c{"127.0.0.1", free_port(), 1, 2, 1.0};
    tcp_rendezvous_broadcast(c, {});
  } catch (const Error& e) {
    error = e.what();
  }
  EXPECT_NE(error.find("could not reach rank 0 at 127.0.0.1:"), std::string::npos) << error;
}

TEST(Rendezvous, DifferentWorldSizesAreRefused) {
  const int port = free_port();
  std::string error;
  std::thread rank1([&] {
    try {
      RendezvousConfig c{"127.0.0.1", port, 1, 3, 3};  // thinks the world has 3 ranks
      tcp_rendezvous_broadcast(c, {});
    } catch (const Error&) {
    }
  });
  try {
    RendezvousConfig c{"127.0.0.1", port, 0, 2, 10};
    tcp_rendezvous_broadcast(c, {9});
  } catch (const Error& e) {
    error = e.what();
  }
  rank1.join();
  EXPECT_NE(error.find("says the world size is 3, rank 0 has 2"), std::string::npos) << error;
}

}  // namespace
