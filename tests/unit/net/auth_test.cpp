// The shared-secret handshake (net/auth.hpp) over real loopback sockets: the HMAC against
// RFC 4231, success with equal secrets (encrypted, or authenticated only), refusal in every
// mismatch (of secrets or of the encryption setting: no downgrade), a tampered answer, a
// replayed answer (fresh nonces), garbage instead of a nonce; and on an encrypted connection,
// data both ways in records, and a record sealed under other keys dropping the connection.
// Each case runs both ends on one io_context with a deadline.
#include <gtest/gtest.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "net/auth.hpp"
#include "loopback_pair.hpp"
#include "net/connection.hpp"
#include "support/watchdog.hpp"
#include "wire/frame.hpp"

QCCL_TEST_WATCHDOG(60);

namespace qccl::net {
namespace {

using namespace std::chrono_literals;

// A secret, encrypting unless `encrypt` is false.
Secret key(const char* k, bool encrypt = true) { return make_secret(std::string(k), encrypt); }

std::string hex(std::span<const uint8_t> bytes) {
  std::string s;
  for (uint8_t b : bytes) s += fmt::format("{:02x}", b);
  return s;
}

TEST(Auth, HmacSha256MatchesRfc4231) {
  // RFC 4231 test case 2.
  const std::string key = "Jefe", data = "what do ya want for nothing?";
  Mac m = hmac_sha256({reinterpret_cast<const uint8_t*>(key.data()), key.size()},
                      {reinterpret_cast<const uint8_t*>(data.data()), data.size()});
  EXPECT_EQ(hex(m), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

TEST(Auth, MacsDependOnRoleSecretPreambleAndBothNonces) {
  std::array<uint8_t, wire::kPreambleSize> pre{};
  Nonce a = random_nonce(), b = random_nonce();
  EXPECT_NE(a, b);
  Mac base = auth_mac("k", AuthRole::kClient, pre, a, b);
  EXPECT_TRUE(macs_equal(base, auth_mac("k", AuthRole::kClient, pre, a, b)));
  EXPECT_FALSE(macs_equal(base, auth_mac("k", AuthRole::kServer, pre, a, b)));
  EXPECT_FALSE(macs_equal(base, auth_mac("K", AuthRole::kClient, pre, a, b)));
  EXPECT_FALSE(macs_equal(base, auth_mac("k", AuthRole::kClient, pre, b, a)));
  pre[8] = 1;  // another peer id
  EXPECT_FALSE(macs_equal(base, auth_mac("k", AuthRole::kClient, pre, a, b)));
}

wire::Preamble probe_preamble() {
  wire::Preamble p;
  p.kind = wire::ConnKind::kData;
  p.peer_id = 7;
  p.epoch = 3;
  return p;
}

struct Outcome {
  Status client = Status::ok();
  Result<wire::Preamble> server = make_status(StatusCode::kInternal, "not run");
  std::optional<wire::PreambleAck> ack;  // what the client read after its side succeeded
};

// Both ends: the client sends its preamble (and authenticates), then reads the PreambleAck
// the server sends once its side accepted.
Outcome exchange(const Secret& client_secret, const Secret& server_secret) {
  Pair p;
  Outcome o;
  p.run([&]() -> awaitable<void> {
    using namespace asio::experimental::awaitable_operators;
    auto client = [&]() -> awaitable<void> {
      o.client = co_await send_preamble(*p.client, probe_preamble(), client_secret);
      if (!o.client.is_ok()) co_return;
      std::array<uint8_t, wire::kPreambleAckSize> ack;
      if ((co_await p.client->read_exact(ack)).is_ok()) {
        auto a = wire::decode_preamble_ack(ack);
        if (a.is_ok()) o.ack = *a;
      }
      p.client->close();
    };
    auto server = [&]() -> awaitable<void> {
      o.server = co_await receive_preamble(*p.server, server_secret);
      if (o.server.is_ok()) {
        auto ack = wire::encode_preamble_ack({StatusCode::kOk});
        std::array<asio::const_buffer, 1> b{asio::buffer(ack)};
        co_await p.server->write_gather(b);
      }
      p.server->close();
    };
    co_await (client() && server());
  });
  return o;
}

TEST(Auth, EqualSecretsOrNoneAreAccepted) {
  for (const Secret& s : {Secret{}, key("s3cret"), key("s3cret", false)}) {
    Outcome o = exchange(s, s);
    EXPECT_TRUE(o.client.is_ok()) << o.client.to_string();
    ASSERT_TRUE(o.server.is_ok()) << o.server.status().to_string();
    EXPECT_EQ(o.server->peer_id, 7u);
    uint8_t flags = !s ? 0 : s->encrypt ? wire::kPreambleFlagAuth | wire::kPreambleFlagEncrypt
                                        : wire::kPreambleFlagAuth;
    EXPECT_EQ(o.server->flags, flags);
    ASSERT_TRUE(o.ack.has_value());
    EXPECT_EQ(o.ack->status, StatusCode::kOk);
  }
}

TEST(Auth, EveryMismatchIsRefusedOnBothSides) {
  struct Case {
    Secret client, server;
    const char* server_says;
  };
  for (const Case& c : {Case{key("a"), key("b"), nullptr},
                        Case{{}, key("b"), "presented no shared secret"},
                        Case{key("a"), {}, "uses a shared secret, this one none"},
                        // A downgrade: the group requires encryption, this peer offers none.
                        Case{key("a", false), key("a"), "does not encrypt; this side requires it"},
                        Case{key("a"), key("a", false), "encrypts; this side has encryption off"}}) {
    auto name = [](const Secret& x) {
      return !x ? std::string("-") : x->key + (x->encrypt ? "+enc" : "");
    };
    SCOPED_TRACE(name(c.client) + " vs " + name(c.server));
    Outcome o = exchange(c.client, c.server);
    ASSERT_FALSE(o.server.is_ok());
    if (c.server_says) {
      EXPECT_EQ(o.server.status().code(), StatusCode::kAuthFailed);
      EXPECT_NE(o.server.status().message().find(c.server_says), std::string::npos)
          << o.server.status().message();
    }
    if (c.client && c.server && c.client->key != c.server->key) {
      // The client finds out first (the server's proof does not match its secret) and hangs
      // up, so the server side ends with the lost connection.
      EXPECT_EQ(o.client.code(), StatusCode::kAuthFailed) << o.client.to_string();
      EXPECT_NE(o.client.message().find("does not know the shared secret"), std::string::npos);
    } else if (c.client) {
      EXPECT_EQ(o.client.code(), StatusCode::kAuthFailed) << o.client.to_string();
    } else {
      // No secret: the client's side "succeeds" and reads the refusal in the ack.
      ASSERT_TRUE(o.ack.has_value());
      EXPECT_EQ(o.ack->status, StatusCode::kAuthFailed);
    }
    for (const Status& st : {o.client, o.server.status()}) {
      EXPECT_EQ(st.message().find("a\""), std::string::npos);
      EXPECT_EQ(st.message().find(": b"), std::string::npos);
    }
  }
}

// A client that writes `bytes` raw after its flagged preamble, then reads what comes back.
Result<wire::Preamble> raw_client(const std::string& secret,
                                  const std::function<std::vector<uint8_t>(std::span<const uint8_t>,
                                                                           const Nonce&)>& answer) {
  Pair p;
  Result<wire::Preamble> server = make_status(StatusCode::kInternal, "not run");
  p.run([&]() -> awaitable<void> {
    using namespace asio::experimental::awaitable_operators;
    auto client = [&]() -> awaitable<void> {
      wire::Preamble pre = probe_preamble();
      pre.flags = wire::kPreambleFlagAuth;
      auto pre_bytes = wire::encode_preamble(pre);
      Nonce mine = random_nonce();
      std::array<asio::const_buffer, 2> out{asio::buffer(pre_bytes), asio::buffer(mine)};
      co_await p.client->write_gather(out);
      std::array<uint8_t, kChallengeSize> challenge;
      if (!(co_await p.client->read_exact(challenge)).is_ok()) co_return;
      Nonce theirs;
      std::copy_n(challenge.begin() + 8, kNonceSize, theirs.begin());
      std::vector<uint8_t> reply = answer(pre_bytes, theirs);
      (void)mine;
      std::array<asio::const_buffer, 1> b{asio::buffer(reply)};
      co_await p.client->write_gather(b);
      std::array<uint8_t, wire::kPreambleAckSize> ack;
      co_await p.client->read_exact(ack);
      p.client->close();
    };
    auto serve = [&]() -> awaitable<void> {
      // Authentication only: raw_client sends no encryption flag (the MAC is what is tested).
      server = co_await receive_preamble(*p.server, make_secret(secret, false));
      p.server->close();
    };
    co_await (client() && serve());
  });
  return server;
}

TEST(Auth, ATamperedAnswerIsRefused) {
  // Knows nothing: answers with zeros.
  auto r = raw_client("k", [](auto, const Nonce&) { return std::vector<uint8_t>(kMacSize, 0); });
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("does not know the shared secret"), std::string::npos)
      << r.status().message();
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), StatusCode::kAuthFailed);
}

TEST(Auth, AReplayedAnswerIsRefused) {
  // Record a valid answer on one connection (the attacker saw it on the wire), replay it on
  // another: the server's fresh nonce makes it worthless.
  std::vector<uint8_t> recorded;
  Nonce recorded_client_nonce = random_nonce();
  {
    std::array<uint8_t, wire::kPreambleSize> pre = wire::encode_preamble(probe_preamble());
    Nonce server_nonce = random_nonce();
    Mac m = auth_mac("k", AuthRole::kClient, pre, recorded_client_nonce, server_nonce);
    recorded.assign(m.begin(), m.end());
  }
  auto r = raw_client("k", [&](auto, const Nonce&) { return recorded; });
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), StatusCode::kAuthFailed);
}

