// RingAllReduce: the dataflow of one ring all-reduce, without any I/O.
//
// The transport (core/) feeds it frames and sends what it returns; tests drive N of them
// through in-memory queues. See ring_allreduce.cpp for the algorithm.
//
// Thread-safety: none; one operation is driven by one thread (the communicator's loop).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "collectives/chunking.hpp"
#include "collectives/reduce_desc.hpp"
#include "common/status.hpp"

namespace qccl::collectives {

class RingAllReduce {
 public:
  // A frame to send to the next peer: bytes [data, data + bytes) of a user buffer.
  struct Send {
    uint32_t step = 0;
    uint32_t segment = 0;
    const uint8_t* data = nullptr;
    size_t bytes = 0;
  };
  // Where the payload of an incoming frame goes. staged: into the caller's staging buffer
  // (at least max_segment_bytes()), then on_received() reduces it into place; otherwise
  // straight into `dst`, its final place.
  struct RecvTarget {
    uint8_t* dst = nullptr;
    size_t bytes = 0;
    bool staged = false;
  };

  // REQUIRES: world >= 2, rank < world, validate(desc) ok, buffers of desc.count elements
  // (equal for in-place). The caller owns the buffers and keeps them alive.
  RingAllReduce(const ReduceDesc& desc, const void* sendbuf, void* recvbuf, uint32_t world,
                uint32_t rank);

  // The frames of step 0 (this peer's own chunk), to send at once.
  std::vector<Send> start() const;

  // Validates an incoming frame header (step and segment in range, not seen before, payload
  // size as expected) and claims it. kPeerLost with a message if the frame is impossible.
  Result<RecvTarget> claim(uint32_t step, uint32_t segment, size_t payload_bytes);
  // The claimed frame's payload is in place (in `staging` if staged). Reduces it and returns
  // the frame to forward to the next peer, if any.
  std::optional<Send> on_received(uint32_t step, uint32_t segment, const uint8_t* staging);

  bool complete() const { return received_ == expected_; }
  size_t expected_frames() const { return expected_; }
  size_t max_segment_bytes() const { return segment_elems_ * elem_size_; }
  uint32_t num_steps() const { return 2 * (world_ - 1); }

 private:
  uint32_t recv_chunk(uint32_t step) const { return (rank_ + 2 * world_ - step - 1) % world_; }
  uint32_t send_chunk(uint32_t step) const { return (rank_ + 2 * world_ - step) % world_; }
  size_t frame_index(uint32_t step, uint32_t segment) const {
    return static_cast<size_t>(step) * max_segments_ + segment;
  }

  ReduceDesc desc_;
  const uint8_t* send_;
  uint8_t* recv_;
  uint32_t world_;
  uint32_t rank_;
  size_t elem_size_;
  size_t segment_elems_;
  size_t max_segments_;
  size_t expected_ = 0;
  size_t received_ = 0;
  std::vector<uint8_t> claimed_;  // per (step, segment): 0 free, 1 claimed, 2 received
};

}  // namespace qccl::collectives
