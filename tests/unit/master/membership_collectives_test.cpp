// Membership: collectives (C2MOpStart / C2MOpDone -> M2COpResult), per (group, tag, seq).
#include <gtest/gtest.h>

#include "master/membership.hpp"
#include "membership_test_util.hpp"

namespace qccl::master {
namespace {

using testing::Harness;
using testing::Lines;
using namespace std::chrono_literals;

constexpr uint64_t kHashA = 0xaaaa;
constexpr uint64_t kHashB = 0xbbbb;

TEST(MembershipOps, CommitsOnlyAfterEveryMemberReportedSuccess) {
  Harness h;
  h.start_run({0, 0, 0});  // epoch 2
  for (PeerId p : {1, 2, 3}) h.op_start(p, 7, 0, 2);
  h.op_done(1, 7, 0, 2);
  h.op_done(3, 7, 0, 2);
  EXPECT_EQ(h.lines(), Lines{});
  h.op_done(2, 7, 0, 2);
  EXPECT_EQ(h.lines(), (Lines{
                           "1 <- OpResult{tag=7 seq=0 e=2 Ok world=3} @2",
                           "2 <- OpResult{tag=7 seq=0 e=2 Ok world=3} @2",
                           "3 <- OpResult{tag=7 seq=0 e=2 Ok world=3} @2",
                       }));
  EXPECT_EQ(h.m.global_epoch(), 2u);
  EXPECT_EQ(h.m.group_epoch(0), 2u);
}

TEST(MembershipOps, ConcurrentOpsWithDifferentTagsCommitIndependently) {
  Harness h;
  h.start_run({0, 0});
  h.op_start(1, 7, 0, 2);
  h.op_start(1, 8, 0, 2, kHashB);
  h.op_start(2, 8, 0, 2, kHashB);
  h.op_start(2, 7, 0, 2);
  h.op_done(2, 8, 0, 2);
  h.op_done(1, 7, 0, 2);
  h.op_done(1, 8, 0, 2);
  EXPECT_EQ(h.lines(), (Lines{
                           "1 <- OpResult{tag=8 seq=0 e=2 Ok world=2} @2",
                           "2 <- OpResult{tag=8 seq=0 e=2 Ok world=2} @2",
                       }));
  h.op_done(2, 7, 0, 2);
  EXPECT_EQ(h.lines(), (Lines{
                           "1 <- OpResult{tag=7 seq=0 e=2 Ok world=2} @2",
                           "2 <- OpResult{tag=7 seq=0 e=2 Ok world=2} @2",
                       }));
  // The next op with the same tag (seq 1) is a new one.
  h.op_start(1, 7, 1, 2);
  h.op_start(2, 7, 1, 2);
  h.op_done(1, 7, 1, 2);
  h.op_done(2, 7, 1, 2);
  EXPECT_EQ(h.lines().size(), 2u);
}

TEST(MembershipOps, SinglePeerGroupCommitsAlone) {
  Harness h;
  h.start_run({0});
  h.op_start(1, 3, 0, 1);
  h.op_done(1, 3, 0, 1);
  EXPECT_EQ(h.lines(), (Lines{"1 <- OpResult{tag=3 seq=0 e=1 Ok world=1} @1"}));
}

TEST(MembershipOps, DifferentDescriptorsAbortWithMismatchForEveryMember) {
  Harness h;
  h.start_run({0, 0, 0});
  h.op_start(1, 7, 0, 2, kHashA);
  h.op_start(2, 7, 0, 2, kHashB);
  // Declared only once every member has started the op, so that peer 3 fails this call too.
  EXPECT_EQ(h.lines(), Lines{});
  h.op_start(3, 7, 0, 2, kHashA);
  EXPECT_EQ(h.lines(),
            (Lines{
                "1 <- OpResult{tag=7 seq=0 e=2 Mismatch} @2",
                "2 <- OpResult{tag=7 seq=0 e=2 Mismatch} @2",
                "3 <- OpResult{tag=7 seq=0 e=2 Mismatch} @2",
                "1 <- Membership{ge=3 world=3 group=3 groups=1 largest=3 ring=[1,2,3]} @3",
                "2 <- Membership{ge=3 world=3 group=3 groups=1 largest=3 ring=[1,2,3]} @3",
                "3 <- Membership{ge=3 world=3 group=3 groups=1 largest=3 ring=[1,2,3]} @3",
            }));
  EXPECT_EQ(h.m.group_epoch(0), 3u);
  EXPECT_EQ(h.m.global_epoch(), 3u);
  EXPECT_EQ(h.m.num_accepted(), 3u);  // nobody is expelled for a mismatch
}

TEST(MembershipOps, AbortFailsTheGroupsOtherOpsWithPeerLost) {
  Harness h;
  h.start_run({0, 0});
  h.op_start(1, 9, 0, 2);
  h.op_start(1, 7, 0, 2, kHashA);
  h.op_start(2, 7, 0, 2, kHashB);
  EXPECT_EQ(h.lines(), (Lines{
                           "1 <- OpResult{tag=7 seq=0 e=2 Mismatch} @2",
                           "2 <- OpResult{tag=7 seq=0 e=2 Mismatch} @2",
                           "1 <- OpResult{tag=9 seq=0 e=2 PeerLost} @2",
                           "2 <- OpResult{tag=9 seq=0 e=2 PeerLost} @2",
                           "1 <- Membership{ge=3 world=2 group=2 groups=1 largest=2 ring=[1,2]} @3",
                           "2 <- Membership{ge=3 world=2 group=2 groups=1 largest=2 ring=[1,2]} @3",
                       }));
}

TEST(MembershipOps, FailureReportAbortsForEveryMemberWithThatStatus) {
  Harness h;
  h.start_run({0, 0, 0});
  for (PeerId p : {1, 2, 3}) h.op_start(p, 7, 0, 2);
  h.op_done(1, 7, 0, 2);
  h.op_done(2, 7, 0, 2, StatusCode::kTimeout, "neighbour silent");
  EXPECT_EQ(h.lines(),
            (Lines{
                "1 <- OpResult{tag=7 seq=0 e=2 Timeout} @2",
                "2 <- OpResult{tag=7 seq=0 e=2 Timeout} @2",
                "3 <- OpResult{tag=7 seq=0 e=2 Timeout} @2",
                "1 <- Membership{ge=3 world=3 group=3 groups=1 largest=3 ring=[1,2,3]} @3",
                "2 <- Membership{ge=3 world=3 group=3 groups=1 largest=3 ring=[1,2,3]} @3",
                "3 <- Membership{ge=3 world=3 group=3 groups=1 largest=3 ring=[1,2,3]} @3",
            }));
  EXPECT_EQ(h.m.group_epoch(0), 3u);
  // The message of the failing peer reaches the others.
  h.op_start(1, 7, 0, 3);
  h.op_start(2, 7, 0, 3);
  h.op_start(3, 7, 0, 3);
  h.op_done(3, 7, 0, 3, StatusCode::kPeerLost, "link to 1 reset");
  Outbox out = h.take();
  ASSERT_GE(out.sends.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    const auto* r = std::get_if<wire::M2COpResult>(&out.sends[i].message);
    ASSERT_NE(r, nullptr);
    EXPECT_EQ(r->status, StatusCode::kPeerLost);
    EXPECT_NE(r->message.find("link to 1 reset"), std::string::npos) << r->message;
  }
  EXPECT_EQ(h.m.group_epoch(0), 4u);
}

TEST(MembershipOps, PeerLostMidOpFailsTheOpForSurvivorsWhoCanRetry) {
  Harness h;
  h.start_run({0, 0, 0});
  for (PeerId p : {1, 2, 3}) h.op_start(p, 7, 0, 2);
  h.op_done(1, 7, 0, 2);
  h.disconnect(3);
  EXPECT_EQ(h.lines(), (Lines{
                           "1 <- OpResult{tag=7 seq=0 e=2 PeerLost} @2",
                           "2 <- OpResult{tag=7 seq=0 e=2 PeerLost} @2",
                           "1 <- Membership{ge=3 world=2 group=2 groups=1 largest=2 ring=[1,2]} @3",
                           "2 <- Membership{ge=3 world=2 group=2 groups=1 largest=2 ring=[1,2]} @3",
                       }));
  // Retry at once in the new epoch.
  for (PeerId p : {1, 2}) h.op_start(p, 7, 0, 3);
  for (PeerId p : {1, 2}) h.op_done(p, 7, 0, 3);
  EXPECT_EQ(h.lines(), (Lines{
                           "1 <- OpResult{tag=7 seq=0 e=3 Ok world=2} @3",
                           "2 <- OpResult{tag=7 seq=0 e=3 Ok world=2} @3",
                       }));
}

TEST(MembershipOps, StaleOpEpochIsAnsweredPeerLostToThatPeerOnly) {
  Harness h;
  h.start_run({0, 0, 0});
  h.leave(3);  // group epoch 2 -> 3
  h.take();
  h.op_start(1, 7, 0, 2);
  Outbox out = h.take();
  ASSERT_EQ(out.sends.size(), 1u);
  EXPECT_TRUE(out.disconnects.empty());
  EXPECT_EQ(out.sends[0].to, 1u);
  EXPECT_EQ(out.sends[0].epoch, 3u);
  const auto* r = std::get_if<wire::M2COpResult>(&out.sends[0].message);
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->tag, 7u);
  EXPECT_EQ(r->seq, 0u);
  EXPECT_EQ(r->status, StatusCode::kPeerLost);
  // Not believed: no op was recorded (no straggler deadline), nothing changed.
  EXPECT_EQ(h.m.next_deadline(), h.now + 10s);
  EXPECT_EQ(h.m.global_epoch(), 3u);
  // Same for a stale OpDone, whatever status it claims.
  h.op_done(2, 7, 0, 2, StatusCode::kTimeout, "late");
  out = h.take();
  ASSERT_EQ(out.sends.size(), 1u);
  EXPECT_EQ(out.sends[0].to, 2u);
  r = std::get_if<wire::M2COpResult>(&out.sends[0].message);
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->status, StatusCode::kPeerLost);
  EXPECT_EQ(h.m.global_epoch(), 3u);
  EXPECT_EQ(h.m.group_epoch(0), 3u);
}

