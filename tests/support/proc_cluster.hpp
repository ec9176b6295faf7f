// Multi-process test support (STYLE.md §11, DESIGN.md §8): a master inside the test process
// and peers as child processes (tests/fault/test_peer.cpp) that the test kills, stops and
// resumes.
//
// ProcCluster fork/execs qccl_test_peer (QCCL_TEST_PEER_BIN, set by CMake) with pipes on its
// stdin, stdout and stderr, and reads them with poll() against deadlines: every wait ends.
// All pipes of all children are drained on every wait, so a chatty child (QCCL_LOG_LEVEL=debug
// on stderr) never blocks on a full pipe. Stdout lines are events (see test_peer.cpp);
// stderr is kept (the last 256 KiB per child) and printed with each child's events when the
// test failed (or always with QCCL_FAULT_VERBOSE=1 in the environment). A test that waits for
// a log line (e.g. the library's debug logs) turns on capture_stderr_lines(h) right after
// spawn(); that child's stderr lines are then also queued for next_stderr()/wait_stderr().
//
// Cleanup is unconditional: the destructor SIGKILLs and reaps every child it started, by pid,
// whether the test passed, failed an assertion or threw. Children also get PR_SET_PDEATHSIG,
// so they die with the test process if the watchdog ends it.
//
// Times: steady_clock, which is CLOCK_MONOTONIC on Linux, the clock of the peers' "at" field.
//
// Thread-safety: none; use from the test's thread.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "qccl/qccl.h"

extern char** environ;

namespace qccl::test {

using SteadyClock = std::chrono::steady_clock;
using Deadline = SteadyClock::time_point;

inline Deadline deadline_in(std::chrono::milliseconds d) { return SteadyClock::now() + d; }

// Microseconds of CLOCK_MONOTONIC: comparable with the peers' "at" field.
inline int64_t monotonic_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             SteadyClock::now().time_since_epoch())
      .count();
}

// ---------------------------------------------------------------- peer events

// One stdout line of qccl_test_peer, split into words: "op 3 world 2 sum 5 ms 1.2 at 123".
struct Event {
  std::string raw;
  std::vector<std::string> words;

  explicit Event(std::string line) : raw(std::move(line)) {
    std::istringstream in(raw);
    for (std::string w; in >> w;) {
      if (w == "msg") break;  // free text follows
      words.push_back(w);
    }
  }
  const std::string& kind() const {
    static const std::string kEmpty;
    return words.empty() ? kEmpty : words[0];
  }
  bool is(const char* k) const { return kind() == k; }
  // The word after `key` ("world" -> "2"), if any.
  std::optional<std::string> field(const std::string& key) const {
    for (size_t i = 0; i + 1 < words.size(); ++i) {
      if (words[i] == key) return words[i + 1];
    }
    return std::nullopt;
  }
  int64_t num(const std::string& key, int64_t fallback = -1) const {
    auto f = field(key);
    return f ? std::strtoll(f->c_str(), nullptr, 10) : fallback;
  }
  uint64_t unum(const std::string& key) const {
    auto f = field(key);
    return f ? std::strtoull(f->c_str(), nullptr, 10) : 0;
  }
  // Positional word as a number ("fail K CODE MS NAME": pos(1) = K, pos(2) = CODE).
  int64_t pos(size_t i) const {
    return i < words.size() ? std::strtoll(words[i].c_str(), nullptr, 10) : -1;
  }
  int64_t at_us() const { return num("at"); }
  std::string message() const {
    auto p = raw.find(" msg ");
    return p == std::string::npos ? "" : raw.substr(p + 5);
  }
};

// The sum that the peers `indices` contribute (peer i adds 2^i).
inline uint64_t sum_of(const std::vector<int>& indices) {
  uint64_t s = 0;
  for (int i : indices) s |= uint64_t{1} << i;
  return s;
}

// ---------------------------------------------------------------- master

