// Multi-process test support (STYLE.md §11, DESIGN.md §8): peers as child processes
// (tests/fault/test_peer.cpp and its kin) that a gtest test starts, reads, kills, stops and
// resumes; the master runs inside the test process (test_master.hpp) or as a child too.
//
// ProcCluster starts qccl_test_peer (QCCL_TEST_PEER_BIN, set by CMake) or another binary on
// top of Procs (proc.hpp: pipes, one poll() over all of them, lines) and reads against
// deadlines: every wait ends. All pipes of all children are drained on every wait, so a chatty
// child (QCCL_LOG_LEVEL=debug on stderr) never blocks on a full pipe. Stdout lines are events
// (peer_events.hpp); stderr is kept (the last 256 KiB per child) and printed with each child's
// events when the test failed (or always with QCCL_FAULT_VERBOSE=1 in the environment). A test
// that waits for a log line (e.g. the library's debug logs) turns on capture_stderr_lines(h)
// right after spawn(); that child's stderr lines are then also queued for
// next_stderr()/wait_stderr().
//
// Cleanup is unconditional: the destructor SIGKILLs and reaps every child it started, by pid,
// whether the test passed, failed an assertion or threw. Children also get PR_SET_PDEATHSIG,
// so they die with the test process if the watchdog ends it.
//
// Times: steady_clock, which is CLOCK_MONOTONIC on Linux, the clock of the peers' "at" field.
//
// Thread-safety: none; use from the test's thread.
#pragma once

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "support/peer_events.hpp"
#include "support/proc.hpp"

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

class ProcCluster {
 public:
  using Handle = size_t;

  explicit ProcCluster(std::string binary = QCCL_TEST_PEER_BIN)
      : binary_(std::move(binary)), procs_(/*tail_lines=*/0) {}
  ~ProcCluster() {
    hold_for_debugger();
    kill_all();
    const char* verbose = std::getenv("QCCL_FAULT_VERBOSE");
    if (::testing::Test::HasFailure() || (verbose != nullptr && *verbose && *verbose != '0')) {
      std::fputs(dump().c_str(), stderr);
    }
  }
  ProcCluster(const ProcCluster&) = delete;
  ProcCluster& operator=(const ProcCluster&) = delete;

  // Starts the binary with `args`; `env` entries ("K=V") are added to (or override) the
  // test's environment. `label` names the child in dumps. A non-empty `prefix` (prefix[0] an
  // absolute path) is run instead, with the peer's command line appended, e.g.
  // {"/usr/sbin/ip", "netns", "exec", NS}; it must exec the peer in place (same pid), so that
  // signals and the cleanup reach the peer. Returns its handle, or nullopt (with a message in
  // error()) if fork/pipe failed.
  std::optional<Handle> spawn(const std::string& label, const std::vector<std::string>& args,
                              const std::vector<std::string>& env = {},
                              const std::vector<std::string>& prefix = {}) {
    std::vector<std::string> argv(prefix);
    argv.push_back(binary_);
    argv.insert(argv.end(), args.begin(), args.end());
    auto id = procs_.spawn(label, argv, env);
    if (!id) return std::nullopt;
    logs_.emplace_back();
    logs_.back().started_us = monotonic_us();
    return *id;
  }

  // QCCL_FAULT_HOLD_S=<n>: when the test failed, SIGSTOP the children (their state stays as
  // it was at the failure), print their pids and keep them n seconds for gdb before the
  // cleanup kills them.
  void hold_for_debugger() {
    const char* hold = std::getenv("QCCL_FAULT_HOLD_S");
    if (hold == nullptr || !::testing::Test::HasFailure()) return;
    unsigned s = static_cast<unsigned>(std::strtoul(hold, nullptr, 10));
    for (Handle h = 0; h < size(); ++h) {
      if (!running(h)) continue;
      procs_.signal(h, SIGSTOP);
      std::fprintf(stderr, "holding %s pid %d (stopped)\n", label(h).c_str(), pid(h));
    }
    alarm(s + 30);  // keep the watchdog beyond the hold
    Deadline end = deadline_in(std::chrono::seconds(s));
    while (SteadyClock::now() < end) {
      if (!pump(end)) ::usleep(10000);
    }
  }

