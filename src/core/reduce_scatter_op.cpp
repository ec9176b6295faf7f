#include "core/reduce_scatter_op.hpp"

#include <cstring>

#include "collectives/chunking.hpp"
#include "core/fingerprint.hpp"

namespace qccl::core {

using collectives::RingAllReduce;

ReduceScatterOp::ReduceScatterOp(const ReduceScatterArgs& args, uint64_t seq, Epoch epoch,
                                 std::shared_ptr<OpHandle> handle)
    : DataflowOp(args.desc.tag, seq, epoch,
                 op_fingerprint("qccl.reducescatter.v1", {collectives::desc_hash(args.desc)}),
                 std::move(handle)),
      args_(args) {}

void ReduceScatterOp::start(uint32_t world, uint32_t rank) {
  block_ = collectives::chunk_range(args_.desc.count, world, rank);
  if (block_.count > args_.recv_capacity) {
    return fail_locally(make_status(StatusCode::kInvalidArgument,
                                    "qcclReduceScatter: this peer's block (ring rank {} of {}) "
                                    "has {} elements and recvbuf holds {}",
                                    rank, world, block_.count, args_.recv_capacity));
  }
  scratch_ = ScratchPool::borrow(args_.desc.count * dtype_size(args_.desc.dtype));
  auto ring = std::make_unique<RingAllReduce>(args_.desc, args_.sendbuf, scratch_.data(), world,
                                              reduce_rank(rank, world),
                                              RingAllReduce::Mode::kReduceScatter);
  bool deferred = ring->initial_frames_need_fill();
  run(std::move(ring), deferred);
}

void ReduceScatterOp::on_commit() {
  size_t esize = dtype_size(args_.desc.dtype);
  if (block_.count > 0) {
    std::memmove(args_.recvbuf, scratch_.data() + block_.offset * esize, block_.count * esize);
  }
}

std::shared_ptr<Op> ReduceScatterOp::again(uint64_t seq, Epoch epoch,
                                           std::shared_ptr<OpHandle> handle) const {
  return std::make_shared<ReduceScatterOp>(args_, seq, epoch, std::move(handle));
}

}  // namespace qccl::core
