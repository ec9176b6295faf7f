// ControlProxy: a TCP proxy between one peer and the master, for tests that decide in which
// order a peer's control messages arrive (tests/integration/kill_order_test.cpp).
//
// The peer is given address() as its master address; the proxy dials the master when the peer
// connects and forwards both directions, frame by frame (after the 32-byte preamble upwards
// and the 8-byte ack downwards; frames are the 16-byte header of src/wire/frame.hpp plus the
// payload, little-endian u32 payload_len, u16 type, u16 flags, u64 epoch). A direction can be
// held: its frames are kept, in order, and released all or up to a frame type, so that the
// order of one stream never changes (as on TCP); each side can be closed alone (the master sees the
// peer go while the peer still sees its master, or the other way round). Every frame seen in
// either direction is logged (held ones included), so a test can wait for what the master
// sent. No message is decoded beyond its header: the proxy changes no byte it forwards.
//
// Thread-safety: one I/O thread; the public methods may be called from any thread.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace qccl::test {

class ControlProxy {
 public:
  enum class Dir { kUp, kDown };  // up: peer -> master; down: master -> peer
  struct Frame {
    Dir dir;
    uint16_t type;
    uint64_t epoch;  // the frame header's epoch
    std::vector<uint8_t> payload;
  };

  explicit ControlProxy(uint16_t master_port) : master_port_(master_port) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    socklen_t len = sizeof a;
    ok_ = listen_fd_ >= 0 && ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
          ::listen(listen_fd_, 4) == 0 &&
          ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len) == 0 &&
          ::pipe2(wake_, O_CLOEXEC | O_NONBLOCK) == 0;
    port_ = ntohs(a.sin_port);
    if (ok_) thread_ = std::thread([this] { run(); });
  }
  ~ControlProxy() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    wake();
    if (thread_.joinable()) thread_.join();
    for (int fd : {listen_fd_, peer_fd_, master_fd_, wake_[0], wake_[1]}) {
      if (fd >= 0) ::close(fd);
    }
  }
  ControlProxy(const ControlProxy&) = delete;
  ControlProxy& operator=(const ControlProxy&) = delete;

  bool ok() const { return ok_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

  // Frames going `dir` are kept, in their order, from now on (heartbeats too: the stream's
  // order is never changed).
  void hold(Dir dir) { set_gate(dir, Gate{true, std::nullopt}); }
  // Forwards the kept frames and those that follow, up to (not including) the first frame of
  // `type`, which is kept with everything after it.
  void release_until(Dir dir, uint16_t type) { set_gate(dir, Gate{false, type}); }
  // Forwards everything kept; from now on frames pass at once.
  void release(Dir dir) { set_gate(dir, Gate{false, std::nullopt}); }
  // The master sees the connection close; the peer's side stays open (and silent).
  void close_master_side() { command(Cmd::kCloseMaster); }
  // The peer sees the connection close; the master's side stays open (and silent).
  void close_peer_side() { command(Cmd::kClosePeer); }

  // Every frame seen so far (forwarded, held or dropped), in arrival order per direction.
  std::vector<Frame> frames() const {
    std::lock_guard<std::mutex> lock(mu_);
    return log_;
  }
  // Waits until `pred` holds for the log; false at the deadline.
  bool wait_for(const std::function<bool(const std::vector<Frame>&)>& pred,
                std::chrono::steady_clock::time_point deadline) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_until(lock, deadline, [&] { return pred(log_); });
  }
  static size_t count(const std::vector<Frame>& log, Dir dir, uint16_t type) {
    size_t n = 0;
    for (const auto& f : log) n += f.dir == dir && f.type == type;
    return n;
  }

 private:
  enum class Cmd { kCloseMaster, kClosePeer };
  struct Gate {
    bool closed = false;
    std::optional<uint16_t> stop_before;
  };
  struct Side {
    int* fd;
    std::vector<uint8_t> in;  // bytes read and not yet framed
    size_t raw_left;          // preamble (up) or ack (down) bytes to pass unframed
  };

  void set_gate(Dir dir, Gate g) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      gate_[static_cast<int>(dir)] = g;
      reflush_ = true;
    }
    wake();
  }

  // Sends the kept frames of `dir` that the gate lets through, in order (mu_ held).
  void flush(Dir dir) {
    auto& q = queue_[static_cast<int>(dir)];
    const Gate& g = gate_[static_cast<int>(dir)];
    int to = dir == Dir::kUp ? master_fd_ : peer_fd_;
    while (!q.empty() && !g.closed) {
      uint16_t type;
      std::memcpy(&type, q.front().data() + 4, 2);
      if (g.stop_before && type == *g.stop_before) break;
      send_all(to, q.front().data(), q.front().size());
      q.pop_front();
    }
  }

  void command(Cmd c) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      commands_.push_back(c);
    }
    wake();
  }
  void wake() {
    char b = 1;
    (void)!::write(wake_[1], &b, 1);
  }

  static void send_all(int fd, const uint8_t* p, size_t n) {
    while (fd >= 0 && n > 0) {
      ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) return;  // the other side is gone: the bytes are lost, as on a dead link
      p += w;
      n -= static_cast<size_t>(w);
    }
  }

  int connect_master() {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(master_port_);
    if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      if (fd >= 0) ::close(fd);
      return -1;
    }
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
  }

  static void close_fd(int& fd) {
    if (fd >= 0) {
      ::shutdown(fd, SHUT_RDWR);
      ::close(fd);
    }
    fd = -1;
  }

  // Splits what `from` read into frames and forwards or holds them (mu_ held).
  void pump(Side& from, Dir dir, int to_fd) {
    if (from.raw_left > 0) {
      size_t n = std::min(from.raw_left, from.in.size());
      send_all(to_fd, from.in.data(), n);
      from.in.erase(from.in.begin(), from.in.begin() + static_cast<std::ptrdiff_t>(n));
      from.raw_left -= n;
    }
    for (;;) {
      if (from.raw_left > 0 || from.in.size() < 16) return;
      uint32_t len;
      uint16_t type;
      uint64_t epoch;
      std::memcpy(&len, from.in.data(), 4);  // little-endian host (x86-64, aarch64)
      std::memcpy(&type, from.in.data() + 4, 2);
      std::memcpy(&epoch, from.in.data() + 8, 8);
      if (from.in.size() < 16 + size_t{len}) return;
      std::vector<uint8_t> bytes(from.in.begin(), from.in.begin() + 16 + len);
      from.in.erase(from.in.begin(), from.in.begin() + 16 + len);
      log_.push_back({dir, type, epoch, std::vector<uint8_t>(bytes.begin() + 16, bytes.end())});
      queue_[static_cast<int>(dir)].push_back(std::move(bytes));
      flush(dir);
    }
  }

  void run() {
    Side up{&peer_fd_, {}, 32};
    Side down{&master_fd_, {}, 8};
    for (;;) {
      std::vector<pollfd> fds{{wake_[0], POLLIN, 0}};
      if (peer_fd_ < 0 && !accepted_) fds.push_back({listen_fd_, POLLIN, 0});
      if (peer_fd_ >= 0) fds.push_back({peer_fd_, POLLIN, 0});
      if (master_fd_ >= 0) fds.push_back({master_fd_, POLLIN, 0});
      if (::poll(fds.data(), fds.size(), -1) < 0 && errno != EINTR) return;
      std::lock_guard<std::mutex> lock(mu_);
      if (stop_) return;
      char buf[65536];
      while (::read(wake_[0], buf, sizeof buf) > 0) {
      }
      for (Cmd c : commands_) {
        if (c == Cmd::kCloseMaster) {
          close_fd(master_fd_);
          master_closed_ = true;
        } else {
          close_fd(peer_fd_);
          peer_closed_ = true;
        }
      }
      commands_.clear();
      if (reflush_) {
        flush(Dir::kUp);
        flush(Dir::kDown);
        reflush_ = false;
      }
      for (const auto& p : fds) {
        if (p.revents == 0) continue;
        if (p.fd == listen_fd_) {
          peer_fd_ = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
          accepted_ = peer_fd_ >= 0;
          if (accepted_) {
            int one = 1;
            ::setsockopt(peer_fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            master_fd_ = connect_master();
            if (master_fd_ < 0) close_fd(peer_fd_);
          }
        } else if (p.fd == peer_fd_ || p.fd == master_fd_) {
          bool is_peer = p.fd == peer_fd_;
          Side& from = is_peer ? up : down;
          ssize_t n = ::read(p.fd, buf, sizeof buf);
          if (n <= 0 && !(n < 0 && errno == EINTR)) {
            // EOF or error: pass it on, unless the test closed the other side on purpose.
            close_fd(is_peer ? peer_fd_ : master_fd_);
            if (is_peer && !master_closed_) close_fd(master_fd_);
            if (!is_peer && !peer_closed_) close_fd(peer_fd_);
            continue;
          }
          if (n > 0) {
            from.in.insert(from.in.end(), buf, buf + n);
            pump(from, is_peer ? Dir::kUp : Dir::kDown, is_peer ? master_fd_ : peer_fd_);
          }
        }
      }
      cv_.notify_all();
    }
  }

  uint16_t master_port_;
  uint16_t port_ = 0;
  bool ok_ = false;
  int listen_fd_ = -1;
  int peer_fd_ = -1;
  int master_fd_ = -1;
  int wake_[2] = {-1, -1};
  bool accepted_ = false;  // one peer per proxy
  std::thread thread_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  bool master_closed_ = false;
  bool peer_closed_ = false;
  Gate gate_[2];                                // by Dir
  std::deque<std::vector<uint8_t>> queue_[2];  // kept frames, by Dir
  bool reflush_ = false;
  std::vector<Cmd> commands_;
  std::vector<Frame> log_;
};

}  // namespace qccl::test
