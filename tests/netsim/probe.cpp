#include "probe.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>

namespace qccl::netsim::probe {

namespace {

using Clock = std::chrono::steady_clock;

std::string sys_error(const std::string& what) { return what + ": " + std::strerror(errno); }

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// An fd closed on scope exit.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  Fd& operator=(Fd&& o) noexcept {
    std::swap(fd_, o.fd_);
    return *this;
  }
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }

 private:
  int fd_ = -1;
};

// A non-blocking socket of `type` created inside namespace `ns`, bound to address:0.
std::string socket_in(const Endpoint& e, int type, Fd* out) {
  Fd home(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
  Fd target(::open(("/run/netns/" + e.netns).c_str(), O_RDONLY | O_CLOEXEC));
  if (home.get() < 0 || target.get() < 0) return sys_error("open namespace " + e.netns);
  if (::setns(target.get(), CLONE_NEWNET) != 0) return sys_error("setns " + e.netns);
  Fd s(::socket(AF_INET, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  const int saved = errno;
  if (::setns(home.get(), CLONE_NEWNET) != 0) return sys_error("setns back");
  errno = saved;
  if (s.get() < 0) return sys_error("socket in " + e.netns);
  if (type == SOCK_DGRAM) {
    // Room for a few hundred ms of datagrams, so that a receiver descheduled on a busy machine
    // does not turn into loss (FORCE: beyond rmem_max, as root).
    const int bytes = 8 << 20;
    if (::setsockopt(s.get(), SOL_SOCKET, SO_RCVBUFFORCE, &bytes, sizeof bytes) != 0) {
      ::setsockopt(s.get(), SOL_SOCKET, SO_RCVBUF, &bytes, sizeof bytes);
    }
  }
  sockaddr_in a{};
  a.sin_family = AF_INET;
  if (::inet_pton(AF_INET, e.address.c_str(), &a.sin_addr) != 1) return "bad address " + e.address;
  if (::bind(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    return sys_error("bind " + e.address + ":0");
  }
  *out = std::move(s);
  return "";
}

sockaddr_in local_address(int fd) {
  sockaddr_in a{};
  socklen_t n = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &n);
  return a;
}

// Waits for `events` on fd until the deadline; false on timeout.
bool wait_for(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    const double left = -ms_since(deadline);
    if (left <= 0) return false;
    pollfd p{fd, events, 0};
    const int n = ::poll(&p, 1, static_cast<int>(left) + 1);
    if (n > 0) return true;
    if (n < 0 && errno != EINTR) return false;
  }
}

// A connected TCP pair a -> b: *client in a, *server (accepted) in b.
std::string tcp_pair(const Endpoint& a, const Endpoint& b, int timeout_ms, Fd* client, Fd* server,
                     double* connect_ms) {
  Fd listener;
  if (auto err = socket_in(b, SOCK_STREAM, &listener); !err.empty()) return err;
  if (::listen(listener.get(), 16) != 0) return sys_error("listen");
  if (auto err = socket_in(a, SOCK_STREAM, client); !err.empty()) return err;
  sockaddr_in to = local_address(listener.get());
  const auto t0 = Clock::now();
  const auto deadline = t0 + std::chrono::milliseconds(timeout_ms);
  if (::connect(client->get(), reinterpret_cast<sockaddr*>(&to), sizeof to) != 0 &&
      errno != EINPROGRESS) {
    return sys_error("connect to " + b.address);
  }
  if (!wait_for(client->get(), POLLOUT, deadline)) return "connect to " + b.address + ": timeout";
  if (connect_ms != nullptr) *connect_ms = ms_since(t0);
  int soerr = 0;
  socklen_t n = sizeof soerr;
  ::getsockopt(client->get(), SOL_SOCKET, SO_ERROR, &soerr, &n);
  if (soerr != 0) return "connect to " + b.address + ": " + std::strerror(soerr);
  if (!wait_for(listener.get(), POLLIN, deadline)) return "accept: timeout";
  *server = Fd(::accept4(listener.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
  if (server->get() < 0) return sys_error("accept");
  return "";
}

}  // namespace

double quantile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())));
  return v[i];
}

std::string udp_rtts(const Endpoint& a, const Endpoint& b, int count, int timeout_ms,
                     std::vector<double>* rtts) {
  Fd sa, sb;
  if (auto err = socket_in(a, SOCK_DGRAM, &sa); !err.empty()) return err;
  if (auto err = socket_in(b, SOCK_DGRAM, &sb); !err.empty()) return err;
  sockaddr_in to_b = local_address(sb.get());
  char buf[64] = "ping";
  for (int k = 0; k < count; ++k) {
    const auto t0 = Clock::now();
    const auto deadline = t0 + std::chrono::milliseconds(timeout_ms);
    if (::sendto(sa.get(), buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&to_b), sizeof to_b) <
        0) {
      return sys_error("sendto");
    }
    if (!wait_for(sb.get(), POLLIN, deadline))
      return "ping " + std::to_string(k) + ": lost (a -> b)";
    sockaddr_in from{};
    socklen_t n = sizeof from;
    if (::recvfrom(sb.get(), buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &n) < 0) {
      return sys_error("recvfrom");
    }
    if (::sendto(sb.get(), buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), n) < 0) {
      return sys_error("sendto (echo)");
    }
    if (!wait_for(sa.get(), POLLIN, deadline))
      return "ping " + std::to_string(k) + ": lost (b -> a)";
    if (::recv(sa.get(), buf, sizeof buf, 0) < 0) return sys_error("recv");
    rtts->push_back(ms_since(t0));
  }
  return "";
}

