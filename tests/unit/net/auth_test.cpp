// The shared-secret handshake (net/auth.hpp) over real loopback sockets: the HMAC against
// RFC 4231, success with equal secrets, refusal in every mismatch, a tampered answer, a replayed
// answer (fresh nonces), and garbage instead of a nonce. Each case runs both ends on one
// io_context with a deadline.
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
  for (const Secret& s : {Secret{}, Secret{"s3cret"}}) {
    Outcome o = exchange(s, s);
    EXPECT_TRUE(o.client.is_ok()) << o.client.to_string();
    ASSERT_TRUE(o.server.is_ok()) << o.server.status().to_string();
    EXPECT_EQ(o.server->peer_id, 7u);
    EXPECT_EQ(o.server->flags, s ? wire::kPreambleFlagAuth : 0);
    ASSERT_TRUE(o.ack.has_value());
    EXPECT_EQ(o.ack->status, StatusCode::kOk);
  }
}

TEST(Auth, EveryMismatchIsRefusedOnBothSides) {
  struct Case {
    Secret client, server;
    const char* server_says;
  };
  for (const Case& c : {Case{"a", "b", nullptr},
                        Case{{}, "b", "presented no shared secret"},
                        Case{"a", {}, "uses a shared secret, this one none"}}) {
    SCOPED_TRACE(std::string(c.client ? *c.client : "-") + " vs " + (c.server ? *c.server : "-"));
    Outcome o = exchange(c.client, c.server);
    ASSERT_FALSE(o.server.is_ok());
    if (c.server_says) {
      EXPECT_EQ(o.server.status().code(), StatusCode::kAuthFailed);
      EXPECT_NE(o.server.status().message().find(c.server_says), std::string::npos)
          << o.server.status().message();
    }
    if (c.client && c.server) {
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
      server = co_await receive_preamble(*p.server, secret);
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
    pre.flags = wire::kPreambleFlagAuth;
    auto pre_bytes = wire::encode_preamble(pre);
    std::array<asio::const_buffer, 1> out{asio::buffer(pre_bytes)};
    co_await p.client->write_gather(out);
    p.client->close();  // no nonce follows
    server = co_await receive_preamble(*p.server, Secret{"k"});
  });
  ASSERT_FALSE(server.is_ok());
  EXPECT_EQ(server.status().code(), StatusCode::kPeerLost) << server.status().to_string();
}

}  // namespace
}  // namespace qccl::net
