// Ring all-gather-v: an all-gather whose block sizes nobody knows in advance.
//
// Two phases. Every peer first all-gathers the counts (RingAllGather of one uint64_t per
// rank, steps 0..N-2); once it holds all N, it knows every block's size and offset, checks
// that the result fits its recvbuf, and starts the all-gather of the data (RingAllGather of
// the counts, steps N-1..2N-3: data step s travels as step s + N-1). Each peer moves to the
// data phase on its own, as soon as its own counts phase completes; there is no barrier.
//
// Early frames. A peer's predecessor may finish its counts phase first and send data frames
// while this peer still waits for counts (the counts of some rank travel a longer way round
// the ring to it, and lanes reorder frames). Such a frame's place in recvbuf is unknown, so
// it is read into the lane's staging buffer (max_segment_bytes() is then the largest legal
// frame, wire::kMaxSegmentBytes) and its payload kept in early_. Its copies follow the rules
// of FrameClaims: an entry is being read (claimed by `claimant`; a second copy is kPending,
// and take_over() hands the claim to it), free (the read failed, unclaim(): the resent copy
// claims it again, or a copy already being read takes over) or kept (a copy is kReceived).
// When the counts complete, free entries are dropped and every other is checked (a
// frame that does not fit is a broken peer: kPeerLost); the kept ones are claimed in the data
// ring, copied to their place and forwarded; those still being read stay in early_ until
// their read ends (on_received: claimed, copied, forwarded) or fails (unclaim: dropped; the
// resent copy goes to the data ring directly). complete() waits for early_ to empty.
//
// Worked example, N = 3, counts {2, 0, 1}, rank 0 slow to get counts: rank 2 receives count 1
// (step 0, from rank 1) and count 0 (step 1, forwarded by rank 1), knows the counts, and sends
// its block C0 to rank 0 as data step 0 (step 2). Rank 0 still lacks count 2 (step 0 from rank
// 2), so C0 is read into staging and kept. Count 2 arrives: rank 0 places its own block A0 A1
// at offset 0, sends it (step 2), copies C0 to offset 2 and forwards it (step 3) to rank 1.
//
// Failure. A peer whose recvbuf is too small (or whose sendbuf overlaps recvbuf but is not its
// block) reports kInvalidArgument from the on_received() that completes its counts; the op
// layer fails the op, and through the master every member's. Every peer computes the same
// counts, so every peer with too little room says so in the same words.
#include "collectives/ring_allgather_v.hpp"

#include <algorithm>
#include <cstring>

#include "wire/frame.hpp"

