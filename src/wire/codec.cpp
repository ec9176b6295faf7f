// Control-message and data-header codec (declared in codec.hpp; pure, never throws): the
// helpers every message's encoding shares, the dispatch from a ControlMessage to its encoder and
// from a frame's type to its decoder, and the data-frame header.
//
// Payload layouts are little-endian; str = u32 length + bytes, bool = one byte 0/1, enums = u8.
// Each message's layout is listed where it is encoded: codec_control.cpp (registration,
// heartbeats, membership, votes, operations, kicks) and codec_state.cpp (shared state, probes,
// and the shared-state connection's fixed headers). Here:
//   P2PDataHeader  u64 tag | u64 seq | u64 desc_hash | u32 step | u32 segment  (32 bytes)
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
#include "wire/codec_detail.hpp"

namespace qccl::wire {
namespace codec_detail {

std::string_view clamp_string(std::string_view s) {
  if (s.size() <= kMaxStringBytes) return s;
  size_t cut = kMaxStringBytes;
  while (cut > kMaxStringBytes - 3 && (static_cast<uint8_t>(s[cut]) & 0xC0) == 0x80) --cut;
  return s.substr(0, cut);
}

Status read_status_code(ByteReader& r, StatusCode* out) {
  return read_enum(r, out, "status", 0, static_cast<uint8_t>(StatusCode::kNumCodes) - 1);
}
Status read_vote_kind(ByteReader& r, VoteKind* out) {
  return read_enum(r, out, "vote kind", static_cast<uint8_t>(VoteKind::kUpdateTopology),
                   static_cast<uint8_t>(VoteKind::kOptimizeTopology));
}

}  // namespace codec_detail

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
QCCL_WIRE_MSG_INFO_(C2MResume);
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

template <typename T>
Result<ControlMessage> decode_as(std::span<const uint8_t> payload) {
  constexpr std::string_view kName = MsgInfo<T>::kName;
  ByteReader r(payload, kName);
  T m;
  QCCL_RETURN_IF_ERROR(codec_detail::get(r, &m));
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
  std::visit([&w](const auto& msg) { codec_detail::put(w, msg); }, m);
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
    case MsgType::kC2MResume: return decode_as<C2MResume>(payload);
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

}  // namespace qccl::wire
