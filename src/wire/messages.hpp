// The messages of the qccl protocol, one struct per message, prefixed by direction:
//   C2M  peer (client) -> master, on the control connection
//   M2C  master -> peer, on the control connection
//   P2P  peer -> peer, on data connections
// Every message travels in one frame (frame.hpp); the frame header's `type` is the MsgType and
// its `epoch` is the sender's current global epoch (for P2PData: the group epoch of the op).
// Encoding is little-endian: integers fixed width, strings and vectors as u32 length + items.
// docs/protocol.md has the message table and the sequences.
#pragma once

#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include "common/ids.hpp"
#include "common/status.hpp"

namespace qccl::wire {

enum class MsgType : uint16_t {
  // C2M
  kC2MRegister = 1,
  kC2MHeartbeat = 2,
  kC2MVote = 3,
  kC2MOpStart = 4,
  kC2MOpDone = 5,
  kC2MLeave = 6,
  // M2C
  kM2CWelcome = 32,
  kM2CMembership = 33,
  kM2CVoteResult = 34,
  kM2COpResult = 35,
  kM2CKicked = 36,
  kM2CHeartbeat = 37,
  // P2P
  kP2PData = 64,
};

// Decoding limits (a message over them is malformed).
inline constexpr uint32_t kMaxStringBytes = 4096;
inline constexpr uint32_t kMaxRingMembers = 65536;

enum class VoteKind : uint8_t {
  kUpdateTopology = 1,  // admit pending peers, rebuild rings
  kPeersPending = 2,    // are peers waiting to be admitted?
};

// Why the master expelled a peer (M2CKicked.reason).
enum class KickReason : uint8_t {
  kTimeout = 1,         // no message for peer_timeout_ms
  kStraggler = 2,       // did not join a vote or collective within vote_timeout_ms
  kProtocolError = 3,   // malformed or illegal message
  kShutdown = 4,        // the master is stopping
  kDuplicate = 5,       // registered twice
};

// ---- C2M ----
struct C2MRegister {
  GroupId peer_group = 0;
  uint16_t p2p_port = 0;           // where this peer accepts data connections
  std::string advertised_host;     // "" = the address the master sees
};
struct C2MHeartbeat {};
struct C2MVote {
  VoteKind kind = VoteKind::kUpdateTopology;
};
// Sent, without waiting for an answer, when a collective starts locally.
struct C2MOpStart {
  OpTag tag = 0;
  uint64_t seq = 0;         // n-th operation with this tag in this group epoch (from 0)
  Epoch op_epoch = 0;       // group epoch the op runs in
  uint64_t desc_hash = 0;   // hash of (count, dtype, op, quantization)
};
// Sent when the local part of a collective finished (ok) or failed.
struct C2MOpDone {
  OpTag tag = 0;
  uint64_t seq = 0;
  Epoch op_epoch = 0;
  StatusCode status = StatusCode::kOk;
  std::string message;      // why it failed ("" when ok)
};
struct C2MLeave {};

// ---- M2C ----
struct M2CWelcome {
  PeerId peer_id = kNoPeer;
  uint32_t heartbeat_interval_ms = 0;
  uint32_t peer_timeout_ms = 0;
  uint32_t vote_timeout_ms = 0;  // also bounds a collective that stops making progress
};
struct RingMember {
  PeerId id = kNoPeer;
  std::string host;
  uint16_t port = 0;
};
// This peer's view after a membership change (sent to every peer at every change, and to a
// newly admitted peer). Header epoch = the new global epoch.
struct M2CMembership {
  Epoch group_epoch = 0;           // changes only when this peer's group changed
  uint32_t global_world_size = 0;
  uint32_t group_world_size = 0;
  uint32_t num_groups = 0;
  uint32_t largest_group_size = 0;
  std::vector<RingMember> ring;    // this group's ring order; the receiver finds itself in it
};
struct M2CVoteResult {
  VoteKind kind = VoteKind::kUpdateTopology;
  bool peers_pending = false;
};
struct M2COpResult {
  OpTag tag = 0;
  uint64_t seq = 0;
  Epoch op_epoch = 0;
  StatusCode status = StatusCode::kOk;  // kOk = commit
  uint32_t world_size = 0;
  std::string message;
};
struct M2CKicked {
  KickReason reason = KickReason::kProtocolError;
  std::string message;
};
struct M2CHeartbeat {};

// ---- P2P ----
// Header of a data frame; the segment bytes follow it in the same frame (not part of the
// struct: the receiver reads them straight into their destination).
struct P2PDataHeader {
  OpTag tag = 0;
  uint64_t seq = 0;
  uint64_t desc_hash = 0;
  uint32_t step = 0;      // 0 .. 2(N-1)-1: reduce-scatter steps, then all-gather steps
  uint32_t segment = 0;   // index of the segment within the chunk
};
inline constexpr size_t kP2PDataHeaderSize = 32;

using ControlMessage =
    std::variant<C2MRegister, C2MHeartbeat, C2MVote, C2MOpStart, C2MOpDone, C2MLeave,
                 M2CWelcome, M2CMembership, M2CVoteResult, M2COpResult, M2CKicked, M2CHeartbeat>;

MsgType type_of(const ControlMessage& m);

}  // namespace qccl::wire
