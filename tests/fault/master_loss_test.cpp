// Fault tests: loss of the master (issue 8: "peers return qcclMasterUnreachable within the peer
// timeout from any call, and keep their data intact"), for peers that do not resume the run
// (QCCL_MASTER_RECONNECT_MS=0; resuming, the default, is master_resume_test.cpp).
//
// The master is the qccl-master binary in its own process (QCCL_MASTER_BIN, set by CMake), so
// that it is lost the way a crash or a hang loses it:
//   - SIGKILL: its kernel closes the control connections at once;
//   - SIGSTOP: the sockets stay open and nothing is sent any more, so the peers can only notice
//     by their heartbeat watchdog (silent for peer_timeout_ms, checked every heartbeat).
// Peers are qccl_test_peer processes in idle mode with --announce: every command prints
// "call CMD at T" right before its library call and one result line after it, so the test
// knows which calls were blocked when the master went away and when each returned. Times are
// CLOCK_MONOTONIC on both sides; the fault time is taken just before kill().
//
// Checked, for SIGKILL and SIGSTOP:
//   - idle peers: the next call of each kind (all-reduce, qcclArePeersPending,
//     qcclUpdateTopology, qcclOptimizeTopology, qcclSyncSharedState; one kind first on each
//     of five peers) returns qcclMasterUnreachable within kBoundMs of the fault;
//   - an all-reduce in flight (large enough to take a while; in place on two peers, out of
//     place on the third) fails with qcclMasterUnreachable within kBoundMs, and the peer
//     compares every element of its input (the in-place buffer, or sendbuf) with what it was;
//   - a vote of each kind that only some peers joined: their blocked calls return
//     qcclMasterUnreachable within kBoundMs; a failed shared-state sync left every byte of every
//     tensor as it was (the peer compares them with a copy taken before the call);
//   - a shared-state download in flight: every sync returns qcclMasterUnreachable within
//     kBoundMs and every peer's tensors are unchanged, the receiver's included (its failed
//     sync restores what the download overwrote);
//   - afterwards every call fails with qcclMasterUnreachable at once (kFastMs), and
//     qcclCommDestroy returns within kDestroyMs.
// With SIGSTOP the first failure must also come no earlier than the watchdog can fire
// (kStopLowerMs), which shows that the silent-master path was exercised. The bounds are
// generous because the machine is shared: they bound, they do not measure speed. Measured
// times are printed as "[ measure  ]" lines, and min/median/max per kind as "[ summary  ]"
// lines at the end.
//
// QCCL_FAULT_SEED=<n> replays the random fault moments; QCCL_FAULT_VERBOSE=1 prints the
// peers' and the master's events and stderr even when the test passes.
#include <gtest/gtest.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "qccl/qccl.h"
#include "support/proc_cluster.hpp"
#include "support/stats.hpp"
#include "support/watchdog.hpp"
#include "master_process.hpp"

QCCL_TEST_WATCHDOG(115);

