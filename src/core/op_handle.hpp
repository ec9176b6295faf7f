// OpHandle: the user-facing end of one asynchronous collective operation.
//
// The communicator's loop completes it exactly once; user threads test() or wait() on it.
// Waiting is bounded by the operation itself, which always ends: by commit, by the master's
// abort, by an epoch change, or by the loss of the master link.
//
// Thread-safety: all methods are safe from any thread.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <vector>

#include "common/ids.hpp"
#include "common/status.hpp"

namespace qccl::core {

// What a finished operation covered: its group size, the group epoch it ran in and the
// participants' peer ids in ring order (the order of an all-gather's blocks), and the bytes
// this peer moved. A failed operation reports world_size 0 and no peers.
struct ReduceInfo {
  uint32_t world_size = 0;
  uint64_t tx_bytes = 0;
  uint64_t rx_bytes = 0;
  Epoch epoch = 0;
  std::vector<PeerId> peers;
};

class OpHandle {
 public:
  void complete(Status status, ReduceInfo info) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (done_) return;
      done_ = true;
      status_ = std::move(status);
      info_ = info;
    }
    cv_.notify_all();
  }
  bool test() const {
    std::lock_guard<std::mutex> lock(mu_);
    return done_;
  }
  Status wait(ReduceInfo* info) const {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return done_; });
    if (info) *info = info_;
    return status_;
  }

 private:
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  bool done_ = false;
  Status status_;
  ReduceInfo info_;
};

}  // namespace qccl::core
