// RingAllReduce: the dataflow of one ring all-reduce, or of its first half alone (a
// reduce-scatter, Mode::kReduceScatter), without any I/O.
//
// The transport (core/) feeds it frames and sends what it returns (ring_frames.hpp); tests
// drive N of them through in-memory queues. See ring_allreduce.cpp for the algorithm.
//
// Thread-safety: none; one operation is driven by one thread (the communicator's loop).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>

#include "collectives/chunking.hpp"
#include "collectives/frame_claims.hpp"
#include "collectives/reduce_desc.hpp"
#include "collectives/ring_frames.hpp"
#include "common/status.hpp"
#include "quant/quantize.hpp"

namespace qccl::collectives {

class RingAllReduce {
 public:
  // The frame vocabulary of every ring dataflow (ring_frames.hpp), under the names the op
  // layer has always used.
  using Send = collectives::Send;
  using Duplicate = collectives::Duplicate;
  using RecvTarget = collectives::RecvTarget;

  // kAllReduce: every peer ends with the whole reduced buffer in recvbuf.
  // kReduceScatter: only the reduce-scatter half runs (steps 0..N-2); the peer ends with the
  // fully reduced chunk it owns, owned_chunk(), at that chunk's offset in recvbuf, bit for bit
  // what the all-reduce of the same inputs gives there (Avg divided, quantized values as the
  // all-reduce's owner encodes them); the rest of recvbuf is scratch.
  enum class Mode { kAllReduce, kReduceScatter };

  // REQUIRES: world >= 2, rank < world, validate(desc) ok, buffers of desc.count elements
  // (equal for in-place). The caller owns the buffers and keeps them alive.
  RingAllReduce(const ReduceDesc& desc, const void* sendbuf, void* recvbuf, uint32_t world,
                uint32_t rank, Mode mode = Mode::kAllReduce);

  // The frames of step 0 (this peer's own chunk), to send at once: initial_frames() of them,
  // frame j being initial_frame(j). When initial_frames_need_fill(), frame j's bytes are
  // valid only after fill_initial_frame(j) (it encodes the segment): call it just before the
  // frame is written, so that encoding overlaps the writes of the frames before it.
  size_t initial_frames() const;
  Send initial_frame(size_t j);
  bool initial_frames_need_fill() const { return coded_; }
  void fill_initial_frame(size_t j);

  // Validates an incoming frame header (step and segment in range, payload size as expected)
  // and claims it for connection `claimant`, unless it is a duplicate. kPeerLost with a
  // message if the frame is impossible.
  Result<RecvTarget> claim(uint32_t step, uint32_t segment, size_t payload_bytes,
                           uint32_t claimant = 0);
  // The claimant's read failed part way: the frame is free again (a resent copy will come).
  // No-op unless `claimant` still holds the claim.
  void unclaim(uint32_t step, uint32_t segment, uint32_t claimant);
  // A duplicate read into staging completed before the first copy: `claimant` now holds the
  // claim, and when the frame goes straight to its place (!staged) the payload is copied
  // there. The caller then calls on_received(step, segment, staging) as for a staged frame.
  // REQUIRES: the frame is claimed and not received; the previous claimant's read was
  // stopped (its connection closed), so nothing else writes the frame's memory.
  void take_over(uint32_t step, uint32_t segment, uint32_t claimant, const uint8_t* staging);
  bool received(uint32_t step, uint32_t segment) const {
    return claims_.received(frame_index(step, segment));
  }
  // The claimed frame's payload is in place (in `staging` if staged). Reduces it and returns
  // the frame to forward to the next peer, if any.
  std::optional<Send> on_received(uint32_t step, uint32_t segment, const uint8_t* staging);

  bool complete() const { return claims_.received_count() == expected_; }
  size_t expected_frames() const { return expected_; }
  // The largest frame payload: what a staging buffer must hold.
  size_t max_segment_bytes() const { return max_frame_bytes_; }
  uint32_t num_steps() const {
    return mode_ == Mode::kReduceScatter ? world_ - 1 : 2 * (world_ - 1);
  }
  // The absolute element range of the chunk this peer completes: chunk (rank + 1) mod N
  // (chunking.hpp: the first count % N chunks have one element more). In kReduceScatter mode
  // the only part of recvbuf that holds a result. A caller that wants ring rank r to own
  // chunk r (the usual reduce-scatter contract) constructs the peer of ring rank r with
  // rank (r + N - 1) mod N: a rotation of the labels, so the neighbours stay the same.
  Range owned_chunk() const { return chunk_range(desc_.count, world_, (rank_ + 1) % world_); }

 private:
  uint32_t recv_chunk(uint32_t step) const { return (rank_ + 2 * world_ - step - 1) % world_; }
  uint32_t send_chunk(uint32_t step) const { return (rank_ + 2 * world_ - step) % world_; }
  size_t frame_index(uint32_t step, uint32_t segment) const {
    return collectives::frame_index(step, segment, max_segments_);
  }
  size_t frame_bytes(size_t elems) const {
    return coded_ ? quant::encoded_bytes(codec_, elems) : elems * elem_size_;
  }
  // Quantized: where the encoded frame sent at `step` lives (and, in the all-gather, where it
  // was received the step before).
  uint8_t* slot(uint32_t step, uint32_t segment) {
    return wire_.get() + frame_index(step, segment) * slot_bytes_;
  }
  Send send_frame(uint32_t step, uint32_t segment, Range seg);
  // Reduce-scatter frames are read into their place in recvbuf and reduced there (out of
  // place, unquantized); otherwise into staging (see ring_allreduce.cpp, "Buffers").
  bool reduce_in_recvbuf() const { return !coded_ && send_ != recv_; }
  // Where the payload of frame (step, segment) goes (see RecvTarget).
  RecvTarget claim_target(uint32_t step, uint32_t segment) const;

  ReduceDesc desc_;
  const uint8_t* send_;
  uint8_t* recv_;
  uint32_t world_;
  uint32_t rank_;
  Mode mode_;
  size_t elem_size_;
  size_t segment_elems_;
  size_t max_segments_;
  quant::WireCodec codec_;
  bool coded_;
  size_t max_frame_bytes_;
  size_t slot_bytes_ = 0;
  // Quantized only: one slot per (step, segment) sent; in kReduceScatter mode one step more,
  // where the owner encodes its final chunk (only for what that decodes to).
  std::unique_ptr<uint8_t[]> wire_;
  size_t expected_ = 0;
  FrameClaims claims_;
};

}  // namespace qccl::collectives
