#include "core/op.hpp"

#include "peer/data_links.hpp"

namespace qccl::core {

using Clock = std::chrono::steady_clock;

Op::Op(OpTag tag, uint64_t seq, Epoch epoch, uint64_t fingerprint,
       std::shared_ptr<OpHandle> handle)
    : tag_(tag), seq_(seq), epoch_(epoch), fingerprint_(fingerprint), handle_(std::move(handle)) {
  timeline_.made = Clock::now();
}

void Op::begin(std::vector<PeerId> ring, uint32_t rank, peer::DataLinks& links) {
  links_ = &links;
  ring_ = std::move(ring);
  phase_ = Phase::kRunning;
  last_progress_ = Clock::now();
  timeline_.begun = last_progress_;
  start(static_cast<uint32_t>(ring_.size()), rank);
}

void Op::send_frame(uint32_t step, uint32_t segment, const uint8_t* data, size_t bytes,
                    bool deferred, uint32_t index) {
  ++sends_in_flight_;
  links_->send(this, epoch_, peer::FrameId{tag_, seq_, fingerprint_, step, segment}, data, bytes,
               deferred, index);
}

void Op::read_finished(size_t wire_bytes) {
  --reads_;
  rx_ += wire_bytes;
  last_progress_ = Clock::now();
}

bool Op::locally_complete() const {
  return phase_ == Phase::kRunning && !local_error_ && frames_complete() && sends_in_flight_ == 0;
}

void Op::on_sent(const Status& status, size_t bytes) {
  --sends_in_flight_;
  if (status.is_ok()) {
    tx_ += bytes + peer::kDataHeadBytes;
    last_progress_ = Clock::now();
  }
  if (progress_) progress_(*this);
}

bool Op::fail(Status why, peer::DataLinks* links, FailSource source) {
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

void Op::commit(uint32_t world) {
  phase_ = Phase::kDone;
  on_commit();
  handle_->complete(Status::ok(), ReduceInfo{world, tx_, rx_, epoch_, ring_});
}

std::shared_ptr<OpHandle> Op::take_for_restart() {
  restore_input();
  phase_ = Phase::kDone;
  return handle_;
}

bool Op::try_finish(bool epoch_moved) {
  if (phase_ != Phase::kFailing || !epoch_moved || sends_in_flight_ > 0 || reads_ > 0) {
    return phase_ == Phase::kDone;
  }
  restore_input();
  phase_ = Phase::kDone;
  handle_->complete(failure_, ReduceInfo{0, tx_, rx_, epoch_, {}});
  return true;
}

}  // namespace qccl::core
