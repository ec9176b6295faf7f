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
  kC2MSyncState = 7,
  kC2MSyncDone = 8,
  kC2MProbeResults = 9,
  kC2MResume = 10,
  // M2C
  kM2CWelcome = 32,
  kM2CMembership = 33,
  kM2CVoteResult = 34,
  kM2COpResult = 35,
  kM2CKicked = 36,
  kM2CHeartbeat = 37,
  kM2CSyncPlan = 38,
  kM2CSyncResult = 39,
  kM2CProbePlan = 40,
  // P2P
  kP2PData = 64,
  kP2PStateRequest = 65,  // on a shared-state connection: fixed header, no message struct
  kP2PStatePiece = 66,
};

// Decoding limits (a message over them is malformed).
inline constexpr uint32_t kMaxStringBytes = 4096;
inline constexpr uint32_t kMaxRingMembers = 65536;
inline constexpr uint32_t kMaxStateEntries = 1u << 18;
inline constexpr uint32_t kMaxResumeOps = 1u << 16;
// Data types on the wire: qcclDataType_t values 0 .. kNumDataTypes-1 (checked in core/state_sync.cpp).
inline constexpr uint8_t kNumDataTypes = 12;

enum class VoteKind : uint8_t {
  kUpdateTopology = 1,  // admit pending peers, rebuild rings
  kPeersPending = 2,    // are peers waiting to be admitted?
  kOptimizeTopology = 3,  // probe missing links, re-solve every group's ring
};

