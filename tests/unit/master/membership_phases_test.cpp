// Membership: calls out of step with the group (membership_phases.cpp, docs/call-order.md).
//
// The matrix: for every pair of phases (each vote kind, a collective, a shared-state sync),
// half of a group enters one and then the other half the other: the second half is answered
// at once with kInvalidUsage, nobody is expelled, and once the second half makes the first
// half's call the run goes on. Then the newcomer cases: a peer admitted while the group moves
// to a collective or a sync may vote first (it is told "nothing pending") or all-reduce first
// (kInvalidUsage if the group is in a vote).
#include <gtest/gtest.h>

#include <algorithm>

#include "master/membership.hpp"
#include "membership_test_util.hpp"

namespace qccl::master {
namespace {

using testing::Harness;
using testing::Lines;
using wire::VoteKind;
using namespace std::chrono_literals;

enum class Phase { kPeersPending, kUpdate, kOptimize, kCollective, kSync };

std::string phase_name(Phase p) {
  switch (p) {
    case Phase::kPeersPending: return "PeersPending";
    case Phase::kUpdate: return "Update";
    case Phase::kOptimize: return "Optimize";
    case Phase::kCollective: return "Collective";
    case Phase::kSync: return "Sync";
  }
  return "?";
}

// One line per message to `id` that answers a call: "Vote:<status or pending=n>",
// "Op:<status>", "SyncPlan:<status>", "SyncResult:<status>", "Kicked".
Lines answers_to(const Outbox& out, PeerId id) {
  Lines lines;
  for (const auto& s : out.sends) {
    if (s.to != id) continue;
    if (const auto* v = std::get_if<wire::M2CVoteResult>(&s.message)) {
      lines.push_back(v->status == StatusCode::kOk
                          ? fmt::format("Vote:pending={}", v->peers_pending ? 1 : 0)
                          : fmt::format("Vote:{}", status_code_name(v->status)));
    } else if (const auto* o = std::get_if<wire::M2COpResult>(&s.message)) {
      lines.push_back(fmt::format("Op:{}", status_code_name(o->status)));
    } else if (const auto* p = std::get_if<wire::M2CSyncPlan>(&s.message)) {
      lines.push_back(fmt::format("SyncPlan:{}", status_code_name(p->status)));
    } else if (const auto* r = std::get_if<wire::M2CSyncResult>(&s.message)) {
      lines.push_back(fmt::format("SyncResult:{}", status_code_name(r->status)));
    } else if (std::holds_alternative<wire::M2CKicked>(s.message)) {
      lines.push_back("Kicked");
    }
  }
  return lines;
}

std::string message_to(const Outbox& out, PeerId id) {
  for (const auto& s : out.sends) {
    if (s.to != id) continue;
    if (const auto* v = std::get_if<wire::M2CVoteResult>(&s.message)) return v->message;
    if (const auto* o = std::get_if<wire::M2COpResult>(&s.message)) return o->message;
    if (const auto* p = std::get_if<wire::M2CSyncPlan>(&s.message)) return p->message;
  }
  return "";
}

wire::C2MSyncState sync_vote() {
  return wire::C2MSyncState{0, wire::SyncStrategy::kEnforcePopular,
                            {wire::StateEntry{"w", 10, 4, 0x1234, false}}};
}

// A group of four peers 1..4, every one settled (a vote of all of them completed).
struct Group4 {
  Harness h;
  Epoch epoch = 0;
  Group4() {
    h.start_run({0, 0, 0, 0});
    for (PeerId p : {1, 2, 3, 4}) h.vote(p, VoteKind::kPeersPending);
    h.take();
    epoch = *h.m.group_epoch(0);
  }
  void enter(PeerId p, Phase phase) {
    switch (phase) {
      case Phase::kPeersPending: return h.vote(p, VoteKind::kPeersPending);
      case Phase::kUpdate: return h.vote(p, VoteKind::kUpdateTopology);
      case Phase::kOptimize: return h.vote(p, VoteKind::kOptimizeTopology);
      case Phase::kCollective: return h.op_start(p, 0, 0, *h.m.group_epoch(0));
      case Phase::kSync: return h.send(p, sync_vote());
    }
  }
};

std::string rejection(Phase phase) {
  switch (phase) {
    case Phase::kPeersPending:
    case Phase::kUpdate:
    case Phase::kOptimize: return "Vote:InvalidUsage";
    case Phase::kCollective: return "Op:InvalidUsage";
    case Phase::kSync: return "SyncPlan:InvalidUsage";
  }
  return "?";
}

std::string answer_prefix(Phase phase) {
  std::string r = rejection(phase);
  return r.substr(0, r.find(':') + 1);
}

class PhaseMatrix : public ::testing::TestWithParam<std::pair<Phase, Phase>> {};

TEST_P(PhaseMatrix, SecondHalfIsOutOfStepAtOnceAndNobodyIsExpelled) {
  auto [first, second] = GetParam();
  Group4 g;
  g.enter(1, first);
  g.enter(2, first);
  Outbox before = g.h.take();
  EXPECT_TRUE(answers_to(before, 1).empty()) << "the first half waits for the others";
  EXPECT_TRUE(answers_to(before, 2).empty());

  g.enter(3, second);  // the conflict is seen with the first out-of-step call
  Outbox out3 = g.h.take();
  EXPECT_EQ(answers_to(out3, 3), Lines{rejection(second)});
  EXPECT_NE(message_to(out3, 3).find("out of step: peer(s) [1, 2] of group 0 are in"),
            std::string::npos)
      << message_to(out3, 3);
  // The first half still waits (a collective's abort reaches the whole ring; they ignore it).
  for (PeerId p : {1, 2}) {
    for (const std::string& a : answers_to(out3, p)) {
      EXPECT_FALSE(a.starts_with(answer_prefix(first))) << p << ": " << a;
    }
  }
  g.enter(4, second);
  Outbox out4 = g.h.take();
  EXPECT_EQ(answers_to(out4, 4), Lines{rejection(second)});
  EXPECT_TRUE(out3.disconnects.empty() && out4.disconnects.empty());
  EXPECT_EQ(g.h.m.num_accepted(), 4u);

  // The out-of-step peers call again, the right call this time: the first phase completes.
  // (The vote deadline still runs from the first call: no peer was expelled meanwhile.)
  g.h.advance(1s);
  g.h.tick();
  EXPECT_TRUE(g.h.take().disconnects.empty());
  g.enter(3, first);
  g.enter(4, first);
  if (first == Phase::kCollective) {
    Epoch e = *g.h.m.group_epoch(0);
    for (PeerId p : {1, 2, 3, 4}) g.h.op_done(p, 0, 0, e);
  }
  Outbox done = g.h.take();
  EXPECT_TRUE(done.disconnects.empty());
  for (PeerId p : {1, 2, 3, 4}) {
    Lines a = answers_to(done, p);
    if (first == Phase::kOptimize) continue;  // probe plans follow (membership_topology_test)
    ASSERT_FALSE(a.empty()) << "peer " << p << " got no answer after " << phase_name(first);
    switch (first) {
      case Phase::kPeersPending:
      case Phase::kUpdate:
        EXPECT_EQ(a.back(), "Vote:pending=0");
        break;
      case Phase::kOptimize:
        break;  // the probe plans follow (membership_topology_test.cpp)
      case Phase::kCollective:
        EXPECT_EQ(a.back(), "Op:Ok");
        break;
      case Phase::kSync:
        EXPECT_EQ(a.back(), "SyncResult:Ok");
        break;
    }
  }
  EXPECT_EQ(g.h.m.num_accepted(), 4u);
}

std::vector<std::pair<Phase, Phase>> all_pairs() {
  const Phase all[] = {Phase::kPeersPending, Phase::kUpdate, Phase::kOptimize,
                       Phase::kCollective, Phase::kSync};
  std::vector<std::pair<Phase, Phase>> pairs;
  for (Phase a : all) {
    for (Phase b : all) {
      if (a != b) pairs.emplace_back(a, b);
    }
  }
  return pairs;
}

INSTANTIATE_TEST_SUITE_P(AllPairs, PhaseMatrix, ::testing::ValuesIn(all_pairs()),
                         [](const auto& param_info) {
                           return phase_name(param_info.param.first) + "Then" +
                                  phase_name(param_info.param.second);
                         });

// Peers 1 and 2 settled; peer 3 admitted by their update vote (fresh).
struct Joined {
  Harness h;
  Joined() {
    h.start_run({0, 0});
    for (PeerId p : {1, 2}) h.vote(p, VoteKind::kPeersPending);
    h.reg(0);  // 3
    for (PeerId p : {1, 2}) h.vote(p, VoteKind::kPeersPending);
    for (PeerId p : {1, 2}) h.vote(p, VoteKind::kUpdateTopology);
    h.take();
  }
};

TEST(MembershipPhases, JoinerVotingFirstWhileOthersAllReduceIsToldNothingIsPending) {
  for (bool vote_first : {false, true}) {
    SCOPED_TRACE(vote_first ? "joiner's vote arrives first" : "the others' op arrives first");
    Joined j;
    Epoch e = *j.h.m.group_epoch(0);
    if (vote_first) j.h.vote(3, VoteKind::kPeersPending);
    Outbox waiting = j.h.take();
    EXPECT_TRUE(answers_to(waiting, 3).empty());
    j.h.op_start(1, 0, 0, e);
    j.h.op_start(2, 0, 0, e);
    if (!vote_first) j.h.vote(3, VoteKind::kPeersPending);
    Outbox out = j.h.take();
    EXPECT_EQ(answers_to(out, 3), Lines{"Vote:pending=0"});
    EXPECT_TRUE(answers_to(out, 1).empty());
    EXPECT_TRUE(out.disconnects.empty());
    // The joiner now joins the collective, which commits for all three.
    j.h.op_start(3, 0, 0, e);
    for (PeerId p : {1, 2, 3}) j.h.op_done(p, 0, 0, e);
    Outbox done = j.h.take();
    for (PeerId p : {1, 2, 3}) EXPECT_EQ(answers_to(done, p), Lines{"Op:Ok"}) << p;
    // Settled now: its next vote is an ordinary vote.
    for (PeerId p : {1, 2, 3}) j.h.vote(p, VoteKind::kPeersPending);
    Outbox next = j.h.take();
    for (PeerId p : {1, 2, 3}) EXPECT_EQ(answers_to(next, p), Lines{"Vote:pending=0"}) << p;
  }
}

TEST(MembershipPhases, JoinerVotingFirstWhileOthersSyncIsToldNothingIsPending) {
  Joined j;
  j.h.send(1, sync_vote());
  j.h.vote(3, VoteKind::kPeersPending);
  Outbox out = j.h.take();
  EXPECT_EQ(answers_to(out, 3), Lines{"Vote:pending=0"});
  j.h.send(2, sync_vote());
  j.h.send(3, sync_vote());
  Outbox done = j.h.take();
  for (PeerId p : {1, 2, 3}) EXPECT_EQ(answers_to(done, p).back(), "SyncResult:Ok") << p;
}

TEST(MembershipPhases, JoinerVotingFirstWhileOthersOptimizeIsToldNothingIsPending) {
  // A loop that optimises the ring right after admitting: the newcomer's loop head is void.
  Joined j;
  j.h.vote(1, VoteKind::kOptimizeTopology);
  j.h.vote(3, VoteKind::kPeersPending);
  Outbox out = j.h.take();
  EXPECT_EQ(answers_to(out, 3), Lines{"Vote:pending=0"});
  EXPECT_TRUE(answers_to(out, 1).empty());
  EXPECT_TRUE(out.disconnects.empty());
  // A settled peer's peers-pending vote against the same optimize vote is an error.
  j.h.vote(2, VoteKind::kPeersPending);
  EXPECT_EQ(answers_to(j.h.take(), 2), Lines{"Vote:InvalidUsage"});
}

TEST(MembershipPhases, JoinerAllReducingFirstWhileOthersVoteGetsInvalidUsage) {
  Joined j;
  Epoch e = *j.h.m.group_epoch(0);
  j.h.vote(1, VoteKind::kPeersPending);
  j.h.vote(2, VoteKind::kPeersPending);
  j.h.op_start(3, 0, 0, e);
  Outbox out = j.h.take();
  EXPECT_EQ(answers_to(out, 3), Lines{"Op:InvalidUsage"});
  EXPECT_NE(message_to(out, 3).find("are in the peers-pending vote; a peer admitted at epoch 3 "
                                    "must first join it"),
            std::string::npos)
      << message_to(out, 3);
  // Peers 1 and 2 see the abort of an op they never started (and ignore it), not their vote's.
  EXPECT_EQ(answers_to(out, 1), Lines{"Op:InvalidUsage"});
  EXPECT_TRUE(out.disconnects.empty());
  j.h.vote(3, VoteKind::kPeersPending);
  Outbox done = j.h.take();
  for (PeerId p : {1, 2, 3}) EXPECT_EQ(answers_to(done, p), Lines{"Vote:pending=0"}) << p;
}

TEST(MembershipPhases, JoinerNeverWinsAgainstSettledPeersEvenWhenFirst) {
  // The joiner's update vote arrives before the others' collective: the collective wins.
  Joined j;
  Epoch e = *j.h.m.group_epoch(0);
  j.h.vote(3, VoteKind::kUpdateTopology);
  EXPECT_TRUE(answers_to(j.h.take(), 3).empty());
  j.h.op_start(1, 0, 0, e);
  Outbox out = j.h.take();
  EXPECT_EQ(answers_to(out, 3), Lines{"Vote:InvalidUsage"});
  EXPECT_TRUE(answers_to(out, 1).empty());
}

TEST(MembershipPhases, ConcurrentCollectivesWithDifferentTagsAreNotOutOfStep) {
  Group4 g;
  Epoch e = *g.h.m.group_epoch(0);
  g.h.op_start(1, 0, 0, e);
  g.h.op_start(2, 1, 0, e);
  g.h.op_start(3, 0, 0, e);
  g.h.op_start(4, 1, 0, e);
  Outbox out = g.h.take();
  for (PeerId p : {1, 2, 3, 4}) EXPECT_TRUE(answers_to(out, p).empty()) << p;
}

TEST(MembershipPhases, OtherGroupsVoteIsNotOutOfStepWithThisGroupsCollective) {
  Harness h;
  h.start_run({0, 0, 1, 1});
  for (PeerId p : {1, 2, 3, 4}) h.vote(p, VoteKind::kPeersPending);
  h.take();
  Epoch e0 = *h.m.group_epoch(0);
  h.vote(3, VoteKind::kPeersPending);
  h.vote(4, VoteKind::kPeersPending);
  h.op_start(1, 0, 0, e0);
  h.op_start(2, 0, 0, e0);
  Outbox out = h.take();
  for (PeerId p : {1, 2, 3, 4}) EXPECT_TRUE(answers_to(out, p).empty()) << p;
  for (PeerId p : {1, 2}) h.op_done(p, 0, 0, e0);
  for (PeerId p : {1, 2}) h.vote(p, VoteKind::kPeersPending);
  Outbox done = h.take();
  for (PeerId p : {3, 4}) EXPECT_EQ(answers_to(done, p), Lines{"Vote:pending=0"}) << p;
}

}  // namespace
}  // namespace qccl::master
