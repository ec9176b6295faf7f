// Framing of the qccl wire protocol (pure: bytes in, values out; no I/O).
//
// Every TCP connection starts with a fixed 32-byte Preamble sent by the connecting side and a
// fixed 8-byte PreambleAck from the accepting side. After that both directions carry frames:
//
//   FrameHeader (16 bytes, little-endian)      payload (payload_len bytes)
//   u32 payload_len | u16 type | u16 flags | u64 epoch
//
// A receiver checks payload_len against the connection's limit *before* allocating, so an
// oversized or garbage header is rejected without reading further; the connection is then
// closed and logged. Nothing here throws.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>

#include "common/ids.hpp"
#include "common/status.hpp"

namespace qccl::wire {

inline constexpr uint32_t kMagic = 0x4C434351;  // "QCCL" as little-endian bytes
inline constexpr uint16_t kProtocolVersion = 1;

inline constexpr size_t kPreambleSize = 32;
inline constexpr size_t kPreambleAckSize = 8;
inline constexpr size_t kFrameHeaderSize = 16;

// Limits on payload_len, per connection kind.
inline constexpr uint32_t kMaxControlPayload = 16u << 20;         // 16 MiB (large state votes)
inline constexpr uint32_t kMaxSegmentBytes = 4u << 20;            // largest data segment
inline constexpr uint32_t kMaxDataPayload = kMaxSegmentBytes + 64;

enum class ConnKind : uint8_t {
  kControl = 1,  // peer -> master control link
  kData = 2,     // peer -> next ring neighbour, one lane of the pool
  kState = 3,    // shared-state receiver -> donor
  kProbe = 4,    // bandwidth probe: prober -> measured peer (docs/topology.md)
};

// Preamble.flags: the connecting side authenticates with a shared secret (net/auth.hpp),
// wants the connection encrypted (net/record_cipher.hpp), and has no AES instructions (the
// accepting side then picks ChaCha20-Poly1305).
inline constexpr uint8_t kPreambleFlagAuth = 0x01;
inline constexpr uint8_t kPreambleFlagEncrypt = 0x02;
inline constexpr uint8_t kPreambleFlagNoAes = 0x04;

// What the connecting side says first.
struct Preamble {
  ConnKind kind = ConnKind::kControl;
  uint8_t flags = 0;         // kPreambleFlag*; unknown bits are ignored
  PeerId peer_id = kNoPeer;  // kNoPeer on a first control connection (the master assigns one)
  Epoch epoch = 0;           // data: the group epoch the lane belongs to
  uint16_t lane = 0;         // data: index in the pool
  uint16_t lane_count = 0;   // data: pool size
  uint32_t probe_window_ms = 0;  // probe: how long the receiver measures (epoch = probe round)
  // Layout: u32 magic | u16 version | u8 kind | u8 flags | u64 peer_id | u64 epoch |
  //         u16 lane | u16 lane_count | u32 probe_window_ms (0 unless kProbe)  (32 bytes)
};

// The accepting side's answer. status != kOk means the connection is refused and will be
// closed (e.g. kInvalidArgument for an unknown epoch, kAuthFailed later).
struct PreambleAck {
  StatusCode status = StatusCode::kOk;
  // Layout: u32 magic | u8 status | u8 reserved[3]  (8 bytes)
};

struct FrameHeader {
  uint32_t payload_len = 0;
  uint16_t type = 0;
  uint16_t flags = 0;
  Epoch epoch = 0;
};

std::array<uint8_t, kPreambleSize> encode_preamble(const Preamble& p);
// Rejects a wrong magic, an unsupported version and an unknown kind.
Result<Preamble> decode_preamble(std::span<const uint8_t, kPreambleSize> bytes);

std::array<uint8_t, kPreambleAckSize> encode_preamble_ack(const PreambleAck& a);
Result<PreambleAck> decode_preamble_ack(std::span<const uint8_t, kPreambleAckSize> bytes);

std::array<uint8_t, kFrameHeaderSize> encode_frame_header(const FrameHeader& h);
// Rejects payload_len > max_payload (kInvalidArgument, message names both numbers).
Result<FrameHeader> decode_frame_header(std::span<const uint8_t, kFrameHeaderSize> bytes,
                                        uint32_t max_payload);

}  // namespace qccl::wire