// M2COpResult.op_epoch names the op the answer is about. seq restarts at 0 in every group
// epoch, so an answer to a stale (tag, seq, old epoch) labelled with the CURRENT epoch is
// indistinguishable from a failure of the retry (tag, seq, new epoch).
TEST(MembershipOps, StaleOpAnswerCarriesTheStaleOpEpoch) {
  Harness h;
  h.start_run({0, 0, 0});
  h.leave(3);  // group epoch 2 -> 3
  h.take();
  h.op_start(1, 7, 0, 2);
  h.op_done(2, 7, 0, 2);
  Lines want{
      "1 <- OpResult{tag=7 seq=0 e=2 PeerLost} @3",
      "2 <- OpResult{tag=7 seq=0 e=2 PeerLost} @3",
  };
  Lines got = h.lines();
  EXPECT_EQ(got, want);
}

TEST(MembershipOps, DoneWithoutStartIsAnsweredPeerLostAndTheOpGoesOn) {
  Harness h;
  TimePoint t0 = h.now;
  h.start_run({0, 0});
  h.op_start(1, 7, 0, 2);
  h.op_done(2, 7, 0, 2);
  EXPECT_EQ(h.lines(), (Lines{"2 <- OpResult{tag=7 seq=0 e=2 PeerLost} @2"}));
  EXPECT_EQ(h.m.global_epoch(), 2u);
  EXPECT_EQ(h.m.next_deadline(), t0 + 3s);  // peer 2 still has to start it
}