// Small deadlines, so that a test sees expulsions within about a second.
struct MasterTimes {
  uint32_t heartbeat_ms = 100;
  uint32_t peer_timeout_ms = 1000;
  uint32_t vote_timeout_ms = 5000;
};

// A master on 127.0.0.1:0 inside the test process, through the C API.
class TestMaster {
 public:
  explicit TestMaster(MasterTimes c = MasterTimes{}) : config_(c) {
    qcclMasterConfig_t mc = QCCL_MASTER_CONFIG_INIT;
    mc.listen_address = "127.0.0.1:0";
    mc.heartbeat_interval_ms = c.heartbeat_ms;
    mc.peer_timeout_ms = c.peer_timeout_ms;
    mc.vote_timeout_ms = c.vote_timeout_ms;
    // QCCL_FAULT_VOTE_TIMEOUT_MS=<n> overrides it, e.g. to keep a hung op from ending in
    // straggler expulsions before QCCL_FAULT_HOLD_S stops the peers for gdb.
    if (const char* v = std::getenv("QCCL_FAULT_VOTE_TIMEOUT_MS")) {
      mc.vote_timeout_ms = static_cast<uint32_t>(std::strtoul(v, nullptr, 10));
    }
    ok_ = qcclMasterCreate(&mc, &master_) == qcclSuccess && qcclMasterStart(master_) == qcclSuccess &&
          qcclMasterGetPort(master_, &port_) == qcclSuccess;
    if (!ok_) error_ = qcclGetLastError();
  }
  ~TestMaster() {
    if (master_ != nullptr) qcclMasterDestroy(master_);
  }
  TestMaster(const TestMaster&) = delete;
  TestMaster& operator=(const TestMaster&) = delete;

  bool ok() const { return ok_; }
  const std::string& error() const { return error_; }
  const MasterTimes& config() const { return config_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

 private:
  MasterTimes config_;
  qcclMaster_t* master_ = nullptr;
  uint16_t port_ = 0;
  bool ok_ = false;
  std::string error_;
};

// ---------------------------------------------------------------- processes

class ProcCluster {
 public:
  using Handle = size_t;

  explicit ProcCluster(std::string binary = QCCL_TEST_PEER_BIN) : binary_(std::move(binary)) {
    // A write to the stdin of a dead child must fail with EPIPE, not end the test.
    std::signal(SIGPIPE, SIG_IGN);
  }
  ~ProcCluster() {
    hold_for_debugger();
    kill_all();
    const char* verbose = std::getenv("QCCL_FAULT_VERBOSE");
    if (::testing::Test::HasFailure() || (verbose != nullptr && *verbose && *verbose != '0')) {
      std::fputs(dump().c_str(), stderr);
    }
    for (auto& c : children_) close_fds(c);
  }
  ProcCluster(const ProcCluster&) = delete;
  ProcCluster& operator=(const ProcCluster&) = delete;