TEST(Auth, AClientThatClosesMidExchangeEndsTheServerSide) {
  Pair p;
  Result<wire::Preamble> server = make_status(StatusCode::kInternal, "not run");
  p.run([&]() -> awaitable<void> {
    wire::Preamble pre = probe_preamble();
    pre.flags = wire::kPreambleFlagAuth | wire::kPreambleFlagEncrypt;
    auto pre_bytes = wire::encode_preamble(pre);
    std::array<asio::const_buffer, 1> out{asio::buffer(pre_bytes)};
    co_await p.client->write_gather(out);
    p.client->close();  // no nonce follows
    server = co_await receive_preamble(*p.server, key("k"));
  });
  ASSERT_FALSE(server.is_ok());
  EXPECT_EQ(server.status().code(), StatusCode::kPeerLost) << server.status().to_string();
}

// After the handshake both ends speak records: a gather of several buffers larger than a
// record, and queued frames, arrive intact.
TEST(Auth, AnEncryptedConnectionCarriesDataBothWays) {
  Pair p;
  std::vector<uint8_t> big(300 * 1024 + 7), frame(5000, 0x5a);
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<uint8_t>(i * 31 + 7);
  std::vector<uint8_t> got(big.size()), got_frame(frame.size());
  Status client = make_status(StatusCode::kInternal, "not run");
  Status server = make_status(StatusCode::kInternal, "not run");
  p.run([&]() -> awaitable<void> {
    using namespace asio::experimental::awaitable_operators;
    auto c = [&]() -> awaitable<void> {
      client = co_await send_preamble(*p.client, probe_preamble(), key("k"));
      if (!client.is_ok()) co_return;
      EXPECT_TRUE(p.client->encrypted());
      std::array<asio::const_buffer, 2> out{asio::buffer(big.data(), 1000),
                                            asio::buffer(big.data() + 1000, big.size() - 1000)};
      client = co_await p.client->write_gather(out);
      if (client.is_ok()) client = co_await p.client->read_exact(got_frame);
    };
    auto s = [&]() -> awaitable<void> {
      auto pre = co_await receive_preamble(*p.server, key("k"));
      server = pre.status();
      if (!server.is_ok()) co_return;
      EXPECT_TRUE(p.server->encrypted());
      p.server->enqueue(frame);
      server = co_await p.server->read_exact(std::span(got).first(10));
      if (server.is_ok()) server = co_await p.server->read_exact(std::span(got).subspan(10));
    };
    co_await (c() && s());
    p.client->close();  // ends the server's queue writer
    p.server->close();
  });
  ASSERT_TRUE(client.is_ok()) << client.to_string();
  ASSERT_TRUE(server.is_ok()) << server.to_string();
  EXPECT_EQ(got, big);
  EXPECT_EQ(got_frame, frame);
  // Records cost 20 bytes per 64 KiB at most; more would mean double sealing.
  const uint64_t records = (big.size() + kMaxRecordPayload - 1) / kMaxRecordPayload + 1;
  EXPECT_LE(p.client->bytes_written(),
            wire::kPreambleSize + kNonceSize + kMacSize + big.size() + 2 * records * kRecordOverhead);
}

