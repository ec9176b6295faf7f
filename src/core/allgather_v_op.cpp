#include "core/allgather_v_op.hpp"

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "core/allgather_op.hpp"
#include "core/dataflow_op.hpp"
#include "core/fingerprint.hpp"
#include "wire/frame.hpp"

namespace qccl::core {

using collectives::RingAllGather;

AllGatherVOp::AllGatherVOp(const AllGatherVArgs& args, uint64_t seq, Epoch epoch,
                           std::shared_ptr<OpHandle> handle)
    : Op(args.tag, seq, epoch,
         op_fingerprint("qccl.allgatherv.v1", {static_cast<uint64_t>(args.dtype)}),
         std::move(handle)),
      args_(args),
      own_count_(args.count) {}

void AllGatherVOp::start(uint32_t world, uint32_t rank) {
  world_ = world;
  rank_ = rank;
  counts_.assign(world, 0);
  sizes_ = std::make_unique<RingAllGather>(&own_count_, counts_.data(),
                                           std::vector<size_t>(world, 1), sizeof(uint64_t),
                                           world, rank);
  for (size_t j = 0; j < sizes_->initial_frames(); ++j) {
    auto s = sizes_->initial_frame(j);
    send_frame(s.step, s.segment, s.data, s.bytes);
  }
  if (sizes_->complete()) start_data();
}

void AllGatherVOp::start_data() {
  std::vector<size_t> counts(counts_.begin(), counts_.end());
  size_t esize = dtype_size(args_.dtype);
  size_t total = 0;
  size_t own_offset = 0;
  for (uint32_t i = 0; i < world_; ++i) {
    if (counts[i] > SIZE_MAX / esize - total) {
      return fail_locally(make_status(StatusCode::kInvalidArgument,
                                      "qcclAllGatherV: the contributions' total overflows"));
    }
    if (i == rank_) own_offset = total;
    total += counts[i];
  }
  if (args_.counts && args_.counts_capacity < world_) {
    return fail_locally(make_status(StatusCode::kInvalidArgument,
                                    "qcclAllGatherV: the group has {} peers and counts holds {}",
                                    world_, args_.counts_capacity));
  }
  Status room = collectives::check_gather_buffers(call(), args_.sendbuf, args_.count, args_.recvbuf,
                                     args_.recv_capacity, own_offset, total, esize);
  if (!room.is_ok()) return fail_locally(room);
  data_ = std::make_unique<RingAllGather>(args_.sendbuf, args_.recvbuf, std::move(counts), esize,
                                          world_, rank_);
  for (size_t j = 0; j < data_->initial_frames(); ++j) {
    auto s = data_->initial_frame(j);
    send_frame(s.step + data_steps_begin(), s.segment, s.data, s.bytes);
  }
  // Take in the data frames that came early and are complete; those still being read are
  // taken in when their read ends (on_received).
  for (auto it = early_.begin(); it != early_.end() && !local_error();) {
    if (!it->second.received) {
      ++it;
      continue;
    }
    auto [step, segment] = it->first;
    Early e = std::move(it->second);
    it = early_.erase(it);
    auto t = data_->claim(step, segment, e.bytes, e.claimant);
    if (!t.is_ok()) return fail_locally(t.status());
    if (!t->staged) std::memcpy(t->dst, e.payload.data(), e.bytes);
    forward(*data_, data_steps_begin(), step, segment, e.payload.data());
  }
}

template <class Ring>
void AllGatherVOp::forward(Ring& ring, uint32_t step_base, uint32_t step, uint32_t segment,
                           const uint8_t* staging) {
  if (auto fwd = ring.on_received(step, segment, staging)) {
    send_frame(fwd->step + step_base, fwd->segment, fwd->data, fwd->bytes);
  }
}

Result<FrameTarget> AllGatherVOp::claim(uint32_t step, uint32_t segment, size_t bytes,
                                        uint32_t lane) {
  if (step < data_steps_begin()) {
    QCCL_ASSIGN_OR_RETURN(auto t, sizes_->claim(step, segment, bytes, lane));
    return to_frame_target(t);
  }
  uint32_t ds = step - data_steps_begin();
  if (ds >= world_ - 1) {
    return make_status(StatusCode::kPeerLost, "qcclAllGatherV: frame of step {} (the op has {})",
                       step, 2 * (world_ - 1));
  }
  if (auto it = early_.find({ds, segment}); it != early_.end()) {
    if (it->second.received) return FrameTarget{.duplicate = FrameTarget::Duplicate::kReceived};
    return FrameTarget{nullptr, bytes, true, FrameTarget::Duplicate::kPending,
                       it->second.claimant};
  }
  if (data_) {
    QCCL_ASSIGN_OR_RETURN(auto t, data_->claim(ds, segment, bytes, lane));
    return to_frame_target(t);
  }
  if (bytes > wire::kMaxSegmentBytes) {
    return make_status(StatusCode::kPeerLost, "qcclAllGatherV: a {}-byte data frame", bytes);
  }
  early_[{ds, segment}] = Early{false, lane, bytes, {}};
  return FrameTarget{nullptr, bytes, true, FrameTarget::Duplicate::kNo, lane};
}

void AllGatherVOp::unclaim(uint32_t step, uint32_t segment, uint32_t lane) {
  if (step < data_steps_begin()) return sizes_->unclaim(step, segment, lane);
  uint32_t ds = step - data_steps_begin();
  if (auto it = early_.find({ds, segment}); it != early_.end()) {
    if (!it->second.received && it->second.claimant == lane) early_.erase(it);
    return;
  }
  if (data_) data_->unclaim(ds, segment, lane);
}

bool AllGatherVOp::received(uint32_t step, uint32_t segment) const {
  if (step < data_steps_begin()) return sizes_->received(step, segment);
  uint32_t ds = step - data_steps_begin();
  if (auto it = early_.find({ds, segment}); it != early_.end()) return it->second.received;
  return data_ && data_->received(ds, segment);
}

void AllGatherVOp::take_over(uint32_t step, uint32_t segment, uint32_t lane,
                             const uint8_t* staging) {
  if (step < data_steps_begin()) return sizes_->take_over(step, segment, lane, staging);
  uint32_t ds = step - data_steps_begin();
  if (auto it = early_.find({ds, segment}); it != early_.end()) {
    it->second.claimant = lane;  // on_received() follows with this copy
    return;
  }
  data_->take_over(ds, segment, lane, staging);
}

void AllGatherVOp::on_received(uint32_t step, uint32_t segment, const uint8_t* staging) {
  if (step < data_steps_begin()) {
    forward(*sizes_, 0, step, segment, staging);
    if (sizes_->complete() && !data_) start_data();
    return;
  }
  uint32_t ds = step - data_steps_begin();
  auto it = early_.find({ds, segment});
  if (it == early_.end()) return forward(*data_, data_steps_begin(), ds, segment, staging);
  Early& e = it->second;
  if (!data_) {
    e.payload.assign(staging, staging + e.bytes);
    e.received = true;
    return;
  }
  // Read early (through staging) but completed after the counts were known.
  uint32_t claimant = e.claimant;
  size_t bytes = e.bytes;
  early_.erase(it);
  auto t = data_->claim(ds, segment, bytes, claimant);
  if (!t.is_ok()) return fail_locally(t.status());
  if (!t->staged) std::memcpy(t->dst, staging, bytes);
  forward(*data_, data_steps_begin(), ds, segment, staging);
}

bool AllGatherVOp::frames_complete() const {
  return sizes_ && sizes_->complete() && data_ && data_->complete() && early_.empty();
}

size_t AllGatherVOp::max_frame_bytes() const {
  // Before the counts are known, data frames are read into staging: any legal size.
  if (!data_) return wire::kMaxSegmentBytes;
  return std::max(data_->max_segment_bytes(), sizes_->max_segment_bytes());
}

void AllGatherVOp::on_commit() {
  if (!args_.counts) return;
  for (uint32_t i = 0; i < world_; ++i) args_.counts[i] = static_cast<size_t>(counts_[i]);
}

std::shared_ptr<Op> AllGatherVOp::again(uint64_t seq, Epoch epoch,
                                        std::shared_ptr<OpHandle> handle) const {
  return std::make_shared<AllGatherVOp>(args_, seq, epoch, std::move(handle));
}

}  // namespace qccl::core
