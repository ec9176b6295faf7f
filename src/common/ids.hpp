// Identifiers shared by every module.
//
// PeerId: assigned by the master at registration, unique for the master's lifetime, never
// reused (a peer that rejoins gets a new id). 0 means "none / not yet assigned".
// Epoch: the generation of a peer group's configuration; grows at every membership change and
// at every aborted collective. Messages from an older epoch are discarded, never believed.
#pragma once

#include <cstdint>

namespace qccl {

using PeerId = uint64_t;
using Epoch = uint64_t;
using OpTag = uint64_t;
using GroupId = uint32_t;

inline constexpr PeerId kNoPeer = 0;

}  // namespace qccl
