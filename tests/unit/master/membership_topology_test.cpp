// Membership: qcclOptimizeTopology (membership_topology.cpp), driven with synthetic probe
// results. Every case asserts the exact Outbox: the probe plans (slots of disjoint pairs,
// targets and sources), the new membership, expulsions with their reason, and the vote
// results, in order. The solver itself is ring_solver_test.cpp.
#include <chrono>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "master/membership.hpp"
#include "membership_test_util.hpp"
#include "support/watchdog.hpp"

QCCL_TEST_WATCHDOG(60);

namespace qccl::master {
namespace {

using testing::Harness;
using testing::Lines;
using wire::VoteKind;
using namespace std::chrono_literals;

constexpr uint64_t kFast = 100'000'000;  // bytes/s
constexpr uint64_t kSlow = 10'000'000;

// Directed bandwidth of the synthetic network; 0 = unreachable.
using Network = std::function<uint64_t(PeerId from, PeerId to)>;

// Only the directed ring `fast` (as consecutive pairs, cyclic) is fast; everything else slow.
Network only_ring_fast(std::vector<PeerId> fast) {
  return [fast](PeerId from, PeerId to) {
    for (size_t k = 0; k < fast.size(); ++k) {
      if (fast[k] == from && fast[(k + 1) % fast.size()] == to) return kFast;
    }
    return kSlow;
  };
}

void optimize_vote(Harness& h, const std::vector<PeerId>& voters) {
  for (PeerId p : voters) h.vote(p, VoteKind::kOptimizeTopology);
}

// Every peer in `reporters` reports what `net` says of its inbound links from each peer of
// `group` (the master keeps only the planned ones), and the targets it cannot reach.
void report(Harness& h, uint64_t round, const std::vector<PeerId>& reporters,
            const std::vector<PeerId>& group, const Network& net) {
  for (PeerId p : reporters) {
    wire::C2MProbeResults r;
    r.round = round;
    for (PeerId q : group) {
      if (q == p) continue;
      if (net(q, p) > 0) r.inbound.push_back({q, net(q, p)});
      if (net(p, q) == 0) r.unreachable.push_back(q);
    }
    h.send(p, r);
  }
}

TEST(MembershipTopology, TheVoteSendsEachPeerItsSlotsOfDisjointPairs) {
  Harness h;
  auto ids = h.start_run({0, 0, 0, 0});  // ring [1, 2, 3, 4], epoch 2
  optimize_vote(h, {1, 2, 3});
  EXPECT_EQ(h.lines(), Lines{});
  h.vote(4, VoteKind::kOptimizeTopology);
  // Slot 0: i -> i+1; slots 1 and 2: i -> i+2 split by direction; slot 3: i -> i+3.
  EXPECT_EQ(h.lines(), (Lines{
      "1 <- ProbePlan{round=1 window=250 slot=475 to=[0:2,1:3,3:4] from=[0:4,2:3,3:2]} @2",
      "2 <- ProbePlan{round=1 window=250 slot=475 to=[0:3,1:4,3:1] from=[0:1,2:4,3:3]} @2",
      "3 <- ProbePlan{round=1 window=250 slot=475 to=[0:4,2:1,3:2] from=[0:2,1:1,3:4]} @2",
      "4 <- ProbePlan{round=1 window=250 slot=475 to=[0:1,2:2,3:3] from=[0:3,1:2,3:1]} @2",
  }));
}

TEST(MembershipTopology, ResultsReorderTheRingThenTheVoteIsAnswered) {
  Harness h;
  auto ids = h.start_run({0, 0, 0, 0});
  optimize_vote(h, ids);
  h.take();
  report(h, 1, {1, 2, 3}, ids, only_ring_fast({1, 3, 2, 4}));
  EXPECT_EQ(h.lines(), Lines{});  // peer 4 has not reported yet
  report(h, 1, {4}, ids, only_ring_fast({1, 3, 2, 4}));
  EXPECT_EQ(h.lines(), (Lines{
      "1 <- Membership{ge=3 world=4 group=4 groups=1 largest=4 ring=[1,3,2,4]} @3",
      "3 <- Membership{ge=3 world=4 group=4 groups=1 largest=4 ring=[1,3,2,4]} @3",
      "2 <- Membership{ge=3 world=4 group=4 groups=1 largest=4 ring=[1,3,2,4]} @3",
      "4 <- Membership{ge=3 world=4 group=4 groups=1 largest=4 ring=[1,3,2,4]} @3",
      "1 <- VoteResult{OptimizeTopology pending=0} @3",
      "2 <- VoteResult{OptimizeTopology pending=0} @3",
      "3 <- VoteResult{OptimizeTopology pending=0} @3",
      "4 <- VoteResult{OptimizeTopology pending=0} @3",
  }));
  EXPECT_EQ(h.m.ring(0), (std::vector<PeerId>{1, 3, 2, 4}));
}

TEST(MembershipTopology, TheMasterLogsTheRingAndItsBottleneck) {
  Harness h;
  auto ids = h.start_run({0, 0, 0});
  optimize_vote(h, ids);
  h.take();
  report(h, 1, ids, ids, only_ring_fast({1, 3, 2}));
  Outbox out = h.take();
  std::string all = fmt::format("{}", fmt::join(out.log, "\n"));
  EXPECT_NE(all.find("topology: group 0 ring [1, 3, 2] bottleneck 100.0 MB/s (optimal); was "
                     "[1, 2, 3] with bottleneck 10.0 MB/s"),
            std::string::npos)
      << all;
  EXPECT_NE(all.find("6 links measured"), std::string::npos) << all;
}

TEST(MembershipTopology, FreshMeasurementsAreNotProbedAgain) {
  Harness h;
  auto ids = h.start_run({0, 0, 0});
  optimize_vote(h, ids);
  h.take();
  report(h, 1, ids, ids, only_ring_fast({1, 3, 2}));
  h.take();
  h.advance(1s);
  optimize_vote(h, ids);  // same figures, same ring: no plan, no membership
  EXPECT_EQ(h.lines(), (Lines{
      "1 <- VoteResult{OptimizeTopology pending=0} @3",
      "2 <- VoteResult{OptimizeTopology pending=0} @3",
      "3 <- VoteResult{OptimizeTopology pending=0} @3",
  }));
}

TEST(MembershipTopology, MeasurementsOlderThanTheMaxAgeAreProbedAgain) {
  MembershipConfig c = testing::test_config();
  c.probe_max_age = 60s;
  Harness h(c);
  auto ids = h.start_run({0, 0});
  optimize_vote(h, ids);
  EXPECT_EQ(h.lines(), (Lines{
      "1 <- ProbePlan{round=1 window=250 slot=475 to=[0:2] from=[1:2]} @2",
      "2 <- ProbePlan{round=1 window=250 slot=475 to=[1:1] from=[0:1]} @2",
  }));
  report(h, 1, ids, ids, [](PeerId, PeerId) { return kFast; });
  h.take();
  h.advance(59s);
  optimize_vote(h, ids);
  EXPECT_EQ(h.lines().size(), 2u);  // two vote results, nothing probed
  h.advance(1s);
  optimize_vote(h, ids);
  EXPECT_EQ(h.lines(), (Lines{
      "1 <- ProbePlan{round=2 window=250 slot=475 to=[0:2] from=[1:2]} @2",
      "2 <- ProbePlan{round=2 window=250 slot=475 to=[1:1] from=[0:1]} @2",
  }));
}

TEST(MembershipTopology, OnlyTheLinksOfANewPeerAreProbed) {
  Harness h;
  auto ids = h.start_run({0, 0, 0});
  optimize_vote(h, ids);
  h.take();
  report(h, 1, ids, ids, only_ring_fast({1, 2, 3}));
  h.take();
  PeerId newcomer = h.reg(0);
  for (PeerId p : ids) h.vote(p);  // kUpdateTopology admits it: ring [1, 2, 3, 4]
  h.take();
  optimize_vote(h, {1, 2, 3, 4});
  EXPECT_EQ(newcomer, 4u);
  // Ring [1, 2, 3, 4]: slot 0 has 3 -> 4 and 4 -> 1, slots 1 and 2 the two directions of
  // 2 <-> 4, slot 3 has 1 -> 4 and 4 -> 3. The other links keep their measurements.
  EXPECT_EQ(h.lines(), (Lines{
      "1 <- ProbePlan{round=2 window=250 slot=475 to=[3:4] from=[0:4]} @3",
      "2 <- ProbePlan{round=2 window=250 slot=475 to=[1:4] from=[2:4]} @3",
      "3 <- ProbePlan{round=2 window=250 slot=475 to=[0:4] from=[3:4]} @3",
      "4 <- ProbePlan{round=2 window=250 slot=475 to=[0:1,2:2,3:3] from=[0:3,1:2,3:1]} @3",
  }));
}

TEST(MembershipTopology, APeerNoReachableRingCanIncludeIsExpelledWithTheReason) {
  Harness h;
  auto ids = h.start_run({0, 0, 0, 0});
  optimize_vote(h, ids);
  h.take();
  // Nobody can reach peer 4 (it can reach the others).
  Network net = [](PeerId, PeerId to) { return to == 4 ? uint64_t{0} : kFast; };
  report(h, 1, ids, ids, net);
  Outbox out = h.take();
  Lines lines = testing::describe(out);
  ASSERT_FALSE(lines.empty());
  EXPECT_EQ(lines.front(), "4 <- Kicked{Unreachable} @2");
  EXPECT_EQ(lines.back(), "close 4");
  EXPECT_EQ(h.m.ring(0), (std::vector<PeerId>{1, 2, 3}));
  EXPECT_FALSE(h.m.is_known(4));
  std::string all = fmt::format("{}", fmt::join(out.log, "\n"));
  EXPECT_NE(all.find("peer 4 expelled (group 0): no ring of reachable links in group 0 can "
                     "include it (is reached by no other peer)"),
            std::string::npos)
      << all;
  EXPECT_NE(all.find("topology: group 0 ring [1, 2, 3] bottleneck 100.0 MB/s"), std::string::npos)
      << all;
  for (PeerId p : {1, 2, 3}) {
    EXPECT_EQ(testing::received_by(out, p).back(), "VoteResult{OptimizeTopology pending=0}");
  }
}

TEST(MembershipTopology, ARingThatIsNotClearlyFasterIsNotWorthAChange) {
  Harness h;
  auto ids = h.start_run({0, 0, 0});
  optimize_vote(h, ids);
  h.take();
  // [1, 3, 2] would be 5% faster than the current [1, 2, 3]: kept.
  report(h, 1, ids, ids, [](PeerId from, PeerId to) {
    bool best = (from == 1 && to == 3) || (from == 3 && to == 2) || (from == 2 && to == 1);
    return best ? uint64_t{105'000'000} : uint64_t{100'000'000};
  });
  Outbox out = h.take();
  EXPECT_EQ(testing::describe(out), (Lines{
      "1 <- VoteResult{OptimizeTopology pending=0} @2",
      "2 <- VoteResult{OptimizeTopology pending=0} @2",
      "3 <- VoteResult{OptimizeTopology pending=0} @2",
  }));
  EXPECT_EQ(h.m.ring(0), (std::vector<PeerId>{1, 2, 3}));
  std::string all = fmt::format("{}", fmt::join(out.log, "\n"));
  EXPECT_NE(all.find("kept: the best ring [1, 3, 2]"), std::string::npos) << all;
}

TEST(MembershipTopology, APeerThatNeverReportsIsExpelledAtTheDeadline) {
  Harness h;  // vote timeout 3 s
  auto ids = h.start_run({0, 0, 0});
  optimize_vote(h, ids);
  h.take();
  report(h, 1, {1, 2}, ids, only_ring_fast({1, 3, 2}));
  // Two slots of 475 ms, then the vote timeout.
  auto deadline = Harness::start_time() + 950ms + 3s;
  EXPECT_EQ(h.m.next_deadline(), deadline);
  h.now = deadline - 1ms;
  h.tick();
  EXPECT_EQ(h.lines(), Lines{});
  h.now = deadline;
  h.tick();
  Lines lines = h.lines();
  ASSERT_GE(lines.size(), 3u);
  EXPECT_EQ(lines.front(), "3 <- Kicked{Straggler} @2");
  EXPECT_EQ(lines[lines.size() - 3], "1 <- VoteResult{OptimizeTopology pending=0} @3");
  EXPECT_EQ(lines[lines.size() - 2], "2 <- VoteResult{OptimizeTopology pending=0} @3");
  EXPECT_EQ(lines.back(), "close 3");
}

TEST(MembershipTopology, APeerLostWhileProbingEndsItsPartOfTheRound) {
  Harness h;
  auto ids = h.start_run({0, 0, 0});
  optimize_vote(h, ids);
  h.take();
  report(h, 1, {1, 2}, ids, only_ring_fast({1, 2, 3}));
  h.disconnect(3);
  Lines lines = h.lines();
  ASSERT_GE(lines.size(), 2u);
  EXPECT_EQ(lines[lines.size() - 2], "1 <- VoteResult{OptimizeTopology pending=0} @3");
  EXPECT_EQ(lines.back(), "2 <- VoteResult{OptimizeTopology pending=0} @3");
  EXPECT_EQ(h.m.ring(0), (std::vector<PeerId>{1, 2}));
}

TEST(MembershipTopology, ResultsOfAnotherRoundOrOfUnplannedLinksAreIgnored) {
  Harness h;
  auto ids = h.start_run({0, 0, 0});
  optimize_vote(h, ids);
  h.take();
  report(h, 7, ids, ids, only_ring_fast({1, 3, 2}));  // wrong round: nobody has reported
  EXPECT_EQ(h.lines(), Lines{});
  // Peer 1 names itself and an unknown peer; neither is planned, so only its real figures
  // count, and the round goes on until 2 and 3 report.
  h.send(1, wire::C2MProbeResults{1, {{1, 5}, {99, 5}, {3, kSlow}, {2, kFast}}, {99}});
  EXPECT_EQ(h.lines(), Lines{});
  report(h, 1, {2, 3}, ids, only_ring_fast({1, 3, 2}));
  EXPECT_EQ(h.m.ring(0), (std::vector<PeerId>{1, 3, 2}));
}

TEST(MembershipTopology, EachGroupIsProbedAndSolvedOnItsOwn) {
  Harness h;
  auto ids = h.start_run({0, 1, 0, 1, 0});  // group 0: [1, 3, 5], group 1: [2, 4]
  optimize_vote(h, ids);
  // Two slots each, side by side: the groups share no peer.
  EXPECT_EQ(h.lines(), (Lines{
      "1 <- ProbePlan{round=1 window=250 slot=475 to=[0:3,1:5] from=[0:5,1:3]} @2",
      "2 <- ProbePlan{round=1 window=250 slot=475 to=[0:4] from=[1:4]} @2",
      "3 <- ProbePlan{round=1 window=250 slot=475 to=[0:5,1:1] from=[0:1,1:5]} @2",
      "4 <- ProbePlan{round=1 window=250 slot=475 to=[1:2] from=[0:2]} @2",
      "5 <- ProbePlan{round=1 window=250 slot=475 to=[0:1,1:3] from=[0:3,1:1]} @2",
  }));
  report(h, 1, {1, 3, 5}, {1, 3, 5}, only_ring_fast({1, 5, 3}));
  report(h, 1, {2, 4}, {2, 4}, [](PeerId, PeerId) { return kFast; });
  EXPECT_EQ(h.m.ring(0), (std::vector<PeerId>{1, 5, 3}));
  EXPECT_EQ(h.m.ring(1), (std::vector<PeerId>{2, 4}));
}

TEST(MembershipTopology, VotingAgainWhileProbingIsAProtocolError) {
  Harness h;
  auto ids = h.start_run({0, 0});
  optimize_vote(h, ids);
  h.take();
  h.vote(1, VoteKind::kOptimizeTopology);
  Lines lines = h.lines();
  ASSERT_FALSE(lines.empty());
  EXPECT_EQ(lines.front(), "1 <- Kicked{ProtocolError} @2");
}

}  // namespace
}  // namespace qccl::master
