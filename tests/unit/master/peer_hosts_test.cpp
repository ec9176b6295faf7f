// localize_peer_hosts: a peer on the master's host, seen over loopback, is announced to each
// other peer at the address that peer reaches the master at.
#include "master/peer_hosts.hpp"

#include <gtest/gtest.h>

namespace qccl::master {
namespace {

wire::M2CMembership ring() {
  wire::M2CMembership m;
  m.ring = {{1, "127.0.0.1", 7001}, {2, "10.0.0.12", 7002}, {3, "::1", 7003}};
  return m;
}

TEST(PeerHosts, LoopbackPeersAreNamedByTheRecipientsViewOfTheMaster) {
  wire::ControlMessage msg = ring();
  localize_peer_hosts(msg, "10.0.0.1");
  const auto& r = std::get<wire::M2CMembership>(msg).ring;
  EXPECT_EQ(r[0].host, "10.0.0.1");
  EXPECT_EQ(r[1].host, "10.0.0.12");  // a remote peer keeps the address it was seen at
  EXPECT_EQ(r[2].host, "10.0.0.1");
  EXPECT_EQ(r[0].port, 7001);
}

TEST(PeerHosts, RecipientOnTheMastersHostKeepsLoopback) {
  for (const char* local : {"127.0.0.1", "::1", ""}) {
    wire::ControlMessage msg = ring();
    localize_peer_hosts(msg, local);
    EXPECT_EQ(std::get<wire::M2CMembership>(msg).ring[0].host, "127.0.0.1") << local;
  }
}

TEST(PeerHosts, DonorsAndProbeTargetsToo) {
  wire::M2CSyncPlan plan;
  plan.donors = {{1, "127.0.0.1", 7001}, {2, "10.0.0.12", 7002}};
  wire::ControlMessage msg = plan;
  localize_peer_hosts(msg, "2001:db8::1");
  EXPECT_EQ(std::get<wire::M2CSyncPlan>(msg).donors[0].host, "2001:db8::1");
  EXPECT_EQ(std::get<wire::M2CSyncPlan>(msg).donors[1].host, "10.0.0.12");
  wire::M2CProbePlan probe;
  probe.targets = {{0, {1, "127.0.0.1", 7001}}};
  probe.sources = {{0, {3, "localhost", 7003}}};
  msg = probe;
  localize_peer_hosts(msg, "10.0.0.1");
  EXPECT_EQ(std::get<wire::M2CProbePlan>(msg).targets[0].peer.host, "10.0.0.1");
  EXPECT_EQ(std::get<wire::M2CProbePlan>(msg).sources[0].peer.host, "10.0.0.1");
}

}  // namespace
}  // namespace qccl::master
