#include "net/auth.hpp"

#include <random>
#include <string_view>
#include <vector>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "net/record_cipher.hpp"
#include "wire/byte_io.hpp"

namespace qccl::net {
namespace {

constexpr std::string_view kServerLabel = "qccl server v1";
constexpr std::string_view kClientLabel = "qccl client v1";

Status auth_failed(std::string_view why) {
  return make_status(StatusCode::kAuthFailed, "authentication failed: {}", why);
}

awaitable<Status> write_all(Connection& conn, std::span<const uint8_t> bytes) {
  std::array<asio::const_buffer, 1> b{asio::buffer(bytes.data(), bytes.size())};
  co_return co_await conn.write_gather(b);
}

// Tells the connecting side, then reads what it sent meanwhile until it closes (at most 64 KiB
// or 2 s): closing with unread bytes would send a reset, which can destroy the refusal before
// the other side reads it.
awaitable<Status> refuse(Connection& conn, std::string_view why) {
  using namespace asio::experimental::awaitable_operators;
  auto nack = wire::encode_preamble_ack({StatusCode::kAuthFailed});
  if ((co_await write_all(conn, nack)).is_ok()) {
    auto drain = [&]() -> awaitable<void> {
      std::array<uint8_t, 4096> sink;
      for (size_t total = 0; total < 64 * 1024;) {
        auto n = co_await conn.read_some(sink);
        if (!n.is_ok() || *n == 0) co_return;
        total += *n;
      }
    };
    asio::steady_timer limit(co_await asio::this_coro::executor, std::chrono::seconds(2));
    co_await (drain() || limit.async_wait(use_nothrow));
  }
  co_return auth_failed(why);
}

// Why two sides whose encryption settings differ do not talk (no silent downgrade).
std::string_view encryption_mismatch(bool this_side_encrypts) {
  return this_side_encrypts ? "the other side does not encrypt; this side requires it"
                            : "the other side encrypts; this side has encryption off";
}

// Both directions of `conn` in records from now on; `client`: this side connected.
void start_records(Connection& conn, const SharedSecret& secret, CipherSuite suite,
                   std::span<const uint8_t, wire::kPreambleSize> preamble, const Nonce& client_nonce,
                   const Nonce& server_nonce, bool client) {
  SessionKeys keys = derive_session_keys(secret.key, suite, preamble, client_nonce, server_nonce);
  const DirectionKeys& out = client ? keys.client_to_server : keys.server_to_client;
  const DirectionKeys& in = client ? keys.server_to_client : keys.client_to_server;
  conn.enable_records(std::make_unique<RecordSealer>(suite, out),
                      std::make_unique<RecordOpener>(suite, in));
}

}  // namespace

Secret make_secret(const std::optional<std::string>& token, bool encrypt) {
  if (!token) return std::nullopt;
  return SharedSecret{*token, encrypt};
}

Mac hmac_sha256(std::span<const uint8_t> key, std::span<const uint8_t> data) {
  Mac out{};
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), data.data(), data.size(),
       out.data(), &len);
  return out;
}

Mac auth_mac(const std::string& secret, AuthRole role,
             std::span<const uint8_t, wire::kPreambleSize> preamble, const Nonce& client_nonce,
             const Nonce& server_nonce) {
  std::string_view label = role == AuthRole::kServer ? kServerLabel : kClientLabel;
  std::vector<uint8_t> msg(label.begin(), label.end());
  msg.insert(msg.end(), preamble.begin(), preamble.end());
  msg.insert(msg.end(), client_nonce.begin(), client_nonce.end());
  msg.insert(msg.end(), server_nonce.begin(), server_nonce.end());
  auto key = std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(secret.data()),
                                      secret.size());
  return hmac_sha256(key, msg);
}

Nonce random_nonce() {
  Nonce n{};
  if (RAND_bytes(n.data(), static_cast<int>(n.size())) != 1) {
    // OpenSSL's generator failed (no entropy source): fall back to the OS through random_device.
    std::random_device rd;
    for (auto& b : n) b = static_cast<uint8_t>(rd());
  }
  return n;
}

bool macs_equal(const Mac& a, const Mac& b) { return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0; }

