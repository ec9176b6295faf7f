// Encoders and decoders of the control messages of membership, operations and votes (the
// rest of the codec is in codec.cpp; the put/get overloads are declared in codec_detail.hpp).
//
// Payload layouts (conventions in codec.cpp):
//   C2MRegister    u32 peer_group | u16 p2p_port | str advertised_host
//   C2MHeartbeat   (empty)
//   C2MVote        u8 kind
//   C2MOpStart     u64 tag | u64 seq | u64 op_epoch | u64 desc_hash | u32 timeout_ms
//   C2MOpDone      u64 tag | u64 seq | u64 op_epoch | u8 status | str message
//   C2MLeave       (empty)
//   C2MResume      u64 run_id | u64 generation | u64 master_id | u64 peer_id | u32 peer_group |
//                  u16 p2p_port | str advertised_host | u64 global_epoch | u64 group_epoch | u32 n | n x u64 |
//                  u64 next_peer_id | bool has_revision | u64 last_revision | u32 m |
//                  m x (u64 tag | u64 seq | u64 op_epoch | bool committed) |
//                  u8 vote_waiting (0 or a vote kind) | u64 vote_round | bool vote_pending |
//                  bool sync_waiting | u64 sync_round | u64 sync_revision
//   M2CWelcome     u64 peer_id | u32 heartbeat_interval_ms | u32 peer_timeout_ms |
//                  u32 vote_timeout_ms | u64 run_id | u64 generation | u64 master_id
//   M2CMembership  u64 group_epoch | u32 global_world_size | u32 group_world_size |
//                  u32 num_groups | u32 largest_group_size | u32 n | n x (u64 id | str host |
//                  u16 port) | u64 next_peer_id | u64 vote_round
//   M2CVoteResult  u8 kind | bool peers_pending | u8 status | str message | u64 round
//   M2COpResult    u64 tag | u64 seq | u64 op_epoch | u8 status | u32 world_size | str message
//   M2CKicked      u8 reason | str message
//   M2CHeartbeat   (empty)
#include <cstdint>

#include "wire/byte_io.hpp"
#include "wire/codec_detail.hpp"

