// Control-message and data-header codec (declared in codec.hpp; pure, never throws).
//
// Payload layouts, little-endian; str = u32 length + bytes, bool = one byte 0/1, enums = u8:
//   C2MRegister    u32 peer_group | u16 p2p_port | str advertised_host
//   C2MHeartbeat   (empty)
//   C2MVote        u8 kind
//   C2MOpStart     u64 tag | u64 seq | u64 op_epoch | u64 desc_hash
//   C2MOpDone      u64 tag | u64 seq | u64 op_epoch | u8 status | str message
//   C2MLeave       (empty)
//   C2MSyncState   u64 revision | u8 strategy | u32 n | n x (str name | u8 dtype | u64 count |
//                  u64 hash | bool allow_inequality)
//   C2MSyncDone    u64 round | u8 status | str message
//   C2MProbeResults  u64 round | u32 n | n x (u64 peer | u64 bytes_per_s) | u32 u | u x u64 peer
//   M2CWelcome     u64 peer_id | u32 heartbeat_interval_ms | u32 peer_timeout_ms |
//                  u32 vote_timeout_ms
//   M2CMembership  u64 group_epoch | u32 global_world_size | u32 group_world_size |
//                  u32 num_groups | u32 largest_group_size | u32 n | n x (u64 id | str host |
//                  u16 port)
//   M2CVoteResult  u8 kind | bool peers_pending | u8 status | str message
//   M2COpResult    u64 tag | u64 seq | u64 op_epoch | u8 status | u32 world_size | str message
//   M2CKicked      u8 reason | str message
//   M2CHeartbeat   (empty)
//   M2CSyncPlan    u64 round | u8 status | str message | u64 revision | u32 n | n x (u32 entry |
//                  u64 hash) | u32 d | d x (u64 id | str host | u16 port)
//   M2CSyncResult  u64 round | u8 status | str message | u64 revision
//   M2CProbePlan   u64 round | u32 window_ms | u32 slot_ms | targets | sources, where each list
//                  is u32 n | n x (u32 slot | u64 id | str host | u16 port)
//   P2PDataHeader  u64 tag | u64 seq | u64 desc_hash | u32 step | u32 segment  (32 bytes)
//   P2PStateRequest      u32 entry | u32 piece | u64 entry_hash  (16 bytes)
//   P2PStatePieceHeader  u32 entry | u32 piece | u64 piece_hash | u8 status | 7 x u8 0  (24)
//
// Decoding is strict, because the bytes come from the network: a payload must be consumed
// exactly, enums must name a known value, strings and rings must respect kMaxStringBytes and
// kMaxRingMembers. Encoding cannot fail (encode_frame returns bytes), so a string longer than
// kMaxStringBytes is cut at a UTF-8 character boundary rather than producing a frame the
// receiver would reject: these strings are host names and human-readable reasons, and a
// shortened reason is better than a dropped connection. Rings are never cut (that would change
// the topology); an over-limit ring is encoded as is and the receiver rejects it.
#include "wire/codec.hpp"

#include <algorithm>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>

#include "wire/byte_io.hpp"