  const std::string& error() const { return procs_.error(); }
  size_t size() const { return procs_.size(); }
  pid_t pid(Handle h) const { return procs_.pid(h); }
  const std::string& label(Handle h) const { return procs_.label(h); }
  bool running(Handle h) const { return procs_.running(h); }

  // Sends `sig` to the child by pid; returns monotonic_us() taken just before the kill().
  int64_t signal(Handle h, int sig) {
    drain_all();  // so that the log shows the signal after the lines printed before it
    int64_t t = monotonic_us();
    procs_.signal(h, sig);
    logs_.at(h).log.push_back("<signal " + std::to_string(sig) + " at " + std::to_string(t) + ">");
    return t;
  }

  // Writes one command line to the child's stdin. False if the child is gone.
  bool send_line(Handle h, const std::string& line) {
    logs_.at(h).log.push_back("<stdin: " + line + ">");
    return procs_.send_line(h, line);
  }

  // The next unread stdout line of the child, or nullopt at the deadline or its EOF.
  std::optional<Event> next(Handle h, Deadline deadline) {
    Log& l = logs_.at(h);
    for (;;) {
      if (!l.unread.empty()) {
        Event e(std::move(l.unread.front()));
        l.unread.pop_front();
        return e;
      }
      if (!procs_.stdout_open(h)) return std::nullopt;  // EOF and nothing left
      if (!pump(deadline)) return std::nullopt;
    }
  }

  // Queues the child's stderr lines from now on (call right after spawn(): nothing has been
  // read yet, so no line is missed). At most kMaxErrLines unread lines are kept.
  void capture_stderr_lines(Handle h) { logs_.at(h).err_lines_on = true; }

  // The next unread stderr line of a child with capture_stderr_lines(), or nullopt at the
  // deadline or its EOF.
  std::optional<std::string> next_stderr(Handle h, Deadline deadline) {
    Log& l = logs_.at(h);
    for (;;) {
      if (!l.err_unread.empty()) {
        std::string line = std::move(l.err_unread.front());
        l.err_unread.pop_front();
        return line;
      }
      if (!procs_.stderr_open(h) || !l.err_lines_on) return std::nullopt;
      if (!pump(deadline)) return std::nullopt;
    }
  }

  // Drops the unread stderr lines of a child with capture_stderr_lines(), those its pipe holds
  // already included: a later wait_stderr() sees only lines printed from now on.
  void skip_stderr(Handle h) {
    drain_all();
    logs_.at(h).err_unread.clear();
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
    for (;;) {
      if (procs_.try_reap(h)) return procs_.status(h);
      if (SteadyClock::now() >= deadline) return std::nullopt;
      pump(std::min(deadline, SteadyClock::now() + std::chrono::milliseconds(10)));
    }
  }

  // SIGKILLs and reaps every child still running (by pid), then reads what they left in
  // their pipes. Idempotent.
  void kill_all() {
    for (Handle h = 0; h < size(); ++h) procs_.kill_and_reap(h);
    drain_all();
  }

  // Every child's events, signals and stdin (as seen so far) and the tail of its stderr.
  std::string dump() {
    drain_all();
    std::string s;
    for (Handle h = 0; h < size(); ++h) {
      const Log& l = logs_[h];
      s += "==== " + label(h) + " (pid " + std::to_string(pid(h)) + ", started at " +
           std::to_string(l.started_us) + ")";
      if (!running(h)) s += " wait status " + std::to_string(procs_.status(h));
      s += "\n";
      size_t first = l.log.size() > 400 ? l.log.size() - 400 : 0;
      if (first > 0) s += "  ... " + std::to_string(first) + " earlier lines\n";
      for (size_t i = first; i < l.log.size(); ++i) s += "  " + l.log[i] + "\n";
      if (!l.err.empty()) s += "  ---- stderr (tail) ----\n" + l.err + "\n";
    }
    return s;
  }

