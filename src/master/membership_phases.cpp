// Membership: calls that are out of step with the group (docs/call-order.md).
//
// A vote, a collective and a shared-state sync each wait at the master until every peer they
// concern has made the same call. Peers whose next calls differ would wait for each other
// until the vote timeout expelled one side, and often the correct side. So each arriving call
// is compared at once with the calls the group is already in. Two calls conflict when neither
// can complete while the other is pending:
//   - two votes of different kinds (votes span every accepted peer);
//   - within a group: a vote, a collective and a sync, any two of them (a peer blocked in one
//     cannot make the other). Collectives with different tags never conflict: they may run
//     concurrently.
// The group keeps the phase that one of its settled peers entered first (by arrival order); the calls of the
// other phases are answered at once with kInvalidUsage (a vote with M2CVoteResult, a
// collective by aborting the group's operations and moving to a new epoch, a sync with
// M2CSyncPlan) and nothing else changes: no peer is expelled, and the winners keep waiting,
// within the vote timeout, for the others to join.
//
// "Settled" means a call of the peer has completed since it was admitted. A fresh peer joins
// its group wherever the group is, so a phase that only fresh peers entered never wins over
// one that a settled peer entered, however early. And the loop head that every peer runs,
// qcclArePeersPending, is not an error for a fresh peer: if the group is in any other call (a
// collective, a sync, another kind of vote), its vote is answered "nothing pending" (the
// admission vote it would have joined is the one that admitted it), so the same loop is right
// for the first peers and for late ones.
#include <algorithm>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "master/membership.hpp"

namespace qccl::master {

struct Membership::Claim {
  enum class Kind { kVote, kCollective, kSync };
  Kind kind = Kind::kVote;
  wire::VoteKind vote = wire::VoteKind::kPeersPending;  // kVote
  std::vector<OpKey> ops;                                // kCollective, oldest first
  GroupId group = 0;                                     // kCollective, kSync
  uint64_t since = 0;  // arrival order of the call that opened it
  std::vector<PeerId> callers;
  bool settled = false;  // some caller is not fresh

