// Fuzz target: the fixed headers of peer-to-peer frames (wire/codec.hpp): P2PDataHeader (32
// bytes, at the start of every data frame), P2PStateRequest (16, a shared-state request) and
// P2PStatePieceHeader (24, the donor's answer).
//
// Input: any bytes; each header is decoded from the first bytes when there are enough.
// Oracle: the data header and the request take any bytes and re-encode to them exactly; the
// piece header is accepted exactly when its status byte names a StatusCode, and re-encodes to
// its bytes with the 7 reserved bytes zero.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>

#include "fuzz_check.hpp"
#include "wire/codec.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace qccl::wire;
  const std::span<const uint8_t> in(data, size);

  if (size >= kP2PDataHeaderSize) {
    const auto bytes = in.first<kP2PDataHeaderSize>();
    const auto h = decode_data_header(bytes);
    FUZZ_CHECK(h.is_ok());
    const auto out = encode_data_header(*h);
    FUZZ_CHECK(std::equal(out.begin(), out.end(), bytes.begin()));
  }

  if (size >= kP2PStateRequestSize) {
    const auto bytes = in.first<kP2PStateRequestSize>();
    const auto out = encode_state_request(decode_state_request(bytes));
    FUZZ_CHECK(std::equal(out.begin(), out.end(), bytes.begin()));
  }

  if (size >= kP2PStatePieceHeaderSize) {
    const auto bytes = in.first<kP2PStatePieceHeaderSize>();
    const auto h = decode_state_piece_header(bytes);
    FUZZ_CHECK(h.is_ok() == (bytes[16] < static_cast<uint8_t>(qccl::StatusCode::kNumCodes)));
    if (!h.is_ok()) {
      FUZZ_CHECK(h.status().code() == qccl::StatusCode::kInvalidArgument);
    } else {
      const auto out = encode_state_piece_header(*h);
      FUZZ_CHECK(std::equal(out.begin(), out.begin() + 17, bytes.begin()));
      FUZZ_CHECK(std::all_of(out.begin() + 17, out.end(), [](uint8_t b) { return b == 0; }));
    }
  }
  return 0;
}
