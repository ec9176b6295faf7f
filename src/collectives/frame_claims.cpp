// Claim bookkeeping of ring frames (see frame_claims.hpp for the states and the rules).
#include "collectives/frame_claims.hpp"

namespace qccl::collectives {

FrameClaims::Claim FrameClaims::claim(size_t frame, uint32_t claimant) {
  switch (state_[frame]) {
    case State::kReceived:
      return {Duplicate::kReceived, 0};
    case State::kClaimed:
      return {Duplicate::kPending, claimant_[frame]};
    case State::kFree:
      break;
  }
  state_[frame] = State::kClaimed;
  claimant_[frame] = claimant;
  return {Duplicate::kNo, claimant};
}

void FrameClaims::unclaim(size_t frame, uint32_t claimant) {
  if (state_[frame] == State::kClaimed && claimant_[frame] == claimant) state_[frame] = State::kFree;
}

void FrameClaims::take_over(size_t frame, uint32_t claimant) { claimant_[frame] = claimant; }

void FrameClaims::mark_received(size_t frame) {
  if (state_[frame] == State::kReceived) return;
  state_[frame] = State::kReceived;
  ++received_;
}

}  // namespace qccl::collectives
