// Shared by the master fault tests (master_loss_test.cpp, master_resume_test.cpp): the
// qccl-master binary as a child process that can be killed, stopped and started again on the
// same address, and the transcripts of qccl_test_peer processes in idle mode with --announce
// (test_peer.cpp has the line formats).
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <csignal>
#include <fstream>
#include <functional>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "support/proc_cluster.hpp"

namespace qccl::test {

using namespace std::chrono_literals;

// ---------------------------------------------------------------- the external master

// qccl-master --listen 127.0.0.1:0 as a child process (in a ProcCluster of its own), ended by
// pid by the ProcCluster's destructor whatever happens (SIGKILL also ends a stopped process).
class ExternalMaster {
 public:
  struct Timing {
    uint32_t heartbeat_ms;
    uint32_t peer_timeout_ms;
    uint32_t vote_timeout_ms;
  };
  // Listens on `listen` (port 0: any free one; a restarted master passes the address its
  // predecessor printed); `extra` is appended to its command line (e.g. --probe-ms N,
  // --log-level debug).
  explicit ExternalMaster(Timing t, const std::string& listen = "127.0.0.1:0",
                          const std::vector<std::string>& extra = {})
      : pc_(QCCL_MASTER_BIN) {
    std::vector<std::string> args{"--listen", listen, "--heartbeat-ms",
                                  std::to_string(t.heartbeat_ms), "--peer-timeout-ms",
                                  std::to_string(t.peer_timeout_ms), "--vote-timeout-ms",
                                  std::to_string(t.vote_timeout_ms)};
    args.insert(args.end(), extra.begin(), extra.end());
    auto h = pc_.spawn("qccl-master", args);
    if (!h) {
      error_ = "cannot start qccl-master: " + pc_.error();
      return;
    }
    h_ = *h;
    pc_.capture_stderr_lines(h_);  // its log: wait_log()
    // "qccl-master listening on 127.0.0.1:PORT"
    auto e = pc_.wait_for(h_, [](const Event& ev) {
      return ev.words.size() == 4 && ev.words[0] == "qccl-master" && ev.words[1] == "listening";
    }, deadline_in(10s));
    if (!e) {
      error_ = "qccl-master did not print its listening line";
      return;
    }
    address_ = e->words[3];
    ok_ = address_.rfind("127.0.0.1:", 0) == 0 && address_ != "127.0.0.1:0";
    if (!ok_) error_ = "unexpected listening line: " + e->raw;
  }

  bool ok() const { return ok_; }
  const std::string& error() const { return error_; }
  const std::string& address() const { return address_; }
  // Sends `sig` by pid; returns the CLOCK_MONOTONIC µs taken just before kill().
  // Returns the time of the kill(). After SIGSTOP, returns once the process is stopped: kill()
  // only queues the stop, and a master still running would answer the calls sent next (calls
  // of different kinds are out of step: it answers them at once).
  int64_t signal(int sig) {
    int64_t t = pc_.signal(h_, sig);
    if (sig == SIGSTOP) wait_stopped();
    return t;
  }
  // After SIGKILL: the process is gone (reaped) within the deadline.
  bool reaped(Deadline d) { return pc_.wait_exit(h_, d).has_value(); }
  // The master's stdout lines until one satisfies `pred`.
  std::optional<Event> wait_for(const std::function<bool(const Event&)>& pred, Deadline d) {
    return pc_.wait_for(h_, pred, d);
  }
  // The master's log lines (stderr) until one contains `needle` (that line), skipping those
  // before it; nullopt at the deadline or its exit. Only lines not read yet are searched.
  std::optional<std::string> wait_log(const std::string& needle, Deadline d) {
    return pc_.wait_stderr(h_, needle, d);
  }
  // Forgets the log lines printed so far: wait_log() then sees only later ones.
  void skip_log() { pc_.skip_stderr(h_); }

 private:
  void wait_stopped() {
    const std::string stat = "/proc/" + std::to_string(pc_.pid(h_)) + "/stat";
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (std::chrono::steady_clock::now() < deadline) {
      std::ifstream in(stat);
      std::string line;
      std::getline(in, line);
      auto close = line.rfind(')');  // "pid (comm) S ...": the state follows the name
      if (close != std::string::npos && close + 2 < line.size() && line[close + 2] == 'T') return;
      std::this_thread::yield();
    }
    ADD_FAILURE() << "the master did not stop within 5 s of SIGSTOP";
  }

