#include "cuseg/engine/dist_env.h"

#include <cerrno>
#include <cstdlib>
#include <sstream>

#include "cuseg/core/check.h"

namespace cuseg {

namespace {

// A non-negative integer variable; -1 when unset.
int int_var(const std::function<const char*(const char*)>& get, const char* name) {
  const char* v = get(name);
  if (!v) return -1;
  errno = 0;
  char* end = nullptr;
  const long x = std::strtol(v, &end, 10);
  CUSEG_REQUIRE(
      errno == 0 && end != v && *end == '\0' && x >= 0 && x <= 1 << 24,
      "environment variable " << name << "='" << v << "': expected a non-negative integer");
  return int(x);
}

void check_family(const DistEnv& e, const char* rank_var, const char* size_var) {
  CUSEG_REQUIRE(e.world_size >= 1, "environment variable " << size_var << " must be >= 1");
  CUSEG_REQUIRE(e.rank < e.world_size, "environment: " << rank_var << "=" << e.rank << " but "
                                                       << size_var << "=" << e.world_size
                                                       << " (rank must be below the size)");
}

}  // namespace

std::string DistEnv::describe() const {
  std::ostringstream os;
  os << "rank " << rank << " of " << world_size << " (local " << local_rank << "), launched by "
     << launcher;
  return os.str();
}

DistEnv dist_env_from(const std::function<const char*(const char*)>& get) {
  DistEnv e;
  struct Family {
    const char *launcher, *rank, *size, *local;
  };
  const Family families[] = {
      {"mpirun", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK"},
      {"srun", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID"},
      {"env", "RANK", "WORLD_SIZE", "LOCAL_RANK"},
  };
  for (const Family& f : families) {
    const int rank = int_var(get, f.rank), size = int_var(get, f.size);
    if (rank < 0 && size < 0) continue;
    CUSEG_REQUIRE(rank >= 0 && size >= 0, "environment: " << (rank < 0 ? f.rank : f.size)
                                                          << " is missing while "
                                                          << (rank < 0 ? f.size : f.rank)
                                                          << " is set (" << f.launcher << ")");
    e.launcher = f.launcher;
    e.rank = rank;
    e.world_size = size;
    const int local = int_var(get, f.local);
    e.local_rank = local >= 0 ? local : 0;
    check_family(e, f.rank, f.size);
    if (e.launcher == "env") {
      const char* addr = get("MASTER_ADDR");
      const int port = int_var(get, "MASTER_PORT");
      if (e.world_size > 1) {
        CUSEG_REQUIRE(addr && *addr, "environment: WORLD_SIZE=" << e.world_size
                                                                << " needs MASTER_ADDR (the "
                                                                   "rendezvous host)");
        CUSEG_REQUIRE(
            port > 0 && port < 65536,
            "environment: WORLD_SIZE=" << e.world_size << " needs MASTER_PORT (1..65535)");
      }
      e.master_addr = addr ? addr : "";
      e.master_port = port > 0 ? port : 0;
    }
    return e;
  }
  return e;
}

DistEnv detect_dist_env() {
  return dist_env_from([](const char* name) { return std::getenv(name); });
}

}  // namespace cuseg
