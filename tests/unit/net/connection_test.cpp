// Connection::write_gather over real loopback sockets: gathered frames of every size around the
// coalescing tail arrive whole and in order, with coalesced writes on and off, also when a
// small send buffer makes every send partial (the case MSG_MORE is for).
#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <vector>

#include "loopback_pair.hpp"
#include "support/watchdog.hpp"

QCCL_TEST_WATCHDOG(60);

namespace qccl::net {
namespace {

// Byte k of frame f: distinct across frames and positions.
uint8_t pattern(size_t f, size_t k) { return static_cast<uint8_t>(k * 31 + f * 7 + (k >> 13)); }

void write_and_read_back(bool coalesce, int client_sndbuf) {
  const std::vector<size_t> sizes = {(256u << 10) + 7, Connection::kCoalesceTail + 1,
                                     Connection::kCoalesceTail, 100, (1u << 20) + 1};
  std::vector<std::vector<uint8_t>> heads, bodies;
  size_t total = 0;
  for (size_t f = 0; f < sizes.size(); ++f) {
    heads.emplace_back(40, static_cast<uint8_t>(0xa0 + f));
    bodies.emplace_back(sizes[f]);
    for (size_t k = 0; k < sizes[f]; ++k) bodies[f][k] = pattern(f, k);
    total += 40 + sizes[f];
  }
  Pair p(client_sndbuf);
  p.client->set_coalesce_writes(coalesce);
  std::vector<uint8_t> got(total);
  Status wrote = make_status(StatusCode::kInternal, "not run"), read = wrote;
  p.run([&]() -> awaitable<void> {
    using namespace asio::experimental::awaitable_operators;
    auto writer = [&]() -> awaitable<void> {
      for (size_t f = 0; f < sizes.size(); ++f) {
        std::array<asio::const_buffer, 2> b{asio::buffer(heads[f]), asio::buffer(bodies[f])};
        wrote = co_await p.client->write_gather(b);
        if (!wrote.is_ok()) co_return;
      }
    };
    auto reader = [&]() -> awaitable<void> {
      // Small reads, so that the writer keeps finding the socket full.
      for (size_t at = 0; at < total;) {
        size_t n = std::min<size_t>(16 * 1024, total - at);
        read = co_await p.server->read_exact(std::span<uint8_t>(got.data() + at, n));
        if (!read.is_ok()) co_return;
        at += n;
      }
    };
    co_await (writer() && reader());
  });
  ASSERT_TRUE(wrote.is_ok()) << wrote.message();
  ASSERT_TRUE(read.is_ok()) << read.message();
  EXPECT_EQ(p.client->bytes_written(), total);
  size_t at = 0, wrong = 0;
  for (size_t f = 0; f < sizes.size(); ++f) {
    for (size_t k = 0; k < 40; ++k) wrong += got[at + k] != heads[f][k];
    at += 40;
    for (size_t k = 0; k < sizes[f]; ++k) wrong += got[at + k] != pattern(f, k);
    at += sizes[f];
  }
  EXPECT_EQ(wrong, 0u);
}

TEST(Connection, CoalescedWritesArriveWholeAndInOrder) { write_and_read_back(true, 0); }
TEST(Connection, CoalescedWritesThroughASmallSendBuffer) { write_and_read_back(true, 16384); }
TEST(Connection, PlainWritesArriveWholeAndInOrder) { write_and_read_back(false, 16384); }

}  // namespace
}  // namespace qccl::net