// A record the receiver's keys did not seal (an injected one) fails the read with kPeerLost
// and closes the connection; nothing of it reaches the reader.
TEST(Auth, ARecordUnderOtherKeysDropsTheConnection) {
  Pair p;
  std::array<uint8_t, kNonceSize> n1{}, n2{};
  n2[0] = 1;
  const auto pre = wire::encode_preamble(probe_preamble());
  SessionKeys mine = derive_session_keys("k", CipherSuite::kAes256Gcm, pre, n1, n1);
  SessionKeys other = derive_session_keys("k", CipherSuite::kAes256Gcm, pre, n2, n1);
  p.client->enable_records(std::make_unique<RecordSealer>(CipherSuite::kAes256Gcm, other.client_to_server),
                           std::make_unique<RecordOpener>(CipherSuite::kAes256Gcm, other.server_to_client));
  p.server->enable_records(std::make_unique<RecordSealer>(CipherSuite::kAes256Gcm, mine.server_to_client),
                           std::make_unique<RecordOpener>(CipherSuite::kAes256Gcm, mine.client_to_server));
  std::vector<uint8_t> data(1000, 1), got(1000, 0);
  Status read = make_status(StatusCode::kInternal, "not run");
  p.run([&]() -> awaitable<void> {
    std::array<asio::const_buffer, 1> out{asio::buffer(data)};
    co_await p.client->write_gather(out);
    read = co_await p.server->read_exact(got);
  });
  EXPECT_EQ(read.code(), StatusCode::kPeerLost) << read.to_string();
  EXPECT_NE(read.message().find("failed authentication"), std::string::npos) << read.message();
  EXPECT_FALSE(p.server->is_open());
}

}  // namespace
}  // namespace qccl::net