namespace qccl::wire {
namespace {

// MsgType and the name used in error messages, per message struct.
template <typename T>
struct MsgInfo;
#define QCCL_WIRE_MSG_INFO_(T)                        \
  template <>                                         \
  struct MsgInfo<T> {                                 \
    static constexpr MsgType kType = MsgType::k##T;   \
    static constexpr std::string_view kName = #T;     \
  }
QCCL_WIRE_MSG_INFO_(C2MRegister);
QCCL_WIRE_MSG_INFO_(C2MHeartbeat);
QCCL_WIRE_MSG_INFO_(C2MVote);
QCCL_WIRE_MSG_INFO_(C2MOpStart);
QCCL_WIRE_MSG_INFO_(C2MOpDone);
QCCL_WIRE_MSG_INFO_(C2MLeave);
QCCL_WIRE_MSG_INFO_(C2MSyncState);
QCCL_WIRE_MSG_INFO_(C2MSyncDone);
QCCL_WIRE_MSG_INFO_(C2MProbeResults);
QCCL_WIRE_MSG_INFO_(M2CWelcome);
QCCL_WIRE_MSG_INFO_(M2CMembership);
QCCL_WIRE_MSG_INFO_(M2CVoteResult);
QCCL_WIRE_MSG_INFO_(M2COpResult);
QCCL_WIRE_MSG_INFO_(M2CKicked);
QCCL_WIRE_MSG_INFO_(M2CHeartbeat);
QCCL_WIRE_MSG_INFO_(M2CSyncPlan);
QCCL_WIRE_MSG_INFO_(M2CSyncResult);
QCCL_WIRE_MSG_INFO_(M2CProbePlan);
#undef QCCL_WIRE_MSG_INFO_

// Smallest encoding of one RingMember (u64 id, empty host, u16 port): bounds a claimed ring
// length by the bytes actually present before anything is reserved.
constexpr size_t kMinRingMemberBytes = 8 + 4 + 2;
constexpr size_t kMinStateEntryBytes = 4 + 1 + 8 + 8 + 1;
constexpr size_t kMinFetchEntryBytes = 4 + 8;
constexpr size_t kMinProbeResultBytes = 8 + 8;
constexpr size_t kMinProbeTargetBytes = 4 + kMinRingMemberBytes;

// The longest prefix of `s` that fits kMaxStringBytes without splitting a UTF-8 sequence
// (sequences are at most 4 bytes, so at most 3 bytes are given back; bytes that are not UTF-8
// are simply cut at the limit).
std::string_view clamp_string(std::string_view s) {
  if (s.size() <= kMaxStringBytes) return s;
  size_t cut = kMaxStringBytes;
  while (cut > kMaxStringBytes - 3 && (static_cast<uint8_t>(s[cut]) & 0xC0) == 0x80) --cut;
  return s.substr(0, cut);
}

// Enum fields: u8 on the wire, range-checked on decode.
template <typename E>
Status read_enum(ByteReader& r, E* out, std::string_view field, uint8_t lo, uint8_t hi) {
  const size_t at = r.position();
  uint8_t v = 0;
  QCCL_RETURN_IF_ERROR(r.u8(&v, field));
  if (v < lo || v > hi) {
    return make_status(StatusCode::kInvalidArgument, "{}: {} at byte {} is {}, out of range {}..{}",
                       r.what(), field, at, v, lo, hi);
  }
  *out = static_cast<E>(v);
  return Status::ok();
}

Status read_status_code(ByteReader& r, StatusCode* out) {
  return read_enum(r, out, "status", 0, static_cast<uint8_t>(StatusCode::kNumCodes) - 1);
}
Status read_vote_kind(ByteReader& r, VoteKind* out) {
  return read_enum(r, out, "vote kind", static_cast<uint8_t>(VoteKind::kUpdateTopology),
                   static_cast<uint8_t>(VoteKind::kOptimizeTopology));
}

// ---- encoders: one overload per message ----
void put(ByteWriter& w, const C2MRegister& m) {
  w.u32(m.peer_group);
  w.u16(m.p2p_port);
  w.string(clamp_string(m.advertised_host));
}
void put(ByteWriter&, const C2MHeartbeat&) {}
void put(ByteWriter& w, const C2MVote& m) { w.u8(static_cast<uint8_t>(m.kind)); }
void put(ByteWriter& w, const C2MOpStart& m) {
  w.u64(m.tag);
  w.u64(m.seq);
  w.u64(m.op_epoch);
  w.u64(m.desc_hash);
}
void put(ByteWriter& w, const C2MOpDone& m) {
  w.u64(m.tag);
  w.u64(m.seq);
  w.u64(m.op_epoch);
  w.u8(static_cast<uint8_t>(m.status));
  w.string(clamp_string(m.message));
}
void put(ByteWriter&, const C2MLeave&) {}
void put(ByteWriter& w, const C2MSyncState& m) {
  w.u64(m.revision);
  w.u8(static_cast<uint8_t>(m.strategy));
  w.u32(static_cast<uint32_t>(m.entries.size()));
  for (const StateEntry& e : m.entries) {
    w.string(e.name);  // never cut: a name is a key (over-long names are refused locally)
    w.u8(e.dtype);
    w.u64(e.count);
    w.u64(e.hash);
    w.boolean(e.allow_inequality);
  }
}
void put(ByteWriter& w, const C2MSyncDone& m) {
  w.u64(m.round);
  w.u8(static_cast<uint8_t>(m.status));
  w.string(clamp_string(m.message));
}
void put(ByteWriter& w, const C2MProbeResults& m) {
  w.u64(m.round);
  w.u32(static_cast<uint32_t>(m.inbound.size()));
  for (const ProbeResult& p : m.inbound) {
    w.u64(p.peer);
    w.u64(p.bytes_per_s);
  }
  w.u32(static_cast<uint32_t>(m.unreachable.size()));
  for (PeerId id : m.unreachable) w.u64(id);
}
void put(ByteWriter& w, const M2CWelcome& m) {
  w.u64(m.peer_id);
  w.u32(m.heartbeat_interval_ms);
  w.u32(m.peer_timeout_ms);
  w.u32(m.vote_timeout_ms);
}
void put(ByteWriter& w, const M2CMembership& m) {
  w.u64(m.group_epoch);
  w.u32(m.global_world_size);
  w.u32(m.group_world_size);
  w.u32(m.num_groups);
  w.u32(m.largest_group_size);
  w.u32(static_cast<uint32_t>(m.ring.size()));
  for (const RingMember& member : m.ring) {
    w.u64(member.id);
    w.string(clamp_string(member.host));
    w.u16(member.port);
  }
}
void put(ByteWriter& w, const M2CVoteResult& m) {
  w.u8(static_cast<uint8_t>(m.kind));
  w.boolean(m.peers_pending);
  w.u8(static_cast<uint8_t>(m.status));
  w.string(clamp_string(m.message));
}
void put(ByteWriter& w, const M2COpResult& m) {
  w.u64(m.tag);
  w.u64(m.seq);
  w.u64(m.op_epoch);
  w.u8(static_cast<uint8_t>(m.status));
  w.u32(m.world_size);
  w.string(clamp_string(m.message));
}
void put(ByteWriter& w, const M2CKicked& m) {
  w.u8(static_cast<uint8_t>(m.reason));
  w.string(clamp_string(m.message));
}
void put(ByteWriter&, const M2CHeartbeat&) {}
void put(ByteWriter& w, const M2CSyncPlan& m) {
  w.u64(m.round);
  w.u8(static_cast<uint8_t>(m.status));
  w.string(clamp_string(m.message));
  w.u64(m.revision);
  w.u32(static_cast<uint32_t>(m.fetch.size()));
  for (const FetchEntry& f : m.fetch) {
    w.u32(f.entry);
    w.u64(f.hash);
  }
  w.u32(static_cast<uint32_t>(m.donors.size()));
  for (const StateDonor& d : m.donors) {
    w.u64(d.id);
    w.string(clamp_string(d.host));
    w.u16(d.port);
  }
}
void put(ByteWriter& w, const M2CSyncResult& m) {
  w.u64(m.round);
  w.u8(static_cast<uint8_t>(m.status));
  w.string(clamp_string(m.message));
  w.u64(m.revision);
}
void put(ByteWriter& w, const std::vector<ProbeTarget>& list) {
  w.u32(static_cast<uint32_t>(list.size()));
  for (const ProbeTarget& t : list) {
    w.u32(t.slot);
    w.u64(t.peer.id);
    w.string(clamp_string(t.peer.host));
    w.u16(t.peer.port);
  }
}
void put(ByteWriter& w, const M2CProbePlan& m) {
  w.u64(m.round);
  w.u32(m.window_ms);
  w.u32(m.slot_ms);
  put(w, m.targets);
  put(w, m.sources);
}

// ---- decoders: one overload per message; the caller checks for trailing bytes ----
Status get(ByteReader& r, C2MRegister* m) {
  QCCL_RETURN_IF_ERROR(r.u32(&m->peer_group, "peer_group"));
  QCCL_RETURN_IF_ERROR(r.u16(&m->p2p_port, "p2p_port"));
  return r.string(&m->advertised_host, "advertised_host", kMaxStringBytes);
}
Status get(ByteReader&, C2MHeartbeat*) { return Status::ok(); }
Status get(ByteReader& r, C2MVote* m) { return read_vote_kind(r, &m->kind); }
Status get(ByteReader& r, C2MOpStart* m) {
  QCCL_RETURN_IF_ERROR(r.u64(&m->tag, "tag"));
  QCCL_RETURN_IF_ERROR(r.u64(&m->seq, "seq"));
  QCCL_RETURN_IF_ERROR(r.u64(&m->op_epoch, "op_epoch"));
  return r.u64(&m->desc_hash, "desc_hash");
}
Status get(ByteReader& r, C2MOpDone* m) {
  QCCL_RETURN_IF_ERROR(r.u64(&m->tag, "tag"));
  QCCL_RETURN_IF_ERROR(r.u64(&m->seq, "seq"));
  QCCL_RETURN_IF_ERROR(r.u64(&m->op_epoch, "op_epoch"));
  QCCL_RETURN_IF_ERROR(read_status_code(r, &m->status));
  return r.string(&m->message, "message", kMaxStringBytes);
}
Status get(ByteReader&, C2MLeave*) { return Status::ok(); }
Status get(ByteReader& r, C2MSyncState* m) {
  QCCL_RETURN_IF_ERROR(r.u64(&m->revision, "revision"));
  QCCL_RETURN_IF_ERROR(read_enum(r, &m->strategy, "strategy", 0,
                                 static_cast<uint8_t>(SyncStrategy::kSendOnly)));
  uint32_t n = 0;
  QCCL_RETURN_IF_ERROR(r.count(&n, "entries", kMaxStateEntries, kMinStateEntryBytes));
  m->entries.clear();
  m->entries.reserve(n);
  for (uint32_t i = 0; i < n; ++i) {
    StateEntry& e = m->entries.emplace_back();
    QCCL_RETURN_IF_ERROR(r.string(&e.name, "entry name", kMaxStringBytes));
    QCCL_RETURN_IF_ERROR(read_enum(r, &e.dtype, "entry dtype", 0, kNumDataTypes - 1));
    QCCL_RETURN_IF_ERROR(r.u64(&e.count, "entry count"));
    QCCL_RETURN_IF_ERROR(r.u64(&e.hash, "entry hash"));
    QCCL_RETURN_IF_ERROR(r.boolean(&e.allow_inequality, "entry allow_inequality"));
  }
  return Status::ok();
}
Status get(ByteReader& r, C2MSyncDone* m) {
  QCCL_RETURN_IF_ERROR(r.u64(&m->round, "round"));
  QCCL_RETURN_IF_ERROR(read_status_code(r, &m->status));
  return r.string(&m->message, "message", kMaxStringBytes);
}
Status get(ByteReader& r, C2MProbeResults* m) {
  QCCL_RETURN_IF_ERROR(r.u64(&m->round, "round"));
  uint32_t n = 0;
  QCCL_RETURN_IF_ERROR(r.count(&n, "inbound", kMaxRingMembers, kMinProbeResultBytes));
  m->inbound.clear();
  m->inbound.reserve(n);
  for (uint32_t i = 0; i < n; ++i) {
    ProbeResult& p = m->inbound.emplace_back();
    QCCL_RETURN_IF_ERROR(r.u64(&p.peer, "inbound peer"));
    QCCL_RETURN_IF_ERROR(r.u64(&p.bytes_per_s, "inbound bytes_per_s"));
  }
  uint32_t u = 0;
  QCCL_RETURN_IF_ERROR(r.count(&u, "unreachable", kMaxRingMembers, 8));
  m->unreachable.assign(u, kNoPeer);
  for (PeerId& id : m->unreachable) QCCL_RETURN_IF_ERROR(r.u64(&id, "unreachable peer"));
  return Status::ok();
}
Status get(ByteReader& r, M2CWelcome* m) {
  QCCL_RETURN_IF_ERROR(r.u64(&m->peer_id, "peer_id"));
  QCCL_RETURN_IF_ERROR(r.u32(&m->heartbeat_interval_ms, "heartbeat_interval_ms"));
  QCCL_RETURN_IF_ERROR(r.u32(&m->peer_timeout_ms, "peer_timeout_ms"));
  return r.u32(&m->vote_timeout_ms, "vote_timeout_ms");
}
Status get(ByteReader& r, M2CMembership* m) {
  QCCL_RETURN_IF_ERROR(r.u64(&m->group_epoch, "group_epoch"));
  QCCL_RETURN_IF_ERROR(r.u32(&m->global_world_size, "global_world_size"));
  QCCL_RETURN_IF_ERROR(r.u32(&m->group_world_size, "group_world_size"));
  QCCL_RETURN_IF_ERROR(r.u32(&m->num_groups, "num_groups"));
  QCCL_RETURN_IF_ERROR(r.u32(&m->largest_group_size, "largest_group_size"));
  uint32_t n = 0;
  QCCL_RETURN_IF_ERROR(r.count(&n, "ring", kMaxRingMembers, kMinRingMemberBytes));
  m->ring.clear();
  m->ring.reserve(n);  // safe: count() checked n against the limit and the remaining bytes
  for (uint32_t i = 0; i < n; ++i) {
    RingMember& member = m->ring.emplace_back();
    QCCL_RETURN_IF_ERROR(r.u64(&member.id, "ring member id"));
    QCCL_RETURN_IF_ERROR(r.string(&member.host, "ring member host", kMaxStringBytes));
    QCCL_RETURN_IF_ERROR(r.u16(&member.port, "ring member port"));
  }
  return Status::ok();
}
Status get(ByteReader& r, M2CVoteResult* m) {
  QCCL_RETURN_IF_ERROR(read_vote_kind(r, &m->kind));
  QCCL_RETURN_IF_ERROR(r.boolean(&m->peers_pending, "peers_pending"));
  QCCL_RETURN_IF_ERROR(read_status_code(r, &m->status));
  return r.string(&m->message, "message", kMaxStringBytes);
}
Status get(ByteReader& r, M2COpResult* m) {
  QCCL_RETURN_IF_ERROR(r.u64(&m->tag, "tag"));
  QCCL_RETURN_IF_ERROR(r.u64(&m->seq, "seq"));
  QCCL_RETURN_IF_ERROR(r.u64(&m->op_epoch, "op_epoch"));
  QCCL_RETURN_IF_ERROR(read_status_code(r, &m->status));
  QCCL_RETURN_IF_ERROR(r.u32(&m->world_size, "world_size"));
  return r.string(&m->message, "message", kMaxStringBytes);
}
Status get(ByteReader& r, M2CKicked* m) {
  QCCL_RETURN_IF_ERROR(read_enum(r, &m->reason, "kick reason",
                                 static_cast<uint8_t>(KickReason::kTimeout),
                                 static_cast<uint8_t>(KickReason::kUnreachable)));
  return r.string(&m->message, "message", kMaxStringBytes);
}
Status get(ByteReader&, M2CHeartbeat*) { return Status::ok(); }
Status get(ByteReader& r, M2CSyncPlan* m) {
  QCCL_RETURN_IF_ERROR(r.u64(&m->round, "round"));
  QCCL_RETURN_IF_ERROR(read_status_code(r, &m->status));
  QCCL_RETURN_IF_ERROR(r.string(&m->message, "message", kMaxStringBytes));
  QCCL_RETURN_IF_ERROR(r.u64(&m->revision, "revision"));
  uint32_t n = 0;
  QCCL_RETURN_IF_ERROR(r.count(&n, "fetch", kMaxStateEntries, kMinFetchEntryBytes));
  m->fetch.clear();
  m->fetch.reserve(n);
  for (uint32_t i = 0; i < n; ++i) {
    FetchEntry& f = m->fetch.emplace_back();
    QCCL_RETURN_IF_ERROR(r.u32(&f.entry, "fetch entry"));
    QCCL_RETURN_IF_ERROR(r.u64(&f.hash, "fetch hash"));
  }
  uint32_t d = 0;
  QCCL_RETURN_IF_ERROR(r.count(&d, "donors", kMaxRingMembers, kMinRingMemberBytes));
  m->donors.clear();
  m->donors.reserve(d);
  for (uint32_t i = 0; i < d; ++i) {
    StateDonor& donor = m->donors.emplace_back();
    QCCL_RETURN_IF_ERROR(r.u64(&donor.id, "donor id"));
    QCCL_RETURN_IF_ERROR(r.string(&donor.host, "donor host", kMaxStringBytes));
    QCCL_RETURN_IF_ERROR(r.u16(&donor.port, "donor port"));
  }
  return Status::ok();
}
Status get(ByteReader& r, M2CSyncResult* m) {
  QCCL_RETURN_IF_ERROR(r.u64(&m->round, "round"));
  QCCL_RETURN_IF_ERROR(read_status_code(r, &m->status));
  QCCL_RETURN_IF_ERROR(r.string(&m->message, "message", kMaxStringBytes));
  return r.u64(&m->revision, "revision");
}
Status get(ByteReader& r, std::vector<ProbeTarget>* list, std::string_view field) {
  uint32_t n = 0;
  QCCL_RETURN_IF_ERROR(r.count(&n, field, kMaxRingMembers, kMinProbeTargetBytes));
  list->clear();
  list->reserve(n);
  for (uint32_t i = 0; i < n; ++i) {
    ProbeTarget& t = list->emplace_back();
    QCCL_RETURN_IF_ERROR(r.u32(&t.slot, "slot"));
    QCCL_RETURN_IF_ERROR(r.u64(&t.peer.id, "peer id"));
    QCCL_RETURN_IF_ERROR(r.string(&t.peer.host, "peer host", kMaxStringBytes));
    QCCL_RETURN_IF_ERROR(r.u16(&t.peer.port, "peer port"));
  }
  return Status::ok();
}
Status get(ByteReader& r, M2CProbePlan* m) {
  QCCL_RETURN_IF_ERROR(r.u64(&m->round, "round"));
  QCCL_RETURN_IF_ERROR(r.u32(&m->window_ms, "window_ms"));
  QCCL_RETURN_IF_ERROR(r.u32(&m->slot_ms, "slot_ms"));
  QCCL_RETURN_IF_ERROR(get(r, &m->targets, "targets"));
  return get(r, &m->sources, "sources");
}

template <typename T>
Result<ControlMessage> decode_as(std::span<const uint8_t> payload) {
  constexpr std::string_view kName = MsgInfo<T>::kName;
  ByteReader r(payload, kName);
  T m;
  QCCL_RETURN_IF_ERROR(get(r, &m));
  QCCL_RETURN_IF_ERROR(r.expect_end());
  return ControlMessage(std::move(m));
}

}  // namespace

MsgType type_of(const ControlMessage& m) {
  return std::visit([](const auto& msg) { return MsgInfo<std::decay_t<decltype(msg)>>::kType; },
                    m);
}

std::vector<uint8_t> encode_frame(const ControlMessage& m, Epoch epoch) {
  std::vector<uint8_t> out(kFrameHeaderSize);
  ByteWriter w(&out);
  std::visit([&w](const auto& msg) { put(w, msg); }, m);
  FrameHeader h;
  h.payload_len = static_cast<uint32_t>(out.size() - kFrameHeaderSize);
  h.type = static_cast<uint16_t>(type_of(m));
  h.flags = 0;
  h.epoch = epoch;
  const auto header = encode_frame_header(h);
  std::copy(header.begin(), header.end(), out.begin());
  return out;
}

Result<ControlMessage> decode_control(uint16_t type, std::span<const uint8_t> payload) {
  switch (static_cast<MsgType>(type)) {
    case MsgType::kC2MRegister: return decode_as<C2MRegister>(payload);
    case MsgType::kC2MHeartbeat: return decode_as<C2MHeartbeat>(payload);
    case MsgType::kC2MVote: return decode_as<C2MVote>(payload);
    case MsgType::kC2MOpStart: return decode_as<C2MOpStart>(payload);
    case MsgType::kC2MOpDone: return decode_as<C2MOpDone>(payload);
    case MsgType::kC2MLeave: return decode_as<C2MLeave>(payload);
    case MsgType::kC2MSyncState: return decode_as<C2MSyncState>(payload);
    case MsgType::kC2MSyncDone: return decode_as<C2MSyncDone>(payload);
    case MsgType::kC2MProbeResults: return decode_as<C2MProbeResults>(payload);
    case MsgType::kM2CWelcome: return decode_as<M2CWelcome>(payload);
    case MsgType::kM2CMembership: return decode_as<M2CMembership>(payload);
    case MsgType::kM2CVoteResult: return decode_as<M2CVoteResult>(payload);
    case MsgType::kM2COpResult: return decode_as<M2COpResult>(payload);
    case MsgType::kM2CKicked: return decode_as<M2CKicked>(payload);
    case MsgType::kM2CHeartbeat: return decode_as<M2CHeartbeat>(payload);
    case MsgType::kM2CSyncPlan: return decode_as<M2CSyncPlan>(payload);
    case MsgType::kM2CSyncResult: return decode_as<M2CSyncResult>(payload);
    case MsgType::kM2CProbePlan: return decode_as<M2CProbePlan>(payload);
    case MsgType::kP2PData:
    case MsgType::kP2PStateRequest:
    case MsgType::kP2PStatePiece:
      return make_status(StatusCode::kInvalidArgument,
                         "message type {} is a peer-to-peer frame, not a control message", type);
  }
  return make_status(StatusCode::kInvalidArgument, "unknown message type {} ({} payload bytes)",
                     type, payload.size());
}

std::array<uint8_t, kP2PDataHeaderSize> encode_data_header(const P2PDataHeader& h) {
  std::array<uint8_t, kP2PDataHeaderSize> b{};
  store_le<uint64_t>(&b[0], h.tag);
  store_le<uint64_t>(&b[8], h.seq);
  store_le<uint64_t>(&b[16], h.desc_hash);
  store_le<uint32_t>(&b[24], h.step);
  store_le<uint32_t>(&b[28], h.segment);
  return b;
}

Result<P2PDataHeader> decode_data_header(std::span<const uint8_t, kP2PDataHeaderSize> bytes) {
  const uint8_t* b = bytes.data();
  P2PDataHeader h;
  h.tag = load_le<uint64_t>(&b[0]);
  h.seq = load_le<uint64_t>(&b[8]);
  h.desc_hash = load_le<uint64_t>(&b[16]);
  h.step = load_le<uint32_t>(&b[24]);
  h.segment = load_le<uint32_t>(&b[28]);
  return h;
}

std::array<uint8_t, kP2PStateRequestSize> encode_state_request(const P2PStateRequest& q) {
  std::array<uint8_t, kP2PStateRequestSize> b{};
  store_le<uint32_t>(&b[0], q.entry);
  store_le<uint32_t>(&b[4], q.piece);
  store_le<uint64_t>(&b[8], q.entry_hash);
  return b;
}

P2PStateRequest decode_state_request(std::span<const uint8_t, kP2PStateRequestSize> bytes) {
  const uint8_t* b = bytes.data();
  return {load_le<uint32_t>(&b[0]), load_le<uint32_t>(&b[4]), load_le<uint64_t>(&b[8])};
}

std::array<uint8_t, kP2PStatePieceHeaderSize> encode_state_piece_header(
    const P2PStatePieceHeader& h) {
  std::array<uint8_t, kP2PStatePieceHeaderSize> b{};
  store_le<uint32_t>(&b[0], h.entry);
  store_le<uint32_t>(&b[4], h.piece);
  store_le<uint64_t>(&b[8], h.piece_hash);
  b[16] = static_cast<uint8_t>(h.status);
  return b;
}

Result<P2PStatePieceHeader> decode_state_piece_header(
    std::span<const uint8_t, kP2PStatePieceHeaderSize> bytes) {
  const uint8_t* b = bytes.data();
  if (b[16] >= static_cast<uint8_t>(StatusCode::kNumCodes)) {
    return make_status(StatusCode::kInvalidArgument,
                       "P2PStatePieceHeader: status at byte 16 is {}, out of range", b[16]);
  }
  P2PStatePieceHeader h;
  h.entry = load_le<uint32_t>(&b[0]);
  h.piece = load_le<uint32_t>(&b[4]);
  h.piece_hash = load_le<uint64_t>(&b[8]);
  h.status = static_cast<StatusCode>(b[16]);
  return h;
}

}  // namespace qccl::wire
