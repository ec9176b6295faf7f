#include "core/multi_op.hpp"

#include <deque>
#include <vector>

#include "common/logging.hpp"

namespace qccl::core {

Status run_multiple_with_retry(Communicator& comm, std::span<const OpStarter> ops,
                               size_t max_in_flight, ReduceInfo* info) {
  ReduceInfo total;
  std::deque<size_t> todo;
  for (size_t i = 0; i < ops.size(); ++i) todo.push_back(i);
  max_in_flight = std::max<size_t>(1, max_in_flight);
  while (!todo.empty()) {
    std::vector<std::pair<size_t, std::shared_ptr<OpHandle>>> batch;
    Status first_error;
    while (!todo.empty() && batch.size() < max_in_flight) {
      size_t i = todo.front();
      auto h = ops[i]();
      if (!h.is_ok()) {
        first_error = h.status();
        break;
      }
      todo.pop_front();
      batch.emplace_back(i, *h);
    }
    bool lost = false;
    std::vector<size_t> retry;
    for (auto& [i, h] : batch) {
      ReduceInfo one;
      Status st = h->wait(&one);
      total.tx_bytes += one.tx_bytes;
      total.rx_bytes += one.rx_bytes;
      if (st.is_ok()) {
        total.world_size = one.world_size;
      } else if (st.code() == StatusCode::kPeerLost) {
        lost = true;
        retry.push_back(i);
      } else if (first_error.is_ok()) {
        first_error = st;
      }
    }
    // Retried ops go first, in their original order: every peer then starts the ops in the
    // same sequence, even one that had not started the failed ones yet when they failed (its
    // first attempt runs together with the others' retry).
    todo.insert(todo.begin(), retry.begin(), retry.end());
    if (!first_error.is_ok()) {
      if (first_error.code() == StatusCode::kPeerLost) {
        lost = true;  // could not even start: retry below
      } else {
        if (info) *info = total;
        return first_error;
      }
    }
    if (lost) {
      // Not at once: wait for the ring that the failure leads to (bounded by the peer
      // timeout). A retry into a ring whose neighbour is gone but not yet expelled would fail
      // at once, again and again, each time making the master move the group on.
      Status ring = comm.await_ring(comm.peer_timeout());
      if (!ring.is_ok()) {
        if (info) *info = total;
        return ring;
      }
      auto ws = comm.attribute(Attribute::kGroupWorldSize);
      if (!ws.is_ok()) {
        if (info) *info = total;
        return ws.status();
      }
      log::get("peer")->debug("{} operation(s) failed with qcclPeerLost; retrying {} in a group "
                              "of {}", retry.size(), todo.size(), *ws);
      if (*ws < 2) {
        if (info) *info = total;
        return make_status(StatusCode::kTooFewPeers,
                           "the peer group shrank to {} peer(s) while retrying; {} operation(s) "
                           "did not complete", *ws, todo.size());
      }
    }
  }
  if (info) *info = total;
  return Status::ok();
}

Status all_reduce_multiple_with_retry(Communicator& comm, std::span<const MultiOp> ops,
                                      size_t max_in_flight, ReduceInfo* info) {
  std::vector<OpStarter> starters;
  starters.reserve(ops.size());
  for (const MultiOp& op : ops) {
    starters.push_back(
        [&comm, op] { return comm.all_reduce_async(op.sendbuf, op.recvbuf, op.desc); });
  }
  return run_multiple_with_retry(comm, starters, max_in_flight, info);
}

}  // namespace qccl::core
