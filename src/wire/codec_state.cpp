// Encoders and decoders of the shared-state and probe messages: the control messages of a
// shared-state sync and of a bandwidth probe round, and the fixed headers of a shared-state
// connection (request, piece). The rest of the codec is in codec.cpp; the put/get overloads are
// declared in codec_detail.hpp.
//
// Payload layouts (conventions in codec.cpp):
//   C2MSyncState   u64 revision | u8 strategy | u32 n | n x (str name | u8 dtype | u64 count |
//                  u64 hash | bool allow_inequality)
//   C2MSyncDone    u64 round | u8 status | str message
//   C2MProbeResults  u64 round | u32 n | n x (u64 peer | u64 bytes_per_s) | u32 u | u x u64 peer
//   M2CSyncPlan    u64 round | u8 status | str message | u64 revision | u32 n | n x (u32 entry |
//                  u64 hash) | u32 d | d x (u64 id | str host | u16 port)
//   M2CSyncResult  u64 round | u8 status | str message | u64 revision
//   M2CProbePlan   u64 round | u32 window_ms | u32 slot_ms | targets | sources, where each list
//                  is u32 n | n x (u32 slot | u64 id | str host | u16 port)
//   P2PStateRequest      u32 entry | u32 piece | u64 entry_hash  (16 bytes)
//   P2PStatePieceHeader  u32 entry | u32 piece | u64 piece_hash | u8 status | 7 x u8 0  (24)
#include "wire/codec.hpp"

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "wire/byte_io.hpp"
#include "wire/codec_detail.hpp"

namespace qccl::wire {
namespace codec_detail {
namespace {

constexpr size_t kMinStateEntryBytes = 4 + 1 + 8 + 8 + 1;
constexpr size_t kMinFetchEntryBytes = 4 + 8;
constexpr size_t kMinProbeResultBytes = 8 + 8;
constexpr size_t kMinProbeTargetBytes = 4 + kMinRingMemberBytes;

// A probe plan's list of targets or sources.
void put(ByteWriter& w, const std::vector<ProbeTarget>& list) {
  w.u32(static_cast<uint32_t>(list.size()));
  for (const ProbeTarget& t : list) {
    w.u32(t.slot);
    w.u64(t.peer.id);
    w.string(clamp_string(t.peer.host));
    w.u16(t.peer.port);
  }
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

}  // namespace

// ---- encoders ----
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
void put(ByteWriter& w, const M2CProbePlan& m) {
  w.u64(m.round);
  w.u32(m.window_ms);
  w.u32(m.slot_ms);
  put(w, m.targets);
  put(w, m.sources);
}

// ---- decoders ----
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
Status get(ByteReader& r, M2CProbePlan* m) {
  QCCL_RETURN_IF_ERROR(r.u64(&m->round, "round"));
  QCCL_RETURN_IF_ERROR(r.u32(&m->window_ms, "window_ms"));
  QCCL_RETURN_IF_ERROR(r.u32(&m->slot_ms, "slot_ms"));
  QCCL_RETURN_IF_ERROR(get(r, &m->targets, "targets"));
  return get(r, &m->sources, "sources");
}

}  // namespace codec_detail

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