  // Claims of one kind are compatible; two vote claims only with the same vote kind.
  bool conflicts_with(const Claim& o) const {
    return kind != o.kind || (kind == Kind::kVote && vote != o.vote);
  }
  // The claim that keeps the group: entered by a settled peer, then the earliest.
  bool beats(const Claim& o) const {
    if (settled != o.settled) return settled;
    if (since != o.since) return since < o.since;
    return kind < o.kind;
  }
};

void Membership::settle(PeerId id) {
  auto it = peers_.find(id);
  if (it != peers_.end()) it->second.fresh = false;
}

std::string Membership::describe(const Claim& c) const {
  switch (c.kind) {
    case Claim::Kind::kVote: return fmt::format("the {} vote", vote_name(c.vote));
    case Claim::Kind::kSync: return "a shared-state sync";
    case Claim::Kind::kCollective: break;
  }
  const OpKey& k = c.ops.front();
  if (c.ops.size() == 1) return fmt::format("the collective with tag {} (seq {})", k.tag, k.seq);
  return fmt::format("{} collectives (tag {} seq {} first)", c.ops.size(), k.tag, k.seq);
}

// The voters of `kind`, in group `gid` or anywhere.
Membership::Claim Membership::vote_claim(wire::VoteKind kind, std::optional<GroupId> gid) const {
  Claim c;
  c.vote = kind;
  for (const auto& [id, p] : peers_) {
    if (p.vote != kind || (gid && p.group != *gid)) continue;
    c.callers.push_back(id);
    if (!p.fresh) c.settled = true;
  }
  auto round = votes_.find(kind);
  c.since = round != votes_.end() ? round->second.order : 0;  // 0: probing already
  return c;
}

// The calls that group `gid`'s members are in, one claim per kind.
std::vector<Membership::Claim> Membership::claims_of(GroupId gid) const {
  std::vector<Claim> claims;
  const Group& g = groups_.at(gid);
  auto add_caller = [&](Claim& c, PeerId id) {
    c.callers.push_back(id);
    if (!peers_.at(id).fresh) c.settled = true;
  };
  for (auto kind : kVoteKinds) {
    Claim c = vote_claim(kind, gid);
    if (!c.callers.empty()) claims.push_back(std::move(c));
  }
  if (!g.ops.empty()) {
    Claim c;
    c.kind = Claim::Kind::kCollective;
    c.group = gid;
    c.since = UINT64_MAX;
    std::set<PeerId> callers;
    for (const auto& [key, op] : g.ops) {
      c.ops.push_back(key);
      c.since = std::min(c.since, op.order);
      callers.insert(op.started.begin(), op.started.end());
    }
    std::sort(c.ops.begin(), c.ops.end(), [&](const OpKey& a, const OpKey& b) {
      return g.ops.at(a).order < g.ops.at(b).order;
    });
    for (PeerId id : callers) {
      if (peers_.count(id)) add_caller(c, id);
    }
    if (!c.callers.empty()) claims.push_back(std::move(c));
  }
  if (g.sync && !g.sync->decided && !g.sync->votes.empty()) {
    Claim c;
    c.kind = Claim::Kind::kSync;
    c.group = gid;
    c.since = g.sync->order;
    for (const auto& [id, vote] : g.sync->votes) add_caller(c, id);
    claims.push_back(std::move(c));
  }
  return claims;
}

void Membership::drop_claim(const Claim& loser, const Claim& winner, TimePoint now,
                            Outbox& out) {
  bool all_fresh = std::none_of(loser.callers.begin(), loser.callers.end(),
                                [&](PeerId id) { return !peers_.at(id).fresh; });
  std::string advice =
      all_fresh ? fmt::format("a peer admitted at epoch {} must first join it",
                              peers_.at(loser.callers.front()).admitted_epoch)
                : std::string("this call cannot join it; make the same call as them");
  std::string why = fmt::format("out of step: peer(s) [{}] of group {} are in {}; {} "
                                "(docs/call-order.md)",
                                fmt::join(winner.callers, ", "), peers_.at(loser.callers.front()).group,
                                describe(winner), advice);
  out.log.push_back(fmt::format("peer(s) [{}] out of step: {} dropped, the group is in {}",
                                fmt::join(loser.callers, ", "), describe(loser),
                                describe(winner)));
  switch (loser.kind) {
    case Claim::Kind::kVote: {
      for (PeerId id : loser.callers) {
        Peer& p = peers_.at(id);
        p.vote.reset();
        wire::M2CVoteResult r{loser.vote, false, StatusCode::kInvalidUsage, why, vote_rounds_};
        // The loop head of every peer: for a fresh one, "nothing pending" is the truth of
        // the admission round that let it in.
        if (p.fresh && loser.vote == wire::VoteKind::kPeersPending) {
          r = wire::M2CVoteResult{loser.vote, false, StatusCode::kOk, {}, vote_rounds_};
        }
        out.sends.push_back({id, std::move(r), global_epoch_});
      }
      bool any = std::any_of(peers_.begin(), peers_.end(),
                             [&](const auto& kv) { return kv.second.vote == loser.vote; });
      if (!any) votes_.erase(loser.vote);
      return;
    }
    case Claim::Kind::kCollective:
      abort_group(loser.group, std::nullopt, StatusCode::kInvalidUsage, why, out);
      return;
    case Claim::Kind::kSync: {
      Group& g = groups_.at(loser.group);
      for (const auto& [id, vote] : g.sync->votes) {
        out.sends.push_back({id,
                             wire::M2CSyncPlan{g.sync->id, StatusCode::kInvalidUsage, why, 0,
                                               {}, {}},
                             global_epoch_});
      }
      g.sync.reset();
      return;
    }
  }
  (void)now;
}

void Membership::resolve_phases(TimePoint now, Outbox& out) {
  // Votes of different kinds anywhere: each needs every accepted peer.
  std::vector<Claim> votes;
  for (auto kind : kVoteKinds) {
    Claim c = vote_claim(kind, std::nullopt);
    if (!c.callers.empty()) votes.push_back(std::move(c));
  }
  if (votes.size() > 1) {
    auto winner = *std::min_element(votes.begin(), votes.end(),
                                    [](const Claim& a, const Claim& b) { return a.beats(b); });
    for (const Claim& c : votes) {
      if (c.conflicts_with(winner)) drop_claim(c, winner, now, out);
    }
  }
  // Within each group: a vote, the collectives and a sync.
  std::vector<GroupId> gids;
  for (const auto& [gid, g] : groups_) gids.push_back(gid);
  for (GroupId gid : gids) {
    if (!groups_.count(gid)) continue;
    std::vector<Claim> claims = claims_of(gid);
    if (claims.size() < 2) continue;
    auto winner = *std::min_element(claims.begin(), claims.end(),
                                    [](const Claim& a, const Claim& b) { return a.beats(b); });
    for (const Claim& c : claims) {
      if (c.conflicts_with(winner)) drop_claim(c, winner, now, out);
    }
  }
}

}  // namespace qccl::master