std::string tcp_connect_times(const Endpoint& a, const Endpoint& b, int count, int timeout_ms,
                              std::vector<double>* times) {
  for (int k = 0; k < count; ++k) {
    Fd client, server;
    double ms = 0;
    if (auto err = tcp_pair(a, b, timeout_ms, &client, &server, &ms); !err.empty()) return err;
    times->push_back(ms);
  }
  return "";
}

std::string udp_loss(const Endpoint& a, const Endpoint& b, int count, int bytes, int per_ms,
                     int quiet_ms, int* received, int* out_of_order) {
  Fd sa, sb;
  if (auto err = socket_in(a, SOCK_DGRAM, &sa); !err.empty()) return err;
  if (auto err = socket_in(b, SOCK_DGRAM, &sb); !err.empty()) return err;
  sockaddr_in to_b = local_address(sb.get());
  std::vector<char> buf(static_cast<size_t>(std::max(bytes, 4)), 'x');
  std::vector<char> in(65536);
  *received = 0;
  *out_of_order = 0;
  int32_t highest = -1;
  auto drain = [&] {
    while (::recv(sb.get(), in.data(), in.size(), 0) >= 4) {
      ++*received;
      int32_t seq = 0;
      std::memcpy(&seq, in.data(), 4);
      if (seq < highest) ++*out_of_order;
      highest = std::max(highest, seq);
    }
  };
  const auto t0 = Clock::now();
  for (int k = 0; k < count; ++k) {
    // Paced: datagram k leaves no earlier than k / per_ms ms after the start.
    const auto at = t0 + std::chrono::microseconds(int64_t{k} * 1000 / std::max(per_ms, 1));
    while (Clock::now() < at) {
      pollfd p{sb.get(), POLLIN, 0};
      ::poll(&p, 1, 1);
      drain();
    }
    const int32_t seq = k;
    std::memcpy(buf.data(), &seq, 4);
    if (::sendto(sa.get(), buf.data(), buf.size(), 0, reinterpret_cast<sockaddr*>(&to_b),
                 sizeof to_b) < 0) {
      return sys_error("sendto " + std::to_string(k));
    }
  }
  for (;;) {
    const int before = *received;
    pollfd p{sb.get(), POLLIN, 0};
    ::poll(&p, 1, quiet_ms);
    drain();
    if (*received == before) break;
  }
  return "";
}

std::string tcp_goodput(const Endpoint& a, const Endpoint& b, int flows, double warmup_s,
                        double seconds, std::vector<double>* bps) {
  std::vector<Fd> clients(flows), servers(flows);
  for (int f = 0; f < flows; ++f) {
    if (auto err = tcp_pair(a, b, 10000, &clients[f], &servers[f], nullptr); !err.empty()) {
      return err;
    }
  }
  std::atomic<bool> stop{false};
  std::thread sender([&] {
    static const std::vector<char> data(256 * 1024, 'q');
    std::vector<pollfd> p;
    for (auto& c : clients) p.push_back({c.get(), POLLOUT, 0});
    while (!stop.load(std::memory_order_relaxed)) {
      if (::poll(p.data(), p.size(), 50) <= 0) continue;
      for (auto& x : p) {
        if (x.revents & POLLOUT) (void)!::send(x.fd, data.data(), data.size(), MSG_NOSIGNAL);
      }
    }
  });
  // The receiver runs here: it owns the clock of the measurement.
  std::vector<uint64_t> got(flows, 0), at_start(flows, 0);
  std::vector<pollfd> p;
  for (auto& s : servers) p.push_back({s.get(), POLLIN, 0});
  std::vector<char> buf(256 * 1024);
  const auto t0 = Clock::now();
  const auto t_start = t0 + std::chrono::microseconds(static_cast<int64_t>(warmup_s * 1e6));
  const auto t_end = t_start + std::chrono::microseconds(static_cast<int64_t>(seconds * 1e6));
  bool started = false;
  Clock::time_point measured_from;
  while (Clock::now() < t_end) {
    if (!started && Clock::now() >= t_start) {
      at_start = got;
      measured_from = Clock::now();
      started = true;
    }
    if (::poll(p.data(), p.size(), 5) <= 0) continue;
    for (int f = 0; f < flows; ++f) {
      if ((p[f].revents & POLLIN) == 0) continue;
      const ssize_t n = ::recv(p[f].fd, buf.data(), buf.size(), 0);
      if (n > 0) got[f] += static_cast<uint64_t>(n);
    }
  }
  const double span = ms_since(measured_from) / 1000;
  stop.store(true);
  sender.join();
  for (int f = 0; f < flows; ++f) {
    bps->push_back(static_cast<double>(got[f] - at_start[f]) * 8 / span);
  }
  return "";
}

}  // namespace qccl::netsim::probe
