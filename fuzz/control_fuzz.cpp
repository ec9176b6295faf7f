// Fuzz target: the control-message decoder (wire/codec.hpp decode_control), which the master
// runs on every frame from a peer and a peer on every frame from the master.
//
// Input: u16 message type (little-endian) then the payload, as the frame header's type and
// the bytes that follow it. Shorter than 2 bytes: nothing is decoded.
// Oracle: a rejection is kInvalidArgument with a reason. An accepted payload is a message of
// that type whose encoding is canonical, so re-encoding it (encode_frame) must give exactly
// the input payload, under a header with the same type and length; and decoding that frame
// again must give the same bytes once more.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "fuzz_check.hpp"
#include "wire/byte_io.hpp"
#include "wire/codec.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace qccl::wire;
  if (size < 2) return 0;
  const uint16_t type = load_le<uint16_t>(data);
  const std::span<const uint8_t> payload(data + 2, size - 2);
  const auto decoded = decode_control(type, payload);
  if (!decoded.is_ok()) {
    FUZZ_CHECK(decoded.status().code() == qccl::StatusCode::kInvalidArgument);
    FUZZ_CHECK(!decoded.status().message().empty());
    return 0;
  }
  FUZZ_CHECK(static_cast<uint16_t>(type_of(*decoded)) == type);

  constexpr qccl::Epoch kEpoch = 0x0123456789ABCDEFull;
  const std::vector<uint8_t> frame = encode_frame(*decoded, kEpoch);
  FUZZ_CHECK(frame.size() == kFrameHeaderSize + payload.size());
  const auto header =
      decode_frame_header(std::span(frame).first<kFrameHeaderSize>(), kMaxControlPayload);
  FUZZ_CHECK(header.is_ok());
  FUZZ_CHECK(header->type == type && header->flags == 0 && header->epoch == kEpoch);
  FUZZ_CHECK(header->payload_len == payload.size());
  const std::span<const uint8_t> reencoded = std::span(frame).subspan(kFrameHeaderSize);
  FUZZ_CHECK(std::equal(reencoded.begin(), reencoded.end(), payload.begin(), payload.end()));

  const auto again = decode_control(header->type, reencoded);
  FUZZ_CHECK(again.is_ok());
  FUZZ_CHECK(encode_frame(*again, kEpoch) == frame);
  return 0;
}