  // Starts qccl_test_peer with `args`; `env` entries ("K=V") are added to (or override) the
  // test's environment. `label` names the child in dumps. A non-empty `prefix` (prefix[0] an
  // absolute path) is run instead, with the peer's command line appended, e.g.
  // {"/usr/sbin/ip", "netns", "exec", NS}; it must exec the peer in place (same pid), so that
  // signals and the cleanup reach the peer. Returns its handle, or nullopt (with a message in
  // error()) if fork/pipe failed.
  std::optional<Handle> spawn(const std::string& label, const std::vector<std::string>& args,
                              const std::vector<std::string>& env = {},
                              const std::vector<std::string>& prefix = {}) {
    // Everything the child needs is built before fork: after it, only async-signal-safe calls.
    std::vector<std::string> argv_s(prefix);
    argv_s.push_back(binary_);
    argv_s.insert(argv_s.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& s : argv_s) argv.push_back(s.data());
    argv.push_back(nullptr);
    std::vector<std::string> env_s;
    for (char** e = environ; *e != nullptr; ++e) {
      std::string kv = *e;
      std::string key = kv.substr(0, kv.find('='));
      bool overridden = std::any_of(env.begin(), env.end(), [&](const std::string& x) {
        return x.compare(0, key.size() + 1, key + "=") == 0;
      });
      if (!overridden) env_s.push_back(kv);
    }
    env_s.insert(env_s.end(), env.begin(), env.end());
    std::vector<char*> envp;
    for (auto& s : env_s) envp.push_back(s.data());
    envp.push_back(nullptr);

    int in[2], out[2], err[2];
    if (::pipe2(in, O_CLOEXEC) != 0) return fail_spawn("pipe");
    if (::pipe2(out, O_CLOEXEC) != 0) {
      close_pair(in);
      return fail_spawn("pipe");
    }
    if (::pipe2(err, O_CLOEXEC) != 0) {
      close_pair(in);
      close_pair(out);
      return fail_spawn("pipe");
    }
    pid_t parent = ::getpid();
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    ::sigemptyset(&dfl.sa_mask);
    rlimit lim{};
    int max_fd = ::getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur != RLIM_INFINITY
                     ? static_cast<int>(std::min<rlim_t>(lim.rlim_cur, 65536))
                     : 4096;
    pid_t pid = ::fork();
    if (pid < 0) {
      close_pair(in);
      close_pair(out);
      close_pair(err);
      return fail_spawn("fork");
    }
    if (pid == 0) {
      // Child: async-signal-safe calls only.
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(127);  // the test died before prctl
      ::dup2(in[0], 0);
      ::dup2(out[1], 1);
      ::dup2(err[1], 2);
      // Not one of the test's sockets (the master's included) may live on in a peer.
      if (::syscall(SYS_close_range, 3U, ~0U, 0U) != 0) {
        for (int fd = 3; fd < max_fd; ++fd) ::close(fd);
      }
      sigset_t none;
      ::sigemptyset(&none);
      ::sigprocmask(SIG_SETMASK, &none, nullptr);
      ::sigaction(SIGPIPE, &dfl, nullptr);  // as in any program the user starts
      ::execve(argv[0], argv.data(), envp.data());
      ::_exit(127);
    }
    ::close(in[0]);
    ::close(out[1]);
    ::close(err[1]);
    Child c;
    c.label = label;
    c.pid = pid;
    c.in_fd = in[1];
    c.out_fd = out[0];
    c.err_fd = err[0];
    c.started_us = monotonic_us();
    ::fcntl(c.out_fd, F_SETFL, ::fcntl(c.out_fd, F_GETFL) | O_NONBLOCK);
    ::fcntl(c.err_fd, F_SETFL, ::fcntl(c.err_fd, F_GETFL) | O_NONBLOCK);
    children_.push_back(std::move(c));
    return children_.size() - 1;
  }

  // QCCL_FAULT_HOLD_S=<n>: when the test failed, SIGSTOP the children (their state stays as
  // it was at the failure), print their pids and keep them n seconds for gdb before the
  // cleanup kills them.
  void hold_for_debugger() {
    const char* hold = std::getenv("QCCL_FAULT_HOLD_S");
    if (hold == nullptr || !::testing::Test::HasFailure()) return;
    unsigned s = static_cast<unsigned>(std::strtoul(hold, nullptr, 10));
    for (auto& c : children_) {
      if (c.reaped) continue;
      ::kill(c.pid, SIGSTOP);
      std::fprintf(stderr, "holding %s pid %d (stopped)\n", c.label.c_str(), c.pid);
    }
    alarm(s + 30);  // keep the watchdog beyond the hold
    Deadline end = deadline_in(std::chrono::seconds(s));
    while (SteadyClock::now() < end) {
      if (!pump(end)) ::usleep(10000);
    }
  }