 private:
  // What the test keeps of one child's output.
  struct Log {
    std::deque<std::string> unread;
    std::vector<std::string> log;  // every stdout line, signal and stdin line, in order
    std::string err;               // the tail of its stderr
    bool err_lines_on = false;     // capture_stderr_lines()
    std::deque<std::string> err_unread;
    int64_t started_us = 0;
  };

  void on_line(Handle h, bool is_out, const std::string& line) {
    Log& l = logs_.at(h);
    if (is_out) {
      l.log.push_back(line);
      l.unread.push_back(line);
      return;
    }
    l.err += line;
    l.err += '\n';
    if (l.err.size() > 512 * 1024) l.err.erase(0, l.err.size() - 256 * 1024);
    if (l.err_lines_on) {
      l.err_unread.push_back(line);
      if (l.err_unread.size() > kMaxErrLines) l.err_unread.pop_front();
    }
  }
  Procs::LineFn sink() {
    return [this](Handle h, bool is_out, const std::string& line) { on_line(h, is_out, line); };
  }

  // One poll() over every open output pipe until `deadline`; reads whatever arrived.
  // False if the deadline passed with nothing to read (or nothing is open).
  bool pump(Deadline deadline) {
    if (!procs_.any_output_open()) return false;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - SteadyClock::now());
    int timeout = static_cast<int>(std::clamp<int64_t>(left.count() + 1, 0, 1000));
    if (left.count() < 0) timeout = 0;
    int n = procs_.poll_once(timeout, sink());
    if (n < 0 && errno == EINTR) return true;
    if (n <= 0) return SteadyClock::now() < deadline;
    return true;
  }

  // Reads everything already buffered in the pipes (without waiting).
  void drain_all() { procs_.drain(sink()); }

  static constexpr size_t kMaxErrLines = 100000;

  std::string binary_;
  Procs procs_;
  std::deque<Log> logs_;  // by handle, as Procs's children
};

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

// One peer of a group: its extra arguments, its additions to the environment, and whether the
// test reads its stderr lines (ProcCluster::capture_stderr_lines).
struct PeerSpec {
  std::vector<std::string> args;
  std::vector<std::string> env;
  bool capture_stderr = false;
};

// Starts qccl_test_peer --master M --index i --world n <spec(i).args> for i in
// [first_index, first_index + n) at once (they gather by themselves, see test_peer.cpp) and
// waits until every one printed "ready" with world n. Returns the handles in index order, or
// an empty vector (after a gtest failure).
inline std::vector<ProcCluster::Handle> start_group(ProcCluster& pc, const std::string& master,
                                                    int n,
                                                    const std::function<PeerSpec(int)>& spec,
                                                    Deadline deadline, int first_index = 0) {
  std::vector<ProcCluster::Handle> hs;
  for (int i = first_index; i < first_index + n; ++i) {
    PeerSpec s = spec(i);
    std::vector<std::string> a{"--master", master, "--index", std::to_string(i), "--world",
                               std::to_string(n)};
    a.insert(a.end(), s.args.begin(), s.args.end());
    auto h = pc.spawn("peer " + std::to_string(i), a, s.env);
    if (!h) {
      ADD_FAILURE() << "cannot start qccl_test_peer: " << pc.error();
      return {};
    }
    if (s.capture_stderr) pc.capture_stderr_lines(*h);
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

// The same, every peer with the same arguments.
inline std::vector<ProcCluster::Handle> start_group(ProcCluster& pc, const std::string& master,
                                                    int n, const std::vector<std::string>& args,
                                                    Deadline deadline, int first_index = 0) {
  return start_group(pc, master, n, [&](int) { return PeerSpec{args, {}, false}; }, deadline,
                     first_index);
}

}  // namespace qccl::test
