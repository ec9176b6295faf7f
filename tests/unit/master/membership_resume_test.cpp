// Membership: resuming a run whose master was lost (C2MResume; membership_resume.cpp). A fresh
// master adopts the run of the first resume, waits for every member of the reported rings (at
// most peer_timeout), answers the ops the peers waited on, and sends the ring in a new epoch.
#include <gtest/gtest.h>

#include <variant>

#include "master/membership.hpp"
#include "membership_test_util.hpp"

namespace qccl::master {
namespace {

using testing::Harness;
using testing::Lines;
using testing::received_by;
using namespace std::chrono_literals;

constexpr uint64_t kRun = 0xABCD;
constexpr uint64_t kLostMaster = 0x1111;  // the master the peers lost (the harness's is 1)

// Peer `id` of group 0, whose lost master was generation 1 and whose ring at group epoch 9
// (global epoch 11) was `ring`; the master had handed out ids up to 7.
wire::C2MResume resume_of(PeerId id, std::vector<PeerId> ring = {5, 3, 7},
                          std::vector<wire::ResumeOp> ops = {}) {
  wire::C2MResume m;
  m.run_id = kRun;
  m.generation = 1;
  m.master_id = kLostMaster;
  m.peer_id = id;
  m.p2p_port = static_cast<uint16_t>(7000 + id);
  m.global_epoch = 11;
  m.group_epoch = 9;
  m.ring = std::move(ring);
  m.next_peer_id = 8;
  m.ops = std::move(ops);
  return m;
}

// The peer's resume: ok (is_ok()) or refused with reason and message.
struct Answer {
  std::variant<PeerId, Membership::Refusal> v;
  bool is_ok() const { return std::holds_alternative<PeerId>(v); }
  wire::KickReason reason() const { return std::get<Membership::Refusal>(v).reason; }
  const std::string& why() const { return std::get<Membership::Refusal>(v).why; }
};

Answer resume(Harness& h, const wire::C2MResume& m) {
  return {h.m.on_resume(m, fmt::format("h{}", m.peer_id), h.now, h.out)};
}

TEST(MembershipResume, AFreshMasterTakesTheRunOnceEveryRingMemberIsBack) {
  Harness h;
  ASSERT_TRUE(resume(h, resume_of(3)).is_ok());
  EXPECT_EQ(h.m.run_id(), kRun);
  EXPECT_EQ(h.m.generation(), 2u);
  EXPECT_TRUE(h.m.resuming());
  ASSERT_TRUE(resume(h, resume_of(7)).is_ok());
  // Welcomed with their own ids; no ring yet: peer 5 is not back.
  EXPECT_EQ(h.lines(), (Lines{"3 <- Welcome{id=3 hb=1000 timeout=10000} @11",
                              "7 <- Welcome{id=7 hb=1000 timeout=10000} @11"}));
  EXPECT_EQ(h.m.num_accepted(), 0u);
  ASSERT_TRUE(resume(h, resume_of(5)).is_ok());
  EXPECT_FALSE(h.m.resuming());
  // The ring in its old order, in an epoch above every old one.
  EXPECT_EQ(h.lines(),
            (Lines{"5 <- Welcome{id=5 hb=1000 timeout=10000} @11",
                   "5 <- Membership{ge=12 world=3 group=3 groups=1 largest=3 ring=[5,3,7]} @12",
                   "3 <- Membership{ge=12 world=3 group=3 groups=1 largest=3 ring=[5,3,7]} @12",
                   "7 <- Membership{ge=12 world=3 group=3 groups=1 largest=3 ring=[5,3,7]} @12"}));
  EXPECT_EQ(h.m.ring(0), (std::vector<PeerId>{5, 3, 7}));
  // Ids go on from where the lost master was: never reused.
  EXPECT_EQ(h.reg(), 8u);
}

TEST(MembershipResume, PeersNotBackWithinThePeerTimeoutAreLeftOut) {
  Harness h;
  ASSERT_TRUE(resume(h, resume_of(7)).is_ok());
  h.advance(5s);
  ASSERT_TRUE(resume(h, resume_of(5)).is_ok());
  h.take();
  EXPECT_EQ(h.m.next_deadline(), Harness::start_time() + 10s);
  h.heartbeat(7);
  h.heartbeat(5);
  h.advance(5s - 1ms);
  h.tick();
  EXPECT_EQ(h.lines(), Lines{});
  h.advance(1ms);
  h.tick();
  EXPECT_EQ(h.lines(),
            (Lines{"5 <- Membership{ge=12 world=2 group=2 groups=1 largest=2 ring=[5,7]} @12",
                   "7 <- Membership{ge=12 world=2 group=2 groups=1 largest=2 ring=[5,7]} @12"}));
  // Peer 3 comes back too late: refused for good, the run goes on without it.
  auto late = resume(h, resume_of(3));
  ASSERT_FALSE(late.is_ok());
  EXPECT_EQ(late.reason(), wire::KickReason::kNotResumed);
  EXPECT_NE(late.why().find("did not come back"), std::string::npos) << late.why();
}

TEST(MembershipResume, AnOpIsCommittedIfAnyMemberCommittedItElseItFailsForAll) {
  Harness h;
  // Peer 5 heard the commit of tag 1 seq 4 (and went on); 3 and 7 wait for it. Tag 2 seq 0:
  // 3 waits, nobody committed it (7 had not finished it).
  ASSERT_TRUE(resume(h, resume_of(5, {5, 3, 7}, {{1, 4, 9, true}})).is_ok());
  ASSERT_TRUE(resume(h, resume_of(3, {5, 3, 7}, {{1, 4, 9, false}, {2, 0, 9, false}})).is_ok());
  h.take();
  ASSERT_TRUE(resume(h, resume_of(7, {5, 3, 7}, {{1, 4, 9, false}})).is_ok());
  Outbox out = h.take();
  // Every member hears both verdicts, before the new ring.
  EXPECT_EQ(received_by(out, 3),
            (Lines{"OpResult{tag=1 seq=4 e=9 Ok world=3}", "OpResult{tag=2 seq=0 e=9 PeerLost}",
                   "Membership{ge=12 world=3 group=3 groups=1 largest=3 ring=[5,3,7]}"}));
  EXPECT_EQ(received_by(out, 5), received_by(out, 3));
  EXPECT_EQ(received_by(out, 7),
            (Lines{"Welcome{id=7 hb=1000 timeout=10000}", "OpResult{tag=1 seq=4 e=9 Ok world=3}",
                   "OpResult{tag=2 seq=0 e=9 PeerLost}",
                   "Membership{ge=12 world=3 group=3 groups=1 largest=3 ring=[5,3,7]}"}));
}

TEST(MembershipResume, AStaleOrForeignMasterRefuses) {
  // A master with a run of its own (it had a registration) refuses another run's resume.
  Harness own;
  own.start_run({0, 0});
  auto foreign = resume(own, resume_of(3));
  ASSERT_FALSE(foreign.is_ok());
  EXPECT_EQ(foreign.reason(), wire::KickReason::kWrongRun);  // another master may take it
  EXPECT_NE(foreign.why().find("not run"), std::string::npos);

  // The master that lost the run (generation 1 of it), resumed, refuses peers that followed a
  // newer master; so does a newer master for a peer of an older generation.
  MembershipConfig old_config = testing::test_config();
  old_config.run_id = kRun;
  Harness old(old_config);
  old.start_run({0, 0});
  wire::C2MResume from_gen2 = resume_of(1, {1, 2});
  from_gen2.generation = 2;
  auto stale = resume(old, from_gen2);
  ASSERT_FALSE(stale.is_ok());
  EXPECT_EQ(stale.reason(), wire::KickReason::kWrongRun);
  EXPECT_NE(stale.why().find("generation 1"), std::string::npos) << stale.why();
  // A peer that still follows this very master (its link broke, the master lives on): the run
  // goes on without it, it must join again.
  wire::C2MResume mine = resume_of(1, {1, 2});
  mine.master_id = old_config.master_id;
  auto alive = resume(old, mine);
  ASSERT_FALSE(alive.is_ok());
  EXPECT_EQ(alive.reason(), wire::KickReason::kNotResumed);

  // During its window a master takes the peers of any earlier master of the run (a master that
  // adopted the run and died before its window closed had welcomed some with its generation),
  // and stays above every generation they followed.
  Harness fresh;
  ASSERT_TRUE(resume(fresh, resume_of(5)).is_ok());
  EXPECT_EQ(fresh.m.generation(), 2u);
  wire::C2MResume ahead = resume_of(3);
  ahead.generation = 2;
  ahead.master_id = 0x2222;
  ASSERT_TRUE(resume(fresh, ahead).is_ok());
  EXPECT_EQ(fresh.m.generation(), 3u);
  // A second resume of the same peer is refused.
  EXPECT_EQ(resume(fresh, resume_of(5)).reason(), wire::KickReason::kNotResumed);
}

TEST(MembershipResume, ARegistrationDuringTheWindowWaitsForTheResumedRun) {
  Harness h;
  ASSERT_TRUE(resume(h, resume_of(3, {3, 5})).is_ok());
  PeerId newcomer = h.reg();
  EXPECT_EQ(newcomer, 8u);
  h.take();
  EXPECT_EQ(h.m.num_registered(), 1u);
  ASSERT_TRUE(resume(h, resume_of(5, {3, 5})).is_ok());
  Outbox out = h.take();
  EXPECT_EQ(received_by(out, newcomer), Lines{});  // not admitted: waits for a vote
  EXPECT_EQ(h.m.ring(0), (std::vector<PeerId>{3, 5}));
  h.vote(3);
  h.vote(5);
  EXPECT_EQ(h.m.ring(0), (std::vector<PeerId>{3, 5, 8}));
}

TEST(MembershipResume, AReportFromAResumedPeerDuringTheWindowIsDroppedNotPunished) {
  // A lane of the lost master's epoch broke while peer 3 waited for the ring: it reported
  // the ring failure before it knew better. The master drops it; nobody is expelled.
  Harness h;
  ASSERT_TRUE(resume(h, resume_of(3, {3, 5})).is_ok());
  h.take();
  h.op_done(3, ~0ull, 0, 9, StatusCode::kPeerLost, "lanes failed");
  EXPECT_EQ(h.lines(), Lines{});
  ASSERT_TRUE(resume(h, resume_of(5, {3, 5})).is_ok());
  EXPECT_EQ(h.m.ring(0), (std::vector<PeerId>{3, 5}));
}

TEST(MembershipResume, APeerThatLeavesDuringTheWindowIsNotWaitedFor) {
  Harness h;
  ASSERT_TRUE(resume(h, resume_of(3, {3, 5, 7})).is_ok());
  ASSERT_TRUE(resume(h, resume_of(5, {3, 5, 7})).is_ok());
  h.leave(5);
  h.take();
  ASSERT_TRUE(resume(h, resume_of(7, {3, 5, 7})).is_ok());
  EXPECT_EQ(h.m.ring(0), (std::vector<PeerId>{3, 7}));
  EXPECT_FALSE(h.m.resuming());
}

TEST(MembershipResume, APeerMissingFromTheNewestRingIsNotTakenBack) {
  // The lost master had expelled peer 3 (ring [5, 3, 7] at epoch 9 became [5, 7] at epoch 10)
  // and died before peer 3 heard of it: peer 3's report is older, and the run goes on without
  // it (its ops do not count either).
  Harness h;
  wire::C2MResume stale = resume_of(3, {5, 3, 7}, {{1, 4, 9, true}});
  ASSERT_TRUE(resume(h, stale).is_ok());
  wire::C2MResume five = resume_of(5, {5, 7}, {{1, 4, 9, false}});
  five.group_epoch = 10;
  ASSERT_TRUE(resume(h, five).is_ok());
  h.take();
  wire::C2MResume seven = resume_of(7, {5, 7}, {{1, 4, 9, false}});
  seven.group_epoch = 10;
  ASSERT_TRUE(resume(h, seven).is_ok());
  Outbox out = h.take();
  EXPECT_EQ(received_by(out, 3), Lines{"Kicked{NotResumed}"});
  EXPECT_EQ(received_by(out, 5),
            (Lines{"OpResult{tag=1 seq=4 e=9 PeerLost}",
                   "Membership{ge=12 world=2 group=2 groups=1 largest=2 ring=[5,7]}"}));
  EXPECT_EQ(h.m.ring(0), (std::vector<PeerId>{5, 7}));
}

// The lost master sent a vote's result to some voters only: peer 5 saw vote #4 complete
// (nothing pending) and went on; peers 3 and 7 wait for it (they saw #3 last). A vote that
// nobody saw complete goes on at the new master: its voters count as voted, and it completes
// when the others call it.
TEST(MembershipResume, AVoteSomePeersSawCompleteCompletesForTheOthers) {
  Harness h;
  wire::C2MResume five = resume_of(5);
  five.vote_round = 4;
  five.vote_pending = false;
  wire::C2MResume three = resume_of(3);
  three.vote_waiting = static_cast<uint8_t>(wire::VoteKind::kPeersPending);
  three.vote_round = 3;
  wire::C2MResume seven = three;
  seven.peer_id = 7;
  ASSERT_TRUE(resume(h, five).is_ok());
  ASSERT_TRUE(resume(h, three).is_ok());
  h.take();
  ASSERT_TRUE(resume(h, seven).is_ok());
  Outbox out = h.take();
  EXPECT_EQ(received_by(out, 3),
            (Lines{"Membership{ge=12 world=3 group=3 groups=1 largest=3 ring=[5,3,7]}",
                   "VoteResult{PeersPending pending=0}"}));
  EXPECT_EQ(received_by(out, 5),
            (Lines{"Membership{ge=12 world=3 group=3 groups=1 largest=3 ring=[5,3,7]}"}));

  Harness none;
  wire::C2MResume waiting = resume_of(3, {3, 5});
  waiting.vote_waiting = static_cast<uint8_t>(wire::VoteKind::kUpdateTopology);
  waiting.vote_round = 3;
  wire::C2MResume other = resume_of(5, {3, 5});
  other.vote_round = 3;  // it had not voted yet, or waits too: nobody saw #4
  ASSERT_TRUE(resume(none, waiting).is_ok());
  ASSERT_TRUE(resume(none, other).is_ok());
  EXPECT_EQ(received_by(none.take(), 3),
            (Lines{"Welcome{id=3 hb=1000 timeout=10000}",
                   "Membership{ge=12 world=2 group=2 groups=1 largest=2 ring=[3,5]}"}));
  none.vote(5);  // peer 5 calls it now: it completes for both
  Outbox done = none.take();
  EXPECT_EQ(received_by(done, 3), Lines{"VoteResult{UpdateTopology pending=0}"});
  EXPECT_EQ(received_by(done, 5), Lines{"VoteResult{UpdateTopology pending=0}"});
}

// The same for a shared-state sync: peer 3's download of revision 8 is done and it waits for
// the result, which peer 5 got (its last revision is 8); peer 7 waits on nothing.
TEST(MembershipResume, ASyncSomePeersSawCompleteCompletesForTheOthers) {
  Harness h;
  wire::C2MResume five = resume_of(5);
  five.has_revision = true;
  five.last_revision = 8;
  wire::C2MResume three = resume_of(3);
  three.has_revision = true;
  three.last_revision = 7;
  three.sync_waiting = true;
  three.sync_round = 6;
  three.sync_revision = 8;
  ASSERT_TRUE(resume(h, five).is_ok());
  ASSERT_TRUE(resume(h, three).is_ok());
  h.take();
  ASSERT_TRUE(resume(h, resume_of(7)).is_ok());
  Outbox out = h.take();
  std::vector<wire::M2CSyncResult> to_three;
  for (const auto& send : out.sends) {
    if (const auto* r = std::get_if<wire::M2CSyncResult>(&send.message)) {
      EXPECT_EQ(send.to, 3u);
      to_three.push_back(*r);
    }
  }
  ASSERT_EQ(to_three.size(), 1u);
  EXPECT_EQ(to_three[0].round, 6u);
  EXPECT_EQ(to_three[0].status, StatusCode::kOk);
  EXPECT_EQ(to_three[0].revision, 8u);

  // Nobody holds revision 8: the sync failed everywhere (retry).
  Harness none;
  three.peer_id = 3;
  ASSERT_TRUE(resume(none, three).is_ok());
  wire::C2MResume five7 = resume_of(5);
  five7.has_revision = true;
  five7.last_revision = 7;
  ASSERT_TRUE(resume(none, five7).is_ok());
  ASSERT_TRUE(resume(none, resume_of(7)).is_ok());
  bool failed = false;
  for (const auto& send : none.take().sends) {
    if (const auto* r = std::get_if<wire::M2CSyncResult>(&send.message)) {
      failed = send.to == 3 && r->round == 6 && r->status == StatusCode::kPeerLost;
    }
  }
  EXPECT_TRUE(failed);
}

TEST(MembershipResume, WithoutAQuorumOfTheRingNobodyIsResumed) {
  // One of three came back (the other two follow another master, or are gone): refused when
  // the window closes, and the master is fresh again.
  Harness h;
  ASSERT_TRUE(resume(h, resume_of(3)).is_ok());
  h.take();
  h.advance(10s);
  h.tick();
  EXPECT_EQ(h.lines(), (Lines{"3 <- Kicked{NotResumed} @12", "close 3"}));
  EXPECT_FALSE(h.m.resuming());
  EXPECT_EQ(h.m.num_accepted(), 0u);
  EXPECT_EQ(h.m.generation(), 1u);
  // Fresh: a later failover of another run is taken.
  wire::C2MResume other = resume_of(4, {4});
  other.run_id = 0x77;
  ASSERT_TRUE(resume(h, other).is_ok());
  EXPECT_EQ(h.m.run_id(), 0x77u);
  EXPECT_EQ(h.m.ring(0), (std::vector<PeerId>{4}));  // one of one is a quorum
}

TEST(MembershipResume, AStandbyStartsNoRunButTakesOneOver) {
  MembershipConfig config = testing::test_config();
  config.standby = true;
  Harness h(config);
  h.m.start(h.now, h.out);
  // A peer that could not reach the active master is sent to try again: no second run here.
  EXPECT_FALSE(h.m.accepts_registrations(h.now));
  h.advance(1h);
  EXPECT_FALSE(h.m.accepts_registrations(h.now));
  ASSERT_TRUE(resume(h, resume_of(3, {3, 5})).is_ok());
  EXPECT_TRUE(h.m.accepts_registrations(h.now));  // it leads the run now: newcomers wait
  PeerId newcomer = h.reg();
  ASSERT_TRUE(resume(h, resume_of(5, {3, 5})).is_ok());
  EXPECT_EQ(h.m.ring(0), (std::vector<PeerId>{3, 5}));
  EXPECT_EQ(newcomer, 8u);  // after the run's ids
  h.vote(3);
  h.vote(5);
  EXPECT_EQ(h.m.ring(0), (std::vector<PeerId>{3, 5, 8}));
}

TEST(MembershipResume, WithinTheResumeGraceNoRunIsStarted) {
  // A master restarted on the old address: a newcomer must not start a run of its own before
  // the old run's peers resume (they would be refused as another run, and it could take one
  // of their ids).
  MembershipConfig config = testing::test_config();
  config.resume_grace = 1s;
  Harness h(config);
  h.m.start(h.now, h.out);
  EXPECT_FALSE(h.m.accepts_registrations(h.now));
  ASSERT_TRUE(resume(h, resume_of(3, {3, 5})).is_ok());
  EXPECT_TRUE(h.m.accepts_registrations(h.now));
  ASSERT_TRUE(resume(h, resume_of(5, {3, 5})).is_ok());
  EXPECT_EQ(h.m.ring(0), (std::vector<PeerId>{3, 5}));

  // Nobody resumes: after the grace the first registration starts a run, as on any master.
  Harness alone(config);
  alone.m.start(alone.now, alone.out);
  alone.advance(1s - 1ms);
  EXPECT_FALSE(alone.m.accepts_registrations(alone.now));
  alone.advance(1ms);
  ASSERT_TRUE(alone.m.accepts_registrations(alone.now));
  PeerId first = alone.reg();
  EXPECT_EQ(alone.m.ring(0), (std::vector<PeerId>{first}));
}

// A peer's prober keeps the measurements of the newest probe round it saw and refuses probe
// connections of older rounds: a resumed master must not number its rounds from 1 again (its
// first round would be refused as older than the lost master's last one, or be answered with
// that round's measurements), so generation g numbers them from g * 2^32 + 1.
TEST(MembershipResume, ProbeRoundsGoOnAboveThoseOfEarlierGenerations) {
  Harness h;
  ASSERT_TRUE(resume(h, resume_of(3, {3, 5})).is_ok());
  ASSERT_TRUE(resume(h, resume_of(5, {3, 5})).is_ok());
  h.take();
  h.vote(3, wire::VoteKind::kOptimizeTopology);
  h.vote(5, wire::VoteKind::kOptimizeTopology);
  EXPECT_EQ(h.lines(), (Lines{
      "3 <- ProbePlan{round=8589934593 window=250 slot=475 to=[0:5] from=[1:5]} @12",
      "5 <- ProbePlan{round=8589934593 window=250 slot=475 to=[1:3] from=[0:3]} @12",
  }));
}

}  // namespace
}  // namespace qccl::master
