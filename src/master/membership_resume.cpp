// Membership: resuming a run whose master was lost (membership.hpp, docs/reliability.md
// "Losing the master").
#include <algorithm>
#include <set>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "master/membership.hpp"

namespace qccl::master {

std::optional<Membership::Refusal> Membership::resume_refusal(const wire::C2MResume& msg) const {
  using wire::KickReason;
  if (!leads_run_ && !resume_) return std::nullopt;  // a fresh master adopts the run
  if (msg.run_id != run_id_) {
    return Refusal{KickReason::kWrongRun,
                   fmt::format("this master leads run {:016x}, not run {:016x}", run_id_,
                               msg.run_id)};
  }
  if (msg.master_id == config_.master_id) {
    return Refusal{KickReason::kNotResumed,
                   fmt::format("this master still leads run {:016x}, without peer {}: join again",
                               run_id_, msg.peer_id)};
  }
  if (resume_) {  // any earlier master's peer, during the window, once
    if (peers_.count(msg.peer_id) == 0 && resume_->gone.count(msg.peer_id) == 0) {
      return std::nullopt;
    }
    return Refusal{KickReason::kNotResumed,
                   fmt::format("peer {} resumed run {:016x} already", msg.peer_id, run_id_)};
  }
  if (msg.generation >= generation_) {
    return Refusal{KickReason::kWrongRun,
                   fmt::format("this master is generation {} of run {:016x}; peer {} followed "
                               "generation {} (a newer master leads the run, or this one lost it)",
                               generation_, run_id_, msg.peer_id, msg.generation)};
  }
  return Refusal{KickReason::kNotResumed,
                 fmt::format("run {:016x} was resumed without peer {} (it did not come back "
                             "within the peer timeout): join again", run_id_, msg.peer_id)};
}

std::variant<PeerId, Membership::Refusal> Membership::on_resume(const wire::C2MResume& msg,
                                                                const std::string& observed_host,
                                                                TimePoint now, Outbox& out) {
  if (auto refusal = resume_refusal(msg)) return *refusal;
  // Above every generation a resumed peer followed (the welcome tells the peer so).
  const uint64_t generation = std::max(resume_ ? generation_ : 0, msg.generation + 1);
  if (!resume_) {
    leads_run_ = true;
    run_id_ = msg.run_id;
    resume_ = ResumeWindow{now + config_.peer_timeout, {}, {}, {}};
    out.log.push_back(fmt::format("resuming run {:016x} as its generation {} master (peer {} "
                                  "came back first); waiting up to {} ms for the others",
                                  run_id_, generation, msg.peer_id,
                                  config_.peer_timeout.count()));
  }
  generation_ = generation;
  Peer p;
  p.id = msg.peer_id;
  p.group = msg.peer_group;
  p.host = msg.advertised_host.empty() ? observed_host : msg.advertised_host;
  p.port = msg.p2p_port;
  p.phase = Phase::kResumed;
  p.last_seen = now;
  peers_.emplace(p.id, p);
  next_id_ = std::max({next_id_, msg.next_peer_id, msg.peer_id + 1});
  global_epoch_ = std::max(global_epoch_, msg.global_epoch);

  auto& report = resume_->groups[p.group];
  if (report.ring.empty() || msg.group_epoch > report.epoch) {
    report.epoch = msg.group_epoch;
    report.ring = msg.ring;
  }
  resume_->resumes[p.id] = msg;
  if (msg.has_revision) {
    report.last_revision = std::max(report.last_revision.value_or(0), msg.last_revision);
  }
  out.sends.push_back({p.id, welcome(p.id), global_epoch_});
  out.log.push_back(fmt::format("peer {} resumed (group {}, p2p {}:{}, group epoch {}, {} op(s) "
                                "reported)", p.id, p.group, p.host, p.port, msg.group_epoch,
                                msg.ops.size()));
  if (everyone_back()) close_resume(now, out);
  return p.id;
}

// Every member of every reported ring has resumed (or resumed and gone again).
bool Membership::everyone_back() const {
  if (!resume_) return false;
  for (const auto& [gid, report] : resume_->groups) {
    for (PeerId id : report.ring) {
      auto it = peers_.find(id);
      bool back = it != peers_.end() && it->second.phase == Phase::kResumed;
      if (!back && resume_->gone.count(id) == 0) return false;
    }
  }
  return true;
}

void Membership::close_resume(TimePoint now, Outbox& out) {
  ResumeWindow window = std::move(*resume_);
  resume_.reset();
  // Probe rounds are numbered above any an earlier generation used (fewer than 2^32 each): a
  // peer's prober keeps the newest round's measurements and refuses older rounds, so rounds
  // counted from 1 again would be refused, or served the lost master's measurements.
  probe_rounds_ = generation_ << 32;
  for (const auto& [id, r] : window.resumes) vote_rounds_ = std::max(vote_rounds_, r.vote_round);
  ++global_epoch_;
  for (auto& [gid, report] : window.groups) {
    // The newest reported ring, in its order, of the members that came back.
    std::vector<PeerId> ring;
    for (PeerId id : report.ring) {
      auto it = peers_.find(id);
      if (it != peers_.end() && it->second.phase == Phase::kResumed && it->second.group == gid) {
        ring.push_back(id);
      }
    }
    std::vector<PeerId> missing;
    for (PeerId id : report.ring) {
      if (std::find(ring.begin(), ring.end(), id) == ring.end()) missing.push_back(id);
    }
    // A peer that reported an older ring and is not in the newest had been removed from the
    // group (expelled, say) before it heard so: the run goes on without it.
    std::vector<PeerId> removed;
    for (auto& [id, peer] : peers_) {
      if (peer.phase != Phase::kResumed || peer.group != gid) continue;
      if (std::find(ring.begin(), ring.end(), id) == ring.end()) removed.push_back(id);
    }
    for (PeerId id : removed) {
      std::string why = fmt::format("peer {} was no longer in group {}'s ring (epoch {}) when the "
                                    "master was lost: join again", id, gid, report.epoch);
      out.sends.push_back({id, wire::M2CKicked{wire::KickReason::kNotResumed, why},
                           global_epoch_});
      out.disconnects.push_back(id);
      out.log.push_back(fmt::format("peer {} not resumed: {}", id, why));
      peers_.erase(id);
    }
    if (ring.empty()) continue;
    if (ring.size() * 2 <= report.ring.size()) {
      // No quorum: another master may lead the rest of this ring.
      std::string why = fmt::format("only {} of the {} members of group {} came back to this "
                                    "master (more than half must): join again",
                                    ring.size(), report.ring.size(), gid);
      for (PeerId id : ring) {
        out.sends.push_back({id, wire::M2CKicked{wire::KickReason::kNotResumed, why},
                             global_epoch_});
        out.disconnects.push_back(id);
        peers_.erase(id);
      }
      out.log.push_back(fmt::format("group {} not resumed: {}", gid, why));
      continue;
    }
    for (PeerId id : ring) peers_.at(id).phase = Phase::kAccepted;
    Group& g = groups_[gid];
    g.ring = ring;
    g.epoch = global_epoch_;
    if (report.last_revision) g.next_revision = *report.last_revision + 1;

    // The ops members waited on: committed if any member committed them (the lost master told
    // it so before dying), else failed on every member (no one committed: at least one member
    // had not finished, or the verdict never left the master).
    std::vector<wire::ResumeOp> ops;
    for (PeerId id : ring) {  // the members' reports only (not a removed peer's)
      const auto& list = window.resumes.at(id).ops;
      ops.insert(ops.end(), list.begin(), list.end());
    }
    std::set<std::tuple<OpTag, uint64_t, Epoch>> waited;
    for (const auto& op : ops) {
      if (!op.committed) waited.emplace(op.tag, op.seq, op.op_epoch);
    }
    for (const auto& [tag, seq, epoch] : waited) {
      bool committed = std::any_of(ops.begin(), ops.end(), [&](const auto& o) {
        return o.committed && o.tag == tag && o.op_epoch == epoch && o.seq >= seq;
      });
      StatusCode status = committed ? StatusCode::kOk : StatusCode::kPeerLost;
      std::string why = committed ? std::string()
                                  : "the master was lost before the operation committed; retry";
      for (PeerId id : ring) {
        out.sends.push_back({id,
                             wire::M2COpResult{tag, seq, epoch, status,
                                               static_cast<uint32_t>(report.ring.size()), why},
                             global_epoch_});
      }
      out.log.push_back(fmt::format("resumed operation tag {} seq {} of group {}: {}", tag, seq,
                                    gid, committed ? "committed" : "failed"));
    }
    answer_waiting_syncs(window, gid, ring, out);
    out.log.push_back(fmt::format(
        "ring change: group {} epoch {} ring [{}] (resumed; not back: [{}])", gid, g.epoch,
        fmt::join(ring, ", "), fmt::join(missing, ", ")));
  }
  if (groups_.empty()) {  // nothing resumed: fresh again, for a later failover or a new run
    leads_run_ = false;
    run_id_ = config_.run_id;
    generation_ = 1;
    out.log.push_back("no group resumed; waiting for a run");
    // Registrations taken meanwhile start a run of their own, or (a standby, within the
    // grace) are sent to try again.
    if (num_registered() > 0 && may_start_run(now)) {
      leads_run_ = true;
      admit_registered(now, out);
    } else {
      std::vector<PeerId> waiting;
      for (const auto& [id, p] : peers_) waiting.push_back(id);
      for (PeerId id : waiting) {
        kick(id, wire::KickReason::kNotLeading, "this master leads no run: try again", now, out);
      }
    }
    return;
  }
  out.log.push_back(fmt::format("run {:016x} resumed by generation {}: {} peers in {} groups, "
                                "epoch {}",
                                run_id_, generation_, num_accepted(), groups_.size(),
                                global_epoch_));
  // Peers that registered meanwhile wait for an update-topology vote, as in any run.
  send_membership_to_all(out);
  answer_waiting_votes(window, now, out);
}

// Votes span every group. The vote a peer waited on (the one after the count it saw last)
// completed if any resumed peer saw that count reached: the peer gets that peer's answer.
// Otherwise the vote goes on here: its waiting voters count as voted, and the peers that had
// not voted yet join it when they call (failing it would split them: the voters would go on
// to their next call while the others vote).
void Membership::answer_waiting_votes(const ResumeWindow& window, TimePoint now, Outbox& out) {
  bool reopened = false;
  for (const auto& [id, r] : window.resumes) {
    if (r.vote_waiting == 0 || !peers_.count(id) || peers_.at(id).phase != Phase::kAccepted) {
      continue;
    }
    const auto kind = static_cast<wire::VoteKind>(r.vote_waiting);
    const wire::C2MResume* witness = nullptr;
    for (const auto& [other, o] : window.resumes) {
      if (o.vote_round > r.vote_round && peers_.count(other) != 0) witness = &o;
    }
    if (witness != nullptr) {
      out.sends.push_back(
          {id, wire::M2CVoteResult{kind, witness->vote_pending, StatusCode::kOk, {},
                                   r.vote_round + 1},
           global_epoch_});
      out.log.push_back(fmt::format("peer {}'s {} vote: completed", id, vote_name(kind)));
      continue;
    }
    peers_.at(id).vote = kind;
    votes_.try_emplace(kind, VoteRound{now, ++next_order_});
    reopened = true;
    out.log.push_back(fmt::format("peer {}'s {} vote goes on", id, vote_name(kind)));
  }
  if (reopened) {
    try_complete_votes(now, out);
    resolve_phases(now, out);
  }
}

// The sync a member waited on (its download done) succeeded if a member of its group holds
// its revision as the group's last elected one.
void Membership::answer_waiting_syncs(const ResumeWindow& window, GroupId gid,
                                      const std::vector<PeerId>& ring, Outbox& out) {
  for (PeerId id : ring) {
    const wire::C2MResume& r = window.resumes.at(id);
    if (!r.sync_waiting) continue;
    const bool done = std::any_of(ring.begin(), ring.end(), [&](PeerId other) {
      const wire::C2MResume& o = window.resumes.at(other);
      return o.has_revision && o.last_revision >= r.sync_revision;
    });
    wire::M2CSyncResult result{r.sync_round, StatusCode::kOk, {}, r.sync_revision};
    if (!done) {
      result.status = StatusCode::kPeerLost;
      result.message = "the master was lost before the sync completed; call again";
      result.revision = 0;
    }
    out.sends.push_back({id, result, global_epoch_});
    out.log.push_back(fmt::format("peer {}'s sync of group {} at revision {}: {}", id, gid,
                                  r.sync_revision, done ? "completed" : "failed"));
  }
}

}  // namespace qccl::master
