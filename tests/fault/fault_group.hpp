// What the kill and stop tests share: their opening (a master in the test process and n
// qccl_test_peer processes ready with world n, then proof that the group works: idle peers
// one all-reduce each, looping peers two ops each, all with everyone's sum), and the
// all-reduces of idle peers after a fault.
//
// The functions fail through gtest assertions: call them inside ASSERT_NO_FATAL_FAILURE.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include <gtest/gtest.h>

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

}  // namespace qccl::test
