// Authenticated encryption of a connection's bytes (docs/security.md).
//
// Once the handshake of net/auth.hpp has proved that both ends hold the run's secret, each
// direction of the connection carries records:
//
//   u32 plaintext length L (little-endian, 1 <= L <= kMaxRecordPayload) | ciphertext (L) | tag (16)
//
// sealed with an AEAD (AES-256-GCM, or ChaCha20-Poly1305 where the CPU has no AES
// instructions) under a key of that direction. The nonce is the direction's 12-byte IV XOR the
// record's sequence number (big-endian in the last 8 bytes), as in TLS 1.3; the length is the
// associated data. Sequence numbers are implicit (both ends count), so a record that was
// altered, injected, replayed, reordered or dropped fails authentication; a stream cut short
// ends in the middle of a record (a read error). Keys come from HKDF-SHA256 (RFC 5869) over
// the secret, salted with both handshake nonces (fresh per connection) and bound to the suite
// and the preamble bytes, so every connection and direction has keys of its own.
//
// Thread-safety: a RecordSealer / RecordOpener is used by one coroutine at a time.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "common/status.hpp"
#include "wire/frame.hpp"

namespace qccl::net {

enum class CipherSuite : uint8_t {
  kNone = 0,
  kAes256Gcm = 1,
  kChaCha20Poly1305 = 2,
};

// "AES-256-GCM", "ChaCha20-Poly1305", "none".
std::string_view suite_name(CipherSuite suite);
// AES-256-GCM if this CPU has AES instructions (x86 AES-NI, ARMv8 AES), else ChaCha20-Poly1305.
CipherSuite preferred_suite();
// The suite a connection uses, given what each end prefers: AES-256-GCM unless either end
// lacks AES instructions.
CipherSuite agree_suite(CipherSuite client, CipherSuite server);

inline constexpr size_t kKeySize = 32;
inline constexpr size_t kIvSize = 12;
inline constexpr size_t kTagSize = 16;
inline constexpr size_t kRecordHeaderSize = 4;
inline constexpr size_t kMaxRecordPayload = 64 * 1024;
inline constexpr size_t kRecordOverhead = kRecordHeaderSize + kTagSize;

struct DirectionKeys {
  std::array<uint8_t, kKeySize> key{};
  std::array<uint8_t, kIvSize> iv{};
};

struct SessionKeys {
  DirectionKeys client_to_server;
  DirectionKeys server_to_client;
};

// HKDF-SHA256 (RFC 5869, extract and expand); `length` <= 255 * 32. Exposed for its
// known-answer tests.
std::vector<uint8_t> hkdf_sha256(std::span<const uint8_t> ikm, std::span<const uint8_t> salt,
                                 std::span<const uint8_t> info, size_t length);

// The connection's keys: HKDF-SHA256 with IKM = the secret, salt = client nonce | server
// nonce, info = "qccl record keys v1" | suite (1 byte) | the preamble bytes as sent; the 88
// output bytes are the client-to-server key and IV, then the server-to-client key and IV.
SessionKeys derive_session_keys(std::string_view secret, CipherSuite suite,
                                std::span<const uint8_t, wire::kPreambleSize> preamble,
                                std::span<const uint8_t> client_nonce,
                                std::span<const uint8_t> server_nonce);

// Seals the records of one direction.
class RecordSealer {
 public:
  RecordSealer(CipherSuite suite, const DirectionKeys& keys);
  ~RecordSealer();
  RecordSealer(const RecordSealer&) = delete;
  RecordSealer& operator=(const RecordSealer&) = delete;

  // Writes one record holding the concatenation of `parts` (total 1..kMaxRecordPayload bytes)
  // to `out`, which has room for total + kRecordOverhead bytes; returns the bytes written.
  // kInternal if the cipher failed or the sequence numbers ran out (2^64 records).
  Result<size_t> seal(std::span<const std::span<const uint8_t>> parts, uint8_t* out);
  uint64_t records() const { return seq_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  uint64_t seq_ = 0;
};

// Opens the records of one direction, in order.
class RecordOpener {
 public:
  RecordOpener(CipherSuite suite, const DirectionKeys& keys);
  ~RecordOpener();
  RecordOpener(const RecordOpener&) = delete;
  RecordOpener& operator=(const RecordOpener&) = delete;

  // The payload length a record header announces; kInvalidArgument unless 1..kMaxRecordPayload.
  static Result<size_t> payload_length(std::span<const uint8_t, kRecordHeaderSize> header);
  // Decrypts the record of `header` whose ciphertext is `data` (in place: afterwards `data`
  // holds the plaintext) and checks its tag. kAuthFailed if the record is not the next one
  // this direction's sender sealed (altered, injected, replayed, reordered): the connection
  // must be dropped, and `data` holds garbage.
  Status open(std::span<const uint8_t, kRecordHeaderSize> header, std::span<uint8_t> data,
              std::span<const uint8_t, kTagSize> tag);
  uint64_t records() const { return seq_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  uint64_t seq_ = 0;
  bool failed_ = false;  // once a record failed, every later one fails too
};

}  // namespace qccl::net
