// Helpers shared by the qccl benchmarks: clocks, child processes started and ended by pid, a
// line pipe from children to the parent with a deadline, and the peer side's group join,
// barrier and slowest-rank timing over the public C API only (the benchmarks measure what a
// user gets, so they must not reach into the library's internals).
#pragma once

#include <qccl/qccl.h>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <iterator>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace qccl_bench {

// CLOCK_MONOTONIC is system-wide, so times taken in different processes compare directly
// (the recovery benchmark relies on that).
inline int64_t now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}
inline double ns_to_ms(int64_t ns) { return double(ns) / 1e6; }

struct QcclError : std::runtime_error {
  qcclResult_t code;
  QcclError(qcclResult_t c, const std::string& what) : std::runtime_error(what), code(c) {}
};

inline void check(qcclResult_t r, const char* what) {
  if (r != qcclSuccess) {
    throw QcclError(r, std::string(what) + ": " + qcclGetErrorString(r) + " (" +
                           qcclGetLastError() + ")");
  }
}

inline std::vector<int64_t> parse_int_list(const std::string& s) {
  std::vector<int64_t> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (!item.empty()) out.push_back(std::stoll(item));
  }
  if (out.empty()) throw std::invalid_argument("empty list: '" + s + "'");
  return out;
}

// Walks the command line: for each argument `a`, calls on_flag(a, value), where value()
// returns the next argument; on_flag returns false for a flag it does not know. A missing
// value, a value std::sto* rejects and an unknown flag end in usage(message).
template <typename OnFlag>
void parse_flags(int argc, char** argv, void (*usage)(const char*), OnFlag on_flag) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage(("missing value for " + a).c_str());
      return argv[++i];
    };
    bool known = false;
    try {
      known = on_flag(a, value);
    } catch (const std::logic_error&) {
      usage(("bad value for " + a).c_str());
    }
    if (!known) usage(("unknown option " + a).c_str());
  }
}

inline double median(std::vector<double> v) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// ---- parent side -------------------------------------------------------------------------

// Starts `argv` (argv[0] = program path) as a child. The child gets SIGKILL if the parent
// dies, so an interrupted benchmark leaves no peers behind. Everything is prepared before
// fork(): the parent runs the master's threads, so the child may only make async-signal-safe
// calls until exec. Descriptors the child must not keep should be O_CLOEXEC.
inline pid_t spawn_child(const std::vector<std::string>& argv) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);  // the parent died before prctl took effect
    execv(args[0], args.data());
    _exit(127);
  }
  return pid;
}

