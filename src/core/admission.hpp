// admit_pending and wait_for_world: the loop head and the start-up wait every program needs,
// written once (qcclAdmitPending, qcclWaitForWorld; Python admit_pending, wait_for_world).
//
// The call-order model they rely on is docs/call-order.md: a peer's first ArePeersPending
// vote after admission is answered "nothing pending" by the master when the group has
// already moved on to another call (a collective, a sync, another vote), so the same loop
//     connect(); wait_for_world(n, timeout); loop { admit_pending(); all_reduce(...); }
// is right for the first peers and for every peer that joins later.
//
// Thread-safety: as the Communicator's control calls (one at a time, no ops in flight).
#pragma once

#include <chrono>
#include <cstdint>

#include "core/communicator.hpp"

namespace qccl::core {

// How often wait_for_world asks whether peers are pending while none are: admission takes at
// most this plus a round trip to the master.
inline constexpr std::chrono::milliseconds kWaitForWorldPoll{50};

// ArePeersPending, then UpdateTopology if peers are pending. Returns whether peers were
// admitted. Errors are those of the two votes.
Result<bool> admit_pending(Communicator& comm);

// Repeats admit_pending, polling every `poll` while nobody is pending, until this peer's group
// has at least `min_size` accepted peers. timeout 0 = no deadline; otherwise kTimeout once it
// passed (checked between votes: a vote in progress ends within the vote timeout).
// REQUIRES: min_size >= 1.
Status wait_for_world(Communicator& comm, int64_t min_size, std::chrono::milliseconds timeout,
                      std::chrono::milliseconds poll = kWaitForWorldPoll);

}  // namespace qccl::core
