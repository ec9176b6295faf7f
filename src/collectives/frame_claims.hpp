// FrameClaims: which frames of one ring operation are free, being read, or taken in.
//
// Every incoming frame is claimed by the connection that reads it before its payload is
// written anywhere, so that two copies of one frame (the sender resent it on another
// connection after one stalled, peer/data_links.hpp) never write the same memory at once and
// the frame is taken in exactly once. Per frame:
//
//   free ──claim(c)──> claimed by c ──mark_received──> received
//     ^                  │     │
//     └── unclaim(c) ────┘     └── take_over(c'): claimed by c' (c's read was stopped)
//
// claim() of a frame that is not free does not change it and reports the duplicate: kPending
// (claimed by `claimant`: the caller reads this copy into staging and calls take_over() if it
// completes first) or kReceived (skip the payload). unclaim() by anyone but the holder is a
// no-op (a stalled read that fails after its frame was taken over). Frames are numbered by
// the dataflow (ring_frames.hpp frame_index); this class knows nothing of steps or buffers.
//
// Thread-safety: none; owned by one dataflow object.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "collectives/ring_frames.hpp"

namespace qccl::collectives {

class FrameClaims {
 public:
  struct Claim {
    Duplicate duplicate = Duplicate::kNo;  // kNo: the frame is now claimed by the caller
    uint32_t claimant = 0;                 // kPending: who holds the claim
  };

  // `frames` frames, all free.
  explicit FrameClaims(size_t frames = 0) : state_(frames, State::kFree), claimant_(frames, 0) {}

  Claim claim(size_t frame, uint32_t claimant);
  // The claimant's read failed part way: the frame is free again. No-op unless `claimant`
  // holds the claim.
  void unclaim(size_t frame, uint32_t claimant);
  // REQUIRES: the frame is claimed (not received).
  void take_over(size_t frame, uint32_t claimant);
  // The frame's payload was taken in. Counted once, however often it is called.
  void mark_received(size_t frame);
  bool received(size_t frame) const { return state_[frame] == State::kReceived; }
  size_t received_count() const { return received_; }

  // The target claim() answers for a duplicate: staged, no place of its own.
  static RecvTarget duplicate_target(const Claim& c, size_t bytes) {
    return RecvTarget{nullptr, bytes, true, c.duplicate, c.claimant};
  }

 private:
  enum class State : uint8_t { kFree, kClaimed, kReceived };
  std::vector<State> state_;
  std::vector<uint32_t> claimant_;  // meaningful in kClaimed
  size_t received_ = 0;
};

}  // namespace qccl::collectives
