// Signal: a level-triggered wake-up for coroutines on one io_context (a condition variable
// for the loop). wait() suspends until notify() is called; a notify() with no waiter is kept
// until the next wait(). Wake-ups may be spurious: callers re-check their condition in a
// loop. Built on a steady_timer that never expires and is cancelled to wake.
//
// Thread-safety: loop thread only.
#pragma once

#include <asio/steady_timer.hpp>

#include "net/asio_common.hpp"

namespace qccl::net {

class Signal {
 public:
  explicit Signal(const asio::any_io_executor& ex) : timer_(ex) {
    timer_.expires_at(asio::steady_timer::time_point::max());
  }
  void notify() {
    pending_ = true;
    timer_.cancel();
  }
  awaitable<void> wait() {
    // The expiry stays at max(): cancel() wakes the waiters without re-arming, so several
    // waiters do not cancel each other.
    if (!pending_) co_await timer_.async_wait(use_nothrow);
    pending_ = false;
  }

 private:
  asio::steady_timer timer_;
  bool pending_ = false;
};

}  // namespace qccl::net