TEST(MembershipOps, MemberThatNeverStartsIsKickedAsStraggler) {
  Harness h;
  TimePoint t0 = h.now;
  h.start_run({0, 0, 0});
  h.advance(1s);
  h.op_start(1, 7, 0, 2);
  h.advance(1s);
  h.op_start(2, 7, 0, 2);
  EXPECT_EQ(h.m.next_deadline(), t0 + 4s);  // vote_timeout after the FIRST start
  h.advance(2s - 1ms);
  h.tick();
  EXPECT_EQ(h.lines(), Lines{});
  h.advance(1ms);
  h.tick();
  EXPECT_EQ(h.lines(), (Lines{
                           "3 <- Kicked{Straggler} @2",
                           "1 <- OpResult{tag=7 seq=0 e=2 PeerLost} @2",
                           "2 <- OpResult{tag=7 seq=0 e=2 PeerLost} @2",
                           "1 <- Membership{ge=3 world=2 group=2 groups=1 largest=2 ring=[1,2]} @3",
                           "2 <- Membership{ge=3 world=2 group=2 groups=1 largest=2 ring=[1,2]} @3",
                           "close 3",
                       }));
  EXPECT_EQ(h.m.next_deadline(), t0 + 11s);  // only heartbeats left
}

TEST(MembershipOps, EveryNonStarterIsKicked) {
  Harness h;
  h.start_run({0, 0, 0, 0});
  h.op_start(1, 7, 0, 2);
  h.op_start(2, 7, 0, 2);
  h.advance(3s);
  h.tick();
  EXPECT_EQ(h.lines(),
            (Lines{
                "3 <- Kicked{Straggler} @2",
                "1 <- OpResult{tag=7 seq=0 e=2 PeerLost} @2",
                "2 <- OpResult{tag=7 seq=0 e=2 PeerLost} @2",
                "4 <- OpResult{tag=7 seq=0 e=2 PeerLost} @2",
                "1 <- Membership{ge=3 world=3 group=3 groups=1 largest=3 ring=[1,2,4]} @3",
                "2 <- Membership{ge=3 world=3 group=3 groups=1 largest=3 ring=[1,2,4]} @3",
                "4 <- Membership{ge=3 world=3 group=3 groups=1 largest=3 ring=[1,2,4]} @3",
                "4 <- Kicked{Straggler} @3",
                "1 <- Membership{ge=4 world=2 group=2 groups=1 largest=2 ring=[1,2]} @4",
                "2 <- Membership{ge=4 world=2 group=2 groups=1 largest=2 ring=[1,2]} @4",
                "close 3",
                "close 4",
            }));
}

