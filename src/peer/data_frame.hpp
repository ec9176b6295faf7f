// DataFrameHead: the bytes in front of a data frame's payload on a lane (a frame header of
// type kP2PData, then the data header; protocol.md), encoded and decoded here only.
//
// Thread-safety: pure functions.
#pragma once

#include <array>
#include <cstdint>
#include <span>

#include "common/status.hpp"
#include "peer/frames.hpp"
#include "wire/frame.hpp"
#include "wire/messages.hpp"

namespace qccl::peer {

// What a frame costs on the wire besides its payload.
inline constexpr size_t kDataHeadBytes = wire::kFrameHeaderSize + wire::kP2PDataHeaderSize;

using DataHead = std::array<uint8_t, kDataHeadBytes>;

DataHead encode_data_head(Epoch epoch, const FrameId& id, size_t payload);

struct DecodedHead {
  Epoch epoch = 0;
  FrameId id;
  size_t payload = 0;
};
// kPeerLost with a message when the bytes are not a data frame of at most the largest
// segment.
Result<DecodedHead> decode_data_head(const DataHead& head);

}  // namespace qccl::peer
