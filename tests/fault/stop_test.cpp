// Fault tests: SIGSTOP of one peer, while idle and in the middle of all-reduces.
//
// A stopped process keeps its sockets open, so nothing closes: the master must expel it
// because its heartbeats stop, peer_timeout_ms (1000 here) after the last one it sent, i.e.
// between timeout - heartbeat and timeout after the SIGSTOP. Measured from the SIGSTOP to
// the moment a survivor's view shrinks (the peer's watcher polls it every 5 ms), printed, and
// bounded by timeout + one heartbeat (+ scheduling slack). The survivors then succeed with
// exactly their own contributions. After SIGCONT the expelled peer's next call must return
// qcclKicked.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <random>
#include <thread>

#include "fault/fault_group.hpp"
#include "support/loop_recovery.hpp"
#include "support/proc_cluster.hpp"
#include "support/watchdog.hpp"

QCCL_TEST_WATCHDOG(80);

namespace qccl::test {
namespace {

using namespace std::chrono_literals;

constexpr MasterTimes kTimes{100, 1000, 5000};
// Wake-up latency of the master's timer, the watcher's 5 ms polling and a loaded machine.
constexpr double kSlackMs = 200;
const double kUpperMs = stop_upper_ms(kTimes, kSlackMs);
const double kLowerMs = stop_lower_ms(kTimes);

TEST(StopTest, SigstopWhileIdleIsExpelledAfterThePeerTimeoutAndKickedOnResume) {
  FaultGroup g(kTimes);
  constexpr int n = 3;
  constexpr int victim = 1;
  ASSERT_NO_FATAL_FAILURE(start_peers(g, n, {"--mode", "idle"}));
  ASSERT_NO_FATAL_FAILURE(prove_with_one_all_reduce(g));
  ProcCluster& pc = g.pc;
  const auto& peers = g.peers;

  const int64_t t_stop = pc.signal(peers[victim], SIGSTOP);
  const std::vector<int> alive{0, 2};
  for (int i : alive) {
    auto e = pc.wait_for(peers[i], [](const Event& ev) {
      return ev.is("world") && ev.num("world") == 2;
    }, deadline_in(5s));
    ASSERT_TRUE(e) << pc.label(peers[i]) << " never saw the stopped peer expelled";
    double ms = (e->at_us() - t_stop) / 1000.0;
    std::printf("[ measure  ] SIGSTOP while idle: %s saw world 2 after %.1f ms (timeout %u ms, "
                "heartbeat %u ms)\n",
                pc.label(peers[i]).c_str(), ms, kTimes.peer_timeout_ms, kTimes.heartbeat_ms);
    EXPECT_LE(ms, kUpperMs) << "expelled later than peer timeout + heartbeat";
    EXPECT_GE(ms, kLowerMs) << "expelled before the peer timeout could have run out";
  }
  // The survivors work on at once with their own contributions only.
  std::vector<Event> ops;
  ASSERT_NO_FATAL_FAILURE(all_reduce_of_survivors(g, alive, ops));
  // Resumed, the expelled peer learns it at its next call.
  pc.signal(peers[victim], SIGCONT);
  ASSERT_TRUE(pc.send_line(peers[victim], "try"));
  auto e = pc.wait_for(peers[victim], [](const Event& ev) { return ev.is("op") || ev.is("fail"); },
                       deadline_in(5s));
  ASSERT_TRUE(e) << "the resumed peer's all-reduce did not return";
  EXPECT_TRUE(e->is("fail") && e->pos(2) == qcclKicked)
      << "expected qcclKicked from the expelled peer's next call, got: " << e->raw;
}

TEST(StopTest, SigstopMidOpSurvivorsFailWithinThePeerTimeoutThenSucceed) {
  FaultGroup g(kTimes);
  constexpr int n = 3;
  std::mt19937_64 rng(7);
  ASSERT_NO_FATAL_FAILURE(start_peers(g, n, {"--mode", "loop", "--count", "65536"}));
  ASSERT_NO_FATAL_FAILURE(wait_two_loop_ops(g));
  stop_mid_loop(g, rng, 20000, /*victim=*/2, kSlackMs, "SIGSTOP mid-op");
}

// Bounded votes: a stopped peer cannot hold a vote up for longer than the peer timeout.
TEST(StopTest, SigstopBeforeAVoteTheVoteCompletesOnceThePeerIsExpelled) {
  FaultGroup g(kTimes);
  ASSERT_NO_FATAL_FAILURE(start_peers(g, 3, {"--mode", "idle"}));
  ProcCluster& pc = g.pc;
  const auto& peers = g.peers;
  const int64_t t_stop = pc.signal(peers[2], SIGSTOP);
  for (int i : {0, 1}) ASSERT_TRUE(pc.send_line(peers[i], "pending"));
  for (int i : {0, 1}) {
    auto e = pc.wait_for(peers[i], [](const Event& ev) {
      return ev.is("pending") || ev.is("vote-fail");
    }, deadline_in(5s));
    ASSERT_TRUE(e) << pc.label(peers[i]) << ": the vote never completed";
    EXPECT_TRUE(e->is("pending")) << e->raw;
    double ms = (e->at_us() - t_stop) / 1000.0;
    std::printf("[ measure  ] vote with a stopped peer: %s's qcclArePeersPending returned after "
                "%.1f ms\n", pc.label(peers[i]).c_str(), ms);
    EXPECT_LE(ms, kUpperMs) << "the vote waited past peer timeout + heartbeat";
  }
  ASSERT_NO_FATAL_FAILURE(all_reduce_on(g, {0, 1}));
}

// Bounded votes, the other way: a live peer (heartbeats flowing) that does not join a vote is
// expelled as a straggler at the vote timeout, and learns it at its next call.
TEST(StopTest, APeerThatSkipsAVoteIsExpelledAsAStragglerAtTheVoteTimeout) {
  constexpr MasterTimes times{100, 1000, 1000};
  FaultGroup g(times);
  ASSERT_NO_FATAL_FAILURE(start_peers(g, 3, {"--mode", "idle"}));
  ProcCluster& pc = g.pc;
  const auto& peers = g.peers;
  const int64_t t0 = monotonic_us();
  for (int i : {0, 1}) ASSERT_TRUE(pc.send_line(peers[i], "pending"));
  for (int i : {0, 1}) {
    auto e = pc.wait_for(peers[i], [](const Event& ev) {
      return ev.is("pending") || ev.is("vote-fail");
    }, deadline_in(5s));
    ASSERT_TRUE(e) << pc.label(peers[i]) << ": the vote never completed";
    EXPECT_TRUE(e->is("pending")) << e->raw;
    double ms = (e->at_us() - t0) / 1000.0;
    std::printf("[ measure  ] vote with a straggler: %s's qcclArePeersPending returned after "
                "%.1f ms (vote timeout %u ms)\n", pc.label(peers[i]).c_str(), ms,
                times.vote_timeout_ms);
    EXPECT_GE(ms, times.vote_timeout_ms - 50.0) << "the straggler was expelled too early";
    EXPECT_LE(ms, times.vote_timeout_ms + times.heartbeat_ms + kSlackMs);
  }
  ASSERT_TRUE(pc.send_line(peers[2], "try"));
  auto e = pc.wait_for(peers[2], [](const Event& ev) { return ev.is("op") || ev.is("fail"); },
                       deadline_in(5s));
  ASSERT_TRUE(e) << "the straggler's call did not return";
  EXPECT_TRUE(e->is("fail") && e->pos(2) == qcclKicked) << "expected qcclKicked, got: " << e->raw;
  ASSERT_NO_FATAL_FAILURE(all_reduce_on(g, {0, 1}));
}

}  // namespace
}  // namespace qccl::test
