#include "master/peer_hosts.hpp"

#include "common/address.hpp"

namespace qccl::master {

void localize_peer_hosts(wire::ControlMessage& msg, const std::string& master_host) {
  if (master_host.empty() || is_loopback_host(master_host)) return;
  auto fix = [&](std::string& host) {
    if (is_loopback_host(host)) host = master_host;
  };
  if (auto* m = std::get_if<wire::M2CMembership>(&msg)) {
    for (auto& member : m->ring) fix(member.host);
  } else if (auto* plan = std::get_if<wire::M2CSyncPlan>(&msg)) {
    for (auto& donor : plan->donors) fix(donor.host);
  } else if (auto* probe = std::get_if<wire::M2CProbePlan>(&msg)) {
    for (auto& t : probe->targets) fix(t.peer.host);
    for (auto& s : probe->sources) fix(s.peer.host);
  }
}

}  // namespace qccl::master
