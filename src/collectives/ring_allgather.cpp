// Ring all-gather of blocks of any size: the all-gather half of the ring all-reduce, on
// blocks that need not be equal.
//
// Blocks. Ring rank k contributes block k, counts[k] elements (zero allowed), which every peer
// ends with at element offset counts[0] + ... + counts[k-1] of recvbuf. Every block is cut
// into segments of segment_elems elements (the last one shorter); segment_elems comes from the
// largest block with choose_segment_elems (chunking.hpp), so every peer computes the same cut
// from values they share, and a large block flows as a pipeline.
//
// Steps. There are N-1 steps. At step s peer r sends block (r - s) mod N to the next peer and
// receives block (r - s - 1) mod N from the previous one, straight into its place in recvbuf.
// What a peer receives at step s is what it sends at step s+1, so each received segment is
// forwarded at once (unless s+1 == N-1: then the next peer is the block's owner): segment j
// of step s+1 leaves while segment j+1 of step s is still arriving, and there is no barrier
// between steps. An empty block has no segments: no frame carries it. Frame (s, j) has index
// s * max_segments + j, max_segments being the segment count of the largest block.
//
// Worked example, N = 3, counts {2, 0, 3}: recvbuf = A0 A1 | C0 C1 C2 (block B is empty;
// one segment per block). Rank 0 sends A at step 0, receives C at step 0 (from rank 2) and
// forwards it at step 1; block B, due at step 1, has no frame. Rank 1 has nothing to send at
// step 0, receives A at step 0 and forwards it at step 1, and receives C at step 1 (the last
// step: rank 2 owns C, nothing is forwarded). Rank 2 sends C at step 0 and receives A at
// step 1. Four frames in all; ranks 0, 1, 2 expect 1, 2 and 1.
//
// Buffers. Frames go from recvbuf and land in recvbuf: the own block is copied there first
// (unless it already is there). Each other segment's place is written once, by the frame
// that brings it, and read only after that, when it is forwarded; the own block is never
// written by a frame. So no segment is staged and none is copied after its arrival.
//
// Failure. As for RingAllReduce: this class only moves data; the op layer stops feeding
// frames when a neighbour is lost.
#include "collectives/ring_allgather.hpp"

#include <algorithm>
#include <cstring>

namespace qccl::collectives {

RingAllGather::RingAllGather(const void* sendbuf, void* recvbuf, std::vector<size_t> counts,
                             size_t elem_size, uint32_t world, uint32_t rank)
    : recv_(static_cast<uint8_t*>(recvbuf)),
      counts_(std::move(counts)),
      offsets_(counts_.size(), 0),
      elem_size_(elem_size),
      world_(world),
      rank_(rank) {
  for (size_t k = 1; k < counts_.size(); ++k) offsets_[k] = offsets_[k - 1] + counts_[k - 1];
  size_t largest = counts_.empty() ? 0 : *std::max_element(counts_.begin(), counts_.end());
  segment_elems_ = choose_segment_elems(largest, elem_size_, 1);
  max_segments_ = num_segments(largest, segment_elems_);
  for (uint32_t s = 0; s < num_steps(); ++s) {
    expected_ += num_segments(counts_[recv_block(s)], segment_elems_);
  }
  claims_ = FrameClaims(static_cast<size_t>(num_steps()) * max_segments_);
  Range own = block(rank_);
  uint8_t* place = recv_ + own.offset * elem_size_;
  if (own.count > 0 && sendbuf != place) std::memcpy(place, sendbuf, own.count * elem_size_);
}

size_t RingAllGather::initial_frames() const {
  return world_ < 2 ? 0 : num_segments(counts_[rank_], segment_elems_);
}

Send RingAllGather::initial_frame(size_t j) const {
  return send_frame(0, static_cast<uint32_t>(j), segment_range(block(send_block(0)), segment_elems_, j));
}

Result<Range> RingAllGather::check_frame(uint32_t step, uint32_t segment,
                                         size_t payload_bytes) const {
  QCCL_RETURN_IF_ERROR(check_step(step, 0, num_steps()));
  QCCL_ASSIGN_OR_RETURN(Range seg, check_segment(step, segment, block(recv_block(step)), segment_elems_));
  QCCL_RETURN_IF_ERROR(check_payload(step, segment, payload_bytes, seg.count * elem_size_));
  return seg;
}

Result<RecvTarget> RingAllGather::claim(uint32_t step, uint32_t segment, size_t payload_bytes,
                                        uint32_t claimant) {
  QCCL_ASSIGN_OR_RETURN(Range seg, check_frame(step, segment, payload_bytes));
  size_t bytes = seg.count * elem_size_;
  auto c = claims_.claim(frame_index(step, segment, max_segments_), claimant);
  if (c.duplicate != Duplicate::kNo) return FrameClaims::duplicate_target(c, bytes);
  return RecvTarget{recv_ + seg.offset * elem_size_, bytes, false};
}

void RingAllGather::unclaim(uint32_t step, uint32_t segment, uint32_t claimant) {
  claims_.unclaim(frame_index(step, segment, max_segments_), claimant);
}

void RingAllGather::take_over(uint32_t step, uint32_t segment, uint32_t claimant,
                              const uint8_t* staging) {
  claims_.take_over(frame_index(step, segment, max_segments_), claimant);
  Range seg = recv_segment(step, segment);
  std::memcpy(recv_ + seg.offset * elem_size_, staging, seg.count * elem_size_);
}

std::optional<Send> RingAllGather::on_received(uint32_t step, uint32_t segment,
                                               const uint8_t* /*staging*/) {
  claims_.mark_received(frame_index(step, segment, max_segments_));
  if (step + 1 >= num_steps()) return std::nullopt;
  return send_frame(step + 1, segment, recv_segment(step, segment));
}

Status check_gather_buffers(std::string_view call, const void* sendbuf, size_t send_count,
                            const void* recvbuf, size_t recv_capacity, size_t own_offset,
                            size_t total, size_t elem_size) {
  if (total > recv_capacity) {
    return make_status(StatusCode::kInvalidArgument,
                       "{}: the result has {} elements and recvbuf holds {}", call, total,
                       recv_capacity);
  }
  if (send_count == 0 || total == 0) return Status::ok();
  auto s = static_cast<const uint8_t*>(sendbuf);
  auto r = static_cast<const uint8_t*>(recvbuf);
  size_t send_bytes = send_count * elem_size;
  size_t recv_bytes = total * elem_size;
  bool overlap = s < r + recv_bytes && r < s + send_bytes;
  if (overlap && s != r + own_offset * elem_size) {
    return make_status(StatusCode::kInvalidArgument,
                       "{}: sendbuf overlaps recvbuf but is not this peer's block of it (element "
                       "{}, its place in ring order): in place, the contribution must sit there",
                       call, own_offset);
  }
  return Status::ok();
}

}  // namespace qccl::collectives