// Why the master expelled a peer (M2CKicked.reason).
enum class KickReason : uint8_t {
  kTimeout = 1,         // no message for peer_timeout_ms
  kStraggler = 2,       // did not join a vote or collective within vote_timeout_ms
  kProtocolError = 3,   // malformed or illegal message
  kShutdown = 4,        // the master is stopping
  kDuplicate = 5,       // registered twice
  kLostElection = 6,    // a send-only peer whose shared state lost the election
  kUnreachable = 7,     // no ring of reachable links exists with this peer in it
  kWrongRun = 8,        // a resume this master cannot take (another run, or not its lineage):
                        // the peer tries another master
  kNotResumed = 9,      // the master the peer followed leads the run without it (it was
                        // expelled, or the run resumed without it): the peer joins again
  kNotLeading = 10,     // a registration while this master leads no run and may not start
                        // one (a standby, or within its resume grace): the peer tries again
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
  // The caller's op timeout (qcclCommSetOpTimeout); 0 = none. The master aborts the op with
  // kTimeout at its first start + the smallest timeout any member gave (docs/reliability.md).
  uint32_t timeout_ms = 0;
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

// Shared state (docs/shared-state.md). Strategy values mirror qcclSyncStrategy_t.
enum class SyncStrategy : uint8_t { kEnforcePopular = 0, kReceiveOnly = 1, kSendOnly = 2 };
// One tensor of a peer's shared state as the master sees it: never its bytes.
struct StateEntry {
  std::string name;
  uint8_t dtype = 0;             // qcclDataType_t
  uint64_t count = 0;            // elements
  uint64_t hash = 0;             // state/state_hash.hpp; 0 when allow_inequality
  bool allow_inequality = false; // never compared nor transferred
  auto operator<=>(const StateEntry&) const = default;
};
// A peer's vote in a shared-state sync of its group. Entries are sorted by name, names unique.
struct C2MSyncState {
  uint64_t revision = 0;
  SyncStrategy strategy = SyncStrategy::kEnforcePopular;
  std::vector<StateEntry> entries;
};
// A receiver finished downloading (ok) or gave up (e.g. every donor was lost).
struct C2MSyncDone {
  uint64_t round = 0;
  StatusCode status = StatusCode::kOk;
  std::string message;
};

// Bandwidth probes (docs/topology.md): what a peer found in a probe round. A link is measured
// by its receiving end; the sending end only reports the targets it could not connect to.
struct ProbeResult {
  PeerId peer = kNoPeer;     // the source of the measured link peer -> this peer
  uint64_t bytes_per_s = 0;  // >= 1
  auto operator<=>(const ProbeResult&) const = default;
};
struct C2MProbeResults {
  uint64_t round = 0;
  std::vector<ProbeResult> inbound;  // links from this plan's sources that were measured
  std::vector<PeerId> unreachable;   // targets of this plan that could not be connected to
};

// Resuming after the master was lost (docs/reliability.md, "Losing the master"): an accepted
// peer gives a new master (on the same address, or the next of its list) what the lost one
// knew of it. Answered by M2CWelcome (the same peer id) or M2CKicked (kWrongRun).
// An op the peer reports: its local part finished and it waits for the verdict
// (committed = false), or the last op of its tag it committed in its group epoch (true).
struct ResumeOp {
  OpTag tag = 0;
  uint64_t seq = 0;
  Epoch op_epoch = 0;
  bool committed = false;
  auto operator<=>(const ResumeOp&) const = default;
};
struct C2MResume {
  uint64_t run_id = 0;       // M2CWelcome.run_id of the lost master
  uint64_t generation = 0;   // M2CWelcome.generation of the lost master
  uint64_t master_id = 0;    // M2CWelcome.master_id of the lost master
  PeerId peer_id = kNoPeer;
  GroupId peer_group = 0;
  uint16_t p2p_port = 0;
  std::string advertised_host;
  Epoch global_epoch = 0;
  Epoch group_epoch = 0;
  std::vector<PeerId> ring;  // its group's ring at group_epoch, in ring order
  PeerId next_peer_id = 0;   // the lost master's next peer id (M2CMembership)
  bool has_revision = false; // the group had a successful shared-state sync:
  uint64_t last_revision = 0;  // its elected revision
  std::vector<ResumeOp> ops;
  // A vote whose result it waits for (0 = none: else the VoteKind), the count of completed
  // votes it saw last, and that vote's peers_pending.
  uint8_t vote_waiting = 0;
  uint64_t vote_round = 0;
  bool vote_pending = false;
  // A shared-state sync whose result it waits for (its download done, or nothing to fetch).
  bool sync_waiting = false;
  uint64_t sync_round = 0;
  uint64_t sync_revision = 0;
};

// ---- M2C ----
struct M2CWelcome {
  PeerId peer_id = kNoPeer;
  uint32_t heartbeat_interval_ms = 0;
  uint32_t peer_timeout_ms = 0;
  uint32_t vote_timeout_ms = 0;  // also bounds a collective that stops making progress
  // The run this master leads, and its generation: 1 for the master that started the run, +1
  // for each master that resumed it. A peer only ever follows a higher generation of its run.
  uint64_t run_id = 0;
  uint64_t generation = 0;
  uint64_t master_id = 0;  // this master process (random): a peer's resume names the one it lost
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
  PeerId next_peer_id = 0;         // the id the master gives next (C2MResume.next_peer_id)
  uint64_t vote_round = 0;         // completed votes so far (M2CVoteResult.round)
};
struct M2CVoteResult {
  VoteKind kind = VoteKind::kUpdateTopology;
  bool peers_pending = false;
  // kOk: the vote completed. kInvalidUsage: this peer's vote was out of step with its group
  // (docs/call-order.md) and was dropped; `message` says what the group is doing.
  StatusCode status = StatusCode::kOk;
  std::string message;
  // The master's count of completed votes (any kind), this one included when it completed:
  // a peer that waited for a vote when the master was lost gives back the count it saw last.
  uint64_t round = 0;
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
// An entry a receiver must download: index into its (sorted) entries, and the elected hash.
struct FetchEntry {
  uint32_t entry = 0;
  uint64_t hash = 0;
  auto operator<=>(const FetchEntry&) const = default;
};
// A peer holding the elected content, which receivers download from.
struct StateDonor {
  PeerId id = kNoPeer;
  std::string host;
  uint16_t port = 0;
  auto operator<=>(const StateDonor&) const = default;
};
// The master's decision for one peer once every group member voted. status != kOk ends the
// sync for this peer (no M2CSyncResult follows); otherwise the peer downloads `fetch` from
// `donors` (if any), reports C2MSyncDone, and waits for M2CSyncResult.
struct M2CSyncPlan {
  uint64_t round = 0;          // the group's sync round, echoed in C2MSyncDone
  StatusCode status = StatusCode::kOk;
  std::string message;
  uint64_t revision = 0;       // the elected revision
  std::vector<FetchEntry> fetch;
  std::vector<StateDonor> donors;
};
// The end of a sync round: ok once every receiver reported success.
struct M2CSyncResult {
  uint64_t round = 0;
  StatusCode status = StatusCode::kOk;
  std::string message;
  uint64_t revision = 0;
};

// A peer's part of a bandwidth probe round: in time slot `slot` of each target it sends to
// that target, and in the slot of each source it measures what that source sends; slots are
// slot_ms long, counted from when the plan arrives, and each measurement lasts window_ms. Then
// it reports C2MProbeResults.
struct ProbeTarget {
  uint32_t slot = 0;
  RingMember peer;
};
struct M2CProbePlan {
  uint64_t round = 0;
  uint32_t window_ms = 0;
  uint32_t slot_ms = 0;
  std::vector<ProbeTarget> targets;  // peers to send to, in slot order
  std::vector<ProbeTarget> sources;  // peers that send to this one, in slot order
};

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

// Shared-state connections (ConnKind::kState): the receiver sends requests, the donor answers
// each with one piece frame, in order. Pieces are state/state_hash.hpp's hash pieces.
struct P2PStateRequest {
  uint32_t entry = 0;       // index into the sorted entries
  uint32_t piece = 0;
  uint64_t entry_hash = 0;  // the elected hash: the donor serves only content that has it
};
inline constexpr size_t kP2PStateRequestSize = 16;
// Header of a piece frame; `status` != kOk means "not served" and no bytes follow.
struct P2PStatePieceHeader {
  uint32_t entry = 0;
  uint32_t piece = 0;
  uint64_t piece_hash = 0;  // hash of the bytes that follow
  StatusCode status = StatusCode::kOk;
};
inline constexpr size_t kP2PStatePieceHeaderSize = 24;

using ControlMessage =
    std::variant<C2MRegister, C2MHeartbeat, C2MVote, C2MOpStart, C2MOpDone, C2MLeave,
                 C2MSyncState, C2MSyncDone, C2MProbeResults, C2MResume, M2CWelcome, M2CMembership,
                 M2CVoteResult, M2COpResult, M2CKicked, M2CHeartbeat, M2CSyncPlan,
                 M2CSyncResult, M2CProbePlan>;

MsgType type_of(const ControlMessage& m);

}  // namespace qccl::wire
