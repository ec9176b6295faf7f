// The vocabulary every ring dataflow (RingAllReduce, RingAllGather, RingBroadcast) shares with
// the op layer that drives it: a frame to send, where an incoming frame's payload goes, and
// the checks that turn an impossible frame header into an error.
//
// A frame is (step, segment, payload). Every dataflow numbers its frames the same way, so the
// op layer drives them all alike: it sends Send frames to the next ring neighbour and, for
// every frame from the previous one, calls claim() (where does the payload go; is it a
// duplicate), then on_received() (take it in; returns the frame to forward, if any). Frames
// come in any order and, after a resend on another connection, twice (frame_claims.hpp).
//
// Thread-safety: plain values and pure functions.
#pragma once

#include <cstddef>
#include <cstdint>

#include "collectives/chunking.hpp"
#include "common/status.hpp"

namespace qccl::collectives {

// A frame to send to the next peer: bytes [data, data + bytes) of a user buffer, or of the
// dataflow's own wire buffer (quantized all-reduce). The memory stays unchanged until the
// operation ends.
struct Send {
  uint32_t step = 0;
  uint32_t segment = 0;
  const uint8_t* data = nullptr;
  size_t bytes = 0;
};

// A frame that arrives twice (the sender resent it on another connection after one stalled,
// peer/data_links.hpp) is not an error: `duplicate` says whether the first copy was taken in
// already (kReceived: skip the payload) or is still being read by connection `claimant`
// (kPending: read this copy into staging; take_over() if it completes first).
enum class Duplicate { kNo, kReceived, kPending };

// Where the payload of an incoming frame goes. staged: into the caller's staging buffer (at
// least max_segment_bytes()), then on_received() takes it from there; otherwise straight into
// `dst`, its final place (or, quantized, the wire slot it is forwarded from).
struct RecvTarget {
  uint8_t* dst = nullptr;
  size_t bytes = 0;
  bool staged = false;
  Duplicate duplicate = Duplicate::kNo;
  uint32_t claimant = 0;  // kPending: the connection reading the first copy
};

// Frame index of (step, segment) in a dataflow whose steps have at most max_segments segments.
inline size_t frame_index(uint32_t step, uint32_t segment, size_t max_segments) {
  return static_cast<size_t>(step) * max_segments + segment;
}

// Checks of an incoming frame header. Each returns kPeerLost with a message that names the
// frame: a peer that sends it runs a different operation or is broken, and the op fails.
//
// Step outside [first, end).
Status check_step(uint32_t step, uint32_t first, uint32_t end);
// Segment `segment` of `block` (absolute element range received at `step`), or an error when
// the block has no such segment (an empty block has none).
Result<Range> check_segment(uint32_t step, uint32_t segment, Range block, size_t segment_elems);
// A payload of the wrong size.
Status check_payload(uint32_t step, uint32_t segment, size_t payload_bytes, size_t expected);

}  // namespace qccl::collectives
