// Multi-host test: which address a peer is dialled at (issue 17). Each host is a network
// namespace (tests/support/host_lab.hpp); the master runs in the test process, inside the
// master host's namespace; peers are qccl_hosts_peer (hosts_peer.cpp) or, for the IPv6
// loop, qccl_test_peer (tests/fault/test_peer.cpp), configured through the environment.
//
// NatPeerAdvertisesTheForwardedAddress: host "in" sits behind host "nat" (192.168.S.0/24
//   inside; MASQUERADE to the NAT's primary outside address 10.81.S.20, and a port forward of
//   29500-29563 on its second outside address 10.81.S.21 only, as a cloud NAT gateway plus a
//   load balancer would). The master sees the peer come from .20, where nothing is forwarded;
//   with QCCL_ADVERTISE_ADDRESS=10.81.S.21 it joins, downloads shared state, all-reduces, and,
//   once the first peer left, is the only donor of a later joiner's download; every peer lists
//   it at 10.81.S.21:PORT.
// LoopbackPeerIsAnnouncedAtTheMastersAddress: the master listens dual stack ([::]:0); one peer
//   on the master's host dials it at 127.0.0.1, three remote peers at 10.81.S.1; no address is
//   configured. They all-reduce, and every remote peer lists the local one at 10.81.S.1:PORT
//   (never 127.0.0.1) and every peer at a plain IPv4 address (not ::ffff:...).
// Ipv6OnlyLoopSurvivesAKillAndAJoin: hosts with IPv6 addresses only (fd81:S::/64; no IPv4 on
//   their links); master on [::]:0, peers dial [fd81:S::1]:PORT. The demo loop (test_peer
//   --mode loop --admit: all-reduce, then admit pending peers) with 3 peers; one is SIGKILLed,
//   the survivors go on with exactly their own contributions; a new peer joins and every
//   result includes it.
// Ipv6PeersAreListedInBrackets: the same IPv6-only hosts, the master on its host's address,
//   QCCL_LISTEN_ADDRESS=[::]:29500-29563: every peer is listed as "[fd81:S::1x]:29500".
// TwoInterfacesAdvertiseTheRoutableOne: host h0 reaches the master over a second network
//   (10.82.S.0/24) that the other peers have no route to; it advertises its address on the
//   shared network through the explicit advertise_address field (the environment holds the
//   unroutable one: the field wins). The group all-reduces and lists h0 at 10.81.S.10:PORT.
//
// Skips (with the reason) when not root or ip/nft/sysctl are missing.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "netns/hosts_driver.hpp"
#include "qccl/qccl.h"
#include "support/host_lab.hpp"
#include "support/loop_recovery.hpp"
#include "support/proc_cluster.hpp"
#include "support/watchdog.hpp"

QCCL_TEST_WATCHDOG(110);

