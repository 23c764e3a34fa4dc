// TCP rendezvous: rank 0 hands a small blob (the NCCL unique id) to every other rank through
// MASTER_ADDR:MASTER_PORT, for torchrun-style launches where no MPI is there to broadcast it.
//
// Protocol (one connection per non-zero rank, all integers little-endian):
//   client -> server: magic "CUSEGRV1", u32 rank, u32 world size
//   server -> client: magic "CUSEGRV1", u32 blob length, blob
// Rank 0 listens on MASTER_PORT (all interfaces) until every rank 1..W-1 has connected once;
// the others connect to MASTER_ADDR, retrying while rank 0 is not up yet. Everything is
// bounded by `timeout_s`: a rank that does not show up, a wrong world size or a duplicate rank
// is an error naming the rank, the address and the reason.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace cuseg {

struct RendezvousConfig {
  std::string master_addr;  // host name or address of rank 0
  int master_port = 0;
  int rank = 0, world_size = 1;
  double timeout_s = 300;
};

// Rank 0 passes the blob and gets it back; other ranks pass anything and get rank 0's blob.
std::vector<uint8_t> tcp_rendezvous_broadcast(const RendezvousConfig& cfg,
                                              const std::vector<uint8_t>& blob);

}  // namespace cuseg
