#include "core/allreduce_op.hpp"

#include <cstring>

#include "wire/codec.hpp"

namespace qccl::core {

AllReduceOp::AllReduceOp(const collectives::ReduceDesc& desc, const void* sendbuf, void* recvbuf,
                         uint64_t seq, Epoch epoch, std::shared_ptr<OpHandle> handle)
    : desc_(desc),
      sendbuf_(sendbuf),
      recvbuf_(recvbuf),
      seq_(seq),
      epoch_(epoch),
      desc_hash_(collectives::desc_hash(desc)),
      handle_(std::move(handle)) {
  if (sendbuf_ == recvbuf_ && desc_.count > 0) {
    // In place: keep the input so that a failed op can give it back (all or nothing).
    size_t bytes = desc_.count * dtype_size(desc_.dtype);
    backup_.resize(bytes);
    std::memcpy(backup_.data(), recvbuf_, bytes);
  }
}

void AllReduceOp::begin(uint32_t world, uint32_t rank, peer::DataLinks& links) {
  ring_ = std::make_unique<collectives::RingAllReduce>(desc_, sendbuf_, recvbuf_, world, rank);
  phase_ = Phase::kRunning;
  last_progress_ = std::chrono::steady_clock::now();
  bool deferred = ring_->initial_frames_need_fill();
  for (size_t j = 0; j < ring_->initial_frames(); ++j) send(ring_->initial_frame(j), links, deferred);
}

void AllReduceOp::fill(const peer::OutFrame& frame) {
  // Only frames of a running op are still queued (fail() takes the others back).
  ring_->fill_initial_frame(frame.index);
}

void AllReduceOp::send(const collectives::RingAllReduce::Send& s, peer::DataLinks& links,
                       bool deferred) {
  peer::OutFrame f;
  wire::FrameHeader fh{static_cast<uint32_t>(wire::kP2PDataHeaderSize + s.bytes),
                       static_cast<uint16_t>(wire::MsgType::kP2PData), 0, epoch_};
  auto fh_bytes = wire::encode_frame_header(fh);
  auto dh_bytes = wire::encode_data_header({desc_.tag, seq_, desc_hash_, s.step, s.segment});
  std::memcpy(f.header.data(), fh_bytes.data(), fh_bytes.size());
  std::memcpy(f.header.data() + fh_bytes.size(), dh_bytes.data(), dh_bytes.size());
  f.data = s.data;
  f.bytes = s.bytes;
  f.owner = this;
  f.deferred = deferred;
  f.index = s.segment;
  ++sends_in_flight_;
  links.enqueue(f);
}

bool AllReduceOp::locally_complete() const {
  return phase_ == Phase::kRunning && ring_ && ring_->complete() && sends_in_flight_ == 0;
}

void AllReduceOp::on_sent(const Status& status, size_t bytes) {
  --sends_in_flight_;
  if (status.is_ok()) {
    tx_ += bytes + wire::kFrameHeaderSize + wire::kP2PDataHeaderSize;
    last_progress_ = std::chrono::steady_clock::now();
  }
  if (progress_) progress_(*this);
}

bool AllReduceOp::fail(Status why, peer::DataLinks* links, FailSource source) {
  if (phase_ == Phase::kDone) return false;
  if (source == FailSource::kMaster) restart_ = false;  // the master failed it everywhere
  if (phase_ == Phase::kFailing) {
    if (source > failure_source_) {
      failure_ = std::move(why);
      failure_source_ = source;
    }
    return false;
  }
  if (phase_ == Phase::kWaitCommit && source == FailSource::kLocal) return false;
  phase_ = Phase::kFailing;
  failure_ = std::move(why);
  failure_source_ = source;
  if (links) sends_in_flight_ -= links->cancel(this);
  return true;
}

void AllReduceOp::commit(uint32_t world) {
  phase_ = Phase::kDone;
  handle_->complete(Status::ok(), ReduceInfo{world, tx_, rx_});
}

std::shared_ptr<OpHandle> AllReduceOp::take_for_restart() {
  if (!backup_.empty()) std::memcpy(recvbuf_, backup_.data(), backup_.size());
  phase_ = Phase::kDone;
  return handle_;
}

bool AllReduceOp::try_finish(bool epoch_moved) {
  if (phase_ != Phase::kFailing || !epoch_moved || sends_in_flight_ > 0 || reads_ > 0) {
    return phase_ == Phase::kDone;
  }
  if (!backup_.empty()) std::memcpy(recvbuf_, backup_.data(), backup_.size());
  phase_ = Phase::kDone;
  handle_->complete(failure_, ReduceInfo{0, tx_, rx_});
  return true;
}

}  // namespace qccl::core
