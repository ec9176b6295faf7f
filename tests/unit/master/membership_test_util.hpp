// Test harness for master::Membership: a hand-advanced clock, helpers that feed events, and a
// compact one-line rendering of every Outbox entry so that tests can assert the exact sequence
// of sends (recipient, message, frame epoch) and closes with a single EXPECT_EQ.
//
//   "2 <- Membership{ge=3 world=2 group=2 groups=1 largest=2 ring=[1,2]} @3"
//   "1 <- VoteResult{UpdateTopology pending=1} @3"
//   "1 <- ProbePlan{round=1 window=250 slot=475 to=[0:2,1:3] from=[0:4,2:3]} @2"
//        (to/from: slot:peer, the peers it sends to / measures)
//   "close 3"                       (Outbox::disconnects, listed after all sends)
#pragma once

#include <chrono>
#include <string>
#include <type_traits>
#include <variant>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "common/status.hpp"
#include "master/membership.hpp"
#include "wire/messages.hpp"

namespace qccl::master::testing {

using namespace std::chrono_literals;
using Lines = std::vector<std::string>;

inline std::string vote_kind_name(wire::VoteKind k) {
  switch (k) {
    case wire::VoteKind::kUpdateTopology:
      return "UpdateTopology";
    case wire::VoteKind::kPeersPending:
      return "PeersPending";
    case wire::VoteKind::kOptimizeTopology:
      return "OptimizeTopology";
  }
  return fmt::format("VoteKind({})", static_cast<int>(k));
}

inline std::string kick_reason_name(wire::KickReason r) {
  switch (r) {
    case wire::KickReason::kTimeout:
      return "Timeout";
    case wire::KickReason::kStraggler:
      return "Straggler";
    case wire::KickReason::kProtocolError:
      return "ProtocolError";
    case wire::KickReason::kShutdown:
      return "Shutdown";
    case wire::KickReason::kDuplicate:
      return "Duplicate";
    case wire::KickReason::kLostElection:
      return "LostElection";
    case wire::KickReason::kUnreachable:
      return "Unreachable";
    case wire::KickReason::kWrongRun:
      return "WrongRun";
    case wire::KickReason::kNotResumed:
      return "NotResumed";
    case wire::KickReason::kNotLeading:
      return "NotLeading";
  }
  return fmt::format("KickReason({})", static_cast<int>(r));
}

inline std::string ring_ids(const std::vector<wire::RingMember>& ring) {
  std::vector<PeerId> ids;
  for (const auto& m : ring) ids.push_back(m.id);
  return fmt::format("[{}]", fmt::join(ids, ","));
}

// One message, without its recipient. OpResult shows world_size only on commit (a failed op's
// world size carries no meaning) and never the free-text message.
inline std::string describe(const wire::ControlMessage& msg) {
  return std::visit(
      [](const auto& m) -> std::string {
        using T = std::decay_t<decltype(m)>;
        if constexpr (std::is_same_v<T, wire::M2CWelcome>) {
          return fmt::format("Welcome{{id={} hb={} timeout={}}}", m.peer_id,
                             m.heartbeat_interval_ms, m.peer_timeout_ms);
        } else if constexpr (std::is_same_v<T, wire::M2CMembership>) {
          return fmt::format("Membership{{ge={} world={} group={} groups={} largest={} ring={}}}",
                             m.group_epoch, m.global_world_size, m.group_world_size, m.num_groups,
                             m.largest_group_size, ring_ids(m.ring));
        } else if constexpr (std::is_same_v<T, wire::M2CVoteResult>) {
          if (m.status != StatusCode::kOk) {
            return fmt::format("VoteResult{{{} {}}}", vote_kind_name(m.kind),
                               status_code_name(m.status));
          }
          return fmt::format("VoteResult{{{} pending={}}}", vote_kind_name(m.kind),
                             m.peers_pending ? 1 : 0);
        } else if constexpr (std::is_same_v<T, wire::M2COpResult>) {
          if (m.status == StatusCode::kOk) {
            return fmt::format("OpResult{{tag={} seq={} e={} Ok world={}}}", m.tag, m.seq,
                               m.op_epoch, m.world_size);
          }
          return fmt::format("OpResult{{tag={} seq={} e={} {}}}", m.tag, m.seq, m.op_epoch,
                             status_code_name(m.status));
        } else if constexpr (std::is_same_v<T, wire::M2CKicked>) {
          return fmt::format("Kicked{{{}}}", kick_reason_name(m.reason));
        } else if constexpr (std::is_same_v<T, wire::M2CHeartbeat>) {
          return "Heartbeat";
        } else if constexpr (std::is_same_v<T, wire::M2CProbePlan>) {
          auto list = [](const std::vector<wire::ProbeTarget>& l) {
            std::vector<std::string> parts;
            for (const auto& t : l) parts.push_back(fmt::format("{}:{}", t.slot, t.peer.id));
            return fmt::format("[{}]", fmt::join(parts, ","));
          };
          return fmt::format("ProbePlan{{round={} window={} slot={} to={} from={}}}", m.round,
                             m.window_ms, m.slot_ms, list(m.targets), list(m.sources));
        } else {
          return fmt::format("unexpected C2M message (variant index {})",
                             wire::ControlMessage(m).index());
        }
      },
      msg);
}

inline Lines describe(const Outbox& out) {
  Lines lines;
  for (const auto& s : out.sends) {
    lines.push_back(fmt::format("{} <- {} @{}", s.to, describe(s.message), s.epoch));
  }
  for (PeerId id : out.disconnects) lines.push_back(fmt::format("close {}", id));
  return lines;
}

// The messages one peer received, in order, without recipient and epoch.
inline Lines received_by(const Outbox& out, PeerId id) {
  Lines lines;
  for (const auto& s : out.sends) {
    if (s.to == id) lines.push_back(describe(s.message));
  }
  return lines;
}

inline MembershipConfig test_config() {
  MembershipConfig c;
  c.peer_timeout = 10s;
  c.vote_timeout = 3s;  // shorter than peer_timeout: vote tests need no heartbeats
  c.heartbeat_interval_ms = 1000;
  return c;
}

// Drives one Membership. Every event appends to `out`; take()/lines() hand it over and clear it.
class Harness {
 public:
  explicit Harness(MembershipConfig config = test_config()) : m(config) {}

