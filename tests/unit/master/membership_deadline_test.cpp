// Membership: op deadlines. A collective whose starters gave an op timeout (C2MOpStart
// timeout_ms) is aborted with kTimeout for every member of the group at its first start + the
// smallest timeout given, whether or not every member has started it; nobody is expelled.
#include <gtest/gtest.h>

#include "master/membership.hpp"
#include "membership_test_util.hpp"

namespace qccl::master {
namespace {

using testing::Harness;
using testing::Lines;
using namespace std::chrono_literals;

void start(Harness& h, PeerId p, OpTag tag, uint32_t timeout_ms) {
  h.send(p, wire::C2MOpStart{tag, 0, 2, 0x5eed, timeout_ms});
}

TEST(MembershipOpDeadline, AbortsForEveryMemberWithTimeoutAndExpelsNobody) {
  Harness h;
  h.start_run({0, 0, 0});  // epoch 2
  TimePoint t0 = h.now;
  start(h, 1, 7, 300);
  h.advance(100ms);
  start(h, 2, 7, 300);  // peer 3 never starts it
  EXPECT_EQ(h.m.next_deadline(), t0 + 300ms);  // from the FIRST start
  h.advance(200ms - 1ms);
  h.tick();
  EXPECT_EQ(h.lines(), Lines{});
  h.advance(1ms);
  h.tick();
  EXPECT_EQ(h.lines(), (Lines{
                           "1 <- OpResult{tag=7 seq=0 e=2 Timeout} @2",
                           "2 <- OpResult{tag=7 seq=0 e=2 Timeout} @2",
                           "3 <- OpResult{tag=7 seq=0 e=2 Timeout} @2",
                           "1 <- Membership{ge=3 world=3 group=3 groups=1 largest=3 ring=[1,2,3]} @3",
                           "2 <- Membership{ge=3 world=3 group=3 groups=1 largest=3 ring=[1,2,3]} @3",
                           "3 <- Membership{ge=3 world=3 group=3 groups=1 largest=3 ring=[1,2,3]} @3",
                       }));
  EXPECT_EQ(h.m.ring(0).size(), 3u);
  // Well past the straggler deadline (vote timeout 3 s): the op is gone, nobody is kicked.
  h.advance(4s);
  for (PeerId p : {1, 2, 3}) h.heartbeat(p);
  h.tick();
  EXPECT_EQ(h.lines(), Lines{});
  // The late member's start, in the old epoch, is answered as stale; its peer fails the call
  // with kTimeout already (it remembered the abort, core/op_engine.cpp).
  start(h, 3, 7, 300);
  EXPECT_EQ(h.lines(), (Lines{"3 <- OpResult{tag=7 seq=0 e=2 PeerLost} @3"}));
}

TEST(MembershipOpDeadline, TheSmallestTimeoutAnyStarterGaveWins) {
  Harness h;
  h.start_run({0, 0, 0});
  TimePoint t0 = h.now;
  start(h, 1, 7, 1000);
  h.advance(50ms);
  start(h, 2, 7, 0);  // no deadline of its own: does not lift the others'
  EXPECT_EQ(h.m.next_deadline(), t0 + 1000ms);
  start(h, 3, 7, 200);
  EXPECT_EQ(h.m.next_deadline(), t0 + 200ms);
  h.advance(150ms);
  h.tick();
  EXPECT_EQ(h.lines().size(), 6u);  // 3 x OpResult Timeout, 3 x Membership
}

TEST(MembershipOpDeadline, WithoutATimeoutOnlyTheStragglerDeadlineApplies) {
  Harness h;
  h.start_run({0, 0});
  TimePoint t0 = h.now;
  start(h, 1, 7, 0);
  start(h, 2, 7, 0);
  EXPECT_EQ(h.m.next_deadline(), t0 + 10s);  // heartbeats only: every member started it
}

TEST(MembershipOpDeadline, AnOpCommittedInTimeIsNotAborted) {
  Harness h;
  h.start_run({0, 0});
  start(h, 1, 7, 300);
  start(h, 2, 7, 300);
  h.op_done(1, 7, 0, 2);
  h.advance(100ms);
  h.op_done(2, 7, 0, 2);
  EXPECT_EQ(h.lines(), (Lines{
                           "1 <- OpResult{tag=7 seq=0 e=2 Ok world=2} @2",
                           "2 <- OpResult{tag=7 seq=0 e=2 Ok world=2} @2",
                       }));
  h.advance(1s);
  h.tick();
  EXPECT_EQ(h.lines(), Lines{});
}

TEST(MembershipOpDeadline, OnlyTheLateOpTimesOutTheGroupsOthersFailWithPeerLost) {
  Harness h;
  h.start_run({0, 0});
  start(h, 1, 7, 300);
  h.send(1, wire::C2MOpStart{8, 0, 2, 0x5eed, 0});
  h.advance(300ms);
  h.tick();
  Lines l = h.lines();
  ASSERT_EQ(l.size(), 6u);
  EXPECT_EQ(l[0], "1 <- OpResult{tag=7 seq=0 e=2 Timeout} @2");
  EXPECT_EQ(l[2], "1 <- OpResult{tag=8 seq=0 e=2 PeerLost} @2");
}

}  // namespace
}  // namespace qccl::master
