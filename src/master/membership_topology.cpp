// Membership: qcclOptimizeTopology, i.e. bandwidth probe rounds and ring solving (see
// membership.hpp and docs/topology.md). The solver itself is ring_solver.cpp.
#include <algorithm>
#include <limits>
#include <optional>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "master/membership.hpp"
#include "master/ring_solver.hpp"

namespace qccl::master {
namespace {

// A new ring replaces the current one only if its bottleneck is this much faster.
constexpr double kMinGain = 1.1;

// A time slot: the measured window, plus room for connecting and the receiver's answer.
uint32_t slot_ms_for(std::chrono::milliseconds window) {
  return static_cast<uint32_t>(window.count() * 3 / 2 + 100);
}

std::string mb_per_s(std::optional<double> bytes_per_s) {
  if (!bytes_per_s) return "unknown";
  return fmt::format("{:.1f} MB/s", *bytes_per_s / 1e6);
}

// True if `a` and `b` are the same cyclic order (one a rotation of the other).
bool same_cycle(const std::vector<PeerId>& a, const std::vector<PeerId>& b) {
  if (a.size() != b.size()) return false;
  if (a.empty()) return true;
  auto start = std::find(b.begin(), b.end(), a[0]);
  if (start == b.end()) return false;
  std::vector<PeerId> rotated(start, b.end());
  rotated.insert(rotated.end(), b.begin(), start);
  return rotated == a;
}

}  // namespace

void Membership::start_optimize(TimePoint now, Outbox& out) {
  ProbeRound round;
  round.started = now;
  auto fresh = [&](PeerId from, PeerId to) {
    auto it = links_.find({from, to});
    return it != links_.end() && now - it->second.measured < config_.probe_max_age;
  };
  // Slot (k, half) of a group holds its pairs ring[i] -> ring[i + k]: each peer sends to at
  // most one peer and receives from at most one, so the measured links share no endpoint. When
  // 2k = n the pairs come in both directions; they are split into two halves, since a link
  // probed both ways at once carries each direction's acknowledgements behind the other's data.
  // Groups share no peer, so their slots run side by side; slots without a pair are skipped.
  std::map<PeerId, wire::M2CProbePlan> plans;
  uint32_t slots = 0;
  for (const auto& [gid, g] : groups_) {
    const size_t n = g.ring.size();
    uint32_t slot = 0;
    for (size_t k = 1; k < n; ++k) {
      for (size_t half = 0; half < 2; ++half) {
        bool used = false;
        for (size_t i = 0; i < n; ++i) {
          const bool second = 2 * k == n && i >= k;
          if (second != (half == 1)) continue;
          PeerId from = g.ring[i];
          PeerId to = g.ring[(i + k) % n];
          if (fresh(from, to)) continue;
          const Peer& target = peers_.at(to);
          const Peer& source = peers_.at(from);
          plans[from].targets.push_back({slot, {to, target.host, target.port}});
          plans[to].sources.push_back({slot, {from, source.host, source.port}});
          round.pending[from].targets.push_back(to);
          round.pending[to].sources.push_back(from);
          used = true;
        }
        if (used) ++slot;
      }
    }
    slots = std::max(slots, slot);
  }
  if (plans.empty()) {
    out.log.push_back("topology: every link has a recent measurement; nothing to probe");
    finish_optimize(now, out);
    return;
  }
  round.id = ++probe_rounds_;
  const uint32_t slot_ms = slot_ms_for(config_.probe_window);
  round.deadline = now + std::chrono::milliseconds(uint64_t{slots} * slot_ms) + config_.vote_timeout;
  size_t links = 0;
  for (auto& [id, plan] : plans) {
    links += plan.targets.size();
    plan.round = round.id;
    plan.window_ms = static_cast<uint32_t>(config_.probe_window.count());
    plan.slot_ms = slot_ms;
    out.sends.push_back({id, std::move(plan), global_epoch_});
  }
  out.log.push_back(fmt::format("topology: probe round {}: {} links in {} slots of {} ms",
                                round.id, links, slots, slot_ms));
  probe_ = std::move(round);
}

void Membership::handle_probe_results(Peer& p, const wire::C2MProbeResults& m, TimePoint now,
                                      Outbox& out) {
  if (!probe_ || probe_->id != m.round) return;  // a round that already ended
  auto it = probe_->pending.find(p.id);
  if (it == probe_->pending.end()) return;
  const ProbeRound::Part& part = it->second;
  auto planned = [](const std::vector<PeerId>& list, PeerId id) {
    return std::find(list.begin(), list.end(), id) != list.end();
  };
  // Only what was asked for, and only about peers still here.
  std::vector<std::string> seen;
  for (const wire::ProbeResult& r : m.inbound) {
    if (!planned(part.sources, r.peer) || !peers_.count(r.peer)) continue;
    links_[{r.peer, p.id}] = LinkSample{std::max<uint64_t>(1, r.bytes_per_s), now};
    seen.push_back(fmt::format("{}->{} {}", r.peer, p.id, mb_per_s(r.bytes_per_s)));
  }
  for (PeerId target : m.unreachable) {
    if (!planned(part.targets, target) || !peers_.count(target)) continue;
    links_[{p.id, target}] = LinkSample{0, now};
    seen.push_back(fmt::format("{}->{} unreachable", p.id, target));
  }
  probe_->links_probed += seen.size();
  if (!seen.empty()) {
    out.debug.push_back(fmt::format("topology: probe round {}: {}", m.round, fmt::join(seen, ", ")));
  }
  probe_->pending.erase(it);
  if (probe_->pending.empty()) finish_optimize(now, out);
}

void Membership::probe_peer_removed(PeerId id, TimePoint now, Outbox& out) {
  if (!probe_ || !probe_->pending.erase(id)) return;
  if (probe_->pending.empty()) finish_optimize(now, out);
}

void Membership::probe_stragglers(TimePoint now, Outbox& out) {
  if (!probe_ || now < probe_->deadline) return;
  const std::string why =
      fmt::format("did not report its bandwidth probes of round {} in time", probe_->id);
  std::vector<PeerId> late;
  for (const auto& [id, part] : probe_->pending) late.push_back(id);
  // The last expulsion finishes the round.
  for (PeerId id : late) kick(id, wire::KickReason::kStraggler, why, now, out);
}

void Membership::finish_optimize(TimePoint now, Outbox& out) {
  if (probe_) {
    out.log.push_back(fmt::format(
        "topology: probe round {} done: {} links measured in {} ms", probe_->id,
        probe_->links_probed,
        std::chrono::duration_cast<std::chrono::milliseconds>(now - probe_->started).count()));
  }
  probe_.reset();  // before any expulsion below: a removed peer must not finish it again
  std::vector<GroupId> gids;
  for (const auto& [gid, g] : groups_) gids.push_back(gid);
  ++vote_rounds_;  // before the membership it may send
  bool changed = false;
  for (GroupId gid : gids) changed |= optimize_group(gid, now, out);
  if (changed) send_membership_to_all(out);
  const bool pending = num_registered() > 0;
  for (auto& [id, p] : peers_) {
    if (p.vote != wire::VoteKind::kOptimizeTopology) continue;
    p.vote.reset();
    p.fresh = false;
    out.sends.push_back(
        {id,
         wire::M2CVoteResult{wire::VoteKind::kOptimizeTopology, pending, StatusCode::kOk, {},
                             vote_rounds_},
         global_epoch_});
  }
}

bool Membership::optimize_group(GroupId gid, TimePoint now, Outbox& out) {
  // Each pass either returns or expels at least one peer, so this ends.
  for (;;) {
    auto git = groups_.find(gid);
    if (git == groups_.end() || git->second.ring.size() < 2) return false;
    Group& g = git->second;
    std::vector<PeerId> ids = g.ring;  // solver index = rank by id: deterministic
    std::sort(ids.begin(), ids.end());
    const size_t n = ids.size();
    auto index_of = [&](PeerId id) {
      return static_cast<size_t>(std::lower_bound(ids.begin(), ids.end(), id) - ids.begin());
    };
    BandwidthMatrix m(n);
    for (size_t i = 0; i < n; ++i) {
      for (size_t j = 0; j < n; ++j) {
        auto l = links_.find({ids[i], ids[j]});
        if (i != j && l != links_.end()) m.set(i, j, static_cast<double>(l->second.bytes_per_s));
      }
    }
    RingSolution s = solve_ring(m);
    if (!s.feasible) {
      std::vector<ExpelledPeer> expel = suggest_expulsion(m);
      if (expel.empty()) return false;  // cannot happen for n >= 2; keep the ring as it is
      for (const ExpelledPeer& e : expel) {
        kick(ids[e.index], wire::KickReason::kUnreachable,
             fmt::format("no ring of reachable links in group {} can include it ({})", gid,
                         e.reason),
             now, out);
      }
      continue;
    }
    std::vector<PeerId> ring;
    for (size_t k : s.order) ring.push_back(ids[k]);
    // The current ring's bottleneck, if every one of its links was measured.
    double slowest = std::numeric_limits<double>::infinity();
    for (size_t k = 0; k < n; ++k) {
      double bw = m.at(index_of(g.ring[k]), index_of(g.ring[(k + 1) % n]));
      slowest = bw < 0 ? -1 : std::min(slowest, bw);
      if (slowest < 0) break;
    }
    const std::optional<double> old_bottleneck =
        slowest >= 0 ? std::optional<double>(slowest) : std::nullopt;
    const std::string how = fmt::format(
        "{}{}{}", s.exact ? "optimal" : "heuristic",
        s.estimated_edges ? fmt::format(", {} links estimated", s.estimated_edges) : "",
        s.budget_hit ? ", time budget hit" : "");
    if (same_cycle(ring, g.ring)) {
      out.log.push_back(fmt::format("topology: group {} ring [{}] bottleneck {} ({}), unchanged",
                                    gid, fmt::join(g.ring, ", "), mb_per_s(s.bottleneck), how));
      return false;
    }
    // Measurements are noisy: a ring that is not clearly better is not worth reconnecting for.
    if (old_bottleneck && *old_bottleneck > 0 && s.bottleneck < *old_bottleneck * kMinGain) {
      out.log.push_back(fmt::format(
          "topology: group {} ring [{}] bottleneck {} kept: the best ring [{}] ({}) would give "
          "{}, less than {:.0f}% more", gid, fmt::join(g.ring, ", "), mb_per_s(old_bottleneck),
          fmt::join(ring, ", "), how, mb_per_s(s.bottleneck), (kMinGain - 1) * 100));
      return false;
    }
    out.log.push_back(fmt::format("topology: group {} ring [{}] bottleneck {} ({}); was [{}] "
                                  "with bottleneck {}", gid, fmt::join(ring, ", "),
                                  mb_per_s(s.bottleneck), how, fmt::join(g.ring, ", "),
                                  mb_per_s(old_bottleneck)));
    // Control calls are refused while operations run, so there are none in a well-behaved run.
    for (const auto& [key, op] : g.ops) {
      reply_op(g.ring, gid, key, g.epoch, StatusCode::kPeerLost, "the ring was reordered", out);
    }
    g.ops.clear();
    g.ring = std::move(ring);
    bump_group(g);
    return true;
  }
}

}  // namespace qccl::master