namespace qccl::collectives {

RingAllGatherV::RingAllGatherV(const void* sendbuf, size_t count, void* recvbuf,
                               size_t recv_capacity, size_t elem_size, uint32_t world,
                               uint32_t rank)
    : sendbuf_(sendbuf),
      count_(count),
      recvbuf_(recvbuf),
      recv_capacity_(recv_capacity),
      elem_size_(elem_size),
      world_(world),
      rank_(rank),
      own_count_(count),
      wire_counts_(world, 0),
      counts_ring_(&own_count_, wire_counts_.data(), std::vector<size_t>(world, 1),
                   sizeof(uint64_t), world, rank) {
  if (counts_ring_.complete()) {  // a group of one
    std::vector<Send> none;
    (void)start_data(none);  // status() reports a failure
  }
}

Status RingAllGatherV::fail(Status why) {
  phase_ = Phase::kFailed;
  status_ = why;
  return why;
}

Status RingAllGatherV::start_data(std::vector<Send>& out) {
  counts_.assign(wire_counts_.begin(), wire_counts_.end());
  size_t total = 0;
  size_t own_offset = 0;
  for (uint32_t k = 0; k < world_; ++k) {
    if (counts_[k] > SIZE_MAX / elem_size_ - total) {
      return fail(make_status(StatusCode::kInvalidArgument,
                              "qcclAllGatherV: the contributions' total overflows"));
    }
    if (k == rank_) own_offset = total;
    total += counts_[k];
  }
  Status room = check_gather_buffers("qcclAllGatherV", sendbuf_, count_, recvbuf_,
                                     recv_capacity_, own_offset, total, elem_size_);
  if (!room.is_ok()) return fail(room);
  // Every frame kept must fit the counts before anything is written; a free one's resent copy
  // goes to the data ring directly.
  std::erase_if(early_, [](const auto& kv) { return kv.second.state == EarlyState::kFree; });
  data_ = std::make_unique<RingAllGather>(sendbuf_, recvbuf_, counts_, elem_size_, world_, rank_);
  for (const auto& [key, e] : early_) {
    auto seg = data_->check_frame(key.first, key.second, e.bytes);
    if (!seg.is_ok()) return fail(seg.status());
  }
  phase_ = Phase::kData;
  for (size_t j = 0; j < data_->initial_frames(); ++j) {
    Send s = data_->initial_frame(j);
    s.step += data_begin();
    out.push_back(s);
  }
  for (auto it = early_.begin(); it != early_.end();) {
    if (it->second.state != EarlyState::kReceived) {
      ++it;
      continue;
    }
    auto [ds, segment] = it->first;
    auto t = data_->claim(ds, segment, it->second.bytes, it->second.claimant);
    if (!t.is_ok()) return fail(t.status());  // checked above: not reached
    std::memcpy(t->dst, it->second.payload.data(), it->second.bytes);
    it = early_.erase(it);
    take_in(ds, segment, out);
  }
  return Status::ok();
}

void RingAllGatherV::take_in(uint32_t ds, uint32_t segment, std::vector<Send>& out) {
  if (auto fwd = data_->on_received(ds, segment, nullptr)) {
    fwd->step += data_begin();
    out.push_back(*fwd);
  }
}

Result<RecvTarget> RingAllGatherV::claim(uint32_t step, uint32_t segment, size_t payload_bytes,
                                         uint32_t claimant) {
  QCCL_RETURN_IF_ERROR(check_step(step, 0, num_steps()));
  if (step < data_begin()) return counts_ring_.claim(step, segment, payload_bytes, claimant);
  uint32_t ds = step - data_begin();
  if (phase_ == Phase::kFailed) return status_;
  if (phase_ == Phase::kData) QCCL_RETURN_IF_ERROR(data_->check_frame(ds, segment, payload_bytes).status());
  auto it = early_.find({ds, segment});
  if (it != early_.end()) {
    if (payload_bytes != it->second.bytes) {  // a resent copy has the first one's size
      return check_payload(step, segment, payload_bytes, it->second.bytes);
    }
    Early& e = it->second;
    if (e.state == EarlyState::kFree) {  // kCounts only: kData drops free entries
      e = Early{EarlyState::kClaimed, claimant, payload_bytes, {}};
      return RecvTarget{nullptr, payload_bytes, true, Duplicate::kNo, claimant};
    }
    Duplicate d = e.state == EarlyState::kReceived ? Duplicate::kReceived : Duplicate::kPending;
    return RecvTarget{nullptr, payload_bytes, true, d, e.claimant};
  }
  if (phase_ == Phase::kData) return data_->claim(ds, segment, payload_bytes, claimant);
  if (payload_bytes == 0 || payload_bytes > wire::kMaxSegmentBytes) {
    return make_status(StatusCode::kPeerLost,
                       "data frame (step {}, segment {}) has {} bytes: no data frame has that many",
                       step, segment, payload_bytes);
  }
  early_[{ds, segment}] = Early{EarlyState::kClaimed, claimant, payload_bytes, {}};
  ++early_seen_;
  return RecvTarget{nullptr, payload_bytes, true, Duplicate::kNo, claimant};
}

void RingAllGatherV::unclaim(uint32_t step, uint32_t segment, uint32_t claimant) {
  if (step < data_begin()) return counts_ring_.unclaim(step, segment, claimant);
  uint32_t ds = step - data_begin();
  if (auto it = early_.find({ds, segment}); it != early_.end()) {
    Early& e = it->second;
    if (e.state != EarlyState::kClaimed || e.claimant != claimant) return;
    // Before the counts the entry stays (free): a copy being read may still take over.
    if (phase_ == Phase::kData) {
      early_.erase(it);
    } else {
      e.state = EarlyState::kFree;
    }
    return;
  }
  if (data_) data_->unclaim(ds, segment, claimant);
}

void RingAllGatherV::take_over(uint32_t step, uint32_t segment, uint32_t claimant,
                               const uint8_t* staging) {
  if (step < data_begin()) return counts_ring_.take_over(step, segment, claimant, staging);
  uint32_t ds = step - data_begin();
  if (auto it = early_.find({ds, segment}); it != early_.end()) {
    it->second.claimant = claimant;  // on_received() takes the payload from this copy
    return;
  }
  if (data_) data_->take_over(ds, segment, claimant, staging);
}

bool RingAllGatherV::received(uint32_t step, uint32_t segment) const {
  if (step < data_begin()) return counts_ring_.received(step, segment);
  uint32_t ds = step - data_begin();
  if (auto it = early_.find({ds, segment}); it != early_.end()) {
    return it->second.state == EarlyState::kReceived;
  }
  return data_ && data_->received(ds, segment);
}

Result<std::vector<Send>> RingAllGatherV::on_received(uint32_t step, uint32_t segment,
                                                      const uint8_t* staging) {
  std::vector<Send> out;
  if (step < data_begin()) {
    if (auto fwd = counts_ring_.on_received(step, segment, staging)) out.push_back(*fwd);
    if (phase_ == Phase::kCounts && counts_ring_.complete()) {
      QCCL_RETURN_IF_ERROR(start_data(out));
    }
    return out;
  }
  uint32_t ds = step - data_begin();
  auto it = early_.find({ds, segment});
  if (it == early_.end()) {
    if (data_) take_in(ds, segment, out);
    return out;
  }
  if (phase_ != Phase::kData) {  // kept until the counts are known (or dropped with the op)
    it->second.payload.assign(staging, staging + it->second.bytes);
    it->second.state = EarlyState::kReceived;
    return out;
  }
  // Read early, through staging, but complete after the counts were known.
  auto t = data_->claim(ds, segment, it->second.bytes, it->second.claimant);
  if (!t.is_ok()) return fail(t.status());  // checked by start_data: not reached
  std::memcpy(t->dst, staging, it->second.bytes);
  early_.erase(it);
  take_in(ds, segment, out);
  return out;
}

bool RingAllGatherV::complete() const {
  return phase_ == Phase::kData && data_->complete() && early_.empty();
}

size_t RingAllGatherV::max_segment_bytes() const {
  if (phase_ != Phase::kData) return wire::kMaxSegmentBytes;
  return std::max(data_->max_segment_bytes(), counts_ring_.max_segment_bytes());
}

}  // namespace qccl::collectives
