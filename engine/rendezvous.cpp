#include "cuseg/engine/rendezvous.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>

#include "cuseg/core/check.h"

namespace cuseg {

namespace {

constexpr char kMagic[8] = {'C', 'U', 'S', 'E', 'G', 'R', 'V', '1'};
constexpr uint32_t kMaxBlob = 1 << 20;

using Clock = std::chrono::steady_clock;

struct Fd {
  int fd = -1;
  explicit Fd(int f = -1) : fd(f) {}
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  Fd(Fd&& o) noexcept : fd(o.fd) { o.fd = -1; }
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) {
      if (fd >= 0) ::close(fd);
      fd = o.fd;
      o.fd = -1;
    }
    return *this;
  }
};

double seconds_left(Clock::time_point deadline) {
  return std::chrono::duration<double>(deadline - Clock::now()).count();
}

// Waits until fd is ready for `events` or the deadline passes (false then).
bool wait_fd(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    const double left = seconds_left(deadline);
    if (left <= 0) return false;
    pollfd p{fd, events, 0};
    const int r = ::poll(&p, 1, int(left * 1000) + 1);
    if (r > 0) return true;
    if (r < 0 && errno != EINTR) return false;
  }
}

bool send_all(int fd, const void* data, size_t n, Clock::time_point deadline) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    if (!wait_fd(fd, POLLOUT, deadline)) return false;
    const ssize_t k = ::send(fd, p, n, MSG_NOSIGNAL);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return false;
    p += k;
    n -= size_t(k);
  }
  return true;
}

bool recv_all(int fd, void* data, size_t n, Clock::time_point deadline) {
  char* p = static_cast<char*>(data);
  while (n > 0) {
    if (!wait_fd(fd, POLLIN, deadline)) return false;
    const ssize_t k = ::recv(fd, p, n, 0);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return false;
    p += k;
    n -= size_t(k);
  }
  return true;
}

void put_u32(uint8_t* b, uint32_t v) {
  for (int i = 0; i < 4; ++i) b[i] = uint8_t(v >> (8 * i));
}
uint32_t get_u32(const uint8_t* b) {
  return uint32_t(b[0]) | uint32_t(b[1]) << 8 | uint32_t(b[2]) << 16 | uint32_t(b[3]) << 24;
}

std::string where(const RendezvousConfig& c) {
  return c.master_addr + ":" + std::to_string(c.master_port);
}

