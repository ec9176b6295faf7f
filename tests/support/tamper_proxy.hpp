// TamperProxy: an on-path attacker for tests of encrypted connections (issue 23,
// tests/integration/tamper_test.cpp).
//
// A TCP forwarder on 127.0.0.1 (an ephemeral port, address()) that dials `target_port` on
// 127.0.0.1 for every connection it accepts and forwards both directions. It understands the
// framing of an encrypted qccl connection (net/auth.hpp, net/record_cipher.hpp) and nothing
// more: client -> server, 96 handshake bytes (preamble, nonce, MAC), then records; server ->
// client, the 72-byte challenge, then records; a record is `u32 LE payload length L
// (1..65536) | L bytes ciphertext | 16-byte tag`. It counts forwarded bytes and records per
// direction over every connection, and can be armed once with one tamper action, applied to
// the first record of the given direction that starts after a given number of record-payload
// bytes from the moment of arming:
//   kFlipBit   one bit of the record's ciphertext flipped;
//   kInject    a fabricated record (valid-looking length, random bytes) sent before it;
//   kReplay    the previous record of that connection and direction sent again before it;
//   kReorder   it is sent after the next record of that connection and direction (never, if
//              none follows);
//   kDrop      it is not sent;
//   kTruncate  its first half is sent, then both sides of that connection are closed.
// The proxy never blocks on a slow reader: its sockets are non-blocking and what a side does not
// take yet waits in that side's output buffer (so a stalled direction cannot stall the others,
// and the proxy adds no flow-control cycle to the ring).
//
// Thread-safety: one I/O thread (poll()); the public methods may be called from any thread.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace qccl::test {

class TamperProxy {
 public:
  enum class Dir { kToServer, kToClient };  // client -> server (the dialler's bytes), and back
  enum class Action { kFlipBit, kInject, kReplay, kReorder, kDrop, kTruncate };

  static constexpr size_t kClientRaw = 96;  // preamble (32) | nonce (32) | MAC (32)
  static constexpr size_t kServerRaw = 72;  // magic | suite | nonce (32) | MAC (32)
  static constexpr size_t kHeader = 4;
  static constexpr size_t kTag = 16;
  static constexpr uint32_t kMaxPayload = 64 * 1024;

  struct Totals {
    uint64_t bytes = 0;          // forwarded (handshakes included)
    uint64_t records = 0;        // records read from the sender
    uint64_t payload_bytes = 0;  // their payload (ciphertext) bytes
  };
  struct Fired {
    Dir dir;
    Action action;
    size_t connection;  // accept order, from 0
    uint64_t record;    // index of the tampered record within its connection and direction
    // How the reader of the tampered direction names its sender ("127.0.0.1:PORT", as in the
    // library's log lines): the proxy's connection to the target, or the proxy's listener.
    std::string reader_sees;
    std::chrono::steady_clock::time_point at;
  };