TEST(MembershipOps, NoStragglerDeadlineOnceEveryoneStarted) {
  Harness h;
  TimePoint t0 = h.now;
  h.start_run({0, 0});
  h.advance(1s);
  h.op_start(1, 7, 0, 2);
  h.op_start(2, 7, 0, 2);
  EXPECT_EQ(h.m.next_deadline(), t0 + 11s);
  h.advance(5s);
  h.heartbeat(1);
  h.heartbeat(2);
  h.tick();  // a slow op is not a straggler: nobody is kicked
  EXPECT_EQ(h.lines(), Lines{});
  h.op_done(1, 7, 0, 2);
  h.op_done(2, 7, 0, 2);
  EXPECT_EQ(h.lines().size(), 2u);
}

TEST(MembershipOps, AbortInOneGroupLeavesOtherGroupsOpsAlone) {
  Harness h;
  h.start_run({0, 0, 1, 1});  // group 0: [1,2], group 1: [3,4], epoch 2
  h.op_start(1, 7, 0, 2);
  h.op_start(3, 7, 0, 2, kHashA);
  h.op_start(4, 7, 0, 2, kHashB);
  EXPECT_EQ(h.lines(), (Lines{
                           "3 <- OpResult{tag=7 seq=0 e=2 Mismatch} @2",
                           "4 <- OpResult{tag=7 seq=0 e=2 Mismatch} @2",
                           "1 <- Membership{ge=2 world=4 group=2 groups=2 largest=2 ring=[1,2]} @3",
                           "2 <- Membership{ge=2 world=4 group=2 groups=2 largest=2 ring=[1,2]} @3",
                           "3 <- Membership{ge=3 world=4 group=2 groups=2 largest=2 ring=[3,4]} @3",
                           "4 <- Membership{ge=3 world=4 group=2 groups=2 largest=2 ring=[3,4]} @3",
                       }));
  EXPECT_EQ(h.m.group_epoch(0), 2u);
  EXPECT_EQ(h.m.group_epoch(1), 3u);
  // Group 0's op, same tag and seq, still runs in its unchanged epoch.
  h.op_start(2, 7, 0, 2);
  h.op_done(1, 7, 0, 2);
  h.op_done(2, 7, 0, 2);
  EXPECT_EQ(h.lines(), (Lines{
                           "1 <- OpResult{tag=7 seq=0 e=2 Ok world=2} @3",
                           "2 <- OpResult{tag=7 seq=0 e=2 Ok world=2} @3",
                       }));
}

TEST(MembershipOps, LeaveOfAnotherGroupDoesNotAbortOps) {
  Harness h;
  h.start_run({0, 0, 1});
  h.op_start(1, 7, 0, 2);
  h.leave(3);
  Outbox out = h.take();
  for (const auto& s : out.sends) {
    EXPECT_FALSE(std::holds_alternative<wire::M2COpResult>(s.message))
        << testing::describe(s.message);
  }
  h.op_start(2, 7, 0, 2);
  h.op_done(1, 7, 0, 2);
  h.op_done(2, 7, 0, 2);
  EXPECT_EQ(h.lines(), (Lines{
                           "1 <- OpResult{tag=7 seq=0 e=2 Ok world=2} @3",
                           "2 <- OpResult{tag=7 seq=0 e=2 Ok world=2} @3",
                       }));
}

}  // namespace
}  // namespace qccl::master