  const std::string& error() const { return error_; }
  size_t size() const { return children_.size(); }
  pid_t pid(Handle h) const { return children_.at(h).pid; }
  const std::string& label(Handle h) const { return children_.at(h).label; }
  bool running(Handle h) const { return !children_.at(h).reaped; }

  // Sends `sig` to the child by pid; returns monotonic_us() taken just before the kill().
  int64_t signal(Handle h, int sig) {
    drain_all();  // so that the log shows the signal after the lines printed before it
    Child& c = children_.at(h);
    int64_t t = monotonic_us();
    if (!c.reaped) ::kill(c.pid, sig);
    c.log.push_back("<signal " + std::to_string(sig) + " at " + std::to_string(t) + ">");
    return t;
  }

  // Writes one command line to the child's stdin. False if the child is gone.
  bool send_line(Handle h, const std::string& line) {
    Child& c = children_.at(h);
    if (c.in_fd < 0) return false;
    std::string s = line + "\n";
    c.log.push_back("<stdin: " + line + ">");
    const char* p = s.data();
    size_t left = s.size();
    while (left > 0) {
      ssize_t n = ::write(c.in_fd, p, left);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      p += n;
      left -= static_cast<size_t>(n);
    }
    return true;
  }

  // The next unread stdout line of the child, or nullopt at the deadline or its EOF.
  std::optional<Event> next(Handle h, Deadline deadline) {
    Child& c = children_.at(h);
    for (;;) {
      if (!c.unread.empty()) {
        Event e(std::move(c.unread.front()));
        c.unread.pop_front();
        return e;
      }
      if (c.out_fd < 0) return std::nullopt;  // EOF and nothing left
      if (!pump(deadline)) return std::nullopt;
    }
  }

  // Queues the child's stderr lines from now on (call right after spawn(): nothing has been
  // read yet, so no line is missed). At most kMaxErrLines unread lines are kept.
  void capture_stderr_lines(Handle h) { children_.at(h).err_lines_on = true; }

  // The next unread stderr line of a child with capture_stderr_lines(), or nullopt at the
  // deadline or its EOF.
  std::optional<std::string> next_stderr(Handle h, Deadline deadline) {
    Child& c = children_.at(h);
    for (;;) {
      if (!c.err_unread.empty()) {
        std::string line = std::move(c.err_unread.front());
        c.err_unread.pop_front();
        return line;
      }
      if (c.err_fd < 0 || !c.err_lines_on) return std::nullopt;
      if (!pump(deadline)) return std::nullopt;
    }
  }

  // Reads the child's stderr lines until one contains `needle`; nullopt at the deadline/EOF.
  std::optional<std::string> wait_stderr(Handle h, const std::string& needle, Deadline deadline) {
    for (;;) {
      auto line = next_stderr(h, deadline);
      if (!line) return std::nullopt;
      if (line->find(needle) != std::string::npos) return line;
    }
  }

  // Reads the child's lines until one satisfies `pred`; the lines before it are passed to
  // `skipped` (if given) and dropped. nullopt at the deadline or EOF.
  std::optional<Event> wait_for(Handle h, const std::function<bool(const Event&)>& pred,
                                Deadline deadline,
                                const std::function<void(const Event&)>& skipped = nullptr) {
    for (;;) {
      auto e = next(h, deadline);
      if (!e) return std::nullopt;
      if (pred(*e)) return e;
      if (skipped) skipped(*e);
    }
  }
  std::optional<Event> wait_kind(Handle h, const char* kind, Deadline deadline) {
    return wait_for(h, [kind](const Event& e) { return e.is(kind); }, deadline);
  }

  // Waits for the child to exit; returns its wait status, or nullopt at the deadline.
  std::optional<int> wait_exit(Handle h, Deadline deadline) {
    Child& c = children_.at(h);
    for (;;) {
      if (try_reap(c)) return c.status;
      if (SteadyClock::now() >= deadline) return std::nullopt;
      pump(std::min(deadline, SteadyClock::now() + std::chrono::milliseconds(10)));
    }
  }