namespace qccl::test {
namespace {

using namespace std::chrono_literals;
using Handle = ProcCluster::Handle;

constexpr const char* kRange = "29500-29563";

std::vector<std::string> peer_args(const std::string& master, int index, bool stale = false) {
  std::vector<std::string> a{"--master", master, "--index", std::to_string(index),
                             "--connect-timeout-ms", "20000"};
  if (stale) a.push_back("--stale");
  return a;
}

// Every peer of `hs` lists peer `who` (by id) at `address`.
// `world` entries each.
void expect_listed_at(HostsDriver& d, ProcCluster& pc, const std::vector<Handle>& hs,
                      Handle who, const std::string& address, size_t world) {
  for (auto h : hs) {
    PeerList list = d.peers(h, deadline_in(5s));
    EXPECT_EQ(list.peers.size(), world) << pc.label(h);
    EXPECT_EQ(list.address_of(d.id(who)), address)
        << pc.label(h) << " lists " << pc.label(who) << " at another address";
  }
}

TEST(AddressingNetnsTest, NatPeerAdvertisesTheForwardedAddress) {
  if (std::string why = HostLab::unavailable_reason(true); !why.empty()) {
    GTEST_SKIP() << "network-namespace test skipped: " << why;
  }
  HostLab lab;
  const std::string net = "10.81." + lab.s() + ".", inside = "192.168." + lab.s() + ".";
  ASSERT_TRUE(lab.add_network("lan") && lab.add_host("m") && lab.add_host("h0") &&
              lab.add_host("h1") && lab.add_host("nat") && lab.add_host("in"))
      << lab.error();
  ASSERT_TRUE(lab.attach("m", "lan", "eth0", {net + "1/24"}) &&
              lab.attach("h0", "lan", "eth0", {net + "10/24"}) &&
              lab.attach("h1", "lan", "eth0", {net + "11/24"}) &&
              lab.attach("nat", "lan", "eth0", {net + "20/24", net + "21/24"}) &&
              lab.link("nat", "eth1", {inside + "1/24"}, "in", "eth0", {inside + "2/24"}) &&
              lab.ip("in", {"route", "add", "default", "via", inside + "1"}) &&
              lab.sysctl("nat", "net.ipv4.ip_forward", "1") && lab.wait_ready())
      << lab.error();
  // The NAT: masquerade out of eth0 (source .20, its primary address), forward the range
  // arriving for .21 to the inside host.
  const std::string rules = ::testing::TempDir() + "qccl_nat_" + lab.s() + ".nft";
  {
    std::ofstream f(rules);
    f << "table ip qcclnat {\n"
         "  chain pre {\n"
         "    type nat hook prerouting priority dstnat;\n"
         "    ip daddr " << net << "21 tcp dport " << kRange << " dnat to " << inside << "2\n"
         "  }\n"
         "  chain post {\n"
         "    type nat hook postrouting priority srcnat;\n"
         "    oifname \"eth0\" masquerade\n"
         "  }\n"
         "}\n";
  }
  ASSERT_TRUE(lab.nft("nat", rules, {})) << lab.error();
  std::remove(rules.c_str());

  HostMaster master(lab, "m", "0.0.0.0:0");
  ASSERT_TRUE(master.ok()) << master.error();
  const std::string maddr = master.address(net + "1");
  ProcCluster pc(QCCL_HOSTS_PEER_BIN);
  HostsDriver d(pc, lab);

  auto a = d.start("peer 0", "h0", peer_args(maddr, 0), {});
  auto n = d.start("peer 1 (behind NAT)", "in", peer_args(maddr, 1, /*stale=*/true),
                   {std::string("QCCL_LISTEN_ADDRESS=0.0.0.0:") + kRange,
                    "QCCL_ADVERTISE_ADDRESS=" + net + "21"});
  ASSERT_TRUE(a && n);
  std::vector<Handle> g{*a, *n};
  d.expect(g, "world 2", "ok", deadline_in(20s));
  // It downloads shared state (from peer 0) and all-reduces.
  auto s1 = d.expect(g, "sync", "synced", deadline_in(20s));
  ASSERT_FALSE(::testing::Test::HasFailure());
  EXPECT_EQ(s1[1].unum("rx"), 4u << 20) << s1[1].raw;
  EXPECT_EQ(s1[1].field("hash"), s1[0].field("hash"));
  for (const Event& e : d.expect(g, "allreduce", "op", deadline_in(10s))) {
    EXPECT_EQ(e.unum("sum"), sum_of({0, 1})) << e.raw;
  }
  // Peer 0 leaves; a stale joiner on another host downloads from the peer behind the NAT,
  // now the only donor, through the port forward.
  ASSERT_TRUE(pc.send_line(*a, "quit"));
  auto gone = pc.wait_exit(*a, deadline_in(10s));
  ASSERT_TRUE(gone && WIFEXITED(*gone) && WEXITSTATUS(*gone) == 0) << "peer 0 did not leave";
  auto j = d.start("peer 2 (stale joiner)", "h1", peer_args(maddr, 2, true), {});
  ASSERT_TRUE(j);
  g = {*n, *j};
  d.expect(g, "world 2", "ok", deadline_in(20s));
  auto s2 = d.expect(g, "sync", "synced", deadline_in(20s));
  ASSERT_FALSE(::testing::Test::HasFailure());
  EXPECT_EQ(s2[1].unum("rx"), 4u << 20) << s2[1].raw;
  EXPECT_EQ(s2[0].unum("tx"), 4u << 20) << "the peer behind the NAT did not serve it all";
  EXPECT_EQ(s2[1].field("hash"), s1[0].field("hash")) << s2[1].raw;
  for (const Event& e : d.expect(g, "allreduce", "op", deadline_in(10s))) {
    EXPECT_EQ(e.unum("sum"), sum_of({1, 2})) << e.raw;
  }
  PeerList own = d.peers(*n, deadline_in(5s));
  const std::string advertised = own.address_of(d.id(*n));
  EXPECT_EQ(host_of(advertised), net + "21") << "the NAT peer's own entry: " << advertised;
  expect_listed_at(d, pc, g, *n, advertised, 2);
  std::printf("[ measure  ] NAT peer at %s: downloaded in %.1f ms, served %llu bytes\n",
              advertised.c_str(), ms_of(s1[1]),
              static_cast<unsigned long long>(s2[0].unum("tx")));
}

TEST(AddressingNetnsTest, LoopbackPeerIsAnnouncedAtTheMastersAddress) {
  if (std::string why = HostLab::unavailable_reason(false); !why.empty()) {
    GTEST_SKIP() << "network-namespace test skipped: " << why;
  }
  HostLab lab;
  const std::string net = "10.81." + lab.s() + ".";
  ASSERT_TRUE(lab.add_network("lan") && lab.add_host("m") &&
              lab.attach("m", "lan", "eth0", {net + "1/24"}))
      << lab.error();
  for (int i = 0; i < 3; ++i) {
    const std::string h = "h" + std::to_string(i);
    ASSERT_TRUE(lab.add_host(h) && lab.attach(h, "lan", "eth0", {net + std::to_string(10 + i) + "/24"}))
        << lab.error();
  }
  ASSERT_TRUE(lab.wait_ready()) << lab.error();
  // Dual stack, as docs/deployment.md suggests: IPv4 peers are seen as IPv4 addresses.
  HostMaster master(lab, "m", "[::]:0");
  ASSERT_TRUE(master.ok()) << master.error();
  ProcCluster pc(QCCL_HOSTS_PEER_BIN);
  HostsDriver d(pc, lab);

  std::vector<Handle> g;
  auto local = d.start("peer 0 (master's host, 127.0.0.1)", "m",
                       peer_args(master.address("127.0.0.1"), 0), {});
  ASSERT_TRUE(local);
  g.push_back(*local);
  for (int i = 0; i < 3; ++i) {
    auto h = d.start("peer " + std::to_string(i + 1), "h" + std::to_string(i),
                     peer_args(master.address(net + "1"), i + 1), {});
    ASSERT_TRUE(h);
    g.push_back(*h);
  }
  d.expect(g, "world 4", "ok", deadline_in(20s));
  for (const Event& e : d.expect(g, "allreduce", "op", deadline_in(10s))) {
    EXPECT_EQ(e.unum("sum"), sum_of({0, 1, 2, 3})) << e.raw;
  }
  ASSERT_FALSE(::testing::Test::HasFailure());
  // Every remote peer dials the local one at the master's address on the shared network.
  std::vector<Handle> remote(g.begin() + 1, g.end());
  for (auto h : remote) {
    PeerList list = d.peers(h, deadline_in(5s));
    const std::string addr = list.address_of(d.id(*local));
    EXPECT_EQ(host_of(addr), net + "1") << pc.label(h) << " lists the local peer at " << addr;
    for (const PeerEntry& p : list.peers) {  // plain IPv4, not ::ffff:10.81.S.x
      EXPECT_EQ(p.address.rfind(net, 0), 0u) << pc.label(h) << " lists " << p.address;
    }
  }
}

// Master host "m" (fd81:S::1) and hosts h0..h{n-1} (fd81:S::10+i), IPv6 only on their links.
bool build_ipv6_only(HostLab& lab, int n) {
  const std::string net = "fd81:" + lab.s() + "::";
  if (!lab.add_network("lan") || !lab.add_host("m") ||
      !lab.attach("m", "lan", "eth0", {net + "1/64"})) {
    return false;
  }
  for (int i = 0; i < n; ++i) {
    const std::string h = "h" + std::to_string(i);
    if (!lab.add_host(h) || !lab.attach(h, "lan", "eth0", {net + std::to_string(10 + i) + "/64"})) {
      return false;
    }
  }
  return lab.wait_ready();
}

TEST(AddressingNetnsTest, Ipv6OnlyLoopSurvivesAKillAndAJoin) {
  if (std::string why = HostLab::unavailable_reason(false); !why.empty()) {
    GTEST_SKIP() << "network-namespace test skipped: " << why;
  }
  HostLab lab;
  const std::string net = "fd81:" + lab.s() + "::";
  ASSERT_TRUE(build_ipv6_only(lab, 4)) << lab.error();
  HostMaster master(lab, "m", "[::]:0");
  ASSERT_TRUE(master.ok()) << master.error();
  const std::string maddr = master.address("[" + net + "1]");
  ProcCluster pc;  // qccl_test_peer

  const std::vector<std::string> loop{"--mode", "loop", "--admit", "--count", "4096",
                                      "--connect-timeout-ms", "20000"};
  auto spawn = [&](int i, int world) {
    std::vector<std::string> args{"--master", maddr, "--index", std::to_string(i), "--world",
                                  std::to_string(world)};
    args.insert(args.end(), loop.begin(), loop.end());
    return pc.spawn("peer " + std::to_string(i) + " (" + lab.ns("h" + std::to_string(i)) + ")",
                    args, {}, lab.exec_prefix("h" + std::to_string(i)));
  };
  std::vector<Handle> g;
  for (int i = 0; i < 3; ++i) {
    auto h = spawn(i, 3);
    ASSERT_TRUE(h) << pc.error();
    g.push_back(*h);
  }
  const uint64_t three = sum_of({0, 1, 2});
  for (auto h : g) {
    auto e = pc.wait_for(h, [&](const Event& ev) {
      return (ev.is("op") && ev.unum("sum") == three) || ev.is("error") || ev.is("fail");
    }, deadline_in(20s));
    ASSERT_TRUE(e && e->is("op")) << pc.label(h) << ": " << (e ? e->raw : "no op with 3 peers");
  }
  // SIGKILL peer 1: the survivors go on with their own contributions.
  const int64_t t_kill = pc.signal(g[1], SIGKILL);
  const uint64_t survivors = sum_of({0, 2});
  for (int i : {0, 2}) {
    Recovery r = follow_recovery(pc, g[i], t_kill, three, survivors, 3, deadline_in(15s),
                                 {qcclPeerLost});
    ASSERT_TRUE(r.first_success_us) << pc.label(g[i]) << ": no success without the victim";
  }
  // A new peer joins: admitted between ops, in every result from then on.
  const int64_t t_join = monotonic_us();
  auto joiner = spawn(3, 3);
  ASSERT_TRUE(joiner) << pc.error();
  const uint64_t after = sum_of({0, 2, 3});
  for (int i : {0, 2}) {
    Recovery r = follow_recovery(pc, g[i], t_join, survivors, after, 3, deadline_in(15s), {});
    EXPECT_EQ(r.failures, 0) << pc.label(g[i]);
  }
  auto e = pc.wait_for(*joiner, [&](const Event& ev) {
    return ev.is("op") || ev.is("error") || ev.is("fail");
  }, deadline_in(10s));
  ASSERT_TRUE(e && e->is("op")) << "joiner: " << (e ? e->raw : "no op");
  EXPECT_EQ(e->unum("sum"), after) << e->raw;
  std::printf("[ measure  ] IPv6: kill -> join -> first joined op %.1f ms after the join\n",
              (e->at_us() - t_join) / 1000.0);
}

TEST(AddressingNetnsTest, Ipv6PeersAreListedInBrackets) {
  if (std::string why = HostLab::unavailable_reason(false); !why.empty()) {
    GTEST_SKIP() << "network-namespace test skipped: " << why;
  }
  HostLab lab;
  const std::string net = "fd81:" + lab.s() + "::";
  ASSERT_TRUE(build_ipv6_only(lab, 2)) << lab.error();
  HostMaster master(lab, "m", "[" + net + "1]:0");  // the host's own address this time
  ASSERT_TRUE(master.ok()) << master.error();
  ProcCluster pc(QCCL_HOSTS_PEER_BIN);
  HostsDriver d(pc, lab);
  std::vector<Handle> g;
  for (int i = 0; i < 2; ++i) {
    auto h = d.start("peer " + std::to_string(i), "h" + std::to_string(i),
                     peer_args(master.address("[" + net + "1]"), i),
                     {std::string("QCCL_LISTEN_ADDRESS=[::]:") + kRange});
    ASSERT_TRUE(h);
    g.push_back(*h);
  }
  d.expect(g, "world 2", "ok", deadline_in(20s));
  for (const Event& e : d.expect(g, "allreduce", "op", deadline_in(10s))) {
    EXPECT_EQ(e.unum("sum"), sum_of({0, 1})) << e.raw;
  }
  ASSERT_FALSE(::testing::Test::HasFailure());
  for (int i = 0; i < 2; ++i) {
    const std::string want = "[" + net + std::to_string(10 + i) + "]:29500";
    for (auto h : g) {
      EXPECT_EQ(d.peers(h, deadline_in(5s)).address_of(d.id(g[i])), want) << pc.label(h);
    }
  }
}

TEST(AddressingNetnsTest, TwoInterfacesAdvertiseTheRoutableOne) {
  if (std::string why = HostLab::unavailable_reason(false); !why.empty()) {
    GTEST_SKIP() << "network-namespace test skipped: " << why;
  }
  HostLab lab;
  const std::string net = "10.81." + lab.s() + ".", mgmt = "10.82." + lab.s() + ".";
  ASSERT_TRUE(lab.add_network("lan") && lab.add_network("mgmt") && lab.add_host("m") &&
              lab.attach("m", "lan", "eth0", {net + "1/24"}) &&
              lab.attach("m", "mgmt", "eth1", {mgmt + "1/24"}))
      << lab.error();
  for (int i = 0; i < 3; ++i) {
    const std::string h = "h" + std::to_string(i);
    ASSERT_TRUE(lab.add_host(h) &&
                lab.attach(h, "lan", "eth0", {net + std::to_string(10 + i) + "/24"}))
        << lab.error();
  }
  ASSERT_TRUE(lab.attach("h0", "mgmt", "eth1", {mgmt + "10/24"}) && lab.wait_ready())
      << lab.error();
  HostMaster master(lab, "m", "0.0.0.0:0");
  ASSERT_TRUE(master.ok()) << master.error();
  ProcCluster pc(QCCL_HOSTS_PEER_BIN);
  HostsDriver d(pc, lab);

  // h0 reaches the master over mgmt, so the master sees 10.82.S.10, which h1 and h2 cannot
  // reach; it advertises its lan address (explicitly; the environment has the wrong one).
  std::vector<Handle> g;
  auto args0 = peer_args(master.address(mgmt + "1"), 0);
  args0.insert(args0.end(), {"--advertise", net + "10"});
  auto h0 = d.start("peer 0 (two interfaces)", "h0", args0,
                    {"QCCL_ADVERTISE_ADDRESS=" + mgmt + "10"});
  ASSERT_TRUE(h0);
  g.push_back(*h0);
  for (int i = 1; i < 3; ++i) {
    auto h = d.start("peer " + std::to_string(i), "h" + std::to_string(i),
                     peer_args(master.address(net + "1"), i), {});
    ASSERT_TRUE(h);
    g.push_back(*h);
  }
  d.expect(g, "world 3", "ok", deadline_in(20s));
  for (const Event& e : d.expect(g, "allreduce", "op", deadline_in(10s))) {
    EXPECT_EQ(e.unum("sum"), sum_of({0, 1, 2})) << e.raw;
  }
  ASSERT_FALSE(::testing::Test::HasFailure());
  PeerList own = d.peers(*h0, deadline_in(5s));
  const std::string advertised = own.address_of(d.id(*h0));
  EXPECT_EQ(host_of(advertised), net + "10") << advertised;
  expect_listed_at(d, pc, {g[1], g[2]}, *h0, advertised, 3);
}

}  // namespace
}  // namespace qccl::test
