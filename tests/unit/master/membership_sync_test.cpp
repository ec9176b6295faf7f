// Membership: shared-state sync rounds (membership_sync.cpp). Every case asserts the exact
// Outbox: who gets which M2CSyncPlan / M2CSyncResult (round, status, revision, fetch entries,
// donors with host and port), kicks with their reason, closes, and log lines where they say
// something the messages do not. The election rules themselves are state_election_test.cpp.
#include <chrono>
#include <string>
#include <type_traits>
#include <variant>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <gtest/gtest.h>

#include "master/membership.hpp"
#include "membership_test_util.hpp"
#include "support/watchdog.hpp"

QCCL_TEST_WATCHDOG(60);

namespace qccl::master {
namespace {

using testing::Lines;
using wire::KickReason;
using wire::SyncStrategy;
using wire::VoteKind;
using namespace std::chrono_literals;

// Every vote lists the same three keys (sorted by name): "a" and "b" are compared, "step" is
// allow_inequality (its hash is never compared nor fetched). Hashes are small numbers here.
constexpr uint64_t kA = 0xa;  // the usual hash of "a"
constexpr uint64_t kB = 0xb;  // the usual hash of "b"
constexpr uint8_t kDtype = 10;

std::string fetch_text(const std::vector<wire::FetchEntry>& fetch) {
  std::vector<std::string> parts;
  for (const auto& f : fetch) parts.push_back(fmt::format("{}:{:#x}", f.entry, f.hash));
  return fmt::format("[{}]", fmt::join(parts, ","));
}

std::string donors_text(const std::vector<wire::StateDonor>& donors) {
  std::vector<std::string> parts;
  for (const auto& d : donors) parts.push_back(fmt::format("{}@{}:{}", d.id, d.host, d.port));
  return fmt::format("[{}]", fmt::join(parts, ","));
}

// The shared harness renders everything but the sync messages; those are rendered here with
// every field except the free-text message (checked separately where it matters).
std::string describe(const wire::ControlMessage& msg) {
  if (const auto* p = std::get_if<wire::M2CSyncPlan>(&msg)) {
    return fmt::format("SyncPlan{{round={} {} rev={} fetch={} donors={}}}", p->round,
                       status_code_name(p->status), p->revision, fetch_text(p->fetch),
                       donors_text(p->donors));
  }
  if (const auto* r = std::get_if<wire::M2CSyncResult>(&msg)) {
    return fmt::format("SyncResult{{round={} {} rev={}}}", r->round, status_code_name(r->status),
                       r->revision);
  }
  return testing::describe(msg);
}

Lines render(const Outbox& out) {
  Lines lines;
  for (const auto& s : out.sends) {
    lines.push_back(fmt::format("{} <- {} @{}", s.to, describe(s.message), s.epoch));
  }
  for (PeerId id : out.disconnects) lines.push_back(fmt::format("close {}", id));
  return lines;
}

// The free-text message of every sync plan/result/kick in the outbox, as "to: text".
Lines messages(const Outbox& out) {
  Lines lines;
  for (const auto& s : out.sends) {
    std::visit(
        [&](const auto& m) {
          using T = std::decay_t<decltype(m)>;
          if constexpr (std::is_same_v<T, wire::M2CSyncPlan> ||
                        std::is_same_v<T, wire::M2CSyncResult>) {
            lines.push_back(fmt::format("{}: {}", s.to, m.message));
          } else if constexpr (std::is_same_v<T, wire::M2CKicked>) {
            lines.push_back(fmt::format("{}: {}", s.to, m.message));
          }
        },
        s.message);
  }
  return lines;
}

class SyncHarness : public testing::Harness {
 public:
  // Sends C2MSyncState: revision, hashes of "a" and "b", strategy. `step` is the hash of the
  // allow_inequality entry, which differs between peers without consequence.
  void sync(PeerId p, uint64_t revision, uint64_t a = kA, uint64_t b = kB,
            SyncStrategy strategy = SyncStrategy::kEnforcePopular, uint64_t step = 0) {
    wire::C2MSyncState s;
    s.revision = revision;
    s.strategy = strategy;
    s.entries = {
        wire::StateEntry{"a", kDtype, 4, a, false},
        wire::StateEntry{"b", kDtype, 8, b, false},
        wire::StateEntry{"step", kDtype, 1, step, true},
    };
    send(p, s);
  }
  void done(PeerId p, uint64_t round, StatusCode status = StatusCode::kOk,
            std::string message = "") {
    send(p, wire::C2MSyncDone{round, status, std::move(message)});
  }