  // SIGKILLs and reaps every child still running (by pid). Idempotent.
  void kill_all() {
    for (auto& c : children_) {
      if (c.reaped) continue;
      ::kill(c.pid, SIGKILL);
      int st = 0;
      while (::waitpid(c.pid, &st, 0) < 0 && errno == EINTR) {
      }
      c.reaped = true;
      c.status = st;
    }
    drain_all();
  }

  // Every child's events, signals and stdin (as seen so far) and the tail of its stderr.
  std::string dump() {
    drain_all();
    std::string s;
    for (auto& c : children_) {
      s += "==== " + c.label + " (pid " + std::to_string(c.pid) + ", started at " +
           std::to_string(c.started_us) + ")";
      if (c.reaped) s += " wait status " + std::to_string(c.status);
      s += "\n";
      size_t first = c.log.size() > 400 ? c.log.size() - 400 : 0;
      if (first > 0) s += "  ... " + std::to_string(first) + " earlier lines\n";
      for (size_t i = first; i < c.log.size(); ++i) s += "  " + c.log[i] + "\n";
      if (!c.err.empty()) s += "  ---- stderr (tail) ----\n" + c.err + "\n";
    }
    return s;
  }

 private:
  struct Child {
    std::string label;
    pid_t pid = -1;
    int in_fd = -1, out_fd = -1, err_fd = -1;
    std::string out_partial;
    std::deque<std::string> unread;
    std::vector<std::string> log;  // every stdout line, signal and stdin line, in order
    std::string err;
    bool err_lines_on = false;  // capture_stderr_lines()
    std::string err_partial;
    std::deque<std::string> err_unread;
    int64_t started_us = 0;
    bool reaped = false;
    int status = 0;
  };

  std::optional<Handle> fail_spawn(const char* what) {
    error_ = std::string(what) + ": " + std::strerror(errno);
    return std::nullopt;
  }
  static void close_pair(int p[2]) {
    ::close(p[0]);
    ::close(p[1]);
  }
  static void close_fds(Child& c) {
    for (int* fd : {&c.in_fd, &c.out_fd, &c.err_fd}) {
      if (*fd >= 0) ::close(*fd);
      *fd = -1;
    }
  }

  bool try_reap(Child& c) {
    if (c.reaped) return true;
    int st = 0;
    pid_t r = ::waitpid(c.pid, &st, WNOHANG);
    if (r == c.pid) {
      c.reaped = true;
      c.status = st;
    }
    return c.reaped;
  }