awaitable<Status> send_preamble(Connection& conn, wire::Preamble pre, const Secret& secret) {
  pre.flags = secret ? wire::kPreambleFlagAuth : 0;
  const bool encrypt = secret && secret->encrypt;
  if (encrypt) pre.flags |= wire::kPreambleFlagEncrypt;
  if (encrypt && preferred_suite() != CipherSuite::kAes256Gcm) pre.flags |= wire::kPreambleFlagNoAes;
  const auto pre_bytes = wire::encode_preamble(pre);
  if (!secret) co_return co_await write_all(conn, pre_bytes);
  const Nonce mine = random_nonce();
  std::array<asio::const_buffer, 2> out{asio::buffer(pre_bytes), asio::buffer(mine)};
  QCCL_CO_RETURN_IF_ERROR(co_await conn.write_gather(out));
  std::array<uint8_t, kChallengeSize> challenge{};
  QCCL_CO_RETURN_IF_ERROR(co_await conn.read_exact(std::span(challenge).first(8)));
  if (wire::load_le<uint32_t>(challenge.data()) != kChallengeMagic) {
    // Not a challenge: a PreambleAck refusing the connection (or garbage). Hanging up at once
    // lets the other side finish.
    conn.close();
    auto ack = wire::decode_preamble_ack(std::span(challenge).first<wire::kPreambleAckSize>());
    if (!ack.is_ok()) co_return auth_failed(ack.status().message());
    if (ack->status == StatusCode::kAuthFailed) {
      co_return auth_failed(
          "the other side refused this side's shared secret (or has none), or its encryption "
          "setting (encryption must be on at every side or off at every side)");
    }
    co_return auth_failed("the other side answered without authenticating");
  }
  QCCL_CO_RETURN_IF_ERROR(co_await conn.read_exact(std::span(challenge).subspan(8)));
  Nonce theirs{};
  Mac their_mac{};
  std::copy_n(challenge.begin() + 8, kNonceSize, theirs.begin());
  std::copy_n(challenge.begin() + 8 + kNonceSize, kMacSize, their_mac.begin());
  if (!macs_equal(their_mac, auth_mac(secret->key, AuthRole::kServer, pre_bytes, mine, theirs))) {
    conn.close();
    co_return auth_failed("the other side does not know the shared secret");
  }
  // The suite is not under the MACs, but the keys depend on it: a changed one fails the first
  // record. A side that wants encryption never goes on without it (no silent downgrade).
  const auto suite = static_cast<CipherSuite>(wire::load_le<uint32_t>(challenge.data() + 4));
  const bool suite_known =
      suite == CipherSuite::kAes256Gcm || suite == CipherSuite::kChaCha20Poly1305;
  if (encrypt != (suite != CipherSuite::kNone) || (encrypt && !suite_known)) {
    conn.close();
    co_return auth_failed(encryption_mismatch(encrypt));
  }
  const Mac answer = auth_mac(secret->key, AuthRole::kClient, pre_bytes, mine, theirs);
  QCCL_CO_RETURN_IF_ERROR(co_await write_all(conn, answer));
  if (encrypt) start_records(conn, *secret, suite, pre_bytes, mine, theirs, true);
  co_return Status::ok();
}

awaitable<Result<wire::Preamble>> receive_preamble(Connection& conn, const Secret& secret) {
  std::array<uint8_t, wire::kPreambleSize> pre_bytes;
  QCCL_CO_RETURN_IF_ERROR(co_await conn.read_exact(pre_bytes));
  auto pre = wire::decode_preamble(pre_bytes);
  if (!pre.is_ok()) co_return pre.status();
  const bool flagged = (pre->flags & wire::kPreambleFlagAuth) != 0;
  if (!secret && !flagged) co_return pre;
  if (!secret) co_return co_await refuse(conn, "the other side uses a shared secret, this one none");
  if (!flagged) co_return co_await refuse(conn, "the other side presented no shared secret");
  const bool encrypt = (pre->flags & wire::kPreambleFlagEncrypt) != 0;
  if (encrypt != secret->encrypt) {
    co_return co_await refuse(conn, encryption_mismatch(secret->encrypt));
  }
  const CipherSuite suite =
      !encrypt ? CipherSuite::kNone
               : agree_suite((pre->flags & wire::kPreambleFlagNoAes) != 0
                                 ? CipherSuite::kChaCha20Poly1305
                                 : CipherSuite::kAes256Gcm,
                             preferred_suite());
  Nonce theirs{};
  QCCL_CO_RETURN_IF_ERROR(co_await conn.read_exact(theirs));
  const Nonce mine = random_nonce();
  std::array<uint8_t, kChallengeSize> challenge{};
  wire::store_le<uint32_t>(challenge.data(), kChallengeMagic);
  wire::store_le<uint32_t>(challenge.data() + 4, static_cast<uint32_t>(suite));
  const Mac proof = auth_mac(secret->key, AuthRole::kServer, pre_bytes, theirs, mine);
  std::copy(mine.begin(), mine.end(), challenge.begin() + 8);
  std::copy(proof.begin(), proof.end(), challenge.begin() + 8 + kNonceSize);
  QCCL_CO_RETURN_IF_ERROR(co_await write_all(conn, challenge));
  Mac answer{};
  QCCL_CO_RETURN_IF_ERROR(co_await conn.read_exact(answer));
  if (!macs_equal(answer, auth_mac(secret->key, AuthRole::kClient, pre_bytes, theirs, mine))) {
    co_return co_await refuse(conn, "the other side does not know the shared secret");
  }
  if (encrypt) start_records(conn, *secret, suite, pre_bytes, theirs, mine, false);
  co_return pre;
}

}  // namespace qccl::net