  static TimePoint start_time() { return TimePoint{} + 1000h; }

  // Registers a peer whose observed host is "h<n>" and p2p port 7000+n (n = registration count,
  // which equals the id the master assigns since ids start at 1 and are never reused).
  PeerId reg(GroupId group = 0, std::string advertised_host = "") {
    ++registrations_;
    wire::C2MRegister r;
    r.peer_group = group;
    r.p2p_port = static_cast<uint16_t>(7000 + registrations_);
    r.advertised_host = std::move(advertised_host);
    return m.on_register(r, fmt::format("h{}", registrations_), now, out);
  }
  void send(PeerId p, const wire::ControlMessage& msg) { m.on_message(p, msg, now, out); }
  void heartbeat(PeerId p) { send(p, wire::C2MHeartbeat{}); }
  void vote(PeerId p, wire::VoteKind k = wire::VoteKind::kUpdateTopology) {
    send(p, wire::C2MVote{k});
  }
  void leave(PeerId p) { send(p, wire::C2MLeave{}); }
  void disconnect(PeerId p, const std::string& why = "connection reset") {
    m.on_disconnect(p, why, now, out);
  }
  void op_start(PeerId p, OpTag tag, uint64_t seq, Epoch e, uint64_t hash = 0x5eed) {
    send(p, wire::C2MOpStart{tag, seq, e, hash});
  }
  void op_done(PeerId p, OpTag tag, uint64_t seq, Epoch e, StatusCode st = StatusCode::kOk,
               std::string why = "") {
    send(p, wire::C2MOpDone{tag, seq, e, st, std::move(why)});
  }
  void advance(std::chrono::milliseconds d) { now += d; }
  void tick() { m.on_tick(now, out); }

  Outbox take() {
    Outbox o = std::move(out);
    out = Outbox{};
    return o;
  }
  Lines lines() { return describe(take()); }

  // Starts a run with one peer per entry of `groups` (ids 1..n in order): peer 1 is admitted at
  // once, the others register and are admitted together by peer 1's kUpdateTopology vote, so
  // the run ends at global epoch 1 (one peer) or 2. Clears the outbox.
  std::vector<PeerId> start_run(const std::vector<GroupId>& groups) {
    std::vector<PeerId> ids;
    for (GroupId g : groups) ids.push_back(reg(g));
    if (ids.size() > 1) vote(ids.front());
    take();
    return ids;
  }

  Membership m;
  TimePoint now = start_time();
  Outbox out;

 private:
  int registrations_ = 0;
};

}  // namespace qccl::master::testing
