#include "master/membership.hpp"

#include <algorithm>
#include <tuple>

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace qccl::master {
std::string_view vote_name(wire::VoteKind k) {
  switch (k) {
    case wire::VoteKind::kUpdateTopology: return "update-topology";
    case wire::VoteKind::kPeersPending: return "peers-pending";
    case wire::VoteKind::kOptimizeTopology: return "optimize-topology";
  }
  return "unknown";
}

Membership::Membership(MembershipConfig config) : config_(config), run_id_(config.run_id) {}

void Membership::start(TimePoint now, Outbox& out) {
  if (config_.resume_grace.count() > 0) {
    grace_end_ = now + config_.resume_grace;
    out.log.push_back(fmt::format("no new run for {} ms: peers of a run whose master was lost may "
                                  "resume it first", config_.resume_grace.count()));
  }
}

bool Membership::may_start_run(TimePoint now) const {
  return !config_.standby && !resume_ && (!grace_end_ || now >= *grace_end_);
}

size_t Membership::num_accepted() const {
  return static_cast<size_t>(std::count_if(peers_.begin(), peers_.end(), [](const auto& kv) {
    return kv.second.phase == Phase::kAccepted;
  }));
}

size_t Membership::num_registered() const {
  return static_cast<size_t>(std::count_if(peers_.begin(), peers_.end(), [](const auto& kv) {
    return kv.second.phase == Phase::kRegistered;
  }));
}

std::optional<Epoch> Membership::group_epoch(GroupId g) const {
  auto it = groups_.find(g);
  if (it == groups_.end()) return std::nullopt;
  return it->second.epoch;
}

std::vector<PeerId> Membership::ring(GroupId g) const {
  auto it = groups_.find(g);
  return it == groups_.end() ? std::vector<PeerId>{} : it->second.ring;
}

std::vector<PeerId> Membership::accepted_ids() const {
  std::vector<PeerId> ids;
  for (const auto& [id, p] : peers_) {
    if (p.phase == Phase::kAccepted) ids.push_back(id);
  }
  return ids;
}

PeerId Membership::on_register(const wire::C2MRegister& msg, const std::string& observed_host,
                               TimePoint now, Outbox& out) {
  Peer p;
  p.id = next_id_++;
  p.group = msg.peer_group;
  p.host = msg.advertised_host.empty() ? observed_host : msg.advertised_host;
  p.port = msg.p2p_port;
  p.last_seen = now;
  peers_.emplace(p.id, p);
  leads_run_ = true;  // accepts_registrations(): it leads one, or starts one now
  out.sends.push_back({p.id, welcome(p.id), global_epoch_});
  out.log.push_back(fmt::format("peer {} registered (group {}, p2p {}:{}), waiting for admission",
                                p.id, p.group, p.host, p.port));
  // The first peer of a run is admitted at once (not while a run is being resumed).
  if (num_accepted() == 0 && !resume_) admit_registered(now, out);
  return p.id;
}

wire::M2CWelcome Membership::welcome(PeerId id) const {
  return wire::M2CWelcome{id,
                          config_.heartbeat_interval_ms,
                          static_cast<uint32_t>(config_.peer_timeout.count()),
                          static_cast<uint32_t>(config_.vote_timeout.count()),
                          run_id_,
                          generation_,
                          config_.master_id};
}

void Membership::on_message(PeerId id, const wire::ControlMessage& msg, TimePoint now,
                            Outbox& out) {
  auto it = peers_.find(id);
  if (it == peers_.end()) return;
  Peer& p = it->second;
  p.last_seen = now;
  if (std::holds_alternative<wire::C2MHeartbeat>(msg)) return;
  if (std::holds_alternative<wire::C2MLeave>(msg)) {
    out.log.push_back(fmt::format("peer {} left (group {})", id, p.group));
    out.disconnects.push_back(id);
    remove_peer(id, now, out);
    return;
  }
  if (std::holds_alternative<wire::C2MRegister>(msg)) {
    kick(id, wire::KickReason::kDuplicate, "registered twice on one connection", now, out);
    return;
  }
  if (p.phase == Phase::kResumed) {
    // A resumed peer waits for the ring; a report it sent about the lost master's epoch
    // (a lane that broke meanwhile, say) means nothing here. Dropped, not punished.
    out.debug.push_back(fmt::format("peer {}: message type {} while the run resumes; dropped",
                                    id, static_cast<int>(wire::type_of(msg))));
    return;
  }
  if (p.phase != Phase::kAccepted) {
    kick(id, wire::KickReason::kProtocolError,
         fmt::format("message type {} before being admitted",
                     static_cast<int>(wire::type_of(msg))),
         now, out);
    return;
  }
  if (const auto* v = std::get_if<wire::C2MVote>(&msg)) {
    handle_vote(p, v->kind, now, out);
  } else if (const auto* s = std::get_if<wire::C2MOpStart>(&msg)) {
    handle_op_start(p, *s, now, out);
  } else if (const auto* d = std::get_if<wire::C2MOpDone>(&msg)) {
    handle_op_done(p, *d, out);
  } else if (const auto* ss = std::get_if<wire::C2MSyncState>(&msg)) {
    handle_sync_state(p, *ss, now, out);
  } else if (const auto* sd = std::get_if<wire::C2MSyncDone>(&msg)) {
    handle_sync_done(p, *sd, out);
  } else if (const auto* pr = std::get_if<wire::C2MProbeResults>(&msg)) {
    handle_probe_results(p, *pr, now, out);
  } else {
    kick(id, wire::KickReason::kProtocolError,
         fmt::format("unexpected message type {} from a peer",
                     static_cast<int>(wire::type_of(msg))),
         now, out);
  }
}

void Membership::on_disconnect(PeerId id, const std::string& why, TimePoint now, Outbox& out) {
  auto it = peers_.find(id);
  if (it == peers_.end()) return;
  out.log.push_back(fmt::format("peer {} expelled (group {}): connection lost: {}", id,
                                it->second.group, why));
  remove_peer(id, now, out);
}

void Membership::on_alive(PeerId peer, TimePoint now) {
  auto it = peers_.find(peer);
  if (it != peers_.end()) it->second.last_seen = now;
}

void Membership::on_tick(TimePoint now, Outbox& out) {
  if (resume_ && now >= resume_->deadline) close_resume(now, out);
  std::vector<PeerId> silent;
  for (const auto& [id, p] : peers_) {
    if (now - p.last_seen >= config_.peer_timeout) silent.push_back(id);
  }
  for (PeerId id : silent) {
    kick(id, wire::KickReason::kTimeout,
         fmt::format("no message for {} ms (peer timeout)", config_.peer_timeout.count()), now,
         out);
  }
  // Votes past their deadline: expel the accepted peers that have not joined.
  for (auto kind : kVoteKinds) {
    auto v = votes_.find(kind);
    if (v == votes_.end() || now - v->second.started < config_.vote_timeout) continue;
    // Collect first: the first kick may complete the vote and clear everyone's ballot.
    std::vector<PeerId> late;
    for (PeerId id : accepted_ids()) {
      if (peers_.at(id).vote != kind) late.push_back(id);
    }
    for (PeerId id : late) {
      kick(id, wire::KickReason::kStraggler,
           fmt::format("did not join the {} vote within {} ms", vote_name(kind),
                       config_.vote_timeout.count()),
           now, out);
    }
  }
  op_deadlines(now, out);
  // Collectives past their deadline: expel group members that have not started them.
  std::vector<std::pair<PeerId, std::string>> stragglers;
  for (const auto& [gid, g] : groups_) {
    for (const auto& [key, op] : g.ops) {
      if (now - op.first_start < config_.vote_timeout) continue;
      for (PeerId id : g.ring) {
        if (!op.started.count(id)) {
          stragglers.emplace_back(
              id, fmt::format("did not start collective tag {} seq {} within {} ms", key.tag,
                              key.seq, config_.vote_timeout.count()));
        }
      }
    }
  }
  for (const auto& [id, why] : stragglers) {
    if (peers_.count(id)) kick(id, wire::KickReason::kStraggler, why, now, out);
  }
  sync_stragglers(now, out);
  probe_stragglers(now, out);
  try_complete_votes(now, out);
}

std::optional<TimePoint> Membership::next_deadline() const {
  std::optional<TimePoint> best;
  auto consider = [&](TimePoint t) {
    if (!best || t < *best) best = t;
  };
  for (const auto& [id, p] : peers_) consider(p.last_seen + config_.peer_timeout);
  for (const auto& [kind, v] : votes_) consider(v.started + config_.vote_timeout);
  for (const auto& [gid, g] : groups_) {
    for (const auto& [key, op] : g.ops) {
      if (op.started.size() < g.ring.size()) consider(op.first_start + config_.vote_timeout);
      if (op.timeout) consider(op.first_start + *op.timeout);
    }
    if (g.sync && !g.sync->decided) consider(g.sync->first_vote + config_.vote_timeout);
  }
  if (probe_) consider(probe_->deadline);
  if (resume_) consider(resume_->deadline);
  return best;
}

void Membership::handle_vote(Peer& p, wire::VoteKind kind, TimePoint now, Outbox& out) {
  if (p.vote) {
    kick(p.id, wire::KickReason::kProtocolError, "voted twice in one round", now, out);
    return;
  }
  p.vote = kind;
  votes_.try_emplace(kind, VoteRound{now, ++next_order_});
  out.debug.push_back(fmt::format("peer {} joined the {} vote", p.id, vote_name(kind)));
  try_complete_votes(now, out);
  resolve_phases(now, out);
}

void Membership::try_complete_votes(TimePoint now, Outbox& out) {
  for (auto kind : kVoteKinds) {
    if (!votes_.count(kind)) continue;
    auto ids = accepted_ids();
    bool all = std::all_of(ids.begin(), ids.end(),
                           [&](PeerId id) { return peers_.at(id).vote == kind; });
    if (!all) continue;
    votes_.erase(kind);
    if (kind == wire::VoteKind::kOptimizeTopology) {
      start_optimize(now, out);  // the voters hear the result when the probes are done
      continue;
    }
    bool pending = num_registered() > 0;
    ++vote_rounds_;  // before the membership it may send: admitted peers learn the count
    if (kind == wire::VoteKind::kUpdateTopology && pending) admit_registered(now, out);
    // Voters hear the result after any membership change it caused.
    for (PeerId id : ids) {
      auto it = peers_.find(id);
      if (it == peers_.end()) continue;
      it->second.vote.reset();
      settle(id);
      out.sends.push_back(
          {id, wire::M2CVoteResult{kind, pending, StatusCode::kOk, {}, vote_rounds_},
           global_epoch_});
    }
  }
}

void Membership::admit_registered(TimePoint now, Outbox& out) {
  std::set<GroupId> changed;
  for (const auto& [id, p] : peers_) {
    if (p.phase == Phase::kRegistered) changed.insert(p.group);
  }
  if (changed.empty()) return;
  // A membership change aborts the group's collectives (there are none in a well-behaved
  // run: control calls are refused while ops are in flight). Told to the old members, with
  // the old epoch, before the ring grows.
  for (GroupId gid : changed) {
    auto git = groups_.find(gid);
    if (git == groups_.end()) continue;
    for (const auto& [key, op] : git->second.ops) {
      reply_op(git->second.ring, gid, key, git->second.epoch, StatusCode::kPeerLost,
               "membership changed", out);
    }
    git->second.ops.clear();
  }
  std::vector<PeerId> admitted;
  for (auto& [id, p] : peers_) {
    if (p.phase != Phase::kRegistered) continue;
    p.phase = Phase::kAccepted;
    p.fresh = true;
    p.admitted_epoch = global_epoch_ + 1;
    groups_[p.group].ring.push_back(id);
    admitted.push_back(id);
  }
  ++global_epoch_;
  for (GroupId gid : changed) {
    Group& g = groups_.at(gid);
    g.epoch = global_epoch_;
    out.log.push_back(fmt::format("ring change: group {} epoch {} ring [{}]", gid, g.epoch,
                                  fmt::join(g.ring, ", ")));
  }
  out.log.push_back(fmt::format("admitted peers [{}]; {} accepted in {} groups, epoch {}",
                                fmt::join(admitted, ", "), num_accepted(), groups_.size(),
                                global_epoch_));
  (void)now;
  send_membership_to_all(out);
}

bool Membership::reject_stale(const Peer& p, const OpKey& key, Epoch op_epoch, Outbox& out) {
  Epoch current = groups_.at(p.group).epoch;
  if (op_epoch == current) return false;
  reply_op({p.id}, p.group, key, op_epoch, StatusCode::kPeerLost,
           fmt::format("the group changed (epoch {} is now {})", op_epoch, current), out);
  return true;
}

void Membership::handle_op_start(Peer& p, const wire::C2MOpStart& m, TimePoint now, Outbox& out) {
  Group& g = groups_.at(p.group);
  OpKey key{m.tag, m.seq};
  if (reject_stale(p, key, m.op_epoch, out)) return;
  auto [it, inserted] = g.ops.try_emplace(key);
  OpState& op = it->second;
  if (inserted) {
    op.desc_hash = m.desc_hash;
    op.first_start = now;
    op.order = ++next_order_;
  } else if (op.desc_hash != m.desc_hash && !op.mismatch) {
    op.mismatch = fmt::format("peers passed different operations or arguments (kind, count, "
                              "dtype, op, quantization, broadcast root) for tag {} (peer {} "
                              "differs)",
                              m.tag, p.id);
  }
  if (m.timeout_ms != 0) {
    std::chrono::milliseconds t(m.timeout_ms);
    op.timeout = op.timeout ? std::min(*op.timeout, t) : t;
  }
  op.started.insert(p.id);
  // A start that shortened the deadline into the past (a member with a smaller timeout
  // started late) is judged at the next tick, which next_deadline() now asks for at once.
  maybe_declare_mismatch(p.group, key, out);
  resolve_phases(now, out);
}

void Membership::op_deadlines(TimePoint now, Outbox& out) {
  // Collect first: abort_group clears the group's op table.
  std::vector<std::tuple<GroupId, OpKey, std::string>> due;
  for (const auto& [gid, g] : groups_) {
    for (const auto& [key, op] : g.ops) {
      if (!op.timeout || now - op.first_start < *op.timeout) continue;
      std::vector<PeerId> missing;
      for (PeerId id : g.ring) {
        if (!op.started.count(id)) missing.push_back(id);
      }
      due.emplace_back(
          gid, key,
          fmt::format("the operation (tag {}) did not complete within its op timeout of {} ms{}",
                      key.tag, op.timeout->count(),
                      missing.empty() ? std::string()
                                      : fmt::format(" (peers [{}] had not started it)",
                                                    fmt::join(missing, ", "))));
    }
  }
  for (const auto& [gid, key, why] : due) {
    auto g = groups_.find(gid);
    if (g == groups_.end() || !g->second.ops.count(key)) continue;  // aborted with another
    abort_group(gid, key, StatusCode::kTimeout, why, out);
  }
}

void Membership::maybe_declare_mismatch(GroupId gid, const OpKey& key, Outbox& out) {
  Group& g = groups_.at(gid);
  auto it = g.ops.find(key);
  if (it == g.ops.end() || !it->second.mismatch) return;
  if (it->second.started.size() < g.ring.size()) return;
  std::string why = *it->second.mismatch;
  abort_group(gid, key, StatusCode::kMismatch, why, out);
}

void Membership::handle_op_done(Peer& p, const wire::C2MOpDone& m, Outbox& out) {
  Group& g = groups_.at(p.group);
  OpKey key{m.tag, m.seq};
  if (reject_stale(p, key, m.op_epoch, out)) return;
  if (m.status == StatusCode::kMismatch) {
    auto it = g.ops.find(key);
    if (it != g.ops.end()) {
      if (!it->second.mismatch) it->second.mismatch = fmt::format("peer {}: {}", p.id, m.message);
      maybe_declare_mismatch(p.group, key, out);
      return;
    }
  }
  if (m.status != StatusCode::kOk) {
    abort_group(p.group, key, m.status,
                fmt::format("peer {} failed: {}", p.id, m.message), out);
    return;
  }
  auto it = g.ops.find(key);
  if (it == g.ops.end() || !it->second.started.count(p.id)) {
    // Done without start: the op was already aborted and forgotten, or the peer misbehaves.
    reply_op({p.id}, p.group, key, m.op_epoch, StatusCode::kPeerLost, "operation was aborted",
             out);
    return;
  }
  it->second.done.insert(p.id);
  if (it->second.done.size() == g.ring.size()) {
    for (PeerId id : g.ring) settle(id);
    reply_op(g.ring, p.group, key, g.epoch, StatusCode::kOk, "", out);
    g.ops.erase(it);
  }
}

void Membership::reply_op(const std::vector<PeerId>& to, GroupId g, const OpKey& key,
                          Epoch epoch, StatusCode status, const std::string& why, Outbox& out) {
  auto it = groups_.find(g);
  uint32_t world = it == groups_.end() ? 0 : static_cast<uint32_t>(it->second.ring.size());
  for (PeerId id : to) {
    out.sends.push_back(
        {id, wire::M2COpResult{key.tag, key.seq, epoch, status, world, why}, global_epoch_});
  }
}

void Membership::abort_group(GroupId gid, std::optional<OpKey> culprit, StatusCode status,
                             const std::string& why, Outbox& out) {
  Group& g = groups_.at(gid);
  if (culprit && !g.ops.count(*culprit)) g.ops[*culprit];  // answer it even if unseen
  for (const auto& [key, op] : g.ops) {
    for (PeerId id : op.started) settle(id);
    bool is_culprit = culprit && key == *culprit;
    bool plain = is_culprit || !culprit;
    reply_op(g.ring, gid, key, g.epoch, plain ? status : StatusCode::kPeerLost,
             plain ? why : fmt::format("aborted with the group's other operations: {}", why), out);
    out.log.push_back(fmt::format("aborted operation tag {} seq {} of group {}: {}", key.tag,
                                  key.seq, gid, why));
  }
  g.ops.clear();
  bump_group(g);
  send_membership_to_all(out);
}

void Membership::bump_group(Group& g) {
  ++global_epoch_;
  g.epoch = global_epoch_;
}

void Membership::kick(PeerId id, wire::KickReason reason, const std::string& why, TimePoint now,
                      Outbox& out) {
  auto it = peers_.find(id);
  if (it == peers_.end()) return;
  out.log.push_back(fmt::format("peer {} expelled (group {}): {}", id, it->second.group, why));
  out.sends.push_back({id, wire::M2CKicked{reason, why}, global_epoch_});
  out.disconnects.push_back(id);
  remove_peer(id, now, out);
}

void Membership::remove_peer(PeerId id, TimePoint now, Outbox& out) {
  auto it = peers_.find(id);
  if (it == peers_.end()) return;
  Peer p = it->second;
  peers_.erase(it);
  std::erase_if(links_, [&](const auto& kv) { return kv.first.first == id || kv.first.second == id; });
  if (p.phase == Phase::kResumed && resume_) {
    resume_->gone.insert(id);
    if (everyone_back()) close_resume(now, out);
  }
  if (p.phase == Phase::kAccepted) {
    Group& g = groups_.at(p.group);
    g.ring.erase(std::remove(g.ring.begin(), g.ring.end(), id), g.ring.end());
    if (g.ring.empty()) {
      groups_.erase(p.group);
      ++global_epoch_;
      out.log.push_back(fmt::format("ring change: group {} is empty", p.group));
      send_membership_to_all(out);
    } else {
      out.log.push_back(fmt::format("ring change: group {} ring [{}]", p.group,
                                    fmt::join(g.ring, ", ")));
      abort_group(p.group, std::nullopt, StatusCode::kPeerLost,
                  fmt::format("peer {} left or failed", id), out);
      sync_peer_removed(p.group, id, now, out);
    }
    probe_peer_removed(id, now, out);
    if (num_accepted() == 0 && !resume_) {
      votes_.clear();  // a round of a run that has ended must not bind the next one
      if (leads_run_) admit_registered(now, out);
    }
    // A round whose voters have all gone is void: it must not expel the peers that remain.
    for (auto round = votes_.begin(); round != votes_.end();) {
      bool any = std::any_of(peers_.begin(), peers_.end(),
                             [&](const auto& kv) { return kv.second.vote == round->first; });
      round = any ? std::next(round) : votes_.erase(round);
    }
    try_complete_votes(now, out);
  }
}

wire::M2CMembership Membership::membership_view(GroupId gid) const {
  wire::M2CMembership m;
  const Group& g = groups_.at(gid);
  m.group_epoch = g.epoch;
  m.global_world_size = static_cast<uint32_t>(num_accepted());
  m.group_world_size = static_cast<uint32_t>(g.ring.size());
  m.num_groups = static_cast<uint32_t>(groups_.size());
  for (const auto& [id2, g2] : groups_) {
    m.largest_group_size = std::max<uint32_t>(m.largest_group_size,
                                              static_cast<uint32_t>(g2.ring.size()));
  }
  for (PeerId id : g.ring) {
    const Peer& p = peers_.at(id);
    m.ring.push_back({id, p.host, p.port});
  }
  m.next_peer_id = next_id_;
  m.vote_round = vote_rounds_;
  return m;
}

void Membership::send_membership_to_all(Outbox& out) {
  for (const auto& [gid, g] : groups_) {
    wire::M2CMembership view = membership_view(gid);
    for (PeerId id : g.ring) out.sends.push_back({id, view, global_epoch_});
  }
}

}  // namespace qccl::master