namespace qccl::test {
namespace {

// Every peer of these tests fails at once when the master is lost: it does not resume the run.
std::vector<std::string> no_resume(int) { return {"QCCL_MASTER_RECONNECT_MS=0"}; }

using namespace std::chrono_literals;

constexpr uint32_t kHeartbeatMs = 200;
constexpr uint32_t kPeerTimeoutMs = 2000;
// Long: a vote that only some peers joined must not end by straggler expulsion in the test.
constexpr uint32_t kVoteTimeoutMs = 60000;
const ExternalMaster::Timing kTiming{kHeartbeatMs, kPeerTimeoutMs, kVoteTimeoutMs};
// Scheduling slack of a loaded two-core machine.
constexpr double kSlackMs = 1000;
// Any call blocked when the master is lost returns within this time after the fault: the
// watchdog fires at most peer timeout + one heartbeat after the master's last message.
constexpr double kBoundMs = kPeerTimeoutMs + kHeartbeatMs + kSlackMs;
// A silent master cannot be noticed before its last heartbeat (normally at most one interval
// before the SIGSTOP) is peer_timeout_ms old. Half the timeout leaves room for a master whose
// heartbeats were late on a loaded machine; anything earlier was not the watchdog.
constexpr double kStopLowerMs = kPeerTimeoutMs / 2.0;
// Once the loss is known, a call returns at once (no timeout involved).
constexpr double kFastMs = 1000;
constexpr double kDestroyMs = 3000;
// All-reduce in flight: 4 Mi uint64 (32 MiB) per peer, a few hundred ms on this machine.
// (128 MiB once got a peer expelled for silence during the warm-up on a machine loaded
// 5x: the in-place backup copy and the reductions run on the peer's loop thread, which also
// sends the heartbeats.)
constexpr size_t kBigCount = size_t{4} << 20;

const std::vector<std::string> kCalls{"try", "pending", "update", "optimize", "sync"};

uint64_t seed() {
  const char* s = std::getenv("QCCL_FAULT_SEED");
  return s != nullptr ? std::strtoull(s, nullptr, 10) : 20240818;
}

const char* sig_name(int sig) { return sig == SIGKILL ? "SIGKILL" : "SIGSTOP"; }

// ---------------------------------------------------------------- measurements

struct Figure {
  std::string what;
  double ms;
};
std::vector<Figure>& figures() {
  static std::vector<Figure> f;
  return f;
}
void record(const std::string& what, double ms) {
  figures().push_back({what, ms});
  std::printf("[ measure  ] %s: %.1f ms\n", what.c_str(), ms);
}

// Prints min/median/max per kind of figure at the end of the binary.
class FigureReport : public ::testing::Environment {
 public:
  void TearDown() override {
    std::map<std::string, std::vector<double>> by;
    for (const auto& f : figures()) by[f.what.substr(0, f.what.find(" | "))].push_back(f.ms);
    for (auto& [what, v] : by) {
      std::sort(v.begin(), v.end());
      std::printf("[ summary  ] %s: n %zu min %.1f median %.1f max %.1f ms\n", what.c_str(),
                  v.size(), v.front(), median(v), v.back());
    }
  }
};
[[maybe_unused]] const auto* const kReport = ::testing::AddGlobalTestEnvironment(new FigureReport);

// ---------------------------------------------------------------- checks after the fault

// After the fault at `t_fault`, the peer's calls from index `first` on: every one returned
// qcclMasterUnreachable; the first within kBoundMs of the fault (and, for SIGSTOP, not before
// kStopLowerMs if `first_blocked`: it was issued before the loss could be noticed); every later
// one within kFastMs of its start; no input changed; qcclCommDestroy returned within kDestroyMs.
void check_after_fault(const std::string& who, const Transcript& t, size_t first, int64_t t_fault,
                       int sig, bool first_blocked, const std::string& scenario) {
  SCOPED_TRACE(who);
  for (const auto& p : t.problems) ADD_FAILURE() << who << ": " << p;
  ASSERT_LT(first, t.calls.size()) << "no call after the fault";
  for (size_t k = first; k < t.calls.size(); ++k) {
    const Call& c = t.calls[k];
    ASSERT_TRUE(c.end_us.has_value()) << "'" << c.cmd << "' never returned";
    EXPECT_EQ(c.code, qcclMasterUnreachable)
        << "'" << c.cmd << "' after the master's " << sig_name(sig)
        << ": expected qcclMasterUnreachable (" << static_cast<int>(qcclMasterUnreachable)
        << "), got: " << c.raw;
    if (k == first) {
      double since = (*c.end_us - t_fault) / 1000.0;
      EXPECT_LE(since, kBoundMs) << "'" << c.cmd << "' returned " << since
                                 << " ms after the fault: beyond peer timeout + heartbeat + slack";
      if (sig == SIGSTOP && first_blocked) {
        EXPECT_GE(since, kStopLowerMs) << "'" << c.cmd << "' failed before a silent master could "
                                          "be noticed: " << c.raw;
      }
      if (first_blocked) {
        EXPECT_GT(*c.end_us, t_fault) << "'" << c.cmd << "' returned before the fault: " << c.raw;
      }
      record(std::string(sig_name(sig)) + " " + scenario + ": fault -> first call returned | " +
                 who + " " + c.cmd,
             since);
    } else {
      EXPECT_LE(c.ms(), kFastMs) << "'" << c.cmd << "' after the loss took " << c.ms()
                                 << " ms: it must fail at once";
      record(std::string("later call after the loss (") + sig_name(sig) + ") | " + c.cmd, c.ms());
    }
  }
  if (t.watch_us) {
    EXPECT_EQ(t.watch_code, qcclMasterUnreachable) << "qcclGetAttribute after the loss";
    record(std::string(sig_name(sig)) + ": fault -> qcclGetAttribute fails (watcher) | " + who,
           (*t.watch_us - t_fault) / 1000.0);
  }
  ASSERT_TRUE(t.destroyed_ms.has_value()) << "qcclCommDestroy did not return";
  EXPECT_LE(*t.destroyed_ms, kDestroyMs) << "qcclCommDestroy after the loss";
  record(std::string("qcclCommDestroy after the loss (") + sig_name(sig) + ")", *t.destroyed_ms);
}

// Sends `script` (then "attr" and "quit") and reads until the peer destroyed its
// communicator; then the process must exit.
void finish_peer(ProcCluster& pc, ProcCluster::Handle h, Transcript& t,
                 const std::vector<std::string>& script) {
  std::vector<std::string> lines = script;
  lines.push_back("attr");
  lines.push_back("quit");
  ASSERT_TRUE(send_all(pc, h, lines));
  ASSERT_TRUE(follow(pc, h, t, is_destroyed, deadline_in(std::chrono::milliseconds(
                                                 static_cast<int>(kBoundMs) * 3 + 20000))))
      << pc.label(h) << ": did not get through its calls and qcclCommDestroy in time";
  auto st = pc.wait_exit(h, deadline_in(5s));
  ASSERT_TRUE(st.has_value()) << pc.label(h) << " did not exit after qcclCommDestroy";
  EXPECT_TRUE(WIFEXITED(*st)) << pc.label(h) << " wait status " << *st;
}

// ---------------------------------------------------------------- the tests

class MasterLoss : public ::testing::TestWithParam<int> {};

// Idle peers, master lost: the next call of every kind returns qcclMasterUnreachable within the
// bound (each kind is the first call on one peer), and so does every later call, at once.
TEST_P(MasterLoss, WhileIdleTheNextCallOfEveryKindReturnsMasterUnreachable) {
  const int sig = GetParam();
  ExternalMaster master(kTiming);
  ASSERT_TRUE(master.ok()) << master.error();
  ProcCluster pc;
  const int n = static_cast<int>(kCalls.size());
  auto peers = start_peers(pc, master.address(), n, [](int i) {
    return i % 2 == 0 ? std::vector<std::string>{"--inplace"} : std::vector<std::string>{};
  }, deadline_in(30s), no_resume);
  ASSERT_EQ(peers.size(), static_cast<size_t>(n));
  std::vector<Transcript> ts(n);
  warm_up(pc, peers, ts, {"try", "sync"});
  if (HasFatalFailure()) return;

  const int64_t t_fault = master.signal(sig);
  std::vector<size_t> first(n);
  for (int i = 0; i < n; ++i) {
    first[i] = ts[i].calls.size();
    std::vector<std::string> script;  // every kind, kCalls[i] first, then the first one again
    for (size_t k = 0; k < kCalls.size(); ++k) script.push_back(kCalls[(i + k) % kCalls.size()]);
    script.push_back(kCalls[i]);
    ASSERT_TRUE(send_all(pc, peers[i], script));
  }
  if (sig == SIGKILL) {
    EXPECT_TRUE(master.reaped(deadline_in(5s)));
  }
  for (int i = 0; i < n; ++i) {
    finish_peer(pc, peers[i], ts[i], {});
    check_after_fault(pc.label(peers[i]), ts[i], first[i], t_fault, sig, /*first_blocked=*/true,
                      "idle");
    EXPECT_EQ(ts[i].calls.size() - first[i], kCalls.size() + 1) << pc.label(peers[i]);
  }
}

// An all-reduce in flight (the fault at a random moment inside the time one took before) fails
// with qcclMasterUnreachable within the bound on every peer, and no input element changed.
TEST_P(MasterLoss, DuringAnAllReduceItFailsWithMasterUnreachableAndTheInputIsIntact) {
  const int sig = GetParam();
  std::mt19937_64 rng(seed() + static_cast<uint64_t>(sig));
  ExternalMaster master(kTiming);
  ASSERT_TRUE(master.ok()) << master.error();
  ProcCluster pc;
  constexpr int n = 3;
  // Peers 0 and 1 reduce in place (the failed op must restore the buffer), peer 2 out of place
  // (sendbuf must stay untouched).
  auto peers = start_peers(pc, master.address(), n, [](int i) {
    return i < 2 ? std::vector<std::string>{"--inplace"} : std::vector<std::string>{};
  }, deadline_in(30s), no_resume);
  ASSERT_EQ(peers.size(), static_cast<size_t>(n));
  std::vector<Transcript> ts(n);
  const std::string big = "try " + std::to_string(kBigCount);
  warm_up(pc, peers, ts, {big, big, "sync"});
  if (HasFatalFailure()) return;
  double op_ms = 1e9;
  for (auto& t : ts) op_ms = std::min(op_ms, t.op_ms.value_or(0));
  std::printf("[ measure  ] a %zu MiB all-reduce took at least %.1f ms before the fault\n",
              kBigCount * 8 >> 20, op_ms);

  std::vector<size_t> first(n);
  for (int i = 0; i < n; ++i) {
    first[i] = ts[i].calls.size();
    ASSERT_TRUE(send_all(pc, peers[i], {big}));
  }
  for (int i = 0; i < n; ++i) {
    ASSERT_TRUE(follow(pc, peers[i], ts[i], is_call, deadline_in(10s)))
        << pc.label(peers[i]) << " did not start the all-reduce";
  }
  // A random moment within the first third of the fastest op before (not a synchronisation:
  // every peer is inside qcclAllReduce already; this only spreads the fault over the transfer).
  const auto delay = std::chrono::microseconds(
      static_cast<int64_t>(std::uniform_real_distribution<double>(0, 0.33)(rng) * op_ms * 1000));
  std::this_thread::sleep_for(delay);
  const int64_t t_fault = master.signal(sig);
  int64_t last_start = 0;
  for (int i = 0; i < n; ++i) last_start = std::max(last_start, ts[i].calls[first[i]].call_us);
  std::printf("[ measure  ] fault %.1f ms after the last peer started the all-reduce\n",
              (t_fault - last_start) / 1000.0);
  for (int i = 0; i < n; ++i) {
    ASSERT_TRUE(follow(pc, peers[i], ts[i], is_result, deadline_in(std::chrono::milliseconds(
                                                          static_cast<int>(kBoundMs) + 10000))))
        << pc.label(peers[i]) << ": the all-reduce in flight did not return";
    const Call& c = ts[i].calls[first[i]];
    ASSERT_NE(c.code, 0) << pc.label(peers[i])
                         << ": the all-reduce completed (the fault came too late?): " << c.raw;
  }
  for (int i = 0; i < n; ++i) {
    finish_peer(pc, peers[i], ts[i], {"pending", "sync", "update", "optimize", "try"});
    check_after_fault(pc.label(peers[i]), ts[i], first[i], t_fault, sig, true, "all-reduce");
  }
}

// A shared-state transfer in flight: peer 2 (--stale) is downloading 64 MiB from peers 0 and 1
// when the master is lost (right after donor 0 logged its first served piece). Every sync
// returns qcclMasterUnreachable within the bound and the donors' tensors did not change.
// The receiver's tensors too: its failed sync restores what the download overwrote.
void state_transfer_case(int sig) {
  ExternalMaster master(kTiming);
  ASSERT_TRUE(master.ok()) << master.error();
  ProcCluster pc;
  constexpr int n = 3;
  constexpr int receiver = 2;
  auto peers = start_peers(pc, master.address(), n, [](int i) {
    std::vector<std::string> a{"--state-mib", "64"};
    if (i == receiver) a.push_back("--stale");
    return a;
  }, deadline_in(30s), [](int i) {
    std::vector<std::string> env = no_resume(i);
    if (i == 0) env.push_back("QCCL_LOG_LEVEL=debug");
    return env;
  });
  ASSERT_EQ(peers.size(), static_cast<size_t>(n));
  std::vector<Transcript> ts(n);
  warm_up(pc, peers, ts, {"try"});
  if (::testing::Test::HasFatalFailure()) return;

  std::vector<size_t> first(n);
  for (int i = 0; i < n; ++i) {
    first[i] = ts[i].calls.size();
    ASSERT_TRUE(send_all(pc, peers[i], {"sync"}));
  }
  for (int i = 0; i < n; ++i) {
    ASSERT_TRUE(follow(pc, peers[i], ts[i], is_call, deadline_in(20s)))
        << pc.label(peers[i]) << " did not start the sync";
  }
  ASSERT_TRUE(pc.wait_stderr(peers[0], "served piece", deadline_in(20s)))
      << "donor 0 never served a piece";
  const int64_t t_fault = master.signal(sig);
  for (int i = 0; i < n; ++i) {
    ASSERT_TRUE(follow(pc, peers[i], ts[i], is_result, deadline_in(std::chrono::milliseconds(
                                                          static_cast<int>(kBoundMs) + 10000))))
        << pc.label(peers[i]) << ": the sync in flight did not return";
  }
  for (int i = 0; i < n; ++i) finish_peer(pc, peers[i], ts[i], kCalls);
  // A "corrupt ... the failed sync changed tensors ..." line from any peer, the receiver's
  // included, is one of the problems check_after_fault reports.
  for (int i = 0; i < n; ++i) {
    check_after_fault(pc.label(peers[i]), ts[i], first[i], t_fault, sig, true, "state transfer");
  }
}

// Both ways the transfer can end: cut (SIGKILL: the receiver's download stops midway) and
// completed (SIGSTOP: every piece arrives, the master's result never comes). Either way the
// failed sync restores what the download overwrote.
TEST_P(MasterLoss, DuringAStateTransferEverySyncFailsAndEveryPeerKeepsItsState) {
  state_transfer_case(GetParam());
}

INSTANTIATE_TEST_SUITE_P(Signals, MasterLoss, ::testing::Values(SIGKILL, SIGSTOP),
                         [](const ::testing::TestParamInfo<int>& p) {
                           return std::string(sig_name(p.param));
                         });

// A vote that only peers 0 and 1 joined (peer 2 stays idle) is pending when the master is lost:
// both blocked calls return qcclMasterUnreachable within the bound, a failed sync changed no
// tensor byte, and peer 2's next call fails as well. The fault follows the peers' "call" lines,
// printed right before the library sends the vote; whether the master had read the votes before
// the fault makes no difference to the peers, which cannot complete the vote without peer 2.
class VoteLoss : public ::testing::TestWithParam<std::tuple<int, std::string>> {};

TEST_P(VoteLoss, APendingVoteReturnsMasterUnreachable) {
  const int sig = std::get<0>(GetParam());
  const std::string kind = std::get<1>(GetParam());
  ExternalMaster master(kTiming);
  ASSERT_TRUE(master.ok()) << master.error();
  ProcCluster pc;
  constexpr int n = 3;
  auto peers = start_peers(pc, master.address(), n, [](int) {
    return std::vector<std::string>{"--inplace"};
  }, deadline_in(30s), no_resume);
  ASSERT_EQ(peers.size(), static_cast<size_t>(n));
  std::vector<Transcript> ts(n);
  warm_up(pc, peers, ts, {"try", "sync"});
  if (HasFatalFailure()) return;

  std::vector<size_t> first(n);
  for (int i = 0; i < n; ++i) first[i] = ts[i].calls.size();
  for (int i : {0, 1}) ASSERT_TRUE(send_all(pc, peers[i], {kind}));
  for (int i : {0, 1}) {
    ASSERT_TRUE(follow(pc, peers[i], ts[i], is_call, deadline_in(10s)))
        << pc.label(peers[i]) << " did not start " << kind;
  }
  const int64_t t_fault = master.signal(sig);
  for (int i : {0, 1}) {
    ASSERT_TRUE(follow(pc, peers[i], ts[i], is_result, deadline_in(std::chrono::milliseconds(
                                                          static_cast<int>(kBoundMs) + 10000))))
        << pc.label(peers[i]) << ": the pending " << kind << " did not return";
  }
  for (int i = 0; i < n; ++i) {
    std::vector<std::string> script;
    if (i == 2) script.push_back(kind);  // its first call after the loss
    for (const auto& c : kCalls) script.push_back(c);
    finish_peer(pc, peers[i], ts[i], script);
    // Peer 2's first call is issued after the fault but may still race its detection.
    check_after_fault(pc.label(peers[i]), ts[i], first[i], t_fault, sig, i != 2,
                      i == 2 ? "vote, next call of the idle peer" : "vote pending (" + kind + ")");
  }
}

INSTANTIATE_TEST_SUITE_P(
    Votes, VoteLoss,
    ::testing::Combine(::testing::Values(SIGKILL, SIGSTOP),
                       ::testing::Values("pending", "update", "optimize", "sync")),
    [](const ::testing::TestParamInfo<std::tuple<int, std::string>>& p) {
      return std::string(sig_name(std::get<0>(p.param))) + "_" + std::get<1>(p.param);
    });

}  // namespace
}  // namespace qccl::test
