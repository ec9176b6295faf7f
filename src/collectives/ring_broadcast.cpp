// Ring broadcast as the all-gather of one block (see ring_broadcast.hpp for the algorithm).
//
// In RingAllGather peer r receives block k at step (r - k - 1) mod N and forwards it unless
// that is the last step: with only the root's block non-empty, that is step d-1 for the peer
// at distance d from the root, forwarded with step d unless d = N-1. The root's buffer is
// its own block in place (offset 0), so nothing is copied.
#include "collectives/ring_broadcast.hpp"

#include <vector>

namespace qccl::collectives {
namespace {

std::vector<size_t> root_only(size_t count, uint32_t world, uint32_t root) {
  std::vector<size_t> counts(world, 0);
  counts[root] = count;
  return counts;
}

}  // namespace

RingBroadcast::RingBroadcast(void* buf, size_t count, size_t elem_size, uint32_t world,
                             uint32_t rank, uint32_t root)
    : distance_((rank + world - root) % world),
      gather_(buf, buf, root_only(count, world, root), elem_size, world, rank) {}

Result<RecvTarget> RingBroadcast::claim(uint32_t step, uint32_t segment, size_t payload_bytes,
                                        uint32_t claimant) {
  // Checked here for a clearer message: the gather would call it an empty block.
  if (distance_ == 0) {
    return make_status(StatusCode::kPeerLost, "broadcast frame (step {}) reached the root", step);
  }
  QCCL_RETURN_IF_ERROR(check_step(step, distance_ - 1, distance_));
  return gather_.claim(step, segment, payload_bytes, claimant);
}

}  // namespace qccl::collectives
