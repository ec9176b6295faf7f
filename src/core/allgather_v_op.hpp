// AllGatherVOp: qcclAllGatherV as an Op (core/op.hpp): every member contributes its own
// number of elements (zero included); every member receives the concatenation in ring order
// and the per-member counts. The dataflow, two ring all-gathers back to back (the counts, then
// the data) with data frames kept aside while the counts are still coming in, is
// collectives::RingAllGatherV; this op runs it as DataflowOp runs every ring.
//
// A member whose recvbuf (recv_capacity elements) cannot hold the result, or whose sendbuf
// overlaps recvbuf elsewhere than at its block, fails the op once its counts are known; one
// whose counts array (counts_capacity entries) is shorter than the group fails it at start.
// Either way kInvalidArgument, reported to the master, which fails the op on every member.
// The counts are written to the caller's array when the op commits.
//
// Thread-safety: loop thread only.
#pragma once

#include <memory>

#include "collectives/ring_allgather_v.hpp"
#include "core/collective_args.hpp"
#include "core/dataflow_op.hpp"

namespace qccl::core {

class AllGatherVOp final : public DataflowOp<collectives::RingAllGatherV> {
 public:
  AllGatherVOp(const AllGatherVArgs& args, uint64_t seq, Epoch epoch,
               std::shared_ptr<OpHandle> handle);

  std::string_view call() const override { return "qcclAllGatherV"; }
  void start(uint32_t world, uint32_t rank) override;
  void on_commit() override;
  std::shared_ptr<Op> again(uint64_t seq, Epoch epoch,
                            std::shared_ptr<OpHandle> handle) const override;

 private:
  AllGatherVArgs args_;
};

}  // namespace qccl::core
