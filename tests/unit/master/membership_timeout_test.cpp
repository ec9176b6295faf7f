// Membership: time. Heartbeat timeouts, vote deadlines (stragglers) and next_deadline().
// (Collective deadlines are in membership_collectives_test.cpp.)
#include <gtest/gtest.h>

#include "master/membership.hpp"
#include "membership_test_util.hpp"

namespace qccl::master {
namespace {

using testing::Harness;
using testing::Lines;
using wire::VoteKind;
using namespace std::chrono_literals;

// ---------------------------------------------------------------- heartbeat timeout

TEST(MembershipTimeout, SilentPeerIsKickedAndHeartbeatingPeerIsNot) {
  Harness h;
  TimePoint t0 = h.now;
  h.start_run({0, 0});
  EXPECT_EQ(h.m.next_deadline(), t0 + 10s);
  h.advance(4s);
  h.heartbeat(2);
  EXPECT_EQ(h.m.next_deadline(), t0 + 10s);  // peer 1 is the earliest
  h.advance(6s - 1ms);
  h.tick();
  EXPECT_EQ(h.lines(), Lines{});
  h.advance(1ms);  // t0 + 10s: peer 1 silent for exactly peer_timeout
  h.tick();
  EXPECT_EQ(h.lines(), (Lines{
                           "1 <- Kicked{Timeout} @2",
                           "2 <- Membership{ge=3 world=1 group=1 groups=1 largest=1 ring=[2]} @3",
                           "close 1",
                       }));
  EXPECT_FALSE(h.m.is_known(1));
  EXPECT_TRUE(h.m.is_known(2));
  EXPECT_EQ(h.m.next_deadline(), t0 + 14s);
}

TEST(MembershipTimeout, AnyMessageCountsAsLifeSign) {
  Harness h;
  TimePoint t0 = h.now;
  h.start_run({0, 0});
  h.advance(9s);
  h.vote(1, VoteKind::kPeersPending);
  h.vote(2, VoteKind::kPeersPending);
  h.take();
  EXPECT_EQ(h.m.next_deadline(), t0 + 19s);
  h.advance(9s);
  h.tick();
  EXPECT_EQ(h.lines(), Lines{});
}

TEST(MembershipTimeout, RegisteredPeerTimesOutWithoutEpochChange) {
  Harness h;
  h.start_run({0});
  h.advance(5s);
  h.reg(0);  // 2
  h.take();
  h.advance(5s);
  h.heartbeat(1);
  h.tick();
  EXPECT_EQ(h.lines(), Lines{});
  EXPECT_EQ(h.m.next_deadline(), h.now + 5s);
  h.advance(5s);
  h.tick();
  EXPECT_EQ(h.lines(), (Lines{"2 <- Kicked{Timeout} @1", "close 2"}));
  EXPECT_EQ(h.m.global_epoch(), 1u);
  EXPECT_EQ(h.m.num_registered(), 0u);
}

TEST(MembershipTimeout, NoDeadlineWithoutPeers) {
  Harness h;
  EXPECT_EQ(h.m.next_deadline(), std::nullopt);
  h.start_run({0});
  h.leave(1);
  EXPECT_EQ(h.m.next_deadline(), std::nullopt);
}

// ---------------------------------------------------------------- vote deadline

TEST(MembershipVoteDeadline, NonVoterIsKickedAsStragglerAndVoteCompletes) {
  Harness h;
  TimePoint t0 = h.now;
  h.start_run({0, 0, 0});
  h.advance(1s);
  h.vote(1);
  h.advance(1s);
  h.vote(2);
  h.take();
  EXPECT_EQ(h.m.next_deadline(), t0 + 4s);  // vote_timeout after the FIRST vote
  h.advance(2s - 1ms);
  h.tick();
  EXPECT_EQ(h.lines(), Lines{});
  h.advance(1ms);
  h.tick();
  EXPECT_EQ(h.lines(), (Lines{
                           "3 <- Kicked{Straggler} @2",
                           "1 <- Membership{ge=3 world=2 group=2 groups=1 largest=2 ring=[1,2]} @3",
                           "2 <- Membership{ge=3 world=2 group=2 groups=1 largest=2 ring=[1,2]} @3",
                           "1 <- VoteResult{UpdateTopology pending=0} @3",
                           "2 <- VoteResult{UpdateTopology pending=0} @3",
                           "close 3",
                       }));
  // The round is over: no vote deadline left, only peer 1's heartbeat deadline.
  EXPECT_EQ(h.m.next_deadline(), t0 + 11s);
}

TEST(MembershipVoteDeadline, StragglerWithLowestIdDoesNotTakeTheVotersWithIt) {
  Harness h;
  h.start_run({0, 0, 0});
  h.vote(2, VoteKind::kPeersPending);
  h.vote(3, VoteKind::kPeersPending);
  h.take();
  h.advance(3s);
  h.tick();
  Lines want{
      "1 <- Kicked{Straggler} @2",
      "2 <- Membership{ge=3 world=2 group=2 groups=1 largest=2 ring=[2,3]} @3",
      "3 <- Membership{ge=3 world=2 group=2 groups=1 largest=2 ring=[2,3]} @3",
      "2 <- VoteResult{PeersPending pending=0} @3",
      "3 <- VoteResult{PeersPending pending=0} @3",
      "close 1",
  };
  Lines got = h.lines();
  EXPECT_EQ(got, want);
  EXPECT_EQ(h.m.num_accepted(), 2u);
}

TEST(MembershipVoteDeadline, StragglerKickAdmitsPendingWithoutExpellingThem) {
  Harness h;
  h.start_run({0, 0, 0});
  h.reg(0);  // 4, pending
  h.vote(1);
  h.vote(2);
  h.take();
  h.advance(3s);
  h.tick();
  EXPECT_EQ(h.lines(),
            (Lines{
                "3 <- Kicked{Straggler} @2",
                "1 <- Membership{ge=3 world=2 group=2 groups=1 largest=2 ring=[1,2]} @3",
                "2 <- Membership{ge=3 world=2 group=2 groups=1 largest=2 ring=[1,2]} @3",
                "1 <- Membership{ge=4 world=3 group=3 groups=1 largest=3 ring=[1,2,4]} @4",
                "2 <- Membership{ge=4 world=3 group=3 groups=1 largest=3 ring=[1,2,4]} @4",
                "4 <- Membership{ge=4 world=3 group=3 groups=1 largest=3 ring=[1,2,4]} @4",
                "1 <- VoteResult{UpdateTopology pending=1} @4",
                "2 <- VoteResult{UpdateTopology pending=1} @4",
                "close 3",
            }));
  EXPECT_EQ(h.m.ring(0), (std::vector<PeerId>{1, 2, 4}));
}

}  // namespace
}  // namespace qccl::master
