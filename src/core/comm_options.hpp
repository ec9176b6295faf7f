// What a communicator is created with (CommOptions), what it reports (Attribute), and how many
// ring lanes it opens to a neighbour by default.
//
// Thread-safety: plain data and a pure function.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/ids.hpp"

namespace qccl::core {

struct CommOptions {
  std::string master_address;       // "host:port", or a list "host:port,host:port" (standbys)
  GroupId peer_group = 0;
  uint32_t connections_per_peer = 0;  // 0 = automatic (ring_lanes_for)
  uint32_t connect_timeout_ms = 0;    // 0 = no deadline
  std::optional<std::string> auth_token;
  // The data listener: "host:port" or "host:first-last" (parse_listen_address); "" = any free
  // port on every address, IPv6 and IPv4 ("[::]:0", or "0.0.0.0:0" without IPv6).
  std::string listen_address;
  // What other peers dial: "host" or "host:port" (parse_advertise_address); "" = the address
  // the master sees this peer connect from.
  std::string advertise_address;
  // Every operation's deadline (docs/reliability.md §7); 0 = none. Changeable at run time
  // (Communicator::set_op_timeout).
  uint32_t op_timeout_ms = 0;
  // After losing the master, how long to look for a master that resumes the run (the same
  // address restarted, or the next of the list) before failing with kMasterUnreachable; 0 = do
  // not resume (docs/reliability.md, "Losing the master").
  uint32_t master_reconnect_ms = 0;
  // With an auth_token, every connection is encrypted (docs/security.md) unless this is false;
  // every side of a run must agree.
  bool encrypt = true;
};

// connections_per_peer = 0: ring lanes to a neighbour on another host (a WAN needs many:
// per-flow rate caps, per-connection windows) and over loopback (where more only cost CPU);
// shared-state downloads and bandwidth probes use kDefaultConnections. docs/performance.md
// has the measurements behind these.
inline constexpr uint32_t kDefaultRemoteLanes = 16;
inline constexpr uint32_t kDefaultLoopbackLanes = 2;
inline constexpr uint32_t kDefaultConnections = 4;
// The ring lanes for a neighbour at `host` with `configured` connections_per_peer.
uint32_t ring_lanes_for(uint32_t configured, std::string_view host);

enum class Attribute {
  kGlobalWorldSize = 1,
  kGroupWorldSize,
  kNumGroups,
  kLargestGroupSize,
  kRingRank,
  kEpoch,
  kPeerId,
};

}  // namespace qccl::core
