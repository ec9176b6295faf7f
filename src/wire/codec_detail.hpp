// The codec's internals, shared by codec.cpp (framing, dispatch), codec_control.cpp
// (membership, operation and vote messages) and codec_state.cpp (shared-state and probe
// messages): one put and one get overload per control message, and the helpers they share.
// Private to src/wire; not installed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "common/status.hpp"
#include "wire/byte_io.hpp"
#include "wire/messages.hpp"

namespace qccl::wire::codec_detail {

// Smallest encoding of one RingMember (u64 id, empty host, u16 port): bounds a claimed ring
// length by the bytes actually present before anything is reserved.
inline constexpr size_t kMinRingMemberBytes = 8 + 4 + 2;

// The longest prefix of `s` that fits kMaxStringBytes without splitting a UTF-8 sequence
// (sequences are at most 4 bytes, so at most 3 bytes are given back; bytes that are not UTF-8
// are simply cut at the limit).
std::string_view clamp_string(std::string_view s);

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

Status read_status_code(ByteReader& r, StatusCode* out);
Status read_vote_kind(ByteReader& r, VoteKind* out);

// ---- encoders: one overload per message ----
// codec_control.cpp
void put(ByteWriter&, const C2MRegister&);
void put(ByteWriter&, const C2MResume&);
void put(ByteWriter&, const C2MHeartbeat&);
void put(ByteWriter&, const C2MVote&);
void put(ByteWriter&, const C2MOpStart&);
void put(ByteWriter&, const C2MOpDone&);
void put(ByteWriter&, const C2MLeave&);
void put(ByteWriter&, const M2CWelcome&);
void put(ByteWriter&, const M2CMembership&);
void put(ByteWriter&, const M2CVoteResult&);
void put(ByteWriter&, const M2COpResult&);
void put(ByteWriter&, const M2CKicked&);
void put(ByteWriter&, const M2CHeartbeat&);
// codec_state.cpp
void put(ByteWriter&, const C2MSyncState&);
void put(ByteWriter&, const C2MSyncDone&);
void put(ByteWriter&, const C2MProbeResults&);
void put(ByteWriter&, const M2CSyncPlan&);
void put(ByteWriter&, const M2CSyncResult&);
void put(ByteWriter&, const M2CProbePlan&);

// ---- decoders: one overload per message; the caller checks for trailing bytes ----
// codec_control.cpp
Status get(ByteReader&, C2MRegister*);
Status get(ByteReader&, C2MResume*);
Status get(ByteReader&, C2MHeartbeat*);
Status get(ByteReader&, C2MVote*);
Status get(ByteReader&, C2MOpStart*);
Status get(ByteReader&, C2MOpDone*);
Status get(ByteReader&, C2MLeave*);
Status get(ByteReader&, M2CWelcome*);
Status get(ByteReader&, M2CMembership*);
Status get(ByteReader&, M2CVoteResult*);
Status get(ByteReader&, M2COpResult*);
Status get(ByteReader&, M2CKicked*);
Status get(ByteReader&, M2CHeartbeat*);
// codec_state.cpp
Status get(ByteReader&, C2MSyncState*);
Status get(ByteReader&, C2MSyncDone*);
Status get(ByteReader&, C2MProbeResults*);
Status get(ByteReader&, M2CSyncPlan*);
Status get(ByteReader&, M2CSyncResult*);
Status get(ByteReader&, M2CProbePlan*);

}  // namespace qccl::wire::codec_detail
