#include "core/allreduce_op.hpp"

#include <cstring>

namespace qccl::core {

using collectives::RingAllReduce;

AllReduceOp::AllReduceOp(const collectives::ReduceDesc& desc, const void* sendbuf, void* recvbuf,
                         uint64_t seq, Epoch epoch, std::shared_ptr<OpHandle> handle)
    : Op(desc.tag, seq, epoch, collectives::desc_hash(desc), std::move(handle)),
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
  ring_ = std::make_unique<RingAllReduce>(desc_, sendbuf_, recvbuf_, world, rank);
  bool deferred = ring_->initial_frames_need_fill();
  for (size_t j = 0; j < ring_->initial_frames(); ++j) send(ring_->initial_frame(j), deferred);
}

void AllReduceOp::fill(uint32_t index) {
  // Only frames of a running op are still queued (fail() takes the others back).
  ring_->fill_initial_frame(index);
}

void AllReduceOp::send(const RingAllReduce::Send& s, bool deferred) {
  send_frame(s.step, s.segment, s.data, s.bytes, deferred, s.segment);
}

Result<FrameTarget> AllReduceOp::claim(uint32_t step, uint32_t segment, size_t bytes,
                                       uint32_t lane) {
  QCCL_ASSIGN_OR_RETURN(RingAllReduce::RecvTarget t, ring_->claim(step, segment, bytes, lane));
  FrameTarget out{t.dst, t.bytes, t.staged, FrameTarget::Duplicate::kNo, t.claimant};
  if (t.duplicate == RingAllReduce::Duplicate::kReceived) {
    out.duplicate = FrameTarget::Duplicate::kReceived;
  } else if (t.duplicate == RingAllReduce::Duplicate::kPending) {
    out.duplicate = FrameTarget::Duplicate::kPending;
  }
  return out;
}

void AllReduceOp::unclaim(uint32_t step, uint32_t segment, uint32_t lane) {
  ring_->unclaim(step, segment, lane);
}

bool AllReduceOp::received(uint32_t step, uint32_t segment) const {
  return ring_->received(step, segment);
}

void AllReduceOp::take_over(uint32_t step, uint32_t segment, uint32_t lane,
                            const uint8_t* staging) {
  ring_->take_over(step, segment, lane, staging);
}

void AllReduceOp::on_received(uint32_t step, uint32_t segment, const uint8_t* staging) {
  auto fwd = ring_->on_received(step, segment, staging);
  if (fwd) send(*fwd);
}

bool AllReduceOp::frames_complete() const { return ring_ && ring_->complete(); }

size_t AllReduceOp::max_frame_bytes() const { return ring_->max_segment_bytes(); }

void AllReduceOp::restore_input() {
  if (!backup_.empty()) std::memcpy(recvbuf_, backup_.data(), backup_.size());
}

std::shared_ptr<Op> AllReduceOp::again(uint64_t seq, Epoch epoch,
                                       std::shared_ptr<OpHandle> handle) const {
  return std::make_shared<AllReduceOp>(desc_, sendbuf_, recvbuf_, seq, epoch, std::move(handle));
}

}  // namespace qccl::core
