// BroadcastOp: qcclBroadcast as an Op (core/op.hpp): the root's buffer reaches every member
// of the group along the ring, pipelined in segments (collectives::RingBroadcast).
//
// The root is named by its stable peer id (QCCL_ATTR_PEER_ID), not by a ring position: ring
// ranks move when the group changes, and a retry after qcclPeerLost must broadcast the same
// data or fail. A root that is not in the group when the op runs fails it on every member
// with kInvalidArgument (every member sees the same ring).
//
// All or nothing: every non-root member's buffer is written as frames arrive, so it is kept
// aside at the call and given back if the op fails.
//
// Thread-safety: loop thread only.
#pragma once

#include <memory>

#include "collectives/ring_broadcast.hpp"
#include "core/collective_args.hpp"
#include "core/dataflow_op.hpp"
#include "core/scratch_pool.hpp"
#include "quant/dtype.hpp"

namespace qccl::core {

class BroadcastOp final : public DataflowOp<collectives::RingBroadcast> {
 public:
  // REQUIRES: buf valid until the handle completes.
  BroadcastOp(const BroadcastArgs& args, uint64_t seq, Epoch epoch,
              std::shared_ptr<OpHandle> handle);

  std::string_view call() const override { return "qcclBroadcast"; }
  void start(uint32_t world, uint32_t rank) override;
  void restore_input() override;
  std::shared_ptr<Op> again(uint64_t seq, Epoch epoch,
                            std::shared_ptr<OpHandle> handle) const override;

 private:
  BroadcastArgs args_;
  ScratchPool::Buffer backup_;  // a non-root member's buffer, restored on failure
  size_t backup_bytes_ = 0;
};

}  // namespace qccl::core
