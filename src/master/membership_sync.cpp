// Membership: the shared-state sync rounds of each group (see membership.hpp and
// docs/shared-state.md). The election itself is state_election.cpp.
#include <algorithm>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "master/membership.hpp"

namespace qccl::master {

void Membership::handle_sync_state(Peer& p, const wire::C2MSyncState& m, TimePoint now,
                                   Outbox& out) {
  Group& g = groups_.at(p.group);
  if (g.sync && g.sync->decided) {
    // Only a peer that ignored its plan can get here; it must not join the transfer.
    out.sends.push_back({p.id,
                         wire::M2CSyncPlan{g.sync->id, StatusCode::kInvalidUsage,
                                           "a shared-state sync of this group is still "
                                           "transferring", 0, {}, {}},
                         global_epoch_});
    return;
  }
  if (!g.sync) {
    g.sync.emplace();
    g.sync->id = ++g.sync_rounds;
    g.sync->first_vote = now;
    g.sync->order = ++next_order_;
  }
  if (g.sync->votes.count(p.id)) {
    kick(p.id, wire::KickReason::kProtocolError, "voted twice in one shared-state sync", now, out);
    return;
  }
  g.sync->votes[p.id] = SyncVote{m.revision, m.strategy, m.entries};
  try_elect(p.group, now, out);
  resolve_phases(now, out);
}

void Membership::try_elect(GroupId gid, TimePoint now, Outbox& out) {
  auto git = groups_.find(gid);
  if (git == groups_.end() || !git->second.sync || git->second.sync->decided) return;
  Group& g = git->second;
  SyncRound& round = *g.sync;
  for (PeerId id : g.ring) {
    if (!round.votes.count(id)) return;
  }
  Election e = elect_shared_state(g.next_revision, round.votes);
  if (e.status != StatusCode::kOk) {
    for (const auto& [id, vote] : round.votes) {
      settle(id);
      out.sends.push_back(
          {id, wire::M2CSyncPlan{round.id, e.status, e.message, 0, {}, {}}, global_epoch_});
    }
    out.log.push_back(fmt::format("group {} shared-state sync {} rejected: {}", gid, round.id,
                                  e.message));
    g.sync.reset();
    return;
  }
  round.decided = true;
  round.revision = e.revision;
  std::vector<wire::StateDonor> donors;
  for (PeerId id : e.donors) {
    const Peer& d = peers_.at(id);
    donors.push_back({id, d.host, d.port});
  }
  std::vector<PeerId> receivers;
  for (const auto& [id, vote] : round.votes) {
    if (std::count(e.kicked.begin(), e.kicked.end(), id)) continue;
    round.participants.insert(id);
    auto f = e.fetch.find(id);
    wire::M2CSyncPlan plan{round.id, StatusCode::kOk, "", e.revision, {}, {}};
    if (f != e.fetch.end()) {
      round.pending.insert(id);
      receivers.push_back(id);
      plan.fetch = f->second;
      plan.donors = donors;
    }
    out.sends.push_back({id, std::move(plan), global_epoch_});
  }
  out.log.push_back(fmt::format("group {} shared-state sync {}: revision {}, donors [{}], "
                                "receivers [{}]", gid, round.id, e.revision,
                                fmt::join(e.donors, ", "), fmt::join(receivers, ", ")));
  // Finish before expelling the losers: their removal must not find a half-built round.
  if (round.pending.empty()) finish_sync(gid, StatusCode::kOk, "", out);
  for (PeerId id : e.kicked) kick(id, wire::KickReason::kLostElection, e.kick_message, now, out);
}

void Membership::handle_sync_done(Peer& p, const wire::C2MSyncDone& m, Outbox& out) {
  Group& g = groups_.at(p.group);
  if (!g.sync || !g.sync->decided || g.sync->id != m.round || !g.sync->pending.count(p.id)) {
    return;  // a round that already ended (e.g. failed because of another receiver)
  }
  if (m.status != StatusCode::kOk) {
    finish_sync(p.group, m.status, fmt::format("peer {} could not download the shared state: {}",
                                               p.id, m.message),
                out);
    return;
  }
  g.sync->pending.erase(p.id);
  if (g.sync->pending.empty()) finish_sync(p.group, StatusCode::kOk, "", out);
}

void Membership::finish_sync(GroupId gid, StatusCode status, const std::string& why,
                             Outbox& out) {
  Group& g = groups_.at(gid);
  SyncRound round = std::move(*g.sync);
  g.sync.reset();
  for (PeerId id : round.participants) {
    settle(id);
    out.sends.push_back(
        {id, wire::M2CSyncResult{round.id, status, why, round.revision}, global_epoch_});
  }
  if (status == StatusCode::kOk) {
    g.next_revision = round.revision + 1;
  } else {
    out.log.push_back(fmt::format("group {} shared-state sync {} failed: {}", gid, round.id, why));
  }
}

void Membership::sync_peer_removed(GroupId gid, PeerId id, TimePoint now, Outbox& out) {
  auto git = groups_.find(gid);
  if (git == groups_.end() || !git->second.sync) return;
  SyncRound& round = *git->second.sync;
  if (!round.decided) {
    round.votes.erase(id);
    if (round.votes.empty()) {
      git->second.sync.reset();
      return;
    }
    try_elect(gid, now, out);
    return;
  }
  // A lost donor is the receivers' business (they use the other donors); a lost receiver
  // no longer holds anyone up.
  round.participants.erase(id);
  if (round.pending.erase(id) && round.pending.empty()) finish_sync(gid, StatusCode::kOk, "", out);
}

void Membership::sync_stragglers(TimePoint now, Outbox& out) {
  std::vector<std::pair<PeerId, std::string>> late;
  for (const auto& [gid, g] : groups_) {
    if (!g.sync || g.sync->decided || now - g.sync->first_vote < config_.vote_timeout) continue;
    for (PeerId id : g.ring) {
      if (!g.sync->votes.count(id)) {
        late.emplace_back(id, fmt::format("did not join the shared-state sync of group {} "
                                          "within {} ms", gid, config_.vote_timeout.count()));
      }
    }
  }
  for (const auto& [id, why] : late) {
    if (peers_.count(id)) kick(id, wire::KickReason::kStraggler, why, now, out);
  }
}

}  // namespace qccl::master
