// RingAllGatherV: the dataflow of one all-gather-v (each peer contributes its own count,
// zero included; every peer receives the concatenation in ring order and the counts),
// without any I/O. See ring_allgather_v.cpp for the algorithm.
//
// No peer knows the others' counts when it starts, so this is two RingAllGathers back to back,
// numbered as one dataflow of 2(N-1) steps:
//
//   counts  steps 0..N-2: every peer's count (one 8-byte element);
//   data    steps N-1..2N-3: the contributions, at the offsets the counts give.
//
// The op layer drives it as it drives the other rings (ring_frames.hpp), except that
// on_received() returns every frame it releases (a counts frame's forward; when the counts
// complete, the data phase's initial frames and the forwards of data frames kept early) or
// the error that stops the op: the result does not fit recvbuf, or a data frame kept early
// does not fit the counts.
//
// Thread-safety: none; one operation is driven by one thread (the communicator's loop).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "collectives/ring_allgather.hpp"
#include "collectives/ring_frames.hpp"
#include "common/status.hpp"

namespace qccl::collectives {

class RingAllGatherV {
 public:
  // This peer contributes `count` elements of elem_size bytes from sendbuf; recvbuf holds
  // recv_capacity elements. In place: sendbuf is this peer's block of recvbuf (element
  // counts[0] + ... + counts[rank-1]); any other overlap is an error once the counts are known.
  // With world == 1 the counts are known at once (status() says whether the result fits).
  // REQUIRES: world >= 1, rank < world, elem_size >= 1. The caller owns the buffers and keeps
  // them alive; recvbuf is not written before the counts are known.
  RingAllGatherV(const void* sendbuf, size_t count, void* recvbuf, size_t recv_capacity,
                 size_t elem_size, uint32_t world, uint32_t rank);
  RingAllGatherV(const RingAllGatherV&) = delete;
  RingAllGatherV& operator=(const RingAllGatherV&) = delete;

  // The counts phase's first frames (this peer's count), to send at once.
  size_t initial_frames() const { return counts_ring_.initial_frames(); }
  Send initial_frame(size_t j) const { return counts_ring_.initial_frame(j); }

  // As RingAllGather::claim (kPeerLost for an impossible frame), and: a data frame before the
  // counts are known is read into staging (any size up to wire::kMaxSegmentBytes) and kept;
  // after a failure (status()) data frames are refused with that failure.
  Result<RecvTarget> claim(uint32_t step, uint32_t segment, size_t payload_bytes,
                           uint32_t claimant = 0);
  void unclaim(uint32_t step, uint32_t segment, uint32_t claimant);
  // REQUIRES: on_received(step, segment, staging) follows with the same staging.
  void take_over(uint32_t step, uint32_t segment, uint32_t claimant, const uint8_t* staging);
  bool received(uint32_t step, uint32_t segment) const;
  // The claimed frame's payload is in place (in `staging` if staged): takes it in and returns
  // the frames to send, or the error that ends the op (returned once; later calls return
  // nothing to send).
  Result<std::vector<Send>> on_received(uint32_t step, uint32_t segment, const uint8_t* staging);

  bool complete() const;
  // What a staging buffer must hold: before the counts are known, the largest legal frame.
  size_t max_segment_bytes() const;
  uint32_t num_steps() const { return 2 * (world_ - 1); }
  bool counts_known() const { return phase_ != Phase::kCounts; }
  // Each ring rank's count. REQUIRES: counts_known().
  const std::vector<size_t>& counts() const { return counts_; }
  // Ok, or why the op cannot go on (kInvalidArgument: the result does not fit recvbuf).
  const Status& status() const { return status_; }
  // Data frames that arrived before the counts were known (for tests and logs).
  size_t early_frames() const { return early_seen_; }

 private:
  // kCounts  the counts phase runs; data frames are read into staging and kept (early_).
  // kData    the counts are known and the result fits: data_ runs; early frames whose read
  //          was still going on are taken in when it ends.
  // kFailed  the op cannot go on (status_): data frames are refused, nothing more is sent.
  // kCounts -> kData or kFailed when the counts phase completes (start_data); kData ->
  // kFailed when a frame kept early does not fit the counts.
  enum class Phase { kCounts, kData, kFailed };

  // A data frame that came before the counts were known, in the states of FrameClaims: free
  // (its read failed; kept so that a copy still being read can take over), being read by
  // `claimant`, or received (payload kept).
  enum class EarlyState : uint8_t { kFree, kClaimed, kReceived };
  struct Early {
    EarlyState state = EarlyState::kClaimed;
    uint32_t claimant = 0;
    size_t bytes = 0;
    std::vector<uint8_t> payload;
  };
  using FrameKey = std::pair<uint32_t, uint32_t>;  // (data step, segment)

  uint32_t data_begin() const { return world_ - 1; }
  // The counts are complete: check the room, start the data phase, take in the frames kept.
  Status start_data(std::vector<Send>& out);
  // Data frame (ds, segment) is in its place in recvbuf: take it in, queue its forward.
  void take_in(uint32_t ds, uint32_t segment, std::vector<Send>& out);
  Status fail(Status why);

  const void* sendbuf_;
  size_t count_;
  void* recvbuf_;
  size_t recv_capacity_;
  size_t elem_size_;
  uint32_t world_;
  uint32_t rank_;
  Phase phase_ = Phase::kCounts;
  Status status_;
  uint64_t own_count_;
  std::vector<uint64_t> wire_counts_;  // the counts phase's recvbuf
  RingAllGather counts_ring_;
  std::vector<size_t> counts_;  // once known
  std::unique_ptr<RingAllGather> data_;
  std::map<FrameKey, Early> early_;
  size_t early_seen_ = 0;
};

}  // namespace qccl::collectives
