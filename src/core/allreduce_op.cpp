#include "core/allreduce_op.hpp"

#include <cstring>

namespace qccl::core {

using collectives::RingAllReduce;

AllReduceOp::AllReduceOp(const collectives::ReduceDesc& desc, const void* sendbuf, void* recvbuf,
                         uint64_t seq, Epoch epoch, std::shared_ptr<OpHandle> handle)
    : DataflowOp(desc.tag, seq, epoch, collectives::desc_hash(desc), std::move(handle)),
      desc_(desc),
      sendbuf_(sendbuf),
      recvbuf_(recvbuf) {
  if (sendbuf_ == recvbuf_ && desc_.count > 0) {
    // In place: keep the input so that a failed op can give it back (all or nothing).
    size_t bytes = desc_.count * dtype_size(desc_.dtype);
    backup_.resize(bytes);
    std::memcpy(backup_.data(), recvbuf_, bytes);
  }
}

void AllReduceOp::start(uint32_t world, uint32_t rank) {
  auto ring = std::make_unique<RingAllReduce>(desc_, sendbuf_, recvbuf_, world,
                                              reduce_rank(rank, world));
  bool deferred = ring->initial_frames_need_fill();
  run(std::move(ring), deferred);
}

void AllReduceOp::restore_input() {
  if (!backup_.empty()) std::memcpy(recvbuf_, backup_.data(), backup_.size());
}

std::shared_ptr<Op> AllReduceOp::again(uint64_t seq, Epoch epoch,
                                       std::shared_ptr<OpHandle> handle) const {
  return std::make_shared<AllReduceOp>(desc_, sendbuf_, recvbuf_, seq, epoch, std::move(handle));
}

}  // namespace qccl::core
