// Communicator: one peer of a qccl run, the C++ facade that the C API wraps.
//
// Everything happens on the communicator's own loop thread (core/runtime.hpp): the master
// link, the data lanes, the membership view and the operations in flight (core/op_engine.hpp).
// Public methods are called from user threads; they hand the call to the loop and block on its
// answer. Every wait ends: connect() at its deadline, votes when the master decides (it expels
// stragglers at the vote deadline), and operations by commit, abort, epoch change or loss of
// the master.
//
// After kPeerLost the ring has already been rebuilt by the time the call returns, so the
// caller may retry at once (see docs/errors.md).
//
// Thread-safety: every public method may be called from any user thread (never from the
// loop). Control calls are refused with kInvalidUsage while operations are in flight.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "collectives/reduce_desc.hpp"
#include "common/ids.hpp"
#include "common/status.hpp"
#include "core/collective_args.hpp"
#include "core/comm_options.hpp"
#include "core/op_handle.hpp"
#include "core/op_stats.hpp"
#include "core/state_tensor.hpp"

namespace qccl::net {
class FaultPolicy;
}

namespace qccl::core {

class Runtime;

class Communicator {
 public:
  // Validates the options and starts the loop and the data listener (not yet connected).
  static Result<std::unique_ptr<Communicator>> create(CommOptions options);
  // Leaves gracefully, ends in-flight operations with kAborted, and stops the loop.
  ~Communicator();

  Status connect();
  Status update_topology();
  Result<bool> are_peers_pending();
  // Probes the links the master lacks, then moves to the best ring (docs/topology.md).
  Status optimize_topology();
  Result<int64_t> attribute(Attribute attr) const;
  // This peer's group in ring order, as of the last membership seen (REQUIRES: connected).
  struct PeerEntry {
    PeerId id = kNoPeer;
    std::string address;  // "host:port" it is dialled at
  };
  Result<std::vector<PeerEntry>> peers() const;
  // Where this peer's ended operations spent their time, since creation (core/op_stats.hpp).
  OpStats stats() const;

  // REQUIRES: validate(desc) ok; buffers valid until the handle completes.
  Result<std::shared_ptr<OpHandle>> all_reduce_async(const void* sendbuf, void* recvbuf,
                                                     const collectives::ReduceDesc& desc);
  Status all_reduce(const void* sendbuf, void* recvbuf, const collectives::ReduceDesc& desc,
                    ReduceInfo* info);
  // Completes once every member of the group has called it with `tag` (core/barrier_op.hpp).
  Result<std::shared_ptr<OpHandle>> barrier_async(OpTag tag);
  Status barrier(OpTag tag);
  // The other collectives (semantics in core/broadcast_op.hpp, allgather_op.hpp,
  // allgather_v_op.hpp, reduce_scatter_op.hpp); all or nothing like all-reduce. Their handle's
  // ReduceInfo says what the op covered (epoch, members in ring order).
  // REQUIRES: the arguments were checked (the C API does); buffers valid until completion.
  Result<std::shared_ptr<OpHandle>> broadcast_async(const BroadcastArgs& args);
  Result<std::shared_ptr<OpHandle>> all_gather_async(const AllGatherArgs& args);
  Result<std::shared_ptr<OpHandle>> all_gather_v_async(const AllGatherVArgs& args);
  Result<std::shared_ptr<OpHandle>> reduce_scatter_async(const ReduceScatterArgs& args);

  // After a qcclPeerLost, before a retry: waits until this peer's ring lanes of its current
  // group epoch are up. While they are failed (a neighbour gone that the master has not
  // expelled yet) it waits for the next group epoch, so that the retry does not run into the
  // broken ring again (each such attempt fails at once and only makes the master move the
  // group on with the same members). Returns ok when the lanes are up or at `bound` (the retry
  // then goes ahead and reports the ring, as any op does), or the communicator's fatal status.
  Status await_ring(std::chrono::milliseconds bound);
  // The peer timeout the master announced (0 before qcclConnect succeeded).
  std::chrono::milliseconds peer_timeout() const;

  // Makes this peer's shared state identical to the content the master elects among the
  // group (docs/shared-state.md). On success *revision is the elected revision.
  // REQUIRES: revision != nullptr; tensors valid until the call returns.
  struct SyncInfo {
    uint64_t tx_bytes = 0;
    uint64_t rx_bytes = 0;
  };
  Status sync_shared_state(std::span<const StateTensor> tensors, uint64_t* revision,
                           SyncStrategy strategy, SyncInfo* info);

  // Ends every call in progress on this communicator, in any thread (connect, votes,
  // operations and their handles, syncs, await_ring), with kAborted within milliseconds, and
  // every later call at once. Leaves the run gracefully (C2MLeave) if the master knows this
  // peer. Returns at once; idempotent. Destroy the communicator only after the calls in
  // progress have returned.
  void abort();
  // The deadline of every operation started after the call, on every member of the group
  // (docs/reliability.md §7): zero = none. Fails with the fatal status once closed.
  Status set_op_timeout(std::chrono::milliseconds timeout);
  std::chrono::milliseconds op_timeout() const;

  // Tests only: every data lane of this peer consults `policy` (net/fault_policy.hpp); the
  // ready-made ones are in tests/support/lane_faults.hpp.
  void set_fault_policy_for_testing(std::shared_ptr<net::FaultPolicy> policy);

 private:
  explicit Communicator(std::shared_ptr<Runtime> runtime);
  std::shared_ptr<Runtime> runtime_;
};

}  // namespace qccl::core
