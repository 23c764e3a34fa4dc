// Process-wide host <-> device transfer counters (see transfer_stats.h).
#include "cuseg/core/transfer_stats.h"

#include <atomic>

namespace cuseg {

namespace {
std::atomic<uint64_t> h2d_bytes{0}, d2h_bytes{0}, h2d_copies{0}, d2h_copies{0};
}  // namespace

TransferStats transfer_stats() {
  TransferStats s;
  s.host_to_device_bytes = h2d_bytes.load();
  s.device_to_host_bytes = d2h_bytes.load();
  s.host_to_device_copies = h2d_copies.load();
  s.device_to_host_copies = d2h_copies.load();
  return s;
}

TransferStats operator-(const TransferStats& a, const TransferStats& b) {
  TransferStats d;
  d.host_to_device_bytes = a.host_to_device_bytes - b.host_to_device_bytes;
  d.device_to_host_bytes = a.device_to_host_bytes - b.device_to_host_bytes;
  d.host_to_device_copies = a.host_to_device_copies - b.host_to_device_copies;
  d.device_to_host_copies = a.device_to_host_copies - b.device_to_host_copies;
  return d;
}

void count_transfer(TransferDirection dir, size_t bytes) {
  if (dir == TransferDirection::HostToDevice) {
    h2d_bytes += bytes;
    ++h2d_copies;
  } else {
    d2h_bytes += bytes;
    ++d2h_copies;
  }
}

}  // namespace cuseg