std::vector<uint8_t> serve(const RendezvousConfig& cfg, const std::vector<uint8_t>& blob,
                           Clock::time_point deadline) {
  CUSEG_REQUIRE(blob.size() <= kMaxBlob, "rendezvous: blob of " << blob.size() << " bytes");
  Fd ls(::socket(AF_INET6, SOCK_STREAM, 0));
  bool v6 = ls.fd >= 0;
  if (!v6) ls = Fd(::socket(AF_INET, SOCK_STREAM, 0));
  CUSEG_REQUIRE(ls.fd >= 0, "rendezvous: socket(): " << std::strerror(errno));
  const int one = 1, zero = 0;
  ::setsockopt(ls.fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  int rc;
  if (v6) {
    ::setsockopt(ls.fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);  // also IPv4 clients
    sockaddr_in6 a{};
    a.sin6_family = AF_INET6;
    a.sin6_addr = in6addr_any;
    a.sin6_port = htons(uint16_t(cfg.master_port));
    rc = ::bind(ls.fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  } else {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_ANY);
    a.sin_port = htons(uint16_t(cfg.master_port));
    rc = ::bind(ls.fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  }
  CUSEG_REQUIRE(rc == 0, "rendezvous: rank 0 cannot listen on port "
                             << cfg.master_port << " (MASTER_PORT): " << std::strerror(errno));
  CUSEG_REQUIRE(::listen(ls.fd, 128) == 0, "rendezvous: listen(): " << std::strerror(errno));
  std::vector<bool> seen(size_t(cfg.world_size), false);
  int remaining = cfg.world_size - 1;
  while (remaining > 0) {
    CUSEG_REQUIRE(wait_fd(ls.fd, POLLIN, deadline), "rendezvous: rank 0 waited "
                                                        << cfg.timeout_s << " s on port "
                                                        << cfg.master_port << " and " << remaining
                                                        << " rank(s) never connected");
    Fd c(::accept(ls.fd, nullptr, nullptr));
    if (c.fd < 0) continue;
    uint8_t hello[16];
    if (!recv_all(c.fd, hello, sizeof hello, deadline) ||
        std::memcmp(hello, kMagic, sizeof kMagic) != 0)
      continue;  // not one of ours (a port scanner, a stale client): ignore it
    const uint32_t r = get_u32(hello + 8), w = get_u32(hello + 12);
    CUSEG_REQUIRE(w == uint32_t(cfg.world_size),
                  "rendezvous: rank " << r << " says the world size is " << w << ", rank 0 has "
                                      << cfg.world_size << " (WORLD_SIZE differs between ranks)");
    CUSEG_REQUIRE(r >= 1 && r < w && !seen[r],
                  "rendezvous: rank " << r << " connected twice or is out of range");
    seen[r] = true;
    uint8_t head[12];
    std::memcpy(head, kMagic, sizeof kMagic);
    put_u32(head + 8, uint32_t(blob.size()));
    CUSEG_REQUIRE(send_all(c.fd, head, sizeof head, deadline) &&
                      send_all(c.fd, blob.data(), blob.size(), deadline),
                  "rendezvous: sending to rank " << r << " failed");
    --remaining;
  }
  return blob;
}

std::vector<uint8_t> fetch(const RendezvousConfig& cfg, Clock::time_point deadline) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  const std::string port = std::to_string(cfg.master_port);
  std::string last_error = "no attempt";
  // Rank 0 may not listen yet: retry with a short pause until the deadline.
  while (seconds_left(deadline) > 0) {
    addrinfo* res = nullptr;
    const int g = ::getaddrinfo(cfg.master_addr.c_str(), port.c_str(), &hints, &res);
    CUSEG_REQUIRE(g == 0, "rendezvous: cannot resolve MASTER_ADDR '" << cfg.master_addr
                                                                     << "': " << gai_strerror(g));
    for (addrinfo* ai = res; ai; ai = ai->ai_next) {
      Fd s(::socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol));
      if (s.fd < 0) continue;
      if (::connect(s.fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        last_error = std::strerror(errno);
        continue;
      }
      uint8_t hello[16];
      std::memcpy(hello, kMagic, sizeof kMagic);
      put_u32(hello + 8, uint32_t(cfg.rank));
      put_u32(hello + 12, uint32_t(cfg.world_size));
      uint8_t head[12];
      if (!send_all(s.fd, hello, sizeof hello, deadline) ||
          !recv_all(s.fd, head, sizeof head, deadline) ||
          std::memcmp(head, kMagic, sizeof kMagic) != 0) {
        last_error = "rank 0 closed the connection (it refused this rank; see its log)";
        continue;
      }
      const uint32_t n = get_u32(head + 8);
      CUSEG_REQUIRE(n <= kMaxBlob, "rendezvous: rank 0 announced " << n << " bytes");
      std::vector<uint8_t> blob(n);
      CUSEG_REQUIRE(recv_all(s.fd, blob.data(), n, deadline),
                    "rendezvous: connection to " << where(cfg) << " broke while receiving");
      ::freeaddrinfo(res);
      return blob;
    }
    ::freeaddrinfo(res);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  CUSEG_THROW("rendezvous: rank " << cfg.rank << " could not reach rank 0 at " << where(cfg)
                                  << " (MASTER_ADDR:MASTER_PORT) within " << cfg.timeout_s
                                  << " s: " << last_error);
}

}  // namespace

std::vector<uint8_t> tcp_rendezvous_broadcast(const RendezvousConfig& cfg,
                                              const std::vector<uint8_t>& blob) {
  CUSEG_REQUIRE(cfg.world_size >= 1 && cfg.rank >= 0 && cfg.rank < cfg.world_size,
                "rendezvous: rank " << cfg.rank << " of " << cfg.world_size);
  if (cfg.world_size == 1) return blob;
  CUSEG_REQUIRE(cfg.master_port > 0 && cfg.master_port < 65536,
                "rendezvous: MASTER_PORT " << cfg.master_port << " out of range");
  const auto deadline = Clock::now() + std::chrono::milliseconds(int64_t(cfg.timeout_s * 1000.0));
  return cfg.rank == 0 ? serve(cfg, blob, deadline) : fetch(cfg, deadline);
}

}  // namespace cuseg
