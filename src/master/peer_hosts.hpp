// Where a peer on the master's own host is dialled from elsewhere.
//
// The master names each peer by the address it saw the peer connect from (unless the peer
// advertised one). A peer that reached the master over loopback runs on the master's host,
// but "127.0.0.1" means another machine to every remote peer. So each message that names
// peers (M2CMembership, M2CSyncPlan donors, M2CProbePlan targets and sources) is adjusted per
// recipient: loopback hosts become the address the recipient itself reached the master at,
// which is an address of the master's host that the recipient can reach. A recipient on the
// master's host (it reached the master over loopback) keeps them.
//
// Thread-safety: a pure function.
#pragma once

#include <string>

#include "wire/messages.hpp"

namespace qccl::master {

// REQUIRES: master_host_seen_by_recipient is the local address of the recipient's control
// connection (e.g. "10.0.0.1" or "2001:db8::1").
void localize_peer_hosts(wire::ControlMessage& msg, const std::string& master_host_seen_by_recipient);

}  // namespace qccl::master
