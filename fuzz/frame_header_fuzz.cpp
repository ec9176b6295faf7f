// Fuzz target: the 16-byte frame header (wire/frame.hpp) that precedes every frame on every
// connection, decoded under each of the connection limits the receivers use.
//
// Input: 16 header bytes, then optionally one byte choosing the limit (control, data, or a
// limit taken from the following 4 bytes); with fewer than 16 bytes nothing is decoded.
// Oracle: the header is accepted exactly when payload_len <= the limit (a rejection is
// kInvalidArgument), and an accepted header re-encodes to its own 16 bytes.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>

#include "fuzz_check.hpp"
#include "wire/byte_io.hpp"
#include "wire/frame.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace qccl::wire;
  if (size < kFrameHeaderSize) return 0;
  const std::span<const uint8_t> in(data, size);
  uint32_t limit = kMaxControlPayload;
  if (size > kFrameHeaderSize) {
    switch (in[kFrameHeaderSize] % 3) {
      case 0: limit = kMaxControlPayload; break;
      case 1: limit = kMaxDataPayload; break;
      default:
        if (size >= kFrameHeaderSize + 5) limit = load_le<uint32_t>(&in[kFrameHeaderSize + 1]);
        break;
    }
  }
  const auto header = in.first<kFrameHeaderSize>();
  const auto decoded = decode_frame_header(header, limit);
  const uint32_t payload_len = load_le<uint32_t>(&in[0]);
  FUZZ_CHECK(decoded.is_ok() == (payload_len <= limit));
  if (!decoded.is_ok()) {
    FUZZ_CHECK(decoded.status().code() == qccl::StatusCode::kInvalidArgument);
    return 0;
  }
  FUZZ_CHECK(decoded->payload_len == payload_len);
  const auto out = encode_frame_header(*decoded);
  FUZZ_CHECK(std::equal(out.begin(), out.end(), header.begin()));
  return 0;
}
