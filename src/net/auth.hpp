// Authentication of every qccl connection with a shared secret, and the keys of its
// encryption (docs/protocol.md §1, docs/security.md).
//
// When the connecting side holds a secret, its Preamble carries kPreambleFlagAuth (and
// kPreambleFlagEncrypt unless encryption is turned off) and is followed by its nonce; the
// accepting side answers with a challenge (its own nonce, the cipher suite it chose, and a MAC
// proving it knows the secret) and the connecting side with its MAC. Only then does the
// accepting side process the connection (and send its PreambleAck). A side without the
// secret, with another one, or with the other encryption setting is refused with kAuthFailed
// before any other byte is processed:
//
//   C -> S  Preamble (flags = auth [| encrypt] [| no-aes]) | nonce_c (32)
//   S -> C  u32 magic "QCCA" | u32 suite | nonce_s (32) | HMAC(K, "qccl server v1" | P | nonce_c | nonce_s)
//   C -> S  HMAC(K, "qccl client v1" | P | nonce_c | nonce_s)
//
// where P is the 32 preamble bytes as sent and HMAC is HMAC-SHA256 (OpenSSL libcrypto). Nonces
// are fresh random bytes per connection, so a recorded exchange cannot be replayed; MACs are
// compared in constant time; the secret is never logged. A refusal is a PreambleAck with status
// kAuthFailed (magic "QCCL"), which the connecting side tells from a challenge by its magic.
// With encryption (suite != 0), every byte after the client's MAC, in both directions,
// travels in AEAD records under keys derived from K, P, the suite and both nonces
// (net/record_cipher.hpp); the PreambleAck is the first record from the accepting side.
// Without it, this authenticates both ends and nothing more: the traffic that follows is
// neither encrypted nor signed.
//
// Thread-safety: the functions are reentrant; a Connection is used by one coroutine at a time.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "net/asio_common.hpp"
#include "net/connection.hpp"
#include "wire/frame.hpp"

namespace qccl::net {

// The shared secret and whether connections are encrypted with it (docs/security.md).
struct SharedSecret {
  std::string key;
  bool encrypt = true;  // false: authenticate only (turned off explicitly, on every side)
};
// nullopt = no authentication (and no encryption).
using Secret = std::optional<SharedSecret>;
// The secret of an auth token, if any.
Secret make_secret(const std::optional<std::string>& token, bool encrypt);

inline constexpr size_t kNonceSize = 32;
inline constexpr size_t kMacSize = 32;
inline constexpr uint32_t kChallengeMagic = 0x41434351;  // "QCCA" as little-endian bytes
inline constexpr size_t kChallengeSize = 8 + kNonceSize + kMacSize;

using Nonce = std::array<uint8_t, kNonceSize>;
using Mac = std::array<uint8_t, kMacSize>;

enum class AuthRole { kServer, kClient };

// HMAC-SHA256 over the role's label, the preamble bytes and both nonces (pure).
Mac auth_mac(const std::string& secret, AuthRole role,
             std::span<const uint8_t, wire::kPreambleSize> preamble, const Nonce& client_nonce,
             const Nonce& server_nonce);
// HMAC-SHA256(key, data): exposed for its known-answer test.
Mac hmac_sha256(std::span<const uint8_t> key, std::span<const uint8_t> data);
Nonce random_nonce();
bool macs_equal(const Mac& a, const Mac& b);  // constant time

// Connecting side: writes `pre` (flagged when there is a secret) and, with a secret, runs the
// exchange. The caller then reads the PreambleAck as usual. kAuthFailed when the other side
// refused or could not prove it knows the secret.
awaitable<Status> send_preamble(Connection& conn, wire::Preamble pre, const Secret& secret);

// Accepting side: reads and decodes the preamble and, when either side uses a secret, runs the
// exchange. On an authentication failure it sends PreambleAck(kAuthFailed) itself and returns
// kAuthFailed; the caller closes the connection.
awaitable<Result<wire::Preamble>> receive_preamble(Connection& conn, const Secret& secret);

}  // namespace qccl::net
