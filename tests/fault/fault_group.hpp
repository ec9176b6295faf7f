// What the kill and stop tests share: their opening (a master in the test process and n
// qccl_test_peer processes ready with world n, then proof that the group works: idle peers
// one all-reduce each, looping peers two ops each, all with everyone's sum), the all-reduces
// of idle peers after a fault, and the mid-loop faults of looping peers (kill_mid_loop,
// stop_mid_loop: any --op, since every op line's sum names its participants).
//
// The functions fail through gtest assertions: call them inside ASSERT_NO_FATAL_FAILURE.
#pragma once

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "qccl/qccl.h"
#include "support/loop_recovery.hpp"
#include "support/peer_events.hpp"
#include "support/proc_cluster.hpp"
#include "support/test_master.hpp"

namespace qccl::test {

struct FaultGroup {
  explicit FaultGroup(MasterTimes times = MasterTimes{}) : master(times) {}

  TestMaster master;
  ProcCluster pc;  // after the master: the peers die first
  std::vector<ProcCluster::Handle> peers;

  // Everyone's sum: peers 0 .. n-1.
  uint64_t full_sum() const {
    std::vector<int> all;
    for (size_t i = 0; i < peers.size(); ++i) all.push_back(static_cast<int>(i));
    return sum_of(all);
  }
};

// Starts n peers with `args` (e.g. {"--mode", "idle"}), all ready with world n.
inline void start_peers(FaultGroup& g, int n, const std::vector<std::string>& args) {
  using namespace std::chrono_literals;
  ASSERT_TRUE(g.master.ok()) << g.master.error();
  g.peers = start_group(g.pc, g.master.address(), n, args, deadline_in(20s));
  ASSERT_EQ(g.peers.size(), static_cast<size_t>(n));
}

// Idle peers `who` (indices into g.peers) each run one all-reduce, which succeeds with their
// own contributions, sum_of(who).
inline void all_reduce_on(FaultGroup& g, const std::vector<int>& who) {
  using namespace std::chrono_literals;
  for (int i : who) ASSERT_TRUE(g.pc.send_line(g.peers[i], "allreduce"));
  for (int i : who) {
    const auto h = g.peers[i];
    auto e = g.pc.wait_for(h, [](const Event& ev) { return ev.is("op") || ev.is("fail"); },
                           deadline_in(10s));
    ASSERT_TRUE(e && e->is("op")) << g.pc.label(h) << ": " << (e ? e->raw : "no result");
    EXPECT_EQ(e->unum("sum"), sum_of(who)) << e->raw;
  }
}

// Idle peers: every one runs one all-reduce, which succeeds with everyone's sum.
inline void prove_with_one_all_reduce(FaultGroup& g) {
  std::vector<int> all;
  for (size_t i = 0; i < g.peers.size(); ++i) all.push_back(static_cast<int>(i));
  all_reduce_on(g, all);
}

// Idle survivors `alive` of an expulsion each run one all-reduce, which completes with their
// own contributions only; the only lines allowed before its result are "world" lines (the
// watcher's view of the expulsion). The result lines go to `ops`, in the order of `alive`.
inline void all_reduce_of_survivors(FaultGroup& g, const std::vector<int>& alive,
                                    std::vector<Event>& ops) {
  using namespace std::chrono_literals;
  for (int i : alive) ASSERT_TRUE(g.pc.send_line(g.peers[i], "allreduce"));
  for (int i : alive) {
    const auto h = g.peers[i];
    auto e = g.pc.wait_for(h, [](const Event& ev) { return ev.is("op"); }, deadline_in(10s),
                           [&](const Event& ev) {
                             if (!ev.is("world")) ADD_FAILURE() << g.pc.label(h) << ": " << ev.raw;
                           });
    ASSERT_TRUE(e) << g.pc.label(h) << " did not complete the all-reduce";
    EXPECT_EQ(e->unum("sum"), sum_of(alive)) << e->raw;
    ops.push_back(*e);
  }
}

// Looping peers ("--mode loop"): waits until every one completed two ops with everyone's sum.
inline void wait_two_loop_ops(FaultGroup& g) {
  using namespace std::chrono_literals;
  for (auto h : g.peers) {
    auto e = g.pc.wait_for(h, [](const Event& ev) { return ev.is("op") && ev.pos(1) >= 1; },
                           deadline_in(10s));
    ASSERT_TRUE(e) << g.pc.label(h) << " did not complete two ops";
    ASSERT_EQ(e->unum("sum"), g.full_sum()) << e->raw;
  }
}

// QCCL_FAULT_SEED=<n> if set (a run prints its seed so that it can be replayed), else `fallback`.
inline uint64_t fault_seed(uint64_t fallback) {
  const char* s = std::getenv("QCCL_FAULT_SEED");
  return s != nullptr ? std::strtoull(s, nullptr, 10) : fallback;
}

// 0 .. n-1 without `victim`.
inline std::vector<int> indices_without(int n, int victim) {
  std::vector<int> v;
  for (int i = 0; i < n; ++i) {
    if (i != victim) v.push_back(i);
  }
  return v;
}

// kill -9 mid-op. On loopback the kill closes the victim's sockets at once; 2 s leaves room
// for a loaded CI machine while still far below the 1 s peer timeout plus the vote timeout a
// hang would take.
constexpr double kKillDetectionBoundMs = 2000;
// The retry after qcclPeerLost runs on the rebuilt ring at once: no timeout may be involved.
constexpr double kKillRecoveryBoundMs = 2000;

// What kill_mid_loop measured, over all survivors of all rounds.
struct KillFigures {
  std::vector<double> to_failure_ms;  // kill -> a survivor's failed op returned
  std::vector<double> to_success_ms;  // kill -> its first success without the victim
  int survivors_without_failure = 0;
  int survivors_failing_twice = 0;  // more than one failure before the first success
};

// Looping peers (warmed up: wait_two_loop_ops): after a random pause below max_pause_us
// (which only picks the moment), SIGKILLs a random peer, then checks that every survivor
// fails (if at all) with `codes` within kKillDetectionBoundMs and completes 3 ops with
// exactly the survivors' sum, the first within kKillRecoveryBoundMs, all survivors agreeing
// op by op. Prints "[ measure  ] <label> victim=V<note>: kill->failure ... ms, kill->first
// success ... ms" and adds to `fig`.
inline void kill_mid_loop(FaultGroup& g, std::mt19937_64& rng, uint32_t max_pause_us,
                          const std::string& label, const std::string& note, KillFigures& fig,
                          const std::vector<int>& codes = {qcclPeerLost}) {
  using namespace std::chrono_literals;
  ProcCluster& pc = g.pc;
  const auto& peers = g.peers;
  const int n = static_cast<int>(peers.size());
  const uint64_t full = g.full_sum();
  std::this_thread::sleep_for(std::chrono::microseconds(rng() % max_pause_us));
  const int victim = static_cast<int>(rng() % static_cast<uint64_t>(n));
  const int64_t t_kill = pc.signal(peers[victim], SIGKILL);
  const std::vector<int> alive = indices_without(n, victim);
  const uint64_t survivors = sum_of(alive);

  std::vector<Recovery> rs;
  const Deadline deadline = deadline_in(8s);
  for (int i : alive) {
    rs.push_back(follow_recovery(pc, peers[i], t_kill, full, survivors, 3, deadline, codes));
    const Recovery& r = rs.back();
    SCOPED_TRACE(pc.label(peers[i]));
    ASSERT_TRUE(r.first_success_us) << "no success without the victim";
    if (r.first_failure_us) {
      double ms = (*r.first_failure_us - t_kill) / 1000.0;
      EXPECT_LT(ms, kKillDetectionBoundMs) << "kill -> qcclPeerLost took too long";
      fig.to_failure_ms.push_back(ms);
    } else {
      // Legal only if this survivor started its next op after the new ring was announced:
      // a window of microseconds between two ops. Counted and reported.
      ++fig.survivors_without_failure;
    }
    if (r.failures > 1) ++fig.survivors_failing_twice;
    double success_ms = (*r.first_success_us - t_kill) / 1000.0;
    EXPECT_LT(success_ms, kKillRecoveryBoundMs) << "the retry did not succeed at once";
    fig.to_success_ms.push_back(success_ms);
  }
  expect_same_sums(rs, label);
  std::printf("[ measure  ] %s victim=%d%s: kill->failure", label.c_str(), victim, note.c_str());
  for (auto& r : rs) {
    if (r.first_failure_us) std::printf(" %.1f", (*r.first_failure_us - t_kill) / 1000.0);
    else std::printf(" none");
  }
  std::printf(" ms, kill->first success");
  for (auto& r : rs) std::printf(" %.1f", (*r.first_success_us - t_kill) / 1000.0);
  std::printf(" ms\n");
}

// SIGSTOP: a stopped process keeps its sockets open, so the master expels it once its
// heartbeats stop, peer_timeout_ms after the last one it sent. Bounds of SIGSTOP -> the
// expulsion seen by a survivor: at most timeout + one heartbeat + slack (the master's timer,
// the watcher's 5 ms polling, a loaded machine); not before timeout - 2 heartbeats (the last
// heartbeat left at most one interval, plus a late one, before the SIGSTOP).
inline double stop_upper_ms(const MasterTimes& t, double slack_ms) {
  return t.peer_timeout_ms + t.heartbeat_ms + slack_ms;
}
inline double stop_lower_ms(const MasterTimes& t) {
  return t.peer_timeout_ms - 2.0 * t.heartbeat_ms;
}

// Looping peers (warmed up): after a random pause below max_pause_us, SIGSTOPs peer `victim`;
// every survivor's op in flight must fail (codes: qcclPeerLost), the survivors must learn of
// the expulsion within [stop_lower_ms, stop_upper_ms] and then complete 3 ops with exactly
// their own sum, the first within stop_upper_ms + slack, agreeing op by op. After SIGCONT the
// stopped peer's op in flight ends with qcclKicked. Prints one "[ measure  ]" line per survivor.
inline void stop_mid_loop(FaultGroup& g, std::mt19937_64& rng, uint32_t max_pause_us, int victim,
                          double slack_ms, const std::string& label) {
  using namespace std::chrono_literals;
  ProcCluster& pc = g.pc;
  const auto& peers = g.peers;
  const int n = static_cast<int>(peers.size());
  const MasterTimes& times = g.master.config();
  const double upper = stop_upper_ms(times, slack_ms);
  const double lower = stop_lower_ms(times);
  std::this_thread::sleep_for(std::chrono::microseconds(rng() % max_pause_us));  // a random moment
  const int64_t t_stop = pc.signal(peers[victim], SIGSTOP);
  const std::vector<int> alive = indices_without(n, victim);
  std::vector<Recovery> rs;
  const Deadline deadline = deadline_in(8s);
  for (int i : alive) {
    rs.push_back(follow_recovery(pc, peers[i], t_stop, g.full_sum(), sum_of(alive), 3, deadline,
                                 {qcclPeerLost}));
    const Recovery& r = rs.back();
    SCOPED_TRACE(pc.label(peers[i]));
    ASSERT_TRUE(r.first_success_us) << "no success without the stopped peer";
    // When the survivor learnt of the expulsion: its watcher saw the view shrink (polled every
    // 5 ms, so it may come after a few fast ops), or at the latest its first op without it.
    int64_t seen = *r.first_success_us;
    if (r.world_drop_us) seen = std::min(seen, *r.world_drop_us);
    double drop = (seen - t_stop) / 1000.0;
    double success = (*r.first_success_us - t_stop) / 1000.0;
    EXPECT_LE(drop, upper) << "expelled later than peer timeout + heartbeat";
    EXPECT_GE(drop, lower) << "expelled before the peer timeout could have run out";
    EXPECT_GE(r.failures, 1) << "the op in flight at the SIGSTOP must fail";
    EXPECT_LE(success, upper + slack_ms) << "the retry after the expulsion was not immediate";
    if (r.first_failure_us) {
      EXPECT_LE((*r.first_failure_us - t_stop) / 1000.0, upper)
          << "the op in flight waited past peer timeout + heartbeat";
    }
    std::printf("[ measure  ] %s: %s failed after %.1f ms, saw the expulsion after %.1f ms, "
                "first success after %.1f ms (%d failures)\n",
                label.c_str(), pc.label(peers[i]).c_str(),
                r.first_failure_us ? (*r.first_failure_us - t_stop) / 1000.0 : -1.0, drop, success,
                r.failures);
  }
  expect_same_sums(rs, label);
  // Resumed, the stopped peer's op (in flight since the SIGSTOP) ends with qcclKicked.
  pc.signal(peers[victim], SIGCONT);
  auto e = pc.wait_for(peers[victim], [&](const Event& ev) {
    return ev.is("fail") && ev.at_us() > t_stop;
  }, deadline_in(5s));
  ASSERT_TRUE(e) << "the resumed peer's op did not return";
  EXPECT_EQ(e->pos(2), qcclKicked) << "expected qcclKicked, got: " << e->raw;
}

}  // namespace qccl::test
