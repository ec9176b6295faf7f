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
    backup_bytes_ = desc_.count * dtype_size(desc_.dtype);
    backup_ = ScratchPool::borrow(backup_bytes_);
    std::memcpy(backup_.data(), recvbuf_, backup_bytes_);
  }
}

void AllReduceOp::start(uint32_t world, uint32_t rank) {
  // In place, the ring reads this peer's contribution from the copy kept for a failure: the
  // buffers then differ, and received partial sums go straight into recvbuf
  // (collectives/ring_allreduce.cpp, "Buffers").
  const void* input = backup_bytes_ > 0 ? static_cast<const void*>(backup_.data()) : sendbuf_;
  auto ring = std::make_unique<RingAllReduce>(desc_, input, recvbuf_, world,
                                              reduce_rank(rank, world));
  bool deferred = ring->initial_frames_need_fill();
  run(std::move(ring), deferred);
}

void AllReduceOp::restore_input() {
  if (backup_bytes_ > 0) std::memcpy(recvbuf_, backup_.data(), backup_bytes_);
}

std::shared_ptr<Op> AllReduceOp::again(uint64_t seq, Epoch epoch,
                                       std::shared_ptr<OpHandle> handle) const {
  return std::make_shared<AllReduceOp>(desc_, sendbuf_, recvbuf_, seq, epoch, std::move(handle));
}

}  // namespace qccl::core
