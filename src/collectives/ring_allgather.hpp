// RingAllGather: the dataflow of one ring all-gather with a contribution of any size per peer,
// without any I/O. See ring_allgather.cpp for the algorithm.
//
// recvbuf is the concatenation of every ring rank's block in ring-rank order: block k holds
// counts[k] elements at element offset counts[0] + ... + counts[k-1]. The op layer drives it
// as it drives RingAllReduce (ring_frames.hpp); every frame lands straight in recvbuf, so no
// frame is ever staged except a duplicate's copy.
//
// Thread-safety: none; one operation is driven by one thread (the communicator's loop).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "collectives/chunking.hpp"
#include "collectives/frame_claims.hpp"
#include "collectives/ring_frames.hpp"
#include "common/status.hpp"

namespace qccl::collectives {

class RingAllGather {
 public:
  // Copies this peer's block from sendbuf (counts[rank] elements) to its place in recvbuf,
  // unless sendbuf is that place already (in place).
  // REQUIRES: world >= 1, rank < world, counts.size() == world, elem_size >= 1, recvbuf of
  // sum(counts) elements, sendbuf of counts[rank] (not overlapping recvbuf unless in place).
  // The caller owns the buffers and keeps them alive; every peer passes the same counts.
  RingAllGather(const void* sendbuf, void* recvbuf, std::vector<size_t> counts, size_t elem_size,
                uint32_t world, uint32_t rank);

  // The frames of step 0 (this peer's own block, from its place in recvbuf), to send at once.
  size_t initial_frames() const;
  Send initial_frame(size_t j) const;

  // Validates an incoming frame header (a step that exists, a segment of the block that
  // travels at that step, the payload size) and claims it for `claimant` unless it is a
  // duplicate (frame_claims.hpp). kPeerLost with a message for an impossible frame.
  Result<RecvTarget> claim(uint32_t step, uint32_t segment, size_t payload_bytes,
                           uint32_t claimant = 0);
  // The checks of claim() alone: the element range of a valid frame, claiming nothing.
  Result<Range> check_frame(uint32_t step, uint32_t segment, size_t payload_bytes) const;
  void unclaim(uint32_t step, uint32_t segment, uint32_t claimant);
  // A duplicate read into staging completed first: `claimant` holds the claim and the payload
  // is copied to its place. The caller then calls on_received(). REQUIRES as RingAllReduce's.
  void take_over(uint32_t step, uint32_t segment, uint32_t claimant, const uint8_t* staging);
  bool received(uint32_t step, uint32_t segment) const {
    return claims_.received(frame_index(step, segment, max_segments_));
  }
  // The claimed frame's payload is in its place in recvbuf (`staging` is unused: frames are
  // never staged). Returns the frame to forward to the next peer, if any.
  std::optional<Send> on_received(uint32_t step, uint32_t segment, const uint8_t* staging);

  bool complete() const { return claims_.received_count() == expected_; }
  size_t expected_frames() const { return expected_; }
  size_t max_segment_bytes() const { return segment_elems_ * elem_size_; }
  uint32_t num_steps() const { return world_ - 1; }
  // Element range of ring rank k's block in recvbuf.
  Range block(uint32_t k) const { return {offsets_[k], counts_[k]}; }

 private:
  uint32_t send_block(uint32_t step) const { return (rank_ + world_ - step) % world_; }
  uint32_t recv_block(uint32_t step) const { return (rank_ + 2 * world_ - step - 1) % world_; }
  // Segment `segment` of the block received at `step`. REQUIRES: it exists.
  Range recv_segment(uint32_t step, uint32_t segment) const {
    return segment_range(block(recv_block(step)), segment_elems_, segment);
  }
  Send send_frame(uint32_t step, uint32_t segment, Range seg) const {
    return {step, segment, recv_ + seg.offset * elem_size_, seg.count * elem_size_};
  }

  uint8_t* recv_;
  std::vector<size_t> counts_;
  std::vector<size_t> offsets_;
  size_t elem_size_;
  uint32_t world_;
  uint32_t rank_;
  size_t segment_elems_;
  size_t max_segments_;
  size_t expected_ = 0;
  FrameClaims claims_;
};

// Checks that a result of `total` elements fits recvbuf (recv_capacity elements) and that
// sendbuf (send_count elements) either lies outside recvbuf or exactly at this member's block,
// element own_offset (in place). kInvalidArgument naming `call` otherwise. Shared by the
// all-gathers, which every member runs with the same totals, so a bad argument fails alike.
Status check_gather_buffers(std::string_view call, const void* sendbuf, size_t send_count,
                            const void* recvbuf, size_t recv_capacity, size_t own_offset,
                            size_t total, size_t elem_size);

}  // namespace qccl::collectives
