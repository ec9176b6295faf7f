// A connected pair of Connections on loopback, and a way to run coroutines on it with a
// deadline, for the net/ unit tests.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <memory>

#include "net/connection.hpp"

namespace qccl::net {

// A connected pair of Connections on loopback.
struct Pair {
  asio::io_context io;
  std::shared_ptr<Connection> client, server;

  // `client_sndbuf` > 0: the client's SO_SNDBUF, small to make its sends partial.
  explicit Pair(int client_sndbuf = 0) {
    tcp::acceptor acc(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    tcp::socket c(io), s(io);
    c.connect(acc.local_endpoint());
    if (client_sndbuf > 0) c.set_option(asio::socket_base::send_buffer_size(client_sndbuf));
    acc.accept(s);
    client = std::make_shared<Connection>(std::move(c));
    server = std::make_shared<Connection>(std::move(s));
  }

  // Runs `fn` (spawned on io) until it finishes or 10 s pass.
  template <typename Fn>
  void run(Fn fn) {
    bool done = false;
    asio::co_spawn(io, [&]() -> awaitable<void> {
      co_await fn();
      done = true;
    }, asio::detached);
    io.run_for(std::chrono::seconds(10));
    ASSERT_TRUE(done) << "the exchange did not finish in time";
  }
};

}  // namespace qccl::net
