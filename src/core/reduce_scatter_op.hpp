// ReduceScatterOp: qcclReduceScatter as an Op (core/op.hpp): the members reduce their inputs
// of desc.count elements, and the member at ring rank r receives block r of the result.
//
// Blocks follow collectives/chunking.hpp: desc.count split into N contiguous blocks whose
// sizes differ by at most one element, the first desc.count % N blocks one element larger.
//
// It is the reduce-scatter half of the ring all-reduce (collectives::RingAllReduce in
// reduce-scatter mode), with every dtype, op and quantization of all-reduce and the same
// arithmetic: a block is bit-identical to the same block of an all-reduce of the same inputs
// (both play the ring one rank back, reduce_rank() in core/dataflow_op.hpp, so member r ends
// with block r and every block follows the same reduction path in both). Partial sums land in a scratch
// buffer of desc.count elements; the member's block is copied to recvbuf when the master
// commits, so recvbuf (and an in-place input, recvbuf == sendbuf) is untouched by a failed op.
//
// Thread-safety: loop thread only.
#pragma once

#include <memory>
#include <vector>

#include "collectives/reduce_desc.hpp"
#include "collectives/ring_allreduce.hpp"
#include "core/collective_args.hpp"
#include "core/dataflow_op.hpp"
#include "core/scratch_pool.hpp"

namespace qccl::core {

class ReduceScatterOp final : public DataflowOp<collectives::RingAllReduce> {
 public:
  // REQUIRES: validate(args.desc) ok; buffers valid until the handle completes.
  ReduceScatterOp(const ReduceScatterArgs& args, uint64_t seq, Epoch epoch,
                  std::shared_ptr<OpHandle> handle);

  std::string_view call() const override { return "qcclReduceScatter"; }
  void start(uint32_t world, uint32_t rank) override;
  void on_commit() override;
  std::shared_ptr<Op> again(uint64_t seq, Epoch epoch,
                            std::shared_ptr<OpHandle> handle) const override;

 private:
  ReduceScatterArgs args_;
  collectives::Range block_;
  ScratchPool::Buffer scratch_;  // desc.count elements: the partial sums
};

}  // namespace qccl::core