  // Reads what is available on fd into the child's buffers. False at EOF or error.
  bool read_some(Child& c, bool is_out) {
    int& fd = is_out ? c.out_fd : c.err_fd;
    char buf[16384];
    for (;;) {
      ssize_t n = ::read(fd, buf, sizeof buf);
      if (n > 0) {
        if (is_out) {
          c.out_partial.append(buf, static_cast<size_t>(n));
          size_t nl;
          while ((nl = c.out_partial.find('\n')) != std::string::npos) {
            std::string line = c.out_partial.substr(0, nl);
            c.out_partial.erase(0, nl + 1);
            c.log.push_back(line);
            c.unread.push_back(std::move(line));
          }
        } else {
          c.err.append(buf, static_cast<size_t>(n));
          if (c.err.size() > 512 * 1024) c.err.erase(0, c.err.size() - 256 * 1024);
          if (c.err_lines_on) {
            c.err_partial.append(buf, static_cast<size_t>(n));
            size_t nl;
            while ((nl = c.err_partial.find('\n')) != std::string::npos) {
              c.err_unread.push_back(c.err_partial.substr(0, nl));
              c.err_partial.erase(0, nl + 1);
              if (c.err_unread.size() > kMaxErrLines) c.err_unread.pop_front();
            }
          }
        }
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
      ::close(fd);  // EOF or error
      fd = -1;
      if (is_out && !c.out_partial.empty()) {
        c.log.push_back(c.out_partial);
        c.unread.push_back(std::move(c.out_partial));
        c.out_partial.clear();
      }
      if (!is_out && c.err_lines_on && !c.err_partial.empty()) {
        c.err_unread.push_back(std::move(c.err_partial));
        c.err_partial.clear();
      }
      return false;
    }
  }

  // One poll() over every open output pipe until `deadline`; reads whatever arrived.
  // False if the deadline passed with nothing to read (or nothing is open).
  bool pump(Deadline deadline) {
    std::vector<pollfd> fds;
    std::vector<std::pair<size_t, bool>> who;
    for (size_t i = 0; i < children_.size(); ++i) {
      Child& c = children_[i];
      if (c.out_fd >= 0) {
        fds.push_back({c.out_fd, POLLIN, 0});
        who.emplace_back(i, true);
      }
      if (c.err_fd >= 0) {
        fds.push_back({c.err_fd, POLLIN, 0});
        who.emplace_back(i, false);
      }
    }
    if (fds.empty()) return false;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - SteadyClock::now());
    int timeout = static_cast<int>(std::clamp<int64_t>(left.count() + 1, 0, 1000));
    if (left.count() < 0) timeout = 0;
    int n = ::poll(fds.data(), fds.size(), timeout);
    if (n < 0 && errno == EINTR) return true;
    if (n <= 0) return SteadyClock::now() < deadline;
    for (size_t i = 0; i < fds.size(); ++i) {
      if (fds[i].revents != 0) read_some(children_[who[i].first], who[i].second);
    }
    return true;
  }

  // Reads everything already buffered in the pipes (without waiting).
  void drain_all() {
    for (auto& c : children_) {
      if (c.out_fd >= 0) read_some(c, true);
      if (c.err_fd >= 0) read_some(c, false);
    }
  }

  static constexpr size_t kMaxErrLines = 100000;

  std::string binary_;
  std::vector<Child> children_;
  std::string error_;
};

// ---------------------------------------------------------------- peer groups

// Reads the child's events into `into` until one satisfies `pred` (included); false at the
// deadline or EOF.
inline bool collect_until(ProcCluster& pc, ProcCluster::Handle h,
                          const std::function<bool(const Event&)>& pred, Deadline deadline,
                          std::vector<Event>& into) {
  for (;;) {
    auto e = pc.next(h, deadline);
    if (!e) return false;
    into.push_back(*e);
    if (pred(*e)) return true;
  }
}

// Starts qccl_test_peer --index i --world n <args> for i in [0, n) at once (they gather by
// themselves, see test_peer.cpp) and waits until every one printed "ready" with world n.
// Returns the handles in index order, or an empty vector (after a gtest failure).
inline std::vector<ProcCluster::Handle> start_group(ProcCluster& pc, const std::string& master,
                                                    int n, const std::vector<std::string>& args,
                                                    Deadline deadline, int first_index = 0) {
  std::vector<ProcCluster::Handle> hs;
  for (int i = first_index; i < first_index + n; ++i) {
    std::vector<std::string> a{"--master", master, "--index", std::to_string(i), "--world",
                               std::to_string(n)};
    a.insert(a.end(), args.begin(), args.end());
    auto h = pc.spawn("peer " + std::to_string(i), a);
    if (!h) {
      ADD_FAILURE() << "cannot start qccl_test_peer: " << pc.error();
      return {};
    }
    hs.push_back(*h);
  }
  for (auto h : hs) {
    auto e = pc.wait_for(h, [](const Event& ev) { return ev.is("ready") || ev.is("error"); },
                         deadline);
    if (!e || !e->is("ready") || e->num("world") != n) {
      ADD_FAILURE() << pc.label(h) << " did not get ready with world " << n << ": "
                    << (e ? e->raw : std::string("no line before the deadline"));
      return {};
    }
  }
  return hs;
}

inline double max_of(const std::vector<double>& v) {
  return v.empty() ? 0 : *std::max_element(v.begin(), v.end());
}

inline double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t m = v.size() / 2;
  return v.size() % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}

