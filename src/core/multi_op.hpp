// run_multiple_with_retry: the recovery policy of a batch of operations of any kinds
// (qcclRunMultipleWithRetry; qcclAllReduceMultipleWithRetry is its all-reduce-only form).
//
// Runs the operations in order, up to `max_in_flight` at a time; those that fail with
// kPeerLost are retried before any later one starts, until all succeeded, or the group shrank
// below two peers (kTooFewPeers). A retry waits for the ring of the group's new epoch to be up
// (Communicator::await_ring, at most the peer timeout): it never spins into a ring that is
// known to be broken. Any other failure ends the call with that
// status once the operations in flight have finished. Operations that committed before a
// failure keep their results (computed with the world size of their time).
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <span>

#include "core/communicator.hpp"

namespace qccl::core {

// Starts one attempt of an operation (e.g. a call of Communicator::broadcast_async); called
// again for each retry.
using OpStarter = std::function<Result<std::shared_ptr<OpHandle>>()>;

// info (nullable): world size of the last successful op, summed byte counts.
Status run_multiple_with_retry(Communicator& comm, std::span<const OpStarter> ops,
                               size_t max_in_flight, ReduceInfo* info);

struct MultiOp {
  const void* sendbuf = nullptr;
  void* recvbuf = nullptr;
  collectives::ReduceDesc desc;
};

// run_multiple_with_retry of all-reduces.
Status all_reduce_multiple_with_retry(Communicator& comm, std::span<const MultiOp> ops,
                                      size_t max_in_flight, ReduceInfo* info);

}  // namespace qccl::core
