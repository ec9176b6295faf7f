// Fixed-size framing records: Preamble, PreambleAck, FrameHeader (layouts in frame.hpp).
//
// These are the first bytes a receiver sees from an unauthenticated socket, so decoding checks
// everything it can (magic, version, enum ranges, payload limit) before the caller reads or
// allocates anything more. Reserved bytes are written as zero and ignored on decode, so a later
// version can give them a meaning without breaking version-1 receivers.
#include "wire/frame.hpp"

#include "wire/byte_io.hpp"

namespace qccl::wire {
namespace {

bool valid_conn_kind(uint8_t k) {
  return k == static_cast<uint8_t>(ConnKind::kControl) ||
         k == static_cast<uint8_t>(ConnKind::kData) || k == static_cast<uint8_t>(ConnKind::kState) ||
         k == static_cast<uint8_t>(ConnKind::kProbe);
}

}  // namespace

std::array<uint8_t, kPreambleSize> encode_preamble(const Preamble& p) {
  std::array<uint8_t, kPreambleSize> b{};
  store_le<uint32_t>(&b[0], kMagic);
  store_le<uint16_t>(&b[4], kProtocolVersion);
  b[6] = static_cast<uint8_t>(p.kind);
  b[7] = p.flags;
  store_le<uint64_t>(&b[8], p.peer_id);
  store_le<uint64_t>(&b[16], p.epoch);
  store_le<uint16_t>(&b[24], p.lane);
  store_le<uint16_t>(&b[26], p.lane_count);
  store_le<uint32_t>(&b[28], p.kind == ConnKind::kProbe ? p.probe_window_ms : 0);
  return b;
}

Result<Preamble> decode_preamble(std::span<const uint8_t, kPreambleSize> bytes) {
  const uint8_t* b = bytes.data();
  const uint32_t magic = load_le<uint32_t>(&b[0]);
  if (magic != kMagic) {
    return make_status(StatusCode::kInvalidArgument,
                       "Preamble: bad magic 0x{:08x} (expected 0x{:08x}): not a qccl peer", magic,
                       kMagic);
  }
  const uint16_t version = load_le<uint16_t>(&b[4]);
  if (version != kProtocolVersion) {
    return make_status(StatusCode::kInvalidArgument,
                       "Preamble: protocol version {} is not supported (this side speaks {})",
                       version, kProtocolVersion);
  }
  if (!valid_conn_kind(b[6])) {
    return make_status(StatusCode::kInvalidArgument,
                       "Preamble: unknown connection kind {} at byte 6 (expected 1..4)", b[6]);
  }
  Preamble p;
  p.kind = static_cast<ConnKind>(b[6]);
  p.flags = b[7];
  p.peer_id = load_le<uint64_t>(&b[8]);
  p.epoch = load_le<uint64_t>(&b[16]);
  p.lane = load_le<uint16_t>(&b[24]);
  p.lane_count = load_le<uint16_t>(&b[26]);
  if (p.kind == ConnKind::kProbe) p.probe_window_ms = load_le<uint32_t>(&b[28]);
  return p;
}

std::array<uint8_t, kPreambleAckSize> encode_preamble_ack(const PreambleAck& a) {
  std::array<uint8_t, kPreambleAckSize> b{};
  store_le<uint32_t>(&b[0], kMagic);
  b[4] = static_cast<uint8_t>(a.status);
  return b;
}

Result<PreambleAck> decode_preamble_ack(std::span<const uint8_t, kPreambleAckSize> bytes) {
  const uint8_t* b = bytes.data();
  const uint32_t magic = load_le<uint32_t>(&b[0]);
  if (magic != kMagic) {
    return make_status(StatusCode::kInvalidArgument,
                       "PreambleAck: bad magic 0x{:08x} (expected 0x{:08x}): not a qccl peer",
                       magic, kMagic);
  }
  if (b[4] >= static_cast<uint8_t>(StatusCode::kNumCodes)) {
    return make_status(StatusCode::kInvalidArgument,
                       "PreambleAck: status {} at byte 4 is out of range (0..{})", b[4],
                       static_cast<int>(StatusCode::kNumCodes) - 1);
  }
  PreambleAck a;
  a.status = static_cast<StatusCode>(b[4]);
  return a;
}

std::array<uint8_t, kFrameHeaderSize> encode_frame_header(const FrameHeader& h) {
  std::array<uint8_t, kFrameHeaderSize> b{};
  store_le<uint32_t>(&b[0], h.payload_len);
  store_le<uint16_t>(&b[4], h.type);
  store_le<uint16_t>(&b[6], h.flags);
  store_le<uint64_t>(&b[8], h.epoch);
  return b;
}

Result<FrameHeader> decode_frame_header(std::span<const uint8_t, kFrameHeaderSize> bytes,
                                        uint32_t max_payload) {
  const uint8_t* b = bytes.data();
  FrameHeader h;
  h.payload_len = load_le<uint32_t>(&b[0]);
  h.type = load_le<uint16_t>(&b[4]);
  h.flags = load_le<uint16_t>(&b[6]);
  h.epoch = load_le<uint64_t>(&b[8]);
  if (h.payload_len > max_payload) {
    return make_status(StatusCode::kInvalidArgument,
                       "FrameHeader: payload_len {} exceeds the connection limit {} (type {})",
                       h.payload_len, max_payload, h.type);
  }
  return h;
}

}  // namespace qccl::wire
