// Fault tests: a peer joins while the others loop all-reduces.
//
// The loopers follow the admission protocol of a training loop: after every op, all of them
// vote qcclArePeersPending and, if it says 1, all call qcclUpdateTopology (test_peer --admit).
// The newcomer blocks in qcclConnect until that happens, then joins the same sequence. No op
// may fail on the way (control calls only run between ops), the loopers' results switch
// from the old group's sum to the new one's exactly once and at the same op everywhere, and
// the newcomer's results include it from its first op.
#include <gtest/gtest.h>

#include <cstdio>
#include <random>
#include <thread>

#include "support/loop_recovery.hpp"
#include "support/proc_cluster.hpp"
#include "support/test_master.hpp"
#include "support/watchdog.hpp"

QCCL_TEST_WATCHDOG(80);

namespace qccl::test {
namespace {

using namespace std::chrono_literals;

TEST(JoinTest, NewcomerIsAdmittedBetweenOpsAndContributesFromItsFirstOp) {
  TestMaster master;
  ASSERT_TRUE(master.ok()) << master.error();
  ProcCluster pc;
  constexpr int n = 3;
  const std::vector<std::string> loop_args{"--mode", "loop", "--admit", "--count", "4096"};
  auto peers = start_group(pc, master.address(), n, loop_args, deadline_in(20s));
  ASSERT_EQ(peers.size(), static_cast<size_t>(n));
  const uint64_t before = sum_of({0, 1, 2});
  const uint64_t after = sum_of({0, 1, 2, 3});
  for (auto h : peers) {
    auto e = pc.wait_for(h, [](const Event& ev) { return ev.is("op") && ev.pos(1) >= 2; },
                         deadline_in(10s));
    ASSERT_TRUE(e) << pc.label(h) << " did not complete three ops";
    ASSERT_EQ(e->unum("sum"), before) << e->raw;
  }

  const int64_t t_spawn = monotonic_us();
  std::vector<std::string> args{"--master", master.address(), "--index", "3"};
  args.insert(args.end(), loop_args.begin(), loop_args.end());
  auto newcomer = pc.spawn("peer 3 (newcomer)", args);
  ASSERT_TRUE(newcomer) << pc.error();

  auto ready = pc.wait_for(*newcomer, [](const Event& ev) {
    return ev.is("ready") || ev.is("error");
  }, deadline_in(15s));
  ASSERT_TRUE(ready && ready->is("ready")) << (ready ? ready->raw : "the newcomer never got in");
  EXPECT_EQ(ready->num("world"), 4) << ready->raw;
  // Its first results already hold everyone's contributions.
  std::vector<Event> mine;
  ASSERT_TRUE(collect_until(pc, *newcomer, [](const Event& ev) {
    return ev.is("op") && ev.pos(1) >= 2;
  }, deadline_in(10s), mine)) << "the newcomer did not complete three ops";
  std::optional<int64_t> first_op_us;
  for (const auto& ev : mine) {
    if (ev.is("op")) {
      EXPECT_EQ(ev.unum("sum"), after) << "newcomer: " << ev.raw;
      EXPECT_EQ(ev.num("world"), 4) << "newcomer: " << ev.raw;
      if (!first_op_us) first_op_us = ev.at_us();
    } else if (!ev.is("world")) {
      ADD_FAILURE() << "newcomer: " << ev.raw;
    }
  }
  // The loopers: no failure at all (codes {}), one switch from `before` to `after`.
  std::vector<Recovery> rs;
  for (auto h : peers) {
    rs.push_back(follow_recovery(pc, h, t_spawn, before, after, 3, deadline_in(10s), {}));
    SCOPED_TRACE(pc.label(h));
    EXPECT_EQ(rs.back().failures, 0);
    bool updated = false;
    for (const auto& ev : rs.back().events) {
      if (ev.is("updated")) {
        updated = true;
        EXPECT_EQ(ev.num("world"), 4) << ev.raw;
      }
      if (ev.is("vote-fail")) ADD_FAILURE() << ev.raw;
    }
    EXPECT_TRUE(updated) << "no qcclUpdateTopology admitted the newcomer";
  }
  expect_same_sums(rs, "join");
  ASSERT_TRUE(first_op_us);
  // Admission waits for the loopers' next op and vote only: well under a second here.
  EXPECT_LT((ready->at_us() - t_spawn) / 1000.0, 3000) << "admission took too long";
  std::printf("[ measure  ] join: spawn -> admitted (ready) %.1f ms, spawn -> first op with 4 "
              "peers %.1f ms\n",
              (ready->at_us() - t_spawn) / 1000.0, (*first_op_us - t_spawn) / 1000.0);
}

// The newcomer must take full part in recovery too: after it joined, an elder is killed in
// the middle of the loop (op or vote); the survivors, newcomer included, fail at most the op
// in flight and go on with exactly their own contributions.
TEST(JoinTest, AfterAJoinAKilledElderLeavesTheSurvivorsIncludingTheNewcomerWorking) {
  TestMaster master;
  ASSERT_TRUE(master.ok()) << master.error();
  ProcCluster pc;
  const std::vector<std::string> loop_args{"--mode", "loop", "--admit", "--count", "65536"};
  auto peers = start_group(pc, master.address(), 3, loop_args, deadline_in(20s));
  ASSERT_EQ(peers.size(), 3u);
  std::vector<std::string> args{"--master", master.address(), "--index", "3"};
  args.insert(args.end(), loop_args.begin(), loop_args.end());
  auto newcomer = pc.spawn("peer 3 (newcomer)", args);
  ASSERT_TRUE(newcomer) << pc.error();
  peers.push_back(*newcomer);
  const uint64_t four = sum_of({0, 1, 2, 3});
  for (auto h : peers) {
    auto e = pc.wait_for(h, [&](const Event& ev) {
      return (ev.is("op") && ev.unum("sum") == four) || ev.is("error") || ev.is("fail");
    }, deadline_in(10s));
    ASSERT_TRUE(e && e->is("op")) << pc.label(h) << ": " << (e ? e->raw : "no op with 4 peers");
  }
  std::mt19937_64 rng(3);
  std::this_thread::sleep_for(std::chrono::microseconds(rng() % 30000));  // op or vote
  constexpr int victim = 1;
  const int64_t t_kill = pc.signal(peers[victim], SIGKILL);
  const std::vector<int> alive{0, 2, 3};
  std::vector<Recovery> rs;
  const Deadline deadline = deadline_in(8s);
  for (int i : alive) {
    rs.push_back(follow_recovery(pc, peers[i], t_kill, four, sum_of(alive), 3, deadline,
                                 {qcclPeerLost}));
    SCOPED_TRACE(pc.label(peers[i]));
    ASSERT_TRUE(rs.back().first_success_us) << "no success without the victim";
    double ms = (*rs.back().first_success_us - t_kill) / 1000.0;
    EXPECT_LT(ms, 2000) << "the retry after the kill did not succeed at once";
    for (const auto& ev : rs.back().events) {
      if (ev.is("vote-fail")) ADD_FAILURE() << ev.raw;
    }
    std::printf("[ measure  ] join then kill: %s first success without the victim after %.1f ms\n",
                pc.label(peers[i]).c_str(), ms);
  }
  // The elders' op numbers are aligned with each other (the newcomer's start later).
  expect_same_sums({rs[0], rs[1]}, "join then kill");
}

}  // namespace
}  // namespace qccl::test
