// Fuzz target: the accepting side of the connection handshake, net::receive_preamble
// (net/auth.hpp), run for real on a Connection over one end of a Unix socketpair; the fuzz
// input is everything the connecting side sends before it shuts down its write side.
//
// Input: one mode byte (bit 0: the accepting side holds the shared secret "fuzz-secret"; else
// none; bit 1: with the secret, it encrypts, docs/security.md), then the bytes sent (at most
// 4 KiB are used, so that they fit the socket buffer).
// Oracle, beyond "no crash, no sanitizer report, the handshake ends within 10 s":
//   - with a secret, nothing authenticates (the server's nonce is fresh, so no input can hold
//     the right answer): the result is never ok;
//   - without one, exactly the valid unflagged preambles are accepted, as decode_preamble
//     decodes them;
//   - a flagged preamble is challenged only if its encrypt flag matches the accepting side's
//     setting; otherwise it is refused at once (no downgrade);
//   - the error is kPeerLost when the input ends before a read completes, kInvalidArgument for
//     a bad preamble, and kAuthFailed for every refusal, which the other end must have
//     received as the last 8 bytes it was sent: PreambleAck(kAuthFailed).
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "fuzz_check.hpp"
#include "net/auth.hpp"
#include "net/connection.hpp"
#include "wire/byte_io.hpp"
#include "wire/frame.hpp"

namespace qccl::net {
namespace {

constexpr size_t kMaxSent = 4096;

// Everything the accepting side wrote to `fd` (its peer end), once it has closed its end.
std::vector<uint8_t> drain(int fd) {
  std::vector<uint8_t> out;
  uint8_t buf[4096];
  for (;;) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n <= 0) break;
    out.insert(out.end(), buf, buf + n);
  }
  return out;
}

void run_one(bool with_secret, bool encrypt, std::span<const uint8_t> sent) {
  static asio::io_context io;  // reused: one per input would dominate the run time
  int fds[2];
  FUZZ_CHECK(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds) == 0);
  FUZZ_CHECK(::send(fds[0], sent.data(), sent.size(), 0) == static_cast<ssize_t>(sent.size()));
  FUZZ_CHECK(::shutdown(fds[0], SHUT_WR) == 0);

  // Connection takes a TCP socket; its TCP-only options fail harmlessly on a Unix socket.
  tcp::socket socket(io);
  socket.assign(tcp::v4(), fds[1]);
  auto conn = std::make_shared<Connection>(std::move(socket));
  const Secret secret = with_secret ? make_secret(std::string("fuzz-secret"), encrypt) : Secret();
  bool finished = false;
  Result<wire::Preamble> result = make_status(StatusCode::kInternal, "not run");
  asio::co_spawn(
      io,
      [&]() -> awaitable<void> {
        result = co_await receive_preamble(*conn, secret);
        conn->close();
        finished = true;
      },
      asio::detached);
  io.restart();
  io.run_for(std::chrono::seconds(10));
  FUZZ_CHECK(finished);
  conn.reset();
  const std::vector<uint8_t> reply = drain(fds[0]);
  ::close(fds[0]);

  if (sent.size() < wire::kPreambleSize) {
    FUZZ_CHECK(result.status().code() == StatusCode::kPeerLost);
    FUZZ_CHECK(reply.empty());
    return;
  }
  const auto pre = wire::decode_preamble(sent.first<wire::kPreambleSize>());
  if (!pre.is_ok()) {
    FUZZ_CHECK(result.status().code() == StatusCode::kInvalidArgument);
    FUZZ_CHECK(reply.empty());
    return;
  }
  const bool flagged = (pre->flags & wire::kPreambleFlagAuth) != 0;
  if (!with_secret && !flagged) {
    FUZZ_CHECK(result.is_ok());
    FUZZ_CHECK(wire::encode_preamble(*result) == wire::encode_preamble(*pre));
    FUZZ_CHECK(reply.empty());
    return;
  }
  FUZZ_CHECK(!result.is_ok());
  const bool same_encryption = ((pre->flags & wire::kPreambleFlagEncrypt) != 0) == encrypt;
  const bool challenged = with_secret && flagged && same_encryption;
  if (challenged && sent.size() < wire::kPreambleSize + kNonceSize) {
    FUZZ_CHECK(result.status().code() == StatusCode::kPeerLost);
    FUZZ_CHECK(reply.empty());
    return;
  }
  if (challenged) {
    FUZZ_CHECK(reply.size() >= kChallengeSize);
    FUZZ_CHECK(wire::load_le<uint32_t>(reply.data()) == kChallengeMagic);
    if (sent.size() < wire::kPreambleSize + kNonceSize + kMacSize) {
      FUZZ_CHECK(result.status().code() == StatusCode::kPeerLost);
      FUZZ_CHECK(reply.size() == kChallengeSize);
      return;
    }
  }
  FUZZ_CHECK(result.status().code() == StatusCode::kAuthFailed);
  FUZZ_CHECK(reply.size() == (challenged ? kChallengeSize : 0) + wire::kPreambleAckSize);
  const auto ack = wire::decode_preamble_ack(
      std::span(reply).last<wire::kPreambleAckSize>());
  FUZZ_CHECK(ack.is_ok() && ack->status == StatusCode::kAuthFailed);
}

}  // namespace
}  // namespace qccl::net

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const size_t sent = std::min(size - 1, qccl::net::kMaxSent);
  qccl::net::run_one((data[0] & 1) != 0, (data[0] & 2) != 0,
                     std::span<const uint8_t>(data + 1, sent));
  return 0;
}
