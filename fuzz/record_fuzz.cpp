// Fuzz target: the record layer of a connection, RecordOpener (net/record_cipher.hpp), which
// reads what arrives on a connection after the handshake, and RecordSealer, whose output it
// must accept.
//
// Input: one mode byte (record_fuzz.hpp: bit 0 open/seal, bit 1 the suite), then
//   - open mode: a wire stream, parsed as consecutive records (4-byte header read by
//     payload_length, then the ciphertext and the 16-byte tag) and opened in order under
//     fixed keys, until the stream ends or a header is refused;
//   - seal mode: plaintext chunks, each u16 LE (length - 1) then that many bytes (fewer if the
//     input ends first), sealed in order under the same keys into a stream.
// Oracle, beyond "no crash, no sanitizer report":
//   - a header is refused with kInvalidArgument exactly when its length is not 1..64 KiB;
//   - a record opens only if it is byte for byte what a RecordSealer with the same keys makes
//     of that plaintext at that sequence number (so anything else, altered, injected, replayed
//     or reordered, fails), and then to that plaintext; a refusal is kAuthFailed, and every
//     later record is refused too;
//   - in seal mode, the sealed stream opens to exactly the chunks, and with the last byte of
//     its last tag flipped, to all of them but the last, which fails.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "fuzz_check.hpp"
#include "net/record_cipher.hpp"
#include "record_fuzz.hpp"
#include "wire/byte_io.hpp"

namespace qccl::net::fuzz {
namespace {

using Bytes = std::vector<uint8_t>;

struct Opened {
  std::vector<Bytes> plaintexts;  // of the records that opened, in order
  bool refused = false;           // a record failed (and so did every later one)
};

Opened open_stream(CipherSuite suite, std::span<const uint8_t> wire) {
  RecordOpener opener(suite, fixed_keys());
  RecordSealer resealer(suite, fixed_keys());  // at the opener's sequence number
  Opened out;
  while (wire.size() >= kRecordHeaderSize) {
    const auto header = wire.first<kRecordHeaderSize>();
    const uint32_t announced = wire::load_le<uint32_t>(header.data());
    const auto n = RecordOpener::payload_length(header);
    FUZZ_CHECK(n.is_ok() == (announced >= 1 && announced <= kMaxRecordPayload));
    if (!n.is_ok()) {
      FUZZ_CHECK(n.status().code() == StatusCode::kInvalidArgument);
      return out;  // the connection would be dropped here
    }
    const size_t size = *n + kRecordOverhead;
    if (wire.size() < size) return out;  // cut short: a read error, not a record
    const auto record = wire.first(size);
    Bytes data(record.begin() + kRecordHeaderSize, record.end() - kTagSize);
    const Status s = opener.open(header, data, record.last<kTagSize>());
    if (s.is_ok()) {
      FUZZ_CHECK(!out.refused);
      Bytes again(size);
      const std::span<const uint8_t> parts[] = {data};
      const auto sealed = resealer.seal(parts, again.data());
      FUZZ_CHECK(sealed.is_ok() && *sealed == size);
      FUZZ_CHECK(std::equal(again.begin(), again.end(), record.begin()));
      out.plaintexts.push_back(std::move(data));
    } else {
      FUZZ_CHECK(s.code() == StatusCode::kAuthFailed);
      out.refused = true;
    }
    FUZZ_CHECK(opener.records() == out.plaintexts.size());
    wire = wire.subspan(size);
  }
  return out;
}

void seal_and_open(CipherSuite suite, std::span<const uint8_t> in) {
  std::vector<std::span<const uint8_t>> chunks;
  while (in.size() > 2) {
    const size_t len = std::min<size_t>(wire::load_le<uint16_t>(in.data()) + 1u, in.size() - 2);
    chunks.push_back(in.subspan(2, len));
    in = in.subspan(2 + len);
  }
  if (chunks.empty()) return;
  Bytes stream = seal_stream(suite, chunks);
  FUZZ_CHECK(!stream.empty());

  const Opened opened = open_stream(suite, stream);
  FUZZ_CHECK(!opened.refused && opened.plaintexts.size() == chunks.size());
  for (size_t i = 0; i < chunks.size(); ++i) {
    FUZZ_CHECK(std::ranges::equal(opened.plaintexts[i], chunks[i]));
  }

  stream.back() ^= 0x01;
  const Opened tampered = open_stream(suite, stream);
  FUZZ_CHECK(tampered.refused && tampered.plaintexts.size() == chunks.size() - 1);
}

}  // namespace
}  // namespace qccl::net::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace qccl::net::fuzz;
  if (size < 1) return 0;
  const std::span<const uint8_t> rest(data + 1, size - 1);
  if ((data[0] & kModeOpen) != 0) {
    (void)open_stream(suite_of(data[0]), rest);
  } else {
    seal_and_open(suite_of(data[0]), rest);
  }
  return 0;
}