  // Hands over the outbox rendered; keeps its log and message texts for a look afterwards.
  Lines lines() {
    Outbox o = take();
    log = o.log;
    texts = messages(o);
    return render(o);
  }

  Lines log;    // of the last lines()
  Lines texts;  // of the last lines()
};

std::string plan_ok(PeerId to, uint64_t round, uint64_t rev, Epoch e) {
  return fmt::format("{} <- SyncPlan{{round={} Ok rev={} fetch=[] donors=[]}} @{}", to, round, rev,
                     e);
}
std::string result(PeerId to, uint64_t round, const char* status, uint64_t rev, Epoch e) {
  return fmt::format("{} <- SyncResult{{round={} {} rev={}}} @{}", to, round, status, rev, e);
}

// Peers 1..3 (group 0) vote revision `rev` with identical content; asserts plans and results
// for round `round` at frame epoch `e`.
void expect_trivial_round(SyncHarness& h, const std::vector<PeerId>& ids, uint64_t round,
                          uint64_t rev, Epoch e) {
  for (size_t i = 0; i + 1 < ids.size(); ++i) h.sync(ids[i], rev);
  EXPECT_EQ(h.lines(), Lines{});
  h.sync(ids.back(), rev);
  Lines want;
  for (PeerId id : ids) want.push_back(plan_ok(id, round, rev, e));
  for (PeerId id : ids) want.push_back(result(id, round, "Ok", rev, e));
  EXPECT_EQ(h.lines(), want);
}

// ---------------------------------------------------------------- the happy path

TEST(MembershipSync, IdenticalVotersGetEmptyPlansAndOkResultsAtOnce) {
  SyncHarness h;
  TimePoint t0 = h.now;
  h.start_run({0, 0, 0});
  ASSERT_EQ(h.m.global_epoch(), 2u);

  h.sync(1, 5);
  h.sync(2, 5, kA, kB, SyncStrategy::kEnforcePopular, 77);  // allow_inequality hash differs
  EXPECT_EQ(h.lines(), Lines{});
  EXPECT_EQ(h.m.next_deadline(), t0 + 3s);  // the round's vote deadline
  h.sync(3, 5, kA, kB, SyncStrategy::kEnforcePopular, 99);
  EXPECT_EQ(h.lines(), (Lines{
                           plan_ok(1, 1, 5, 2),
                           plan_ok(2, 1, 5, 2),
                           plan_ok(3, 1, 5, 2),
                           result(1, 1, "Ok", 5, 2),
                           result(2, 1, "Ok", 5, 2),
                           result(3, 1, "Ok", 5, 2),
                       }));
  EXPECT_EQ(h.log, (Lines{"group 0 shared-state sync 1: revision 5, donors [1, 2, 3], "
                          "receivers []"}));
  EXPECT_EQ(h.m.next_deadline(), t0 + 10s);  // only heartbeats left
  EXPECT_EQ(h.m.global_epoch(), 2u);
  EXPECT_EQ(h.m.group_epoch(0), 2u);

  // Expected revision is now 6. A peer at 7 (elected + 2) fails the round for everyone, and
  // nothing changes: no kick, no epoch change, the group still expects 6.
  h.sync(1, 6);
  h.sync(2, 6);
  h.sync(3, 7);
  EXPECT_EQ(h.lines(), (Lines{
                           "1 <- SyncPlan{round=2 Mismatch rev=0 fetch=[] donors=[]} @2",
                           "2 <- SyncPlan{round=2 Mismatch rev=0 fetch=[] donors=[]} @2",
                           "3 <- SyncPlan{round=2 Mismatch rev=0 fetch=[] donors=[]} @2",
                       }));
  const std::string why =
      "peer 3 passed revision 7 but the group expects at most 6 (revisions advance by exactly "
      "one per sync)";
  EXPECT_EQ(h.texts, (Lines{"1: " + why, "2: " + why, "3: " + why}));
  EXPECT_EQ(h.log, (Lines{"group 0 shared-state sync 2 rejected: " + why}));
  EXPECT_EQ(h.m.global_epoch(), 2u);
  EXPECT_EQ(h.m.ring(0), (std::vector<PeerId>{1, 2, 3}));

  // Revision 6 (elected + 1) succeeds; then 7 does.
  expect_trivial_round(h, {1, 2, 3}, 3, 6, 2);
  expect_trivial_round(h, {1, 2, 3}, 4, 7, 2);
}

TEST(MembershipSync, AllAtPlusTwoIsRejectedAndNothingAdvances) {
  SyncHarness h;
  h.start_run({0, 0, 0});
  expect_trivial_round(h, {1, 2, 3}, 1, 5, 2);
  for (PeerId p : {1, 2, 3}) h.sync(p, 7);
  EXPECT_EQ(h.lines(), (Lines{
                           "1 <- SyncPlan{round=2 Mismatch rev=0 fetch=[] donors=[]} @2",
                           "2 <- SyncPlan{round=2 Mismatch rev=0 fetch=[] donors=[]} @2",
                           "3 <- SyncPlan{round=2 Mismatch rev=0 fetch=[] donors=[]} @2",
                       }));
  // Still 6: a second try at 7 is rejected too, 6 goes through.
  for (PeerId p : {1, 2, 3}) h.sync(p, 7);
  EXPECT_EQ(h.lines().size(), 3u);
  expect_trivial_round(h, {1, 2, 3}, 4, 6, 2);
}

// ---------------------------------------------------------------- receivers

TEST(MembershipSync, ReceiverGetsDonorsAndFetchAndResultWaitsForItsDone) {
  SyncHarness h;
  TimePoint t0 = h.now;
  h.start_run({0, 0, 0});
  h.sync(1, 5);
  h.sync(2, 5);
  h.sync(3, 5, kA, 0xbad, SyncStrategy::kEnforcePopular, 1234);  // differs on "b" only
  EXPECT_EQ(h.lines(),
            (Lines{
                plan_ok(1, 1, 5, 2),
                plan_ok(2, 1, 5, 2),
                "3 <- SyncPlan{round=1 Ok rev=5 fetch=[1:0xb] donors=[1@h1:7001,2@h2:7002]} @2",
            }));
  EXPECT_EQ(h.log, (Lines{"group 0 shared-state sync 1: revision 5, donors [1, 2], "
                          "receivers [3]"}));
  // Transferring: no vote deadline any more, only heartbeats.
  EXPECT_EQ(h.m.next_deadline(), t0 + 10s);

  // A donor reporting is not waited for and changes nothing.
  h.done(1, 1);
  EXPECT_EQ(h.lines(), Lines{});
  h.advance(1s);
  h.tick();
  EXPECT_EQ(h.lines(), Lines{});

  h.done(3, 1);
  EXPECT_EQ(h.lines(), (Lines{
                           result(1, 1, "Ok", 5, 2),
                           result(2, 1, "Ok", 5, 2),
                           result(3, 1, "Ok", 5, 2),
                       }));
  EXPECT_EQ(h.log, Lines{});
  // A late duplicate report of the ended round is ignored.
  h.done(3, 1);
  EXPECT_EQ(h.lines(), Lines{});
  // The expected revision advanced to 6.
  expect_trivial_round(h, {1, 2, 3}, 2, 6, 2);
}

TEST(MembershipSync, ReceiverFetchesEveryDifferingComparableEntry) {
  SyncHarness h;
  h.start_run({0, 0, 0, 0});
  h.sync(1, 5, 0x1, 0x2);
  h.sync(2, 5, 0x1, 0x2);
  h.sync(3, 5, 0x7, 0x8);  // differs on both
  h.sync(4, 5, 0x7, 0x2, SyncStrategy::kReceiveOnly);
  EXPECT_EQ(h.lines(),
            (Lines{
                plan_ok(1, 1, 5, 2),
                plan_ok(2, 1, 5, 2),
                "3 <- SyncPlan{round=1 Ok rev=5 fetch=[0:0x1,1:0x2] "
                "donors=[1@h1:7001,2@h2:7002]} @2",
                "4 <- SyncPlan{round=1 Ok rev=5 fetch=[0:0x1] donors=[1@h1:7001,2@h2:7002]} @2",
            }));
  h.done(4, 1);
  EXPECT_EQ(h.lines(), Lines{});
  h.done(3, 1);
  EXPECT_EQ(h.lines(), (Lines{
                           result(1, 1, "Ok", 5, 2),
                           result(2, 1, "Ok", 5, 2),
                           result(3, 1, "Ok", 5, 2),
                           result(4, 1, "Ok", 5, 2),
                       }));
}

TEST(MembershipSync, FailedDownloadFailsTheRoundForAllAndKeepsTheRevision) {
  SyncHarness h;
  h.start_run({0, 0, 0});
  expect_trivial_round(h, {1, 2, 3}, 1, 5, 2);  // expects 6 now

  h.sync(1, 6);
  h.sync(2, 6);
  h.sync(3, 6, kA, 0xbad);
  EXPECT_EQ(h.lines(),
            (Lines{
                plan_ok(1, 2, 6, 2),
                plan_ok(2, 2, 6, 2),
                "3 <- SyncPlan{round=2 Ok rev=6 fetch=[1:0xb] donors=[1@h1:7001,2@h2:7002]} @2",
            }));
  h.done(3, 2, StatusCode::kPeerLost, "every donor was lost");
  EXPECT_EQ(h.lines(), (Lines{
                           result(1, 2, "PeerLost", 6, 2),
                           result(2, 2, "PeerLost", 6, 2),
                           result(3, 2, "PeerLost", 6, 2),
                       }));
  const std::string why = "peer 3 could not download the shared state: every donor was lost";
  EXPECT_EQ(h.texts, (Lines{"1: " + why, "2: " + why, "3: " + why}));
  EXPECT_EQ(h.log, (Lines{"group 0 shared-state sync 2 failed: " + why}));
  EXPECT_EQ(h.m.global_epoch(), 2u);
  EXPECT_EQ(h.m.ring(0), (std::vector<PeerId>{1, 2, 3}));

  // Not advanced: 7 is still ahead of the group, 6 goes through.
  for (PeerId p : {1, 2, 3}) h.sync(p, 7);
  EXPECT_EQ(h.lines(), (Lines{
                           "1 <- SyncPlan{round=3 Mismatch rev=0 fetch=[] donors=[]} @2",
                           "2 <- SyncPlan{round=3 Mismatch rev=0 fetch=[] donors=[]} @2",
                           "3 <- SyncPlan{round=3 Mismatch rev=0 fetch=[] donors=[]} @2",
                       }));
  expect_trivial_round(h, {1, 2, 3}, 4, 6, 2);
}

TEST(MembershipSync, FirstReceiverFailureEndsTheRoundAndLaterReportsAreIgnored) {
  SyncHarness h;
  h.start_run({0, 0, 0, 0});
  h.sync(1, 5);
  h.sync(2, 5);
  h.sync(3, 5, 0x3);
  h.sync(4, 5, 0x4);
  EXPECT_EQ(h.lines().size(), 4u);
  h.done(4, 1, StatusCode::kTimeout, "slow");
  EXPECT_EQ(h.lines(), (Lines{
                           result(1, 1, "Timeout", 5, 2),
                           result(2, 1, "Timeout", 5, 2),
                           result(3, 1, "Timeout", 5, 2),
                           result(4, 1, "Timeout", 5, 2),
                       }));
  h.done(3, 1);  // the round already ended
  EXPECT_EQ(h.lines(), Lines{});
  // Never succeeded: the group has no expected revision, any revision goes.
  expect_trivial_round(h, {1, 2, 3, 4}, 2, 42, 2);
}

TEST(MembershipSync, StaleSyncDoneOfAnotherRoundIsIgnored) {
  SyncHarness h;
  h.start_run({0, 0, 0});
  expect_trivial_round(h, {1, 2, 3}, 1, 5, 2);
  h.sync(1, 6);
  h.sync(2, 6);
  h.sync(3, 6, 0x3);
  EXPECT_EQ(h.lines(),
            (Lines{
                plan_ok(1, 2, 6, 2),
                plan_ok(2, 2, 6, 2),
                "3 <- SyncPlan{round=2 Ok rev=6 fetch=[0:0xa] donors=[1@h1:7001,2@h2:7002]} @2",
            }));
  h.done(3, 1);  // round 1 ended long ago
  EXPECT_EQ(h.lines(), Lines{});
  h.done(3, 3, StatusCode::kPeerLost, "x");  // a round that does not exist (yet)
  EXPECT_EQ(h.lines(), Lines{});
  h.done(3, 1, StatusCode::kPeerLost, "x");  // a failure about an old round neither
  EXPECT_EQ(h.lines(), Lines{});
  h.done(3, 2);
  EXPECT_EQ(h.lines(), (Lines{
                           result(1, 2, "Ok", 6, 2),
                           result(2, 2, "Ok", 6, 2),
                           result(3, 2, "Ok", 6, 2),
                       }));
}

// ---------------------------------------------------------------- stragglers and losses

TEST(MembershipSync, StragglerIsKickedAtTheVoteDeadlineAndTheOthersGetPlans) {
  SyncHarness h;
  TimePoint t0 = h.now;
  h.start_run({0, 0, 0});
  h.advance(500ms);
  TimePoint first_vote = h.now;
  h.sync(1, 5);
  h.advance(1s);
  h.sync(2, 5, kA, 0xbad);
  EXPECT_EQ(h.lines(), Lines{});
  EXPECT_EQ(h.m.next_deadline(), first_vote + 3s);  // not the second vote's time
  EXPECT_LT(first_vote + 3s, t0 + 10s);             // earlier than any heartbeat deadline

  h.now = first_vote + 3s - 1ms;
  h.tick();
  EXPECT_EQ(h.lines(), Lines{});
  h.now = first_vote + 3s;
  h.tick();
  // Peer 3 goes; a tie between 1 and 2 (one voter each) goes to the smaller id.
  EXPECT_EQ(h.lines(), (Lines{
                           "3 <- Kicked{Straggler} @2",
                           "1 <- Membership{ge=3 world=2 group=2 groups=1 largest=2 ring=[1,2]} @3",
                           "2 <- Membership{ge=3 world=2 group=2 groups=1 largest=2 ring=[1,2]} @3",
                           plan_ok(1, 1, 5, 3),
                           "2 <- SyncPlan{round=1 Ok rev=5 fetch=[1:0xb] donors=[1@h1:7001]} @3",
                           "close 3",
                       }));
  EXPECT_EQ(h.texts, (Lines{"3: did not join the shared-state sync of group 0 within 3000 ms",
                            "1: ", "2: "}));
  EXPECT_FALSE(h.m.is_known(3));
  h.done(2, 1);
  EXPECT_EQ(h.lines(), (Lines{result(1, 1, "Ok", 5, 3), result(2, 1, "Ok", 5, 3)}));
}

TEST(MembershipSync, StragglersOfOneGroupDoNotAffectAnother) {
  SyncHarness h;
  h.start_run({0, 0, 1, 1});
  h.sync(1, 5);
  h.advance(1s);
  h.sync(3, 9);
  h.advance(2s);  // group 0's deadline
  h.tick();
  EXPECT_EQ(h.lines(), (Lines{
                           "2 <- Kicked{Straggler} @2",
                           "1 <- Membership{ge=3 world=3 group=1 groups=2 largest=2 ring=[1]} @3",
                           "3 <- Membership{ge=2 world=3 group=2 groups=2 largest=2 ring=[3,4]} @3",
                           "4 <- Membership{ge=2 world=3 group=2 groups=2 largest=2 ring=[3,4]} @3",
                           plan_ok(1, 1, 5, 3),
                           result(1, 1, "Ok", 5, 3),
                           "close 2",
                       }));
  h.sync(4, 9);
  EXPECT_EQ(h.lines(), (Lines{plan_ok(3, 1, 9, 3), plan_ok(4, 1, 9, 3), result(3, 1, "Ok", 9, 3),
                              result(4, 1, "Ok", 9, 3)}));
}

TEST(MembershipSync, NonVoterDisconnectingTriggersTheElectionAmongTheRest) {
  SyncHarness h;
  h.start_run({0, 0, 0});
  h.sync(1, 5);
  h.sync(3, 5, 0x3);
  EXPECT_EQ(h.lines(), Lines{});
  h.disconnect(2);
  EXPECT_EQ(h.lines(), (Lines{
                           "1 <- Membership{ge=3 world=2 group=2 groups=1 largest=2 ring=[1,3]} @3",
                           "3 <- Membership{ge=3 world=2 group=2 groups=1 largest=2 ring=[1,3]} @3",
                           plan_ok(1, 1, 5, 3),
                           "3 <- SyncPlan{round=1 Ok rev=5 fetch=[0:0xa] donors=[1@h1:7001]} @3",
                       }));
  h.done(3, 1);
  EXPECT_EQ(h.lines(), (Lines{result(1, 1, "Ok", 5, 3), result(3, 1, "Ok", 5, 3)}));
}

TEST(MembershipSync, VoterDisconnectingBeforeTheElectionNoLongerCounts) {
  SyncHarness h;
  h.start_run({0, 0, 0});
  h.sync(1, 5);
  h.sync(3, 5, 0x3);
  h.disconnect(3);
  EXPECT_EQ(h.lines(), (Lines{
                           "1 <- Membership{ge=3 world=2 group=2 groups=1 largest=2 ring=[1,2]} @3",
                           "2 <- Membership{ge=3 world=2 group=2 groups=1 largest=2 ring=[1,2]} @3",
                       }));
  // Had peer 3's vote survived, content 0x3 would win two to one.
  h.sync(2, 5, 0x3);
  EXPECT_EQ(h.lines(), (Lines{
                           plan_ok(1, 1, 5, 3),
                           "2 <- SyncPlan{round=1 Ok rev=5 fetch=[0:0xa] donors=[1@h1:7001]} @3",
                       }));
}

TEST(MembershipSync, OnlyVoterLeavingVoidsTheRoundAndItsDeadline) {
  SyncHarness h;
  TimePoint t0 = h.now;
  h.start_run({0, 0, 0});
  h.sync(3, 5);
  EXPECT_EQ(h.m.next_deadline(), t0 + 3s);
  h.leave(3);
  EXPECT_EQ(h.lines(), (Lines{
                           "1 <- Membership{ge=3 world=2 group=2 groups=1 largest=2 ring=[1,2]} @3",
                           "2 <- Membership{ge=3 world=2 group=2 groups=1 largest=2 ring=[1,2]} @3",
                           "close 3",
                       }));
  EXPECT_EQ(h.m.next_deadline(), t0 + 10s);
  h.advance(3s);
  h.tick();
  EXPECT_EQ(h.lines(), Lines{});  // nobody is a straggler of a void round
  expect_trivial_round(h, {1, 2}, 2, 5, 3);
}

TEST(MembershipSync, ReceiverDisconnectingDuringTransferLetsTheOthersSucceed) {
  SyncHarness h;
  h.start_run({0, 0, 0});
  h.sync(1, 5);
  h.sync(2, 5);
  h.sync(3, 5, 0x3);
  EXPECT_EQ(h.lines().size(), 3u);
  h.disconnect(3);
  EXPECT_EQ(h.lines(), (Lines{
                           "1 <- Membership{ge=3 world=2 group=2 groups=1 largest=2 ring=[1,2]} @3",
                           "2 <- Membership{ge=3 world=2 group=2 groups=1 largest=2 ring=[1,2]} @3",
                           result(1, 1, "Ok", 5, 3),
                           result(2, 1, "Ok", 5, 3),
                       }));
  // The round succeeded: the group expects 6.
  expect_trivial_round(h, {1, 2}, 2, 6, 3);
}

TEST(MembershipSync, OneOfTwoReceiversDisconnectingStillWaitsForTheOther) {
  SyncHarness h;
  h.start_run({0, 0, 0, 0});
  h.sync(1, 5);
  h.sync(2, 5);
  h.sync(3, 5, 0x3);
  h.sync(4, 5, 0x4);
  EXPECT_EQ(h.lines().size(), 4u);
  h.disconnect(3);
  EXPECT_EQ(h.lines(),
            (Lines{
                "1 <- Membership{ge=3 world=3 group=3 groups=1 largest=3 ring=[1,2,4]} @3",
                "2 <- Membership{ge=3 world=3 group=3 groups=1 largest=3 ring=[1,2,4]} @3",
                "4 <- Membership{ge=3 world=3 group=3 groups=1 largest=3 ring=[1,2,4]} @3",
            }));
  h.done(4, 1);
  EXPECT_EQ(h.lines(),
            (Lines{result(1, 1, "Ok", 5, 3), result(2, 1, "Ok", 5, 3), result(4, 1, "Ok", 5, 3)}));
}

TEST(MembershipSync, DonorDisconnectingDuringTransferDecidesNothing) {
  SyncHarness h;
  h.start_run({0, 0, 0});
  h.sync(1, 5);
  h.sync(2, 5);
  h.sync(3, 5, 0x3);
  EXPECT_EQ(h.lines().size(), 3u);
  h.disconnect(1);
  EXPECT_EQ(h.lines(), (Lines{
                           "2 <- Membership{ge=3 world=2 group=2 groups=1 largest=2 ring=[2,3]} @3",
                           "3 <- Membership{ge=3 world=2 group=2 groups=1 largest=2 ring=[2,3]} @3",
                       }));
  h.done(3, 1);  // it got everything from peer 2
  EXPECT_EQ(h.lines(), (Lines{result(2, 1, "Ok", 5, 3), result(3, 1, "Ok", 5, 3)}));
  expect_trivial_round(h, {2, 3}, 2, 6, 3);
}

TEST(MembershipSync, AllDonorsLostThenReceiverFailureFailsTheRound) {
  SyncHarness h;
  h.start_run({0, 0});
  h.sync(1, 5, kA, kB, SyncStrategy::kSendOnly);
  h.sync(2, 5, 0x2, kB, SyncStrategy::kReceiveOnly);
  EXPECT_EQ(h.lines(), (Lines{
                           plan_ok(1, 1, 5, 2),
                           "2 <- SyncPlan{round=1 Ok rev=5 fetch=[0:0xa] donors=[1@h1:7001]} @2",
                       }));
  h.disconnect(1);
  EXPECT_EQ(h.lines(),
            (Lines{"2 <- Membership{ge=3 world=1 group=1 groups=1 largest=1 ring=[2]} @3"}));
  h.done(2, 1, StatusCode::kPeerLost, "every donor was lost");
  EXPECT_EQ(h.lines(), (Lines{result(2, 1, "PeerLost", 5, 3)}));
}

// ---------------------------------------------------------------- send-only losers

TEST(MembershipSync, SendOnlyLoserIsKickedAfterThePlansAndTheRestProceed) {
  SyncHarness h;
  h.start_run({0, 0, 0});
  h.sync(1, 5, kA, kB, SyncStrategy::kSendOnly);
  h.sync(2, 5, 0x2, kB, SyncStrategy::kSendOnly);  // ties with 1; 1 has the smaller id
  h.sync(3, 5, kA, kB);
  EXPECT_EQ(h.lines(), (Lines{
                           plan_ok(1, 1, 5, 2),
                           plan_ok(3, 1, 5, 2),
                           result(1, 1, "Ok", 5, 2),
                           result(3, 1, "Ok", 5, 2),
                           "2 <- Kicked{LostElection} @2",
                           "1 <- Membership{ge=3 world=2 group=2 groups=1 largest=2 ring=[1,3]} @3",
                           "3 <- Membership{ge=3 world=2 group=2 groups=1 largest=2 ring=[1,3]} @3",
                           "close 2",
                       }));
  EXPECT_EQ(h.texts[4],
            "2: send-only peer 2 lost the shared-state election (its content differs from the "
            "elected revision 5 content held by peer 1)");
  EXPECT_FALSE(h.m.is_known(2));
  // The group expects 6.
  expect_trivial_round(h, {1, 3}, 2, 6, 3);
}

TEST(MembershipSync, SendOnlyLoserIsKickedWhileReceiversStillTransfer) {
  SyncHarness h;
  h.start_run({0, 0, 0});
  h.sync(1, 5, kA, kB, SyncStrategy::kSendOnly);
  h.sync(2, 5, 0x2, kB, SyncStrategy::kSendOnly);
  h.sync(3, 5, 0x3, 0x3, SyncStrategy::kReceiveOnly);
  EXPECT_EQ(h.lines(),
            (Lines{
                plan_ok(1, 1, 5, 2),
                "3 <- SyncPlan{round=1 Ok rev=5 fetch=[0:0xa,1:0xb] donors=[1@h1:7001]} @2",
                "2 <- Kicked{LostElection} @2",
                "1 <- Membership{ge=3 world=2 group=2 groups=1 largest=2 ring=[1,3]} @3",
                "3 <- Membership{ge=3 world=2 group=2 groups=1 largest=2 ring=[1,3]} @3",
                "close 2",
            }));
  h.done(3, 1);
  EXPECT_EQ(h.lines(), (Lines{result(1, 1, "Ok", 5, 3), result(3, 1, "Ok", 5, 3)}));
}

// ---------------------------------------------------------------- groups

TEST(MembershipSync, TwoGroupsSyncIndependentlyWithSeparateRevisions) {
  SyncHarness h;
  h.start_run({0, 0, 1, 1});
  h.sync(1, 5);
  h.sync(3, 100, 0x31, 0x32);
  h.sync(2, 5);
  EXPECT_EQ(h.lines(), (Lines{plan_ok(1, 1, 5, 2), plan_ok(2, 1, 5, 2), result(1, 1, "Ok", 5, 2),
                              result(2, 1, "Ok", 5, 2)}));
  h.sync(4, 100, 0x41, 0x32);
  EXPECT_EQ(h.lines(), (Lines{
                           plan_ok(3, 1, 100, 2),
                           "4 <- SyncPlan{round=1 Ok rev=100 fetch=[0:0x31] donors=[3@h3:7003]} @2",
                       }));
  // Group 1 transfers while group 0 runs its next round.
  expect_trivial_round(h, {1, 2}, 2, 6, 2);
  h.done(4, 1);
  EXPECT_EQ(h.lines(), (Lines{result(3, 1, "Ok", 100, 2), result(4, 1, "Ok", 100, 2)}));
  // Group 0 expects 7, group 1 expects 101.
  h.sync(1, 101);
  h.sync(2, 101);
  EXPECT_EQ(h.lines(), (Lines{
                           "1 <- SyncPlan{round=3 Mismatch rev=0 fetch=[] donors=[]} @2",
                           "2 <- SyncPlan{round=3 Mismatch rev=0 fetch=[] donors=[]} @2",
                       }));
  expect_trivial_round(h, {3, 4}, 2, 101, 2);
  expect_trivial_round(h, {1, 2}, 4, 7, 2);
}

TEST(MembershipSync, EmptiedGroupForgetsItsExpectedRevision) {
  SyncHarness h;
  h.start_run({0, 1});
  expect_trivial_round(h, {1}, 1, 5, 2);  // group 0 expects 6
  expect_trivial_round(h, {2}, 1, 5, 2);  // group 1 expects 6
  h.sync(1, 100);
  EXPECT_EQ(h.lines(), (Lines{"1 <- SyncPlan{round=2 Mismatch rev=0 fetch=[] donors=[]} @2"}));

  h.leave(1);  // group 0 is empty
  EXPECT_EQ(
      h.lines(),
      (Lines{"2 <- Membership{ge=2 world=1 group=1 groups=1 largest=1 ring=[2]} @3", "close 1"}));
  PeerId c = h.reg(0);
  h.vote(2);
  h.take();
  ASSERT_EQ(h.m.ring(0), std::vector<PeerId>{c});
  // A new group 0: rounds count from 1 again and any revision is accepted.
  expect_trivial_round(h, {c}, 1, 100, 4);
  // Group 1 still remembers.
  h.sync(2, 100);
  EXPECT_EQ(h.lines(), (Lines{"2 <- SyncPlan{round=2 Mismatch rev=0 fetch=[] donors=[]} @4"}));
}

// ---------------------------------------------------------------- misuse

TEST(MembershipSync, VotingTwiceInOneRoundIsAProtocolError) {
  SyncHarness h;
  h.start_run({0, 0, 0});
  h.sync(1, 5);
  h.sync(1, 5);
  EXPECT_EQ(h.lines(), (Lines{
                           "1 <- Kicked{ProtocolError} @2",
                           "2 <- Membership{ge=3 world=2 group=2 groups=1 largest=2 ring=[2,3]} @3",
                           "3 <- Membership{ge=3 world=2 group=2 groups=1 largest=2 ring=[2,3]} @3",
                           "close 1",
                       }));
  EXPECT_EQ(h.texts, (Lines{"1: voted twice in one shared-state sync"}));
  // Its first vote went with it; the round (now empty) is void, the next one is round 2.
  expect_trivial_round(h, {2, 3}, 2, 5, 3);
}

TEST(MembershipSync, SyncMessagesBeforeAdmissionAreProtocolErrors) {
  SyncHarness h;
  h.start_run({0});
  PeerId b = h.reg(0);
  PeerId c = h.reg(0);
  h.take();
  h.sync(b, 5);
  EXPECT_EQ(h.lines(), (Lines{"2 <- Kicked{ProtocolError} @1", "close 2"}));
  h.done(c, 1);
  EXPECT_EQ(h.lines(), (Lines{"3 <- Kicked{ProtocolError} @1", "close 3"}));
  EXPECT_EQ(h.m.num_registered(), 0u);
  EXPECT_EQ(h.m.global_epoch(), 1u);
  // The accepted peer's group is untouched.
  expect_trivial_round(h, {1}, 1, 5, 1);
}

TEST(MembershipSync, VoteWhileTheRoundTransfersIsInvalidUsage) {
  SyncHarness h;
  h.start_run({0, 0, 0});
  h.sync(1, 5);
  h.sync(2, 5);
  h.sync(3, 5, 0x3);
  EXPECT_EQ(h.lines().size(), 3u);
  h.sync(1, 6);
  EXPECT_EQ(h.lines(), (Lines{"1 <- SyncPlan{round=1 InvalidUsage rev=0 fetch=[] donors=[]} @2"}));
  EXPECT_EQ(h.texts, (Lines{"1: a shared-state sync of this group is still transferring"}));
  h.sync(3, 6);  // the receiver, too: refused, and still pending
  EXPECT_EQ(h.lines(), (Lines{"3 <- SyncPlan{round=1 InvalidUsage rev=0 fetch=[] donors=[]} @2"}));
  EXPECT_EQ(h.m.ring(0), (std::vector<PeerId>{1, 2, 3}));
  h.done(3, 1);
  EXPECT_EQ(h.lines(),
            (Lines{result(1, 1, "Ok", 5, 2), result(2, 1, "Ok", 5, 2), result(3, 1, "Ok", 5, 2)}));
  expect_trivial_round(h, {1, 2, 3}, 2, 6, 2);
}

TEST(MembershipSync, MismatchedKeySetsRejectTheRoundForAll) {
  SyncHarness h;
  h.start_run({0, 0});
  h.sync(1, 5);
  wire::C2MSyncState s;
  s.revision = 5;
  s.entries = {wire::StateEntry{"a", kDtype, 4, kA, false}};
  h.send(2, s);
  EXPECT_EQ(h.lines(), (Lines{
                           "1 <- SyncPlan{round=1 Mismatch rev=0 fetch=[] donors=[]} @2",
                           "2 <- SyncPlan{round=1 Mismatch rev=0 fetch=[] donors=[]} @2",
                       }));
  EXPECT_EQ(h.m.ring(0), (std::vector<PeerId>{1, 2}));
  // No success yet: the next round takes any revision.
  expect_trivial_round(h, {1, 2}, 2, 9, 2);
}

}  // namespace
}  // namespace qccl::master