namespace qccl::wire::codec_detail {

// ---- encoders ----
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
  w.u32(m.timeout_ms);
}
void put(ByteWriter& w, const C2MOpDone& m) {
  w.u64(m.tag);
  w.u64(m.seq);
  w.u64(m.op_epoch);
  w.u8(static_cast<uint8_t>(m.status));
  w.string(clamp_string(m.message));
}
void put(ByteWriter&, const C2MLeave&) {}
void put(ByteWriter& w, const C2MResume& m) {
  w.u64(m.run_id);
  w.u64(m.generation);
  w.u64(m.master_id);
  w.u64(m.peer_id);
  w.u32(m.peer_group);
  w.u16(m.p2p_port);
  w.string(clamp_string(m.advertised_host));
  w.u64(m.global_epoch);
  w.u64(m.group_epoch);
  w.u32(static_cast<uint32_t>(m.ring.size()));
  for (PeerId id : m.ring) w.u64(id);
  w.u64(m.next_peer_id);
  w.boolean(m.has_revision);
  w.u64(m.last_revision);
  w.u32(static_cast<uint32_t>(m.ops.size()));
  for (const ResumeOp& op : m.ops) {
    w.u64(op.tag);
    w.u64(op.seq);
    w.u64(op.op_epoch);
    w.boolean(op.committed);
  }
  w.u8(m.vote_waiting);
  w.u64(m.vote_round);
  w.boolean(m.vote_pending);
  w.boolean(m.sync_waiting);
  w.u64(m.sync_round);
  w.u64(m.sync_revision);
}
void put(ByteWriter& w, const M2CWelcome& m) {
  w.u64(m.peer_id);
  w.u32(m.heartbeat_interval_ms);
  w.u32(m.peer_timeout_ms);
  w.u32(m.vote_timeout_ms);
  w.u64(m.run_id);
  w.u64(m.generation);
  w.u64(m.master_id);
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
  w.u64(m.next_peer_id);
  w.u64(m.vote_round);
}
void put(ByteWriter& w, const M2CVoteResult& m) {
  w.u8(static_cast<uint8_t>(m.kind));
  w.boolean(m.peers_pending);
  w.u8(static_cast<uint8_t>(m.status));
  w.string(clamp_string(m.message));
  w.u64(m.round);
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

// ---- decoders ----
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
  QCCL_RETURN_IF_ERROR(r.u64(&m->desc_hash, "desc_hash"));
  return r.u32(&m->timeout_ms, "timeout_ms");
}
Status get(ByteReader& r, C2MOpDone* m) {
  QCCL_RETURN_IF_ERROR(r.u64(&m->tag, "tag"));
  QCCL_RETURN_IF_ERROR(r.u64(&m->seq, "seq"));
  QCCL_RETURN_IF_ERROR(r.u64(&m->op_epoch, "op_epoch"));
  QCCL_RETURN_IF_ERROR(read_status_code(r, &m->status));
  return r.string(&m->message, "message", kMaxStringBytes);
}
Status get(ByteReader&, C2MLeave*) { return Status::ok(); }
Status get(ByteReader& r, C2MResume* m) {
  QCCL_RETURN_IF_ERROR(r.u64(&m->run_id, "run_id"));
  QCCL_RETURN_IF_ERROR(r.u64(&m->generation, "generation"));
  QCCL_RETURN_IF_ERROR(r.u64(&m->master_id, "master_id"));
  QCCL_RETURN_IF_ERROR(r.u64(&m->peer_id, "peer_id"));
  QCCL_RETURN_IF_ERROR(r.u32(&m->peer_group, "peer_group"));
  QCCL_RETURN_IF_ERROR(r.u16(&m->p2p_port, "p2p_port"));
  QCCL_RETURN_IF_ERROR(r.string(&m->advertised_host, "advertised_host", kMaxStringBytes));
  QCCL_RETURN_IF_ERROR(r.u64(&m->global_epoch, "global_epoch"));
  QCCL_RETURN_IF_ERROR(r.u64(&m->group_epoch, "group_epoch"));
  uint32_t n = 0;
  QCCL_RETURN_IF_ERROR(r.count(&n, "ring", kMaxRingMembers, 8));
  m->ring.assign(n, kNoPeer);  // safe: count() checked n against the remaining bytes
  for (uint32_t i = 0; i < n; ++i) QCCL_RETURN_IF_ERROR(r.u64(&m->ring[i], "ring member id"));
  QCCL_RETURN_IF_ERROR(r.u64(&m->next_peer_id, "next_peer_id"));
  QCCL_RETURN_IF_ERROR(r.boolean(&m->has_revision, "has_revision"));
  QCCL_RETURN_IF_ERROR(r.u64(&m->last_revision, "last_revision"));
  uint32_t ops = 0;
  QCCL_RETURN_IF_ERROR(r.count(&ops, "ops", kMaxResumeOps, 8 + 8 + 8 + 1));
  m->ops.assign(ops, ResumeOp{});
  for (ResumeOp& op : m->ops) {
    QCCL_RETURN_IF_ERROR(r.u64(&op.tag, "op tag"));
    QCCL_RETURN_IF_ERROR(r.u64(&op.seq, "op seq"));
    QCCL_RETURN_IF_ERROR(r.u64(&op.op_epoch, "op epoch"));
    QCCL_RETURN_IF_ERROR(r.boolean(&op.committed, "op committed"));
  }
  QCCL_RETURN_IF_ERROR(read_enum(r, &m->vote_waiting, "vote_waiting", 0,
                                 static_cast<uint8_t>(VoteKind::kOptimizeTopology)));
  QCCL_RETURN_IF_ERROR(r.u64(&m->vote_round, "vote_round"));
  QCCL_RETURN_IF_ERROR(r.boolean(&m->vote_pending, "vote_pending"));
  QCCL_RETURN_IF_ERROR(r.boolean(&m->sync_waiting, "sync_waiting"));
  QCCL_RETURN_IF_ERROR(r.u64(&m->sync_round, "sync_round"));
  return r.u64(&m->sync_revision, "sync_revision");
}
Status get(ByteReader& r, M2CWelcome* m) {
  QCCL_RETURN_IF_ERROR(r.u64(&m->peer_id, "peer_id"));
  QCCL_RETURN_IF_ERROR(r.u32(&m->heartbeat_interval_ms, "heartbeat_interval_ms"));
  QCCL_RETURN_IF_ERROR(r.u32(&m->peer_timeout_ms, "peer_timeout_ms"));
  QCCL_RETURN_IF_ERROR(r.u32(&m->vote_timeout_ms, "vote_timeout_ms"));
  QCCL_RETURN_IF_ERROR(r.u64(&m->run_id, "run_id"));
  QCCL_RETURN_IF_ERROR(r.u64(&m->generation, "generation"));
  return r.u64(&m->master_id, "master_id");
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
  QCCL_RETURN_IF_ERROR(r.u64(&m->next_peer_id, "next_peer_id"));
  return r.u64(&m->vote_round, "vote_round");
}
Status get(ByteReader& r, M2CVoteResult* m) {
  QCCL_RETURN_IF_ERROR(read_vote_kind(r, &m->kind));
  QCCL_RETURN_IF_ERROR(r.boolean(&m->peers_pending, "peers_pending"));
  QCCL_RETURN_IF_ERROR(read_status_code(r, &m->status));
  QCCL_RETURN_IF_ERROR(r.string(&m->message, "message", kMaxStringBytes));
  return r.u64(&m->round, "round");
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
                                 static_cast<uint8_t>(KickReason::kNotLeading)));
  return r.string(&m->message, "message", kMaxStringBytes);
}
Status get(ByteReader&, M2CHeartbeat*) { return Status::ok(); }

}  // namespace qccl::wire::codec_detail
