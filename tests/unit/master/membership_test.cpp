// Membership: admission, votes, peer groups, leaves, the first-peer rule, protocol errors.
// (Deadlines: membership_timeout_test.cpp; collectives: membership_collectives_test.cpp.)
#include "master/membership.hpp"

#include <gtest/gtest.h>

#include "membership_test_util.hpp"
#include "support/watchdog.hpp"

QCCL_TEST_WATCHDOG(60);

namespace qccl::master {
namespace {

using testing::Harness;
using testing::Lines;
using wire::VoteKind;
using namespace std::chrono_literals;

// ---------------------------------------------------------------- admission

TEST(MembershipAdmission, FirstPeerIsAdmittedAtOnce) {
  Harness h;
  PeerId a = h.reg(0);
  EXPECT_EQ(a, 1u);
  EXPECT_EQ(h.lines(), (Lines{
                           "1 <- Welcome{id=1 hb=1000 timeout=10000} @0",
                           "1 <- Membership{ge=1 world=1 group=1 groups=1 largest=1 ring=[1]} @1",
                       }));
  EXPECT_EQ(h.m.global_epoch(), 1u);
  EXPECT_EQ(h.m.num_accepted(), 1u);
  EXPECT_EQ(h.m.num_registered(), 0u);
  EXPECT_EQ(h.m.ring(0), std::vector<PeerId>{1});
  EXPECT_EQ(h.m.group_epoch(0), 1u);
  EXPECT_EQ(h.m.group_epoch(1), std::nullopt);
  EXPECT_TRUE(h.m.ring(1).empty());
}

TEST(MembershipAdmission, RingCarriesObservedOrAdvertisedHostAndPort) {
  Harness h;
  h.reg(0);               // observed host h1, port 7001
  h.reg(0, "192.0.2.7");  // advertised host wins over observed h2; port 7002
  h.take();
  h.vote(1);
  Outbox out = h.take();
  ASSERT_FALSE(out.sends.empty());
  const auto* mem = std::get_if<wire::M2CMembership>(&out.sends[0].message);
  ASSERT_NE(mem, nullptr);
  ASSERT_EQ(mem->ring.size(), 2u);
  EXPECT_EQ(mem->ring[0].id, 1u);
  EXPECT_EQ(mem->ring[0].host, "h1");
  EXPECT_EQ(mem->ring[0].port, 7001);
  EXPECT_EQ(mem->ring[1].id, 2u);
  EXPECT_EQ(mem->ring[1].host, "192.0.2.7");
  EXPECT_EQ(mem->ring[1].port, 7002);
}

TEST(MembershipAdmission, LaterPeerWaitsForUpdateTopologyVoteOfAllAccepted) {
  Harness h;
  h.start_run({0});
  PeerId b = h.reg(0);
  EXPECT_EQ(b, 2u);
  EXPECT_EQ(h.lines(), (Lines{"2 <- Welcome{id=2 hb=1000 timeout=10000} @1"}));
  EXPECT_EQ(h.m.num_registered(), 1u);
  EXPECT_EQ(h.m.num_accepted(), 1u);
  h.heartbeat(b);  // a registered peer may heartbeat; nothing happens
  EXPECT_EQ(h.lines(), Lines{});

  // The only accepted peer votes: peer 2 joins; the voter hears the vote result last.
  h.vote(1);
  EXPECT_EQ(h.lines(), (Lines{
                           "1 <- Membership{ge=2 world=2 group=2 groups=1 largest=2 ring=[1,2]} @2",
                           "2 <- Membership{ge=2 world=2 group=2 groups=1 largest=2 ring=[1,2]} @2",
                           "1 <- VoteResult{UpdateTopology pending=1} @2",
                       }));
  EXPECT_EQ(h.m.global_epoch(), 2u);
  EXPECT_EQ(h.m.ring(0), (std::vector<PeerId>{1, 2}));
  EXPECT_EQ(h.m.num_registered(), 0u);

  // Now two accepted peers: a third registered peer needs both votes.
  h.reg(0);
  h.take();
  h.vote(1);
  EXPECT_EQ(h.lines(), Lines{});
  EXPECT_EQ(h.m.num_registered(), 1u);
  EXPECT_EQ(h.m.global_epoch(), 2u);
  h.vote(2);
  EXPECT_EQ(h.lines(),
            (Lines{
                "1 <- Membership{ge=3 world=3 group=3 groups=1 largest=3 ring=[1,2,3]} @3",
                "2 <- Membership{ge=3 world=3 group=3 groups=1 largest=3 ring=[1,2,3]} @3",
                "3 <- Membership{ge=3 world=3 group=3 groups=1 largest=3 ring=[1,2,3]} @3",
                "1 <- VoteResult{UpdateTopology pending=1} @3",
                "2 <- VoteResult{UpdateTopology pending=1} @3",
            }));
  EXPECT_EQ(h.m.global_epoch(), 3u);
  EXPECT_EQ(h.m.group_epoch(0), 3u);
  EXPECT_EQ(h.m.num_accepted(), 3u);
}

TEST(MembershipAdmission, UpdateTopologyWithNobodyPendingChangesNothing) {
  Harness h;
  h.start_run({0, 0});
  ASSERT_EQ(h.m.global_epoch(), 2u);
  h.vote(2);
  EXPECT_EQ(h.lines(), Lines{});
  h.vote(1);
  EXPECT_EQ(h.lines(), (Lines{
                           "1 <- VoteResult{UpdateTopology pending=0} @2",
                           "2 <- VoteResult{UpdateTopology pending=0} @2",
                       }));
  EXPECT_EQ(h.m.global_epoch(), 2u);
  EXPECT_EQ(h.m.group_epoch(0), 2u);
  // A new round can start after the previous one completed.
  h.vote(1);
  h.vote(2);
  EXPECT_EQ(h.lines().size(), 2u);
}

TEST(MembershipAdmission, PeersPendingVoteAnswersAllOnlyAfterAllVoted) {
  Harness h;
  h.start_run({0, 0, 0});
  h.vote(1, VoteKind::kPeersPending);
  h.vote(3, VoteKind::kPeersPending);
  EXPECT_EQ(h.lines(), Lines{});
  h.vote(2, VoteKind::kPeersPending);
  EXPECT_EQ(h.lines(), (Lines{
                           "1 <- VoteResult{PeersPending pending=0} @2",
                           "2 <- VoteResult{PeersPending pending=0} @2",
                           "3 <- VoteResult{PeersPending pending=0} @2",
                       }));

  h.reg(0);
  h.take();
  h.vote(2, VoteKind::kPeersPending);
  h.vote(1, VoteKind::kPeersPending);
  EXPECT_EQ(h.lines(), Lines{});
  h.vote(3, VoteKind::kPeersPending);
  EXPECT_EQ(h.lines(), (Lines{
                           "1 <- VoteResult{PeersPending pending=1} @2",
                           "2 <- VoteResult{PeersPending pending=1} @2",
                           "3 <- VoteResult{PeersPending pending=1} @2",
                       }));
  // Asking does not admit.
  EXPECT_EQ(h.m.num_registered(), 1u);
  EXPECT_EQ(h.m.num_accepted(), 3u);
  EXPECT_EQ(h.m.global_epoch(), 2u);
}

TEST(MembershipAdmission, IdsAreNeverReused) {
  Harness h;
  h.start_run({0, 0});
  h.leave(2);
  h.disconnect(1);
  EXPECT_EQ(h.reg(0), 3u);
  EXPECT_FALSE(h.m.is_known(1));
  EXPECT_FALSE(h.m.is_known(2));
  EXPECT_TRUE(h.m.is_known(3));
}

// ---------------------------------------------------------------- peer groups

TEST(MembershipGroups, RingsPerGroupAndGlobalVersusGroupCounts) {
  Harness h;
  h.reg(0);  // 1, admitted at once
  h.reg(1);  // 2
  h.reg(0);  // 3
  h.reg(1);  // 4
  h.reg(2);  // 5
  h.reg(1);  // 6
  h.take();
  h.vote(1);
  EXPECT_EQ(h.lines(),
            (Lines{
                "1 <- Membership{ge=2 world=6 group=2 groups=3 largest=3 ring=[1,3]} @2",
                "3 <- Membership{ge=2 world=6 group=2 groups=3 largest=3 ring=[1,3]} @2",
                "2 <- Membership{ge=2 world=6 group=3 groups=3 largest=3 ring=[2,4,6]} @2",
                "4 <- Membership{ge=2 world=6 group=3 groups=3 largest=3 ring=[2,4,6]} @2",
                "6 <- Membership{ge=2 world=6 group=3 groups=3 largest=3 ring=[2,4,6]} @2",
                "5 <- Membership{ge=2 world=6 group=1 groups=3 largest=3 ring=[5]} @2",
                "1 <- VoteResult{UpdateTopology pending=1} @2",
            }));
  EXPECT_EQ(h.m.ring(0), (std::vector<PeerId>{1, 3}));
  EXPECT_EQ(h.m.ring(1), (std::vector<PeerId>{2, 4, 6}));
  EXPECT_EQ(h.m.ring(2), (std::vector<PeerId>{5}));
  EXPECT_EQ(h.m.num_accepted(), 6u);
  for (GroupId g : {0u, 1u, 2u}) EXPECT_EQ(h.m.group_epoch(g), 2u) << "group " << g;
}

TEST(MembershipGroups, AcceptVoteIsGlobalAndOtherGroupsKeepTheirEpoch) {
  Harness h;
  h.start_run({0, 1, 0, 1});  // group 0: [1,3], group 1: [2,4], epoch 2
  h.reg(1);                   // 5 wants to join group 1
  h.take();
  // All of group 1 agreeing is not enough: the vote spans every accepted peer.
  h.vote(2);
  h.vote(4);
  h.vote(1);
  EXPECT_EQ(h.lines(), Lines{});
  EXPECT_EQ(h.m.num_registered(), 1u);
  h.vote(3);
  EXPECT_EQ(h.lines(),
            (Lines{
                "1 <- Membership{ge=2 world=5 group=2 groups=2 largest=3 ring=[1,3]} @3",
                "3 <- Membership{ge=2 world=5 group=2 groups=2 largest=3 ring=[1,3]} @3",
                "2 <- Membership{ge=3 world=5 group=3 groups=2 largest=3 ring=[2,4,5]} @3",
                "4 <- Membership{ge=3 world=5 group=3 groups=2 largest=3 ring=[2,4,5]} @3",
                "5 <- Membership{ge=3 world=5 group=3 groups=2 largest=3 ring=[2,4,5]} @3",
                "1 <- VoteResult{UpdateTopology pending=1} @3",
                "2 <- VoteResult{UpdateTopology pending=1} @3",
                "3 <- VoteResult{UpdateTopology pending=1} @3",
                "4 <- VoteResult{UpdateTopology pending=1} @3",
            }));
  EXPECT_EQ(h.m.global_epoch(), 3u);
  EXPECT_EQ(h.m.group_epoch(0), 2u);
  EXPECT_EQ(h.m.group_epoch(1), 3u);

  // A departure from group 1 bumps group 1 only; group 0 hears the new global counts.
  h.leave(4);
  EXPECT_EQ(h.lines(), (Lines{
                           "1 <- Membership{ge=2 world=4 group=2 groups=2 largest=2 ring=[1,3]} @4",
                           "3 <- Membership{ge=2 world=4 group=2 groups=2 largest=2 ring=[1,3]} @4",
                           "2 <- Membership{ge=4 world=4 group=2 groups=2 largest=2 ring=[2,5]} @4",
                           "5 <- Membership{ge=4 world=4 group=2 groups=2 largest=2 ring=[2,5]} @4",
                           "close 4",
                       }));
  EXPECT_EQ(h.m.group_epoch(0), 2u);
  EXPECT_EQ(h.m.group_epoch(1), 4u);
}

TEST(MembershipGroups, EmptiedGroupDisappears) {
  Harness h;
  h.start_run({0, 1, 0});  // group 0: [1,3], group 1: [2]
  h.disconnect(2);
  EXPECT_EQ(h.lines(), (Lines{
                           "1 <- Membership{ge=2 world=2 group=2 groups=1 largest=2 ring=[1,3]} @3",
                           "3 <- Membership{ge=2 world=2 group=2 groups=1 largest=2 ring=[1,3]} @3",
                       }));
  EXPECT_EQ(h.m.global_epoch(), 3u);
  EXPECT_EQ(h.m.group_epoch(1), std::nullopt);
  EXPECT_TRUE(h.m.ring(1).empty());
  EXPECT_EQ(h.m.group_epoch(0), 2u);
}

// ---------------------------------------------------------------- leave / disconnect

TEST(MembershipLeave, LeaveRemovesPeerBumpsEpochAndSendsRingToSurvivors) {
  Harness h;
  h.start_run({0, 0, 0});
  h.leave(2);
  EXPECT_EQ(h.lines(), (Lines{
                           "1 <- Membership{ge=3 world=2 group=2 groups=1 largest=2 ring=[1,3]} @3",
                           "3 <- Membership{ge=3 world=2 group=2 groups=1 largest=2 ring=[1,3]} @3",
                           "close 2",
                       }));
  EXPECT_FALSE(h.m.is_known(2));
  EXPECT_EQ(h.m.global_epoch(), 3u);
  EXPECT_EQ(h.m.group_epoch(0), 3u);
  EXPECT_EQ(h.m.ring(0), (std::vector<PeerId>{1, 3}));
  // Anything later from the departed id is ignored.
  h.vote(2);
  h.disconnect(2);
  EXPECT_EQ(h.lines(), Lines{});
}

TEST(MembershipLeave, DisconnectRemovesPeerLikeLeaveWithoutClosing) {
  Harness h;
  h.start_run({0, 0, 0});
  h.disconnect(1, "eof");
  EXPECT_EQ(h.lines(), (Lines{
                           "2 <- Membership{ge=3 world=2 group=2 groups=1 largest=2 ring=[2,3]} @3",
                           "3 <- Membership{ge=3 world=2 group=2 groups=1 largest=2 ring=[2,3]} @3",
                       }));
  EXPECT_FALSE(h.m.is_known(1));
  EXPECT_EQ(h.m.num_accepted(), 2u);
  h.disconnect(42);  // unknown id: ignored
  EXPECT_EQ(h.lines(), Lines{});
  EXPECT_EQ(h.m.global_epoch(), 3u);
}

TEST(MembershipLeave, RegisteredPeerLeavingChangesNoEpoch) {
  Harness h;
  h.start_run({0, 0});
  PeerId c = h.reg(0);
  PeerId d = h.reg(0);
  h.take();
  h.leave(c);
  h.disconnect(d);
  EXPECT_EQ(h.lines(), Lines{"close 3"});
  EXPECT_EQ(h.m.num_registered(), 0u);
  EXPECT_EQ(h.m.global_epoch(), 2u);
  // Nobody pending any more.
  h.vote(1);
  h.vote(2);
  EXPECT_EQ(h.lines(), (Lines{
                           "1 <- VoteResult{UpdateTopology pending=0} @2",
                           "2 <- VoteResult{UpdateTopology pending=0} @2",
                       }));
}

TEST(MembershipLeave, DepartureCompletesVoteThatOnlyWaitedForTheDeparted) {
  Harness h;
  h.start_run({0, 0, 0});
  h.reg(0);  // 4, pending
  h.take();
  h.vote(1);
  h.vote(2);
  EXPECT_EQ(h.lines(), Lines{});
  h.disconnect(3);
  EXPECT_EQ(h.lines(),
            (Lines{
                "1 <- Membership{ge=3 world=2 group=2 groups=1 largest=2 ring=[1,2]} @3",
                "2 <- Membership{ge=3 world=2 group=2 groups=1 largest=2 ring=[1,2]} @3",
                "1 <- Membership{ge=4 world=3 group=3 groups=1 largest=3 ring=[1,2,4]} @4",
                "2 <- Membership{ge=4 world=3 group=3 groups=1 largest=3 ring=[1,2,4]} @4",
                "4 <- Membership{ge=4 world=3 group=3 groups=1 largest=3 ring=[1,2,4]} @4",
                "1 <- VoteResult{UpdateTopology pending=1} @4",
                "2 <- VoteResult{UpdateTopology pending=1} @4",
            }));
  EXPECT_EQ(h.m.global_epoch(), 4u);
}

TEST(MembershipLeave, LeaveCompletesPeersPendingVote) {
  Harness h;
  h.start_run({0, 0});
  h.vote(2, VoteKind::kPeersPending);
  h.leave(1);
  EXPECT_EQ(h.lines(), (Lines{
                           "2 <- Membership{ge=3 world=1 group=1 groups=1 largest=1 ring=[2]} @3",
                           "2 <- VoteResult{PeersPending pending=0} @3",
                           "close 1",
                       }));
}

// ---------------------------------------------------------------- first-peer rule

TEST(MembershipFirstPeer, RegisteredPeersAreAdmittedWhenAcceptedSetEmpties) {
  Harness h;
  h.start_run({0, 0});
  h.reg(1);  // 3, pending in another group
  h.reg(0);  // 4, pending
  h.take();
  h.leave(1);
  EXPECT_EQ(h.lines(), (Lines{
                           "2 <- Membership{ge=3 world=1 group=1 groups=1 largest=1 ring=[2]} @3",
                           "close 1",
                       }));
  EXPECT_EQ(h.m.num_registered(), 2u);
  h.disconnect(2);
  // Group 0 empties (epoch 4), then both pending peers are admitted at once (epoch 5).
  EXPECT_EQ(h.lines(), (Lines{
                           "4 <- Membership{ge=5 world=2 group=1 groups=2 largest=1 ring=[4]} @5",
                           "3 <- Membership{ge=5 world=2 group=1 groups=2 largest=1 ring=[3]} @5",
                       }));
  EXPECT_EQ(h.m.global_epoch(), 5u);
  EXPECT_EQ(h.m.num_accepted(), 2u);
  EXPECT_EQ(h.m.num_registered(), 0u);
  EXPECT_EQ(h.m.ring(0), std::vector<PeerId>{4});
  EXPECT_EQ(h.m.ring(1), std::vector<PeerId>{3});
}

TEST(MembershipFirstPeer, NewRunIsNotHauntedByAVoteOfThePreviousOne) {
  Harness h;
  h.start_run({0, 0});
  h.reg(0);  // 3, pending
  h.advance(1s);
  h.vote(1);  // round opened; peer 2 never votes
  h.leave(1);
  h.leave(2);
  h.take();
  ASSERT_EQ(h.m.ring(0), std::vector<PeerId>{3});  // admitted as the first peer of a new run
  // Peer 3 stays alive well past the old round's deadline and must not be expelled for a
  // vote cast before it was admitted by peers who are all gone.
  for (int i = 0; i < 6; ++i) {
    h.advance(1s);
    h.heartbeat(3);
    h.tick();
  }
  Lines got = h.lines();
  EXPECT_TRUE(h.m.is_known(3));
  EXPECT_EQ(h.m.next_deadline(), h.now + 10s);
}

// ---------------------------------------------------------------- protocol errors

TEST(MembershipProtocol, VoteFromRegisteredPeerIsAProtocolError) {
  Harness h;
  h.start_run({0});
  PeerId b = h.reg(0);
  h.take();
  h.vote(b);
  EXPECT_EQ(h.lines(), (Lines{"2 <- Kicked{ProtocolError} @1", "close 2"}));
  EXPECT_FALSE(h.m.is_known(b));
  EXPECT_EQ(h.m.global_epoch(), 1u);
}

TEST(MembershipProtocol, OpFromRegisteredPeerIsAProtocolError) {
  Harness h;
  h.start_run({0});
  PeerId b = h.reg(0);
  PeerId c = h.reg(0);
  h.take();
  h.op_start(b, 1, 0, 1);
  h.op_done(c, 1, 0, 1);
  EXPECT_EQ(h.lines(), (Lines{
                           "2 <- Kicked{ProtocolError} @1",
                           "3 <- Kicked{ProtocolError} @1",
                           "close 2",
                           "close 3",
                       }));
  EXPECT_EQ(h.m.num_registered(), 0u);
}

TEST(MembershipProtocol, DoubleVoteIsKicked) {
  Harness h;
  h.start_run({0, 0});
  h.vote(1);
  h.vote(1);
  EXPECT_EQ(h.lines(), (Lines{
                           "1 <- Kicked{ProtocolError} @2",
                           "2 <- Membership{ge=3 world=1 group=1 groups=1 largest=1 ring=[2]} @3",
                           "close 1",
                       }));
  EXPECT_FALSE(h.m.is_known(1));
}

TEST(MembershipProtocol, SecondRegisterIsADuplicate) {
  Harness h;
  h.start_run({0, 0});
  h.send(2, wire::C2MRegister{0, 9000, ""});
  EXPECT_EQ(h.lines(), (Lines{
                           "2 <- Kicked{Duplicate} @2",
                           "1 <- Membership{ge=3 world=1 group=1 groups=1 largest=1 ring=[1]} @3",
                           "close 2",
                       }));
  // Also from a peer still waiting for admission.
  PeerId c = h.reg(0);
  h.take();
  h.send(c, wire::C2MRegister{0, 9000, ""});
  EXPECT_EQ(h.lines(), (Lines{"3 <- Kicked{Duplicate} @3", "close 3"}));
}

TEST(MembershipProtocol, MasterToPeerMessageFromAPeerIsAProtocolError) {
  Harness h;
  h.start_run({0});
  h.send(1, wire::M2CHeartbeat{});
  EXPECT_EQ(h.lines(), (Lines{"1 <- Kicked{ProtocolError} @1", "close 1"}));
  EXPECT_EQ(h.m.num_accepted(), 0u);
}

}  // namespace
}  // namespace qccl::master