// Waits up to `grace_ns` for the children to exit on their own, then ends the rest (by pid)
// and reaps them all. Abnormal ends are printed: "peer 1 died of signal 11" is the first
// thing one wants to know about a failed run. Entries already -1 (reaped) are skipped.
inline void end_children(std::vector<pid_t>& pids, int64_t grace_ns) {
  int64_t until = now_ns() + grace_ns;
  auto report = [](size_t i, int st) {
    if (WIFSIGNALED(st)) std::fprintf(stderr, "peer %zu died of signal %d\n", i, WTERMSIG(st));
    else if (WIFEXITED(st) && WEXITSTATUS(st) != 0)
      std::fprintf(stderr, "peer %zu exited with status %d\n", i, WEXITSTATUS(st));
  };
  for (size_t i = 0; i < pids.size(); ++i) {
    int st = 0;
    while (pids[i] > 0 && now_ns() < until) {
      if (waitpid(pids[i], &st, WNOHANG) == pids[i]) {
        report(i, st);
        pids[i] = -1;
      } else {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
    }
    if (pids[i] > 0) {
      std::fprintf(stderr, "peer %zu still running: ended with SIGKILL\n", i);
      kill(pids[i], SIGKILL);
      waitpid(pids[i], &st, 0);
      pids[i] = -1;
    }
  }
}

// Reads newline-terminated lines written by children into one pipe. Each line is written
// with a single write() shorter than PIPE_BUF, so lines of different children never mix.
class LineReader {
 public:
  explicit LineReader(int fd) : fd_(fd) {}
  // Next line, or false when the deadline passed or every writer closed the pipe.
  bool next(std::string& line, int64_t deadline_ns) {
    for (;;) {
      size_t nl = buf_.find('\n');
      if (nl != std::string::npos) {
        line = buf_.substr(0, nl);
        buf_.erase(0, nl + 1);
        return true;
      }
      int64_t left_ms = (deadline_ns - now_ns()) / 1000000;
      if (left_ms <= 0) return fail("deadline passed");
      pollfd pfd{fd_, POLLIN, 0};
      int r = poll(&pfd, 1, int(std::min<int64_t>(left_ms, 1000)));
      if (r < 0 && errno != EINTR) return fail(std::string("poll: ") + std::strerror(errno));
      if (r <= 0) continue;
      char tmp[4096];
      ssize_t n = read(fd_, tmp, sizeof tmp);
      if (n == 0) return fail("every child closed its end of the pipe");
      if (n < 0) {
        if (errno == EINTR) continue;
        return fail(std::string("read: ") + std::strerror(errno));
      }
      buf_.append(tmp, size_t(n));
    }
  }
  // Why the last next() returned false.
  const std::string& error() const { return error_; }

 private:
  bool fail(std::string why) {
    error_ = std::move(why);
    return false;
  }
  int fd_;
  std::string buf_;
  std::string error_;
};

// The `ip` binary, for running peers under `ip netns exec NS` (network-namespace runs).
inline std::string find_ip() {
  for (const char* p : {"/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"}) {
    if (access(p, X_OK) == 0) return p;
  }
  throw std::runtime_error("the ip command was not found");
}

// `argv` unchanged when `ns` is empty, else prefixed with `ip netns exec NS`. ip execs the
// program in place (same pid), so spawn_child's pid, PDEATHSIG and inherited fds still hold.
inline std::vector<std::string> in_netns(const std::string& ns, std::vector<std::string> argv) {
  if (ns.empty()) return argv;
  std::vector<std::string> out = {find_ip(), "netns", "exec", ns};
  for (auto& a : argv) out.push_back(std::move(a));
  return out;
}

// 64-bit hash of a byte range (four multiply-xor lanes over 8-byte words, then the tail): equal
// bytes give equal hashes everywhere; fast enough to hash a 256 MiB buffer in well under 1 s.
inline uint64_t hash_bytes(const void* data, size_t n) {
  uint64_t h[4] = {0x243f6a8885a308d3ULL, 0x13198a2e03707344ULL, 0xa4093822299f31d0ULL,
                   0x082efa98ec4e6c89ULL};
  const auto* p = static_cast<const uint8_t*>(data);
  size_t words = n / 8, j = 0;
  auto word = [p](size_t i) {
    uint64_t w;
    std::memcpy(&w, p + 8 * i, 8);
    return w;
  };
  for (; j + 4 <= words; j += 4) {
    for (size_t k = 0; k < 4; ++k) {
      h[k] = (h[k] ^ word(j + k)) * 0x9e3779b97f4a7c15ULL;
      h[k] ^= h[k] >> 29;
    }
  }
  for (; j < words; ++j) h[0] = ((h[0] ^ word(j)) * 0x9e3779b97f4a7c15ULL) ^ (h[0] >> 29);
  for (size_t i = words * 8; i < n; ++i) h[1] = ((h[1] ^ p[i]) * 0x100000001b3ULL);
  uint64_t out = n;
  for (uint64_t x : h) out = (out ^ x) * 0xff51afd7ed558ccdULL, out ^= out >> 33;
  return out;
}

inline std::string self_exe() {
  char path[4096];
  ssize_t n = readlink("/proc/self/exe", path, sizeof path - 1);
  if (n <= 0) throw std::runtime_error("readlink /proc/self/exe failed");
  return std::string(path, size_t(n));
}

// ---- peer side -----------------------------------------------------------------------------

// One line to the parent, in one write() so that it stays atomic.
inline void send_line(int fd, const std::string& line) {
  std::string l = line + "\n";
  if (write(fd, l.data(), l.size()) != ssize_t(l.size())) {
    std::fprintf(stderr, "peer: write to parent failed: %s\n", std::strerror(errno));
  }
}

// Tags only have to be equal on every peer and distinct among concurrent ops; every peer
// issues the same sequence of ops, so a per-process counter is equal everywhere.
struct PeerCtx {
  qcclComm_t* comm = nullptr;
  uint64_t next_tag = 1;
};

// Connects and waits until the group has `n` peers. Later peers are admitted inside
// qcclUpdateTopology of the accepted ones, so the accepted peers keep calling it until the
// size is reached. They decide together when to stop (a max-reduce of "not there yet"):
// a peer that stopped alone would leave the others blocked in a collective update. A newly
// admitted peer enters the loop at the reduce, which is exactly where the accepted peers are
// once the update that admitted it returns. `on_connected` (if given) runs right after
// qcclConnect returned, i.e. once this peer is admitted: a parent that starts the next peer
// only then controls the admission order, which is the default ring order.
// A peer process's end after an error: says why on stderr and to the parent ("ERROR index
// why"), destroys the communicator; returns the exit code.
inline int peer_failed(PeerCtx& ctx, int result_fd, int index, const std::exception& e) {
  std::fprintf(stderr, "peer %d: %s\n", index, e.what());
  send_line(result_fd, "ERROR " + std::to_string(index) + " " + e.what());
  if (ctx.comm) qcclCommDestroy(ctx.comm);
  return 1;
}

// A shared secret for the master and every peer (--auth-token-file F, --encryption on|off):
// no file = no authentication; with one, every connection is authenticated and, unless
// encryption is QCCL_ENCRYPTION_OFF, encrypted (the library's default).
struct Secret {
  std::string token_file;  // "" = no secret
  uint32_t encryption = QCCL_ENCRYPTION_DEFAULT;

  // The file as the library reads it (qcclCommConfig_t.auth_token_file): less one trailing
  // newline. For the master's config, which takes the secret itself.
  std::string read_token() const {
    std::ifstream f(token_file, std::ios::binary);
    if (!f) throw std::runtime_error("cannot read " + token_file);
    std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    if (!s.empty() && s.back() == '\n') {
      s.pop_back();
      if (!s.empty() && s.back() == '\r') s.pop_back();
    }
    if (s.empty()) throw std::runtime_error(token_file + " holds no secret");
    return s;
  }
};

inline void join_group(PeerCtx& ctx, const std::string& master, int n, uint32_t connections,
                       int64_t deadline_ns, const std::function<void()>& on_connected = nullptr,
                       const Secret& secret = {}) {
  constexpr uint64_t kJoinTag = 0x6a6f696eULL;  // fixed: new peers have no tag history yet
  qcclCommConfig_t cc = QCCL_COMM_CONFIG_INIT;
  cc.master_address = master.c_str();
  cc.connections_per_peer = connections;
  if (!secret.token_file.empty()) cc.auth_token_file = secret.token_file.c_str();
  cc.encryption = secret.encryption;
  int64_t left_ms = (deadline_ns - now_ns()) / 1000000;
  cc.connect_timeout_ms = uint32_t(std::max<int64_t>(left_ms, 1));
  check(qcclCommCreate(&cc, &ctx.comm), "qcclCommCreate");
  check(qcclConnect(ctx.comm), "qcclConnect");
  if (on_connected) on_connected();
  for (;;) {
    int64_t ws = 0;
    check(qcclGetAttribute(ctx.comm, QCCL_ATTR_GROUP_WORLD_SIZE, &ws), "qcclGetAttribute");
    if (ws > n) throw std::runtime_error("group grew past " + std::to_string(n) + " peers");
    if (ws >= 2) {  // an all-reduce needs two peers; a lone first peer just updates
      double missing = ws == n ? 0.0 : 1.0;
      qcclReduceDesc_t d = {1, qcclFloat64, qcclMax, kJoinTag, {qcclQuantNone, qcclFloat64}};
      check(qcclAllReduce(&missing, &missing, &d, ctx.comm, nullptr), "qcclAllReduce(join)");
      if (missing == 0.0) break;
    }
    if (ws < 2) std::this_thread::sleep_for(std::chrono::milliseconds(1));  // don't spin
    if (now_ns() > deadline_ns) {
      throw std::runtime_error("timed out waiting for " + std::to_string(n) + " peers (have " +
                               std::to_string(ws) + ")");
    }
    qcclResult_t r = qcclUpdateTopology(ctx.comm);
    if (r != qcclSuccess && r != qcclPeerLost) check(r, "qcclUpdateTopology");
  }
  ctx.next_tag = 1;  // every peer's tag history starts here, so counters agree
}

// Element-wise max all-reduce of a few doubles: a barrier that also gives every peer the
// slowest peer's time and any peer's failure flag.
inline void allreduce_max(PeerCtx& ctx, double* v, size_t n) {
  qcclReduceDesc_t d = {n, qcclFloat64, qcclMax, ctx.next_tag++, {qcclQuantNone, qcclFloat64}};
  check(qcclAllReduce(v, v, &d, ctx.comm, nullptr), "qcclAllReduce(max of doubles)");
}
inline double allreduce_max(PeerCtx& ctx, double v) {
  allreduce_max(ctx, &v, 1);
  return v;
}

// Contribution of peer `index` at element j: (index+1) * ((j % 1024) + 1). Sums over up to
// ~180 peers stay integers below 2^24, so every summation order gives the exact result.
inline float contribution(int index, size_t j) { return float(index + 1) * float(j % 1024 + 1); }

inline void fill_contribution(std::vector<float>& v, size_t count, int index) {
  for (size_t j = 0; j < count; ++j) v[j] = contribution(index, j);
}

// Checks recv[j] == weight * ((j % 1024) + 1); returns the first bad index or -1.
inline int64_t first_mismatch(const float* recv, size_t count, int weight) {
  for (size_t j = 0; j < count; ++j) {
    if (recv[j] != float(weight) * float(j % 1024 + 1)) return int64_t(j);
  }
  return -1;
}

}  // namespace qccl_bench
