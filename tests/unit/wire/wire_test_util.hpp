// Shared helpers for the wire codec tests: one sample of every control message with
// non-default values, field-wise equality (the message structs have no operator==), whole-frame
// decoding, and an assertion that a decode failed with kInvalidArgument and a given reason.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "wire/codec.hpp"

namespace qccl::wire::test {

inline auto fields(const C2MRegister& m) {
  return std::tie(m.peer_group, m.p2p_port, m.advertised_host);
}
inline auto fields(const C2MHeartbeat&) { return std::tuple<>(); }
inline auto fields(const C2MVote& m) { return std::tie(m.kind); }
inline auto fields(const C2MOpStart& m) {
  return std::tie(m.tag, m.seq, m.op_epoch, m.desc_hash, m.timeout_ms);
}
inline auto fields(const C2MOpDone& m) {
  return std::tie(m.tag, m.seq, m.op_epoch, m.status, m.message);
}
inline auto fields(const C2MLeave&) { return std::tuple<>(); }
inline auto fields(const C2MSyncState& m) { return std::tie(m.revision, m.strategy, m.entries); }
inline auto fields(const C2MSyncDone& m) { return std::tie(m.round, m.status, m.message); }
inline auto fields(const C2MProbeResults& m) {
  return std::tie(m.round, m.inbound, m.unreachable);
}
inline auto fields(const C2MResume& m) {
  return std::tie(m.run_id, m.generation, m.master_id, m.peer_id, m.peer_group, m.p2p_port,
                  m.advertised_host, m.global_epoch, m.group_epoch, m.ring, m.next_peer_id,
                  m.has_revision, m.last_revision, m.ops, m.vote_waiting, m.vote_round,
                  m.vote_pending, m.sync_waiting, m.sync_round, m.sync_revision);
}
inline auto fields(const M2CWelcome& m) {
  return std::tie(m.peer_id, m.heartbeat_interval_ms, m.peer_timeout_ms, m.vote_timeout_ms,
                  m.run_id, m.generation, m.master_id);
}
inline auto fields(const M2CMembership& m) {
  std::vector<std::tuple<PeerId, std::string, uint16_t>> ring;
  for (const RingMember& r : m.ring) ring.emplace_back(r.id, r.host, r.port);
  return std::make_tuple(m.group_epoch, m.global_world_size, m.group_world_size, m.num_groups,
                         m.largest_group_size, std::move(ring), m.next_peer_id, m.vote_round);
}
inline auto fields(const M2CVoteResult& m) {
  return std::tie(m.kind, m.peers_pending, m.status, m.message, m.round);
}
inline auto fields(const M2COpResult& m) {
  return std::tie(m.tag, m.seq, m.op_epoch, m.status, m.world_size, m.message);
}
inline auto fields(const M2CKicked& m) { return std::tie(m.reason, m.message); }
inline auto fields(const M2CHeartbeat&) { return std::tuple<>(); }
inline auto fields(const M2CSyncPlan& m) {
  return std::tie(m.round, m.status, m.message, m.revision, m.fetch, m.donors);
}
inline auto fields(const M2CSyncResult& m) {
  return std::tie(m.round, m.status, m.message, m.revision);
}
inline auto probe_list(const std::vector<ProbeTarget>& list) {
  std::vector<std::tuple<uint32_t, PeerId, std::string, uint16_t>> out;
  for (const ProbeTarget& t : list) out.emplace_back(t.slot, t.peer.id, t.peer.host, t.peer.port);
  return out;
}
inline auto fields(const M2CProbePlan& m) {
  return std::make_tuple(m.round, m.window_ms, m.slot_ms, probe_list(m.targets),
                         probe_list(m.sources));
}

inline bool same_message(const ControlMessage& a, const ControlMessage& b) {
  if (a.index() != b.index()) return false;
  return std::visit(
      [&b](const auto& x) {
        using T = std::decay_t<decltype(x)>;
        return fields(x) == fields(std::get<T>(b));
      },
      a);
}

inline RingMember member(PeerId id, std::string host, uint16_t port) {
  RingMember m;
  m.id = id;
  m.host = std::move(host);
  m.port = port;
  return m;
}

// At least one of every control message, every field away from its default.
inline std::vector<ControlMessage> sample_messages() {
  std::vector<ControlMessage> v;
  v.push_back(C2MRegister{0xA1B2C3D4u, 29500, "node-7.cluster.example"});
  v.push_back(C2MRegister{1, 1, ""});
  v.push_back(C2MRegister{7, 65535, std::string(kMaxStringBytes, 'h')});
  v.push_back(C2MHeartbeat{});
  v.push_back(C2MVote{VoteKind::kUpdateTopology});
  v.push_back(C2MVote{VoteKind::kPeersPending});
  v.push_back(C2MOpStart{0x1122334455667788ull, 42, 9, 0xDEADBEEFCAFEF00Dull, 300000});
  v.push_back(C2MOpDone{5, 6, 7, StatusCode::kPeerLost, "neighbour 3 closed the connection"});
  v.push_back(C2MOpDone{~0ull, ~0ull, ~0ull, StatusCode::kInternal, ""});
  v.push_back(C2MLeave{});
  v.push_back(M2CWelcome{123456789012345ull, 250, 5000, 30000, 0x0102030405060708ull, 3, 0x99});
  v.push_back(C2MResume{0x0102030405060708ull, 2, 0x99, 7, 3, 29501, "node-7", 40, 38, {4, 7, 9},
                        12, true, 5, {ResumeOp{1, 4, 38, false}, ResumeOp{~0ull, 9, 38, true}},
                        2, 41, true, true, 6, 5});
  v.push_back(C2MResume{1, 1, 1, 2, 0, 1, "", 1, 1, {}, 3, false, 0, {}});
  M2CMembership empty_ring{3, 10, 4, 3, 5, {}, 0};
  v.push_back(empty_ring);
  M2CMembership ring{17, 8, 3, 2, 5, {}, 13, 9};
  ring.ring.push_back(member(11, "10.0.0.1", 40001));
  ring.ring.push_back(member(12, "", 40002));
  ring.ring.push_back(member(~0ull, std::string(kMaxStringBytes, 'x'), 65535));
  v.push_back(ring);
  v.push_back(M2CVoteResult{VoteKind::kPeersPending, true, StatusCode::kOk, "", 77});
  v.push_back(M2CVoteResult{VoteKind::kUpdateTopology, false, StatusCode::kOk, ""});
  v.push_back(M2CVoteResult{VoteKind::kPeersPending, false, StatusCode::kInvalidUsage, "out of step"});
  v.push_back(M2COpResult{99, 3, 12, StatusCode::kMismatch, 6, "descriptor hash differs"});
  v.push_back(M2COpResult{1, 0, 1, StatusCode::kOk, 64, ""});
  v.push_back(M2CKicked{KickReason::kStraggler, "missed vote 4"});
  v.push_back(M2CKicked{KickReason::kDuplicate, ""});
  v.push_back(M2CHeartbeat{});
  v.push_back(C2MSyncState{7, SyncStrategy::kSendOnly,
                           {StateEntry{"layer0.weight", 10, 4096, 0x1234567890ABCDEFull, false},
                            StateEntry{"step", 7, 1, 0, true}}});
  v.push_back(C2MSyncState{0, SyncStrategy::kReceiveOnly, {}});
  v.push_back(C2MSyncDone{3, StatusCode::kPeerLost, "every donor was lost"});
  v.push_back(M2CSyncPlan{4, StatusCode::kOk, "", 12, {FetchEntry{0, 0xAAull}, FetchEntry{9, ~0ull}},
                          {StateDonor{2, "10.0.0.2", 4000}, StateDonor{5, "", 1}}});
  v.push_back(M2CSyncPlan{5, StatusCode::kMismatch, "key 'b' is missing on peer 2", 0, {}, {}});
  v.push_back(M2CSyncResult{4, StatusCode::kOk, "", 12});
  v.push_back(C2MVote{VoteKind::kOptimizeTopology});
  v.push_back(C2MProbeResults{9, {ProbeResult{2, 125000000}, ProbeResult{~0ull, 1}}, {4, 5}});
  v.push_back(C2MProbeResults{1, {}, {}});
  v.push_back(M2CProbePlan{9, 250, 475,
                           {ProbeTarget{0, member(2, "10.0.0.2", 4000)},
                            ProbeTarget{3, member(7, std::string(kMaxStringBytes, 'p'), 65535)}},
                           {ProbeTarget{1, member(3, "", 0)}}});
  v.push_back(M2CKicked{KickReason::kUnreachable, "reaches no other peer"});
  v.push_back(M2CKicked{KickReason::kWrongRun, "this master leads run 7 generation 3"});
  return v;
}

inline std::span<const uint8_t> payload_of(const std::vector<uint8_t>& frame) {
  return std::span<const uint8_t>(frame).subspan(kFrameHeaderSize);
}

struct DecodedFrame {
  FrameHeader header;
  ControlMessage message;
};

// Decodes one complete control frame: header (under kMaxControlPayload), a payload of exactly
// payload_len bytes, then the message.
inline Result<DecodedFrame> decode_whole_frame(std::span<const uint8_t> frame) {
  if (frame.size() < kFrameHeaderSize) {
    return make_status(StatusCode::kInvalidArgument, "frame shorter than a header");
  }
  QCCL_ASSIGN_OR_RETURN(FrameHeader h, decode_frame_header(frame.first<kFrameHeaderSize>(),
                                                           kMaxControlPayload));
  if (h.payload_len != frame.size() - kFrameHeaderSize) {
    return make_status(StatusCode::kInvalidArgument, "payload_len does not match the frame");
  }
  QCCL_ASSIGN_OR_RETURN(ControlMessage m, decode_control(h.type, frame.subspan(kFrameHeaderSize)));
  return DecodedFrame{h, std::move(m)};
}

// Passes when `r` failed with kInvalidArgument and a message containing every needle.
template <typename T>
::testing::AssertionResult fails_with(const Result<T>& r,
                                      std::initializer_list<std::string_view> needles) {
  if (r.is_ok()) return ::testing::AssertionFailure() << "decoded successfully";
  const Status& s = r.status();
  if (s.code() != StatusCode::kInvalidArgument) {
    return ::testing::AssertionFailure() << "wrong code: " << s.to_string();
  }
  for (std::string_view n : needles) {
    if (s.message().find(n) == std::string::npos) {
      return ::testing::AssertionFailure() << "'" << s.message() << "' lacks '" << n << "'";
    }
  }
  return ::testing::AssertionSuccess() << s.message();
}

}  // namespace qccl::wire::test