  ProcCluster pc_;
  ProcCluster::Handle h_ = 0;
  std::string address_;
  bool ok_ = false;
  std::string error_;
};

// ---------------------------------------------------------------- peer transcripts

struct Call {
  std::string cmd;
  int64_t call_us = 0;
  std::optional<int64_t> end_us;
  int code = -1;  // 0 = qcclSuccess
  std::string raw;
  double ms() const { return end_us ? (*end_us - call_us) / 1000.0 : -1; }
};

// What one peer printed, in order.
struct Transcript {
  std::vector<Call> calls;
  std::vector<std::string> problems;  // corrupt / bad / error lines, results without a call
  std::optional<int64_t> watch_us;    // the watcher's qcclGetAttribute failed (loss noticed)
  int watch_code = -1;
  std::optional<double> destroyed_ms;
  std::optional<double> op_ms;        // duration of the fastest successful all-reduce
};

// The result code of a result line, or nullopt if the line is not a call's result.
inline std::optional<int> result_code(const Event& e) {
  if (e.is("op") || e.is("pending") || e.is("updated") || e.is("optimized") || e.is("synced")) {
    return 0;
  }
  if (e.is("fail") || e.is("sync-fail")) return static_cast<int>(e.pos(2));
  if (e.is("vote-fail")) return static_cast<int>(e.pos(1));
  return std::nullopt;
}

// Reads the peer's lines into `t` until `stop` holds for one (included); false at the
// deadline or EOF.
inline bool follow(ProcCluster& pc, ProcCluster::Handle h, Transcript& t,
            const std::function<bool(const Event&)>& stop, Deadline deadline) {
  for (;;) {
    auto e = pc.next(h, deadline);
    if (!e) return false;
    if (e->is("call")) {
      t.calls.push_back(Call{e->words.size() > 1 ? e->words[1] : "", e->at_us(), {}, -1, {}});
    } else if (auto code = result_code(*e)) {
      if (!t.calls.empty() && !t.calls.back().end_us) {
        Call& c = t.calls.back();
        c.end_us = e->at_us();
        c.code = *code;
        c.raw = e->raw;
      } else {
        t.problems.push_back("result without a call: " + e->raw);
      }
      if (e->is("op")) {
        double ms = std::strtod(e->field("ms").value_or("-1").c_str(), nullptr);
        t.op_ms = std::min(t.op_ms.value_or(ms), ms);
      }
    } else if (e->is("corrupt") || e->is("bad") || e->is("error")) {
      t.problems.push_back(e->raw);
    } else if (e->is("watch")) {
      t.watch_us = e->at_us();
      t.watch_code = static_cast<int>(e->pos(1));
    } else if (e->is("destroyed")) {
      t.destroyed_ms = std::strtod(e->field("ms").value_or("-1").c_str(), nullptr);
    }
    if (stop(*e)) return true;
  }
}

inline bool is_view(const Event& e) { return e.is("view"); }
inline bool is_call(const Event& e) { return e.is("call"); }
inline bool is_result(const Event& e) { return result_code(e).has_value(); }
inline bool is_destroyed(const Event& e) { return e.is("destroyed"); }

using PerPeer = std::function<std::vector<std::string>(int)>;

// Starts n idle peers (--announce, 1 MiB of shared state) with args(i) appended for peer i and
// env(i) added to its environment (a peer with env entries has its stderr lines captured), and
// waits until each is ready with world n. Handles in index order; empty after a gtest failure.
inline std::vector<ProcCluster::Handle> start_peers(ProcCluster& pc, const std::string& master, int n,
                                             const PerPeer& args, Deadline deadline,
                                             const PerPeer& env = {}) {
  return start_group(pc, master, n, [&](int i) {
    PeerSpec s{{"--mode", "idle", "--announce", "--state-mib", "1"}, {}, false};
    auto extra = args(i);
    s.args.insert(s.args.end(), extra.begin(), extra.end());
    if (env) s.env = env(i);
    s.capture_stderr = !s.env.empty();
    return s;
  }, deadline);
}

// Sends the lines; false (after a gtest failure) if a peer is gone.
inline bool send_all(ProcCluster& pc, ProcCluster::Handle h, const std::vector<std::string>& lines) {
  for (const auto& l : lines) {
    if (!pc.send_line(h, l)) {
      ADD_FAILURE() << pc.label(h) << " is gone (stdin closed) before '" << l << "'";
      return false;
    }
  }
  return true;
}

// Every peer runs `cmds` (then "attr" as an end marker); every call must succeed.
inline void warm_up(ProcCluster& pc, const std::vector<ProcCluster::Handle>& peers,
             std::vector<Transcript>& ts, const std::vector<std::string>& cmds) {
  std::vector<std::string> lines = cmds;
  lines.push_back("attr");
  for (auto h : peers) ASSERT_TRUE(send_all(pc, h, lines));
  for (size_t i = 0; i < peers.size(); ++i) {
    size_t first = ts[i].calls.size();
    ASSERT_TRUE(follow(pc, peers[i], ts[i], is_view, deadline_in(30s)))
        << pc.label(peers[i]) << ": the warm-up did not finish";
    ASSERT_EQ(ts[i].calls.size() - first, cmds.size()) << pc.label(peers[i]);
    for (size_t k = first; k < ts[i].calls.size(); ++k) {
      ASSERT_EQ(ts[i].calls[k].code, 0) << pc.label(peers[i]) << " warm-up: " << ts[i].calls[k].raw;
    }
  }
}

}  // namespace qccl::test
