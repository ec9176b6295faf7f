// Fuzz target: the first bytes of every connection, Preamble (32) and PreambleAck (8)
// (wire/frame.hpp), which the accepting and the connecting side read from an unauthenticated
// socket.
//
// Input: any bytes. The first 32 are decoded as a Preamble and the first 8 as a PreambleAck
// (when there are that many).
// Oracle: besides "no crash, no sanitizer report", a decoder must accept exactly the records
// with the right magic, version and enum ranges, and an accepted record must re-encode to its
// own bytes, except the fields the encoder writes as zero: probe_window_ms unless the kind is
// kProbe, and the ack's 3 reserved bytes.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>

#include "fuzz_check.hpp"
#include "wire/byte_io.hpp"
#include "wire/frame.hpp"

namespace qccl::wire {
namespace {

void check_preamble(std::span<const uint8_t, kPreambleSize> in) {
  const auto decoded = decode_preamble(in);
  const bool valid = load_le<uint32_t>(&in[0]) == kMagic &&
                     load_le<uint16_t>(&in[4]) == kProtocolVersion && in[6] >= 1 && in[6] <= 4;
  FUZZ_CHECK(decoded.is_ok() == valid);
  if (!decoded.is_ok()) {
    FUZZ_CHECK(decoded.status().code() == StatusCode::kInvalidArgument);
    return;
  }
  const auto out = encode_preamble(*decoded);
  const bool probe = decoded->kind == ConnKind::kProbe;
  FUZZ_CHECK(std::equal(out.begin(), out.begin() + 28, in.begin()));
  for (size_t i = 28; i < kPreambleSize; ++i) FUZZ_CHECK(out[i] == (probe ? in[i] : 0));
  // Decoding the re-encoding gives the same record.
  const auto again = decode_preamble(out);
  FUZZ_CHECK(again.is_ok() && encode_preamble(*again) == out);
}

void check_ack(std::span<const uint8_t, kPreambleAckSize> in) {
  const auto decoded = decode_preamble_ack(in);
  const bool valid = load_le<uint32_t>(&in[0]) == kMagic &&
                     in[4] < static_cast<uint8_t>(StatusCode::kNumCodes);
  FUZZ_CHECK(decoded.is_ok() == valid);
  if (!decoded.is_ok()) {
    FUZZ_CHECK(decoded.status().code() == StatusCode::kInvalidArgument);
    return;
  }
  const auto out = encode_preamble_ack(*decoded);
  FUZZ_CHECK(std::equal(out.begin(), out.begin() + 5, in.begin()));
  FUZZ_CHECK(out[5] == 0 && out[6] == 0 && out[7] == 0);
}

}  // namespace
}  // namespace qccl::wire

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace qccl::wire;
  const std::span<const uint8_t> in(data, size);
  if (size >= kPreambleSize) check_preamble(in.first<kPreambleSize>());
  if (size >= kPreambleAckSize) check_ack(in.first<kPreambleAckSize>());
  return 0;
}
