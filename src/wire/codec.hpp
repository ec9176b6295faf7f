// Encoding and decoding of control messages and data-frame headers (pure; never throws).
//
// decode_* takes the frame header's type and the payload bytes and returns the message or a
// kInvalidArgument Status saying what is wrong (unknown type, truncated, trailing bytes,
// string or vector over its limit, enum out of range). Callers drop the connection on error.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "common/status.hpp"
#include "wire/frame.hpp"
#include "wire/messages.hpp"

namespace qccl::wire {

// A whole frame: header (type from the message, the given epoch) followed by the payload.
std::vector<uint8_t> encode_frame(const ControlMessage& m, Epoch epoch);

// Decodes a control message payload. `type` is FrameHeader::type.
Result<ControlMessage> decode_control(uint16_t type, std::span<const uint8_t> payload);

// Data frames: the 32-byte P2PDataHeader at the start of the payload.
std::array<uint8_t, kP2PDataHeaderSize> encode_data_header(const P2PDataHeader& h);
Result<P2PDataHeader> decode_data_header(std::span<const uint8_t, kP2PDataHeaderSize> bytes);

// Shared-state frames: the fixed request payload and the piece header (bytes follow it).
std::array<uint8_t, kP2PStateRequestSize> encode_state_request(const P2PStateRequest& q);
P2PStateRequest decode_state_request(std::span<const uint8_t, kP2PStateRequestSize> bytes);
std::array<uint8_t, kP2PStatePieceHeaderSize> encode_state_piece_header(
    const P2PStatePieceHeader& h);
// Rejects an unknown status.
Result<P2PStatePieceHeader> decode_state_piece_header(
    std::span<const uint8_t, kP2PStatePieceHeaderSize> bytes);

}  // namespace qccl::wire
