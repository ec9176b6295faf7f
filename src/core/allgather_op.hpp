// AllGatherOp: qcclAllGather as an Op (core/op.hpp): every member contributes `count`
// elements and receives all contributions, concatenated in ring order (the order of
// ReduceInfo::peers), by collectives::RingAllGather.
//
// The group's size is known only when the op runs, so the caller gives the room it has
// (recv_capacity elements); a group too large for it fails the op on every member with
// kInvalidArgument. In place: the contribution already sits in its block of recvbuf (sendbuf
// == recvbuf + rank x count); any other overlap of the two buffers fails the op the same way.
// The ring only writes the other members' blocks of recvbuf, so a failed op leaves the
// contribution as it was; the rest of recvbuf is then unspecified, as for an out-of-place
// all-reduce.
//
// Thread-safety: loop thread only.
#pragma once

#include <memory>

#include "collectives/ring_allgather.hpp"
#include "core/collective_args.hpp"
#include "core/dataflow_op.hpp"
#include "quant/dtype.hpp"

namespace qccl::core {

class AllGatherOp final : public DataflowOp<collectives::RingAllGather> {
 public:
  AllGatherOp(const AllGatherArgs& args, uint64_t seq, Epoch epoch,
              std::shared_ptr<OpHandle> handle);

  std::string_view call() const override { return "qcclAllGather"; }
  void start(uint32_t world, uint32_t rank) override;
  std::shared_ptr<Op> again(uint64_t seq, Epoch epoch,
                            std::shared_ptr<OpHandle> handle) const override;

 private:
  AllGatherArgs args_;
};

}  // namespace qccl::core
