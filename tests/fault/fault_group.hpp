// The opening that the kill and stop tests share: a master in the test process and n
// qccl_test_peer processes ready with world n, then proof that the group works (idle peers:
// one all-reduce each; looping peers: two ops each), all with everyone's sum.
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

// Idle peers: every one runs one all-reduce, which succeeds with everyone's sum.
inline void prove_with_one_all_reduce(FaultGroup& g) {
  using namespace std::chrono_literals;
  for (auto h : g.peers) ASSERT_TRUE(g.pc.send_line(h, "allreduce"));
  for (auto h : g.peers) {
    auto e = g.pc.wait_for(h, [](const Event& ev) { return ev.is("op") || ev.is("fail"); },
                           deadline_in(10s));
    ASSERT_TRUE(e && e->is("op")) << g.pc.label(h) << ": " << (e ? e->raw : "no result");
    EXPECT_EQ(e->unum("sum"), g.full_sum());
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
