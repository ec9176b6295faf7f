// RingBroadcast: the dataflow of one ring broadcast, without any I/O.
//
// The root's buffer travels once around the ring, pipelined in segments: the root sends
// every segment at once, and each other peer receives segment j straight into its buffer and
// forwards it to the next peer, unless the next peer is the root. A frame's step is its
// sender's distance from the root along the ring (the root sends step 0, the peer after it
// forwards with step 1, ...), so the peer at distance d accepts step d-1 only.
//
// This is the all-gather of ring_allgather.cpp in which only the root contributes: the same
// segments, steps and frames, which is how it is built. Worked example, N = 4, root 2, a
// buffer of two segments S0 S1: rank 2 sends S0, S1 with step 0; rank 3 (d = 1) receives
// them and forwards them with step 1; rank 0 (d = 2) forwards with step 2; rank 1 (d = 3)
// receives them with step 2 and stops: its next peer is the root. Each non-root expects 2
// frames, the root none (it is complete at once).
//
// Thread-safety: none; one operation is driven by one thread (the communicator's loop).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>

#include "collectives/ring_allgather.hpp"
#include "collectives/ring_frames.hpp"
#include "common/status.hpp"

namespace qccl::collectives {

class RingBroadcast {
 public:
  // `buf` holds count elements of elem_size bytes: the data on the root, where it lands on
  // every other peer. REQUIRES: world >= 1, rank < world, root < world. The caller owns buf.
  RingBroadcast(void* buf, size_t count, size_t elem_size, uint32_t world, uint32_t rank,
                uint32_t root);

  // The interface of RingAllGather (and RingAllReduce): see ring_frames.hpp for how the op
  // layer drives it. claim() answers kPeerLost for any step but distance - 1.
  size_t initial_frames() const { return gather_.initial_frames(); }
  Send initial_frame(size_t j) const { return gather_.initial_frame(j); }
  Result<RecvTarget> claim(uint32_t step, uint32_t segment, size_t payload_bytes,
                           uint32_t claimant = 0);
  void unclaim(uint32_t step, uint32_t segment, uint32_t claimant) {
    gather_.unclaim(step, segment, claimant);
  }
  void take_over(uint32_t step, uint32_t segment, uint32_t claimant, const uint8_t* staging) {
    gather_.take_over(step, segment, claimant, staging);
  }
  bool received(uint32_t step, uint32_t segment) const { return gather_.received(step, segment); }
  std::optional<Send> on_received(uint32_t step, uint32_t segment, const uint8_t* staging) {
    return gather_.on_received(step, segment, staging);
  }
  bool complete() const { return gather_.complete(); }
  size_t expected_frames() const { return gather_.expected_frames(); }
  size_t max_segment_bytes() const { return gather_.max_segment_bytes(); }
  // This peer's distance from the root along the ring (0 on the root).
  uint32_t distance() const { return distance_; }

 private:
  uint32_t distance_;
  RingAllGather gather_;  // counts: `count` for the root, 0 for every other rank
};

}  // namespace qccl::collectives
