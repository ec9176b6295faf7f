// Checks of incoming frame headers shared by the ring dataflows (see ring_frames.hpp).
#include "collectives/ring_frames.hpp"

namespace qccl::collectives {

Status check_step(uint32_t step, uint32_t first, uint32_t end) {
  if (step >= first && step < end) return Status::ok();
  if (first == 0) {
    return make_status(StatusCode::kPeerLost, "data frame for step {} of a {}-step operation", step,
                       end);
  }
  if (first + 1 == end) {
    return make_status(StatusCode::kPeerLost, "data frame for step {}: this peer accepts step {} only",
                       step, first);
  }
  return make_status(StatusCode::kPeerLost, "data frame for step {}: this peer accepts steps {}..{}",
                     step, first, end - 1);
}

Result<Range> check_segment(uint32_t step, uint32_t segment, Range block, size_t segment_elems) {
  if (segment >= num_segments(block.count, segment_elems)) {
    return make_status(StatusCode::kPeerLost,
                       "data frame for segment {} of step {}: out of range ({} elements)", segment,
                       step, block.count);
  }
  return segment_range(block, segment_elems, segment);
}

Status check_payload(uint32_t step, uint32_t segment, size_t payload_bytes, size_t expected) {
  if (payload_bytes == expected) return Status::ok();
  return make_status(StatusCode::kPeerLost,
                     "data frame (step {}, segment {}) has {} bytes, expected {}", step, segment,
                     payload_bytes, expected);
}

}  // namespace qccl::collectives