  explicit TamperProxy(uint16_t target_port) : target_port_(target_port) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    sockaddr_in a = loopback(0);
    socklen_t len = sizeof a;
    ok_ = listen_fd_ >= 0 && ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
          ::listen(listen_fd_, 64) == 0 &&
          ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len) == 0 &&
          ::pipe2(wake_, O_CLOEXEC | O_NONBLOCK) == 0;
    port_ = ntohs(a.sin_port);
    if (ok_) thread_ = std::thread([this] { run(); });
  }
  ~TamperProxy() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    wake();
    if (thread_.joinable()) thread_.join();
    for (auto& c : conns_) close_conn(*c);
    for (int fd : {listen_fd_, wake_[0], wake_[1]}) {
      if (fd >= 0) ::close(fd);
    }
  }
  TamperProxy(const TamperProxy&) = delete;
  TamperProxy& operator=(const TamperProxy&) = delete;

  bool ok() const { return ok_; }
  uint16_t port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

  // Arms the one action: the first record going `dir` that starts once `after_payload_bytes`
  // more record-payload bytes went that way gets it. False if it was armed before.
  bool arm(Dir dir, Action action, uint64_t after_payload_bytes) {
    std::lock_guard<std::mutex> lock(mu_);
    if (armed_ || fired_) return false;
    armed_ = Armed{dir, action, totals_[idx(dir)].payload_bytes + after_payload_bytes};
    return true;
  }
  std::optional<Fired> fired() const {
    std::lock_guard<std::mutex> lock(mu_);
    return fired_;
  }
  // Waits (deadline) until the armed action fired.
  bool wait_fired(std::chrono::steady_clock::time_point deadline) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_until(lock, deadline, [&] { return fired_.has_value(); });
  }
  Totals totals(Dir dir) const {
    std::lock_guard<std::mutex> lock(mu_);
    return totals_[idx(dir)];
  }
  size_t connections() const {
    std::lock_guard<std::mutex> lock(mu_);
    return accepted_;
  }

  static const char* name(Action a) {
    switch (a) {
      case Action::kFlipBit: return "FlipBit";
      case Action::kInject: return "Inject";
      case Action::kReplay: return "Replay";
      case Action::kReorder: return "Reorder";
      case Action::kDrop: return "Drop";
      case Action::kTruncate: return "Truncate";
    }
    return "?";
  }

 private:
  struct Armed {
    Dir dir;
    Action action;
    uint64_t threshold;  // fires on the first record starting at or after this payload count
  };
  // One direction of one connection: bytes read from `from`, records kept back, bytes not yet
  // taken by `to`.
  struct Stream {
    Stream(Dir d, size_t raw) : dir(d), raw_left(raw) {}
    Dir dir;
    size_t raw_left;            // handshake bytes still to pass unparsed
    std::vector<uint8_t> in;    // read, not yet a whole record
    std::vector<uint8_t> prev;  // the last whole record read (for kReplay)
    std::vector<uint8_t> held;  // a record kept back (kReorder)
    std::vector<uint8_t> out;   // to send to the other side
    size_t out_pos = 0;
    uint64_t records = 0;
    bool garbage = false;  // not a record stream (after an unexpected length): forward as is
  };
  struct Conn {
    size_t index;
    int client = -1;
    int server = -1;
    std::string server_side;  // the proxy's end of its connection to the target
    Stream up{Dir::kToServer, kClientRaw};    // read from client, sent to server
    Stream down{Dir::kToClient, kServerRaw};  // read from server, sent to client
    bool closing = false;  // truncated: no more reading; closed once the output is flushed
    std::chrono::steady_clock::time_point close_by{};
  };

  static size_t idx(Dir d) { return d == Dir::kToServer ? 0 : 1; }
  static sockaddr_in loopback(uint16_t port) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    return a;
  }
  void wake() {
    char b = 1;
    (void)!::write(wake_[1], &b, 1);
  }
  static void close_fd(int& fd) {
    if (fd >= 0) {
      ::shutdown(fd, SHUT_RDWR);
      ::close(fd);
    }
    fd = -1;
  }
  static void close_conn(Conn& c) {
    close_fd(c.client);
    close_fd(c.server);
  }
  static void set_opts(int fd) {
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  }

  // Dials the target (loopback: the connect completes or fails at once).
  int connect_target() {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a = loopback(target_port_);
    if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      if (fd >= 0) ::close(fd);
      return -1;
    }
    set_opts(fd);
    return fd;
  }

  void emit(Stream& s, const uint8_t* p, size_t n) {
    s.out.insert(s.out.end(), p, p + n);
    totals_[idx(s.dir)].bytes += n;
  }
  void emit(Stream& s, const std::vector<uint8_t>& v) { emit(s, v.data(), v.size()); }

  // Applies the armed action to `rec` if it is due; returns true if the record was handled
  // (sent, changed, kept or dropped) here.
  bool tamper(Conn& c, Stream& s, std::vector<uint8_t>& rec, uint32_t len) {
    if (!armed_ || armed_->dir != s.dir || totals_[idx(s.dir)].payload_bytes < armed_->threshold) {
      return false;
    }
    if (armed_->action == Action::kReplay && s.prev.empty()) return false;  // nothing to replay
    Action a = armed_->action;
    fired_ = Fired{s.dir, a, c.index, s.records,
                   s.dir == Dir::kToServer ? c.server_side : address(),
                   std::chrono::steady_clock::now()};
    armed_.reset();
    switch (a) {
      case Action::kFlipBit:
        rec[kHeader + len / 2] ^= 0x10;
        emit(s, rec);
        break;
      case Action::kInject: {
        uint32_t fake_len = 1024;
        std::vector<uint8_t> fake(kHeader + fake_len + kTag);
        std::memcpy(fake.data(), &fake_len, 4);  // little-endian host (x86-64, aarch64)
        std::mt19937 rng(static_cast<uint32_t>(s.records));
        for (size_t i = kHeader; i < fake.size(); ++i) fake[i] = static_cast<uint8_t>(rng());
        emit(s, fake);
        emit(s, rec);
        break;
      }
      case Action::kReplay:
        emit(s, s.prev);
        emit(s, rec);
        break;
      case Action::kReorder:
        s.held = rec;  // sent after the next record
        break;
      case Action::kDrop:
        break;
      case Action::kTruncate:
        emit(s, rec.data(), rec.size() / 2);
        c.closing = true;
        c.close_by = std::chrono::steady_clock::now() + std::chrono::seconds(5);
        break;
    }
    return true;
  }

  // Splits what `s` read into records and forwards them, tampering if armed (mu_ held).
  void pump(Conn& c, Stream& s) {
    if (s.raw_left > 0 || s.garbage) {
      size_t n = s.garbage ? s.in.size() : std::min(s.raw_left, s.in.size());
      emit(s, s.in.data(), n);
      s.in.erase(s.in.begin(), s.in.begin() + static_cast<std::ptrdiff_t>(n));
      if (!s.garbage) s.raw_left -= n;
    }
    while (!c.closing && s.raw_left == 0 && !s.garbage && s.in.size() >= kHeader) {
      uint32_t len;
      std::memcpy(&len, s.in.data(), 4);
      if (len == 0 || len > kMaxPayload) {  // not a record: the proxy cannot tell any more
        s.garbage = true;
        emit(s, s.in);
        s.in.clear();
        return;
      }
      size_t total = kHeader + len + kTag;
      if (s.in.size() < total) return;
      std::vector<uint8_t> rec(s.in.begin(), s.in.begin() + static_cast<std::ptrdiff_t>(total));
      s.in.erase(s.in.begin(), s.in.begin() + static_cast<std::ptrdiff_t>(total));
      bool handled = tamper(c, s, rec, len);
      if (!handled) {
        emit(s, rec);
        if (!s.held.empty()) {  // the record after a kept one: now the kept one
          emit(s, s.held);
          s.held.clear();
        }
      }
      totals_[idx(s.dir)].payload_bytes += len;
      ++totals_[idx(s.dir)].records;
      ++s.records;
      s.prev = std::move(rec);
    }
  }

  // Writes what `s` holds for `fd` without blocking; false if the side is gone.
  static bool flush(Stream& s, int fd) {
    while (s.out_pos < s.out.size()) {
      ssize_t w = ::send(fd, s.out.data() + s.out_pos, s.out.size() - s.out_pos, MSG_NOSIGNAL);
      if (w < 0 && errno == EINTR) continue;
      if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
      if (w <= 0) return false;
      s.out_pos += static_cast<size_t>(w);
    }
    s.out.clear();
    s.out_pos = 0;
    return true;
  }

  void run() {
    std::vector<uint8_t> buf(256 * 1024);
    for (;;) {
      std::vector<pollfd> fds{{wake_[0], POLLIN, 0}, {listen_fd_, POLLIN, 0}};
      int timeout_ms = -1;
      {
        std::lock_guard<std::mutex> lock(mu_);
        for (auto& c : conns_) {
          if (c->client < 0) continue;
          auto events = [&](const Stream& to) {
            return static_cast<short>((c->closing ? 0 : POLLIN) | (to.out.empty() ? 0 : POLLOUT));
          };
          fds.push_back({c->client, events(c->down), 0});
          fds.push_back({c->server, events(c->up), 0});
          if (c->closing) timeout_ms = 100;  // to honour close_by
        }
      }
      if (::poll(fds.data(), fds.size(), timeout_ms) < 0 && errno != EINTR) return;
      std::lock_guard<std::mutex> lock(mu_);
      if (stop_) return;
      while (::read(wake_[0], buf.data(), buf.size()) > 0) {
      }
      if (fds[1].revents & POLLIN) accept_all();
      for (size_t k = 2; k < fds.size(); ++k) {
        if (fds[k].revents == 0) continue;
        Conn* c = find(fds[k].fd);
        if (c == nullptr) continue;  // closed earlier in this round
        bool from_client = fds[k].fd == c->client;
        Stream& in = from_client ? c->up : c->down;    // what this side sends
        Stream& out = from_client ? c->down : c->up;   // what this side receives
        bool alive = !(c->closing && (fds[k].revents & (POLLHUP | POLLERR)));
        if (alive && (fds[k].revents & POLLOUT)) alive = flush(out, fds[k].fd);
        if (alive && !c->closing && (fds[k].revents & (POLLIN | POLLHUP | POLLERR))) {
          ssize_t n = ::read(fds[k].fd, buf.data(), buf.size());
          if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) {
            alive = false;
          } else if (n > 0) {
            in.in.insert(in.in.end(), buf.data(), buf.data() + n);
            pump(*c, in);
            int to = from_client ? c->server : c->client;
            alive = flush(in, to);
          }
        }
        if (!alive) {
          // EOF or error on one side: forward what is pending, best effort, and close both.
          flush(c->up, c->server);
          flush(c->down, c->client);
          close_conn(*c);
        }
      }
      auto now = std::chrono::steady_clock::now();
      for (auto& c : conns_) {
        if (!c->closing || c->client < 0) continue;
        if (!flush(c->up, c->server) || !flush(c->down, c->client) ||
            (c->up.out.empty() && c->down.out.empty()) || now >= c->close_by) {
          close_conn(*c);
        }
      }
      cv_.notify_all();
    }
  }

  void accept_all() {
    for (;;) {
      int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) return;
      set_opts(fd);
      auto c = std::make_unique<Conn>();
      c->index = accepted_++;
      c->client = fd;
      c->server = connect_target();
      if (c->server < 0) {
        close_fd(c->client);
        continue;
      }
      sockaddr_in a{};
      socklen_t len = sizeof a;
      ::getsockname(c->server, reinterpret_cast<sockaddr*>(&a), &len);
      c->server_side = "127.0.0.1:" + std::to_string(ntohs(a.sin_port));
      conns_.push_back(std::move(c));
    }
  }
  Conn* find(int fd) {
    for (auto& c : conns_) {
      if (c->client >= 0 && (c->client == fd || c->server == fd)) return c.get();
    }
    return nullptr;
  }

  uint16_t target_port_;
  uint16_t port_ = 0;
  bool ok_ = false;
  int listen_fd_ = -1;
  int wake_[2] = {-1, -1};
  std::thread thread_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::vector<std::unique_ptr<Conn>> conns_;
  size_t accepted_ = 0;
  Totals totals_[2];
  std::optional<Armed> armed_;
  std::optional<Fired> fired_;
};

}  // namespace qccl::test