// ---------------------------------------------------------------- recovery of a loop

// What one "--mode loop" peer printed around a membership change at `fault_us` (a peer
// killed or stopped: the sum goes from `full` to `survivors`; or a peer joining: from the
// old group's sum to the new one's).
struct Recovery {
  std::vector<Event> events;                // every line read
  std::map<int64_t, uint64_t> sums;         // successful op K -> its sum
  int failures = 0;                         // fail lines after the fault
  std::optional<int64_t> first_failure_us;  // "at" of the first of them
  std::optional<int64_t> world_drop_us;     // when the watcher saw the group shrink
  std::optional<int64_t> first_success_us;  // first op with the survivors' sum
};

// Follows a looping survivor until it completed `ops_after` ops with the survivors' sum, and
// checks what it printed: no bad/corrupt/error line; every op sums to `full` (before) or
// `survivors` (after; never before the fault, and never back to `full`); every failure comes
// after the fault with a code in `codes`. Failures go to gtest, prefixed with the label.
inline Recovery follow_recovery(ProcCluster& pc, ProcCluster::Handle h, int64_t fault_us,
                                uint64_t full, uint64_t survivors, int ops_after,
                                Deadline deadline, const std::vector<int>& codes) {
  Recovery r;
  const std::string who = pc.label(h) + ": ";
  int after = 0;
  const int64_t full_world = __builtin_popcountll(full);
  while (after < ops_after) {
    auto e = pc.next(h, deadline);
    if (!e) {
      ADD_FAILURE() << who << "only " << after << " of " << ops_after
                    << " ops with the survivors' sum " << survivors << " before the deadline";
      break;
    }
    r.events.push_back(*e);
    if (e->is("bad") || e->is("corrupt") || e->is("error") || e->is("done")) {
      ADD_FAILURE() << who << e->raw;
    } else if (e->is("op")) {
      uint64_t s = e->unum("sum");
      r.sums[e->pos(1)] = s;
      if (s == survivors) {
        if (e->at_us() < fault_us) ADD_FAILURE() << who << "survivors' sum before the fault: " << e->raw;
        if (!r.first_success_us) r.first_success_us = e->at_us();
        ++after;
      } else if (s == full) {
        if (r.first_success_us) ADD_FAILURE() << who << "the lost peer is back in: " << e->raw;
      } else {
        ADD_FAILURE() << who << "sum is neither " << full << " nor " << survivors << ": " << e->raw;
      }
    } else if (e->is("fail")) {
      if (e->at_us() < fault_us) ADD_FAILURE() << who << "failure before the fault: " << e->raw;
      if (std::find(codes.begin(), codes.end(), e->pos(2)) == codes.end()) {
        ADD_FAILURE() << who << "unexpected failure code: " << e->raw;
      }
      ++r.failures;
      if (!r.first_failure_us) r.first_failure_us = e->at_us();
    } else if (e->is("world")) {
      if (e->num("world") < full_world && !r.world_drop_us) r.world_drop_us = e->at_us();
    }
  }
  return r;
}

// All or nothing: the K-th successful op of every survivor is the same collective, so it
// has the same sum everywhere.
inline void expect_same_sums(const std::vector<Recovery>& rs, const std::string& what) {
  for (size_t a = 1; a < rs.size(); ++a) {
    for (const auto& [k, s] : rs[a].sums) {
      auto it = rs[0].sums.find(k);
      if (it != rs[0].sums.end()) {
        EXPECT_EQ(s, it->second) << what << ": survivors disagree on op " << k;
      }
    }
  }
}

}  // namespace qccl::test
