// netsim_test: the emulated WAN (tests/netsim/netsim.sh + qccl_netsim, docs/netsim.md) does
// what its knobs say, measured from the outside with real sockets between its namespaces
// (probe.hpp): the delay as UDP and TCP-connect round trips, jitter without reordering, loss
// as a UDP count, the per-flow cap as TCP goodput of one and two flows, the tbf uplink rate,
// and the script's refusals. Each test has its own lab (netsim_lab.hpp), torn down at its end.
//
// Bounds are for a loaded 2-core machine: goodput is payload only (about 96.5% of the wire
// rate with 1500-byte packets), and a late timer only ever adds delay.
//
// Skips (with the reason) when not root or when ip, tc or /dev/net/tun are missing.
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>
#include <string>
#include <vector>

#include "netsim_lab.hpp"
#include "probe.hpp"
#include "support/watchdog.hpp"

QCCL_TEST_WATCHDOG(170);

namespace qccl::test {
namespace {

using netsim::probe::Endpoint;
using netsim::probe::quantile;

constexpr double kMbit = 1e6;

#define SKIP_UNLESS_NETSIM()                                               \
  do {                                                                     \
    if (std::string why = NetsimLab::unavailable_reason(); !why.empty()) { \
      GTEST_SKIP() << "netsim test skipped: " << why;                      \
    }                                                                      \
  } while (0)

Endpoint peer(const NetsimLab& lab, int i) { return {lab.peer_ns(i), lab.peer_ip(i)}; }
Endpoint master(const NetsimLab& lab) { return {lab.master_ns(), lab.master_ip()}; }

double sum(const std::vector<double>& v) { return std::accumulate(v.begin(), v.end(), 0.0); }

// Goodput of `flows` TCP flows a -> b over 3 s after a 1 s warm-up, in Mbit/s (total), with
// the per-flow figures printed.
double goodput_mbit(const Endpoint& a, const Endpoint& b, int flows, std::vector<double>* per) {
  std::vector<double> bps;
  const std::string err = netsim::probe::tcp_goodput(a, b, flows, 1.0, 3.0, &bps);
  EXPECT_EQ(err, "");
  std::string text;
  for (double x : bps) text += " " + std::to_string(x / kMbit);
  std::printf("[ measure  ] %d flow(s) %s -> %s: total %.2f Mbit/s, per flow%s\n", flows,
              a.netns.c_str(), b.netns.c_str(), sum(bps) / kMbit, text.c_str());
  if (per != nullptr) *per = bps;
  return sum(bps) / kMbit;
}

// Goodput within [75 %, 105 %] of `limit_mbit`: payload is 96.5 % of the wire rate, and a
// loaded machine may lose some more; never (much) above the limit.
void expect_limited(double got_mbit, double limit_mbit) {
  EXPECT_GE(got_mbit, 0.75 * limit_mbit);
  EXPECT_LE(got_mbit, 1.05 * limit_mbit);
}

TEST(NetsimTest, DelayIsOneWayOnEveryPair) {
  SKIP_UNLESS_NETSIM();
  NetsimLab lab("d");
  ASSERT_EQ(lab.up(2, {"--delay-ms", "20"}), "");
  std::vector<double> udp, tcp;
  ASSERT_EQ(netsim::probe::udp_rtts(peer(lab, 1), peer(lab, 2), 30, 5000, &udp), "");
  ASSERT_EQ(netsim::probe::tcp_connect_times(peer(lab, 1), master(lab), 10, 5000, &tcp), "");
  std::printf(
      "[ measure  ] delay 20 ms: UDP RTT min %.2f median %.2f max %.2f ms; TCP "
      "connect to the master median %.2f ms\n",
      quantile(udp, 0), quantile(udp, 0.5), quantile(udp, 1), quantile(tcp, 0.5));
  EXPECT_GE(quantile(udp, 0), 39.9) << "a packet arrived before its delay";
  EXPECT_LE(quantile(udp, 0.5), 60.0);
  EXPECT_GE(quantile(tcp, 0), 39.9);
  EXPECT_LE(quantile(tcp, 0.5), 60.0);

  // set changes the running emulation.
  ASSERT_EQ(lab.set({"--delay-ms", "5"}), "");
  udp.clear();
  ASSERT_EQ(netsim::probe::udp_rtts(peer(lab, 2), master(lab), 20, 5000, &udp), "");
  std::printf("[ measure  ] delay 5 ms: UDP RTT median %.2f ms\n", quantile(udp, 0.5));
  EXPECT_GE(quantile(udp, 0), 9.9);
  EXPECT_LE(quantile(udp, 0.5), 25.0);
}

TEST(NetsimTest, JitterSpreadsButNeverReorders) {
  SKIP_UNLESS_NETSIM();
  NetsimLab lab("j");
  ASSERT_EQ(lab.up(2, {"--delay-ms", "10", "--jitter-ms", "5"}), "");
  std::vector<double> rtt;
  ASSERT_EQ(netsim::probe::udp_rtts(peer(lab, 1), peer(lab, 2), 40, 5000, &rtt), "");
  std::printf("[ measure  ] delay 10 +- 5 ms: UDP RTT min %.2f median %.2f max %.2f ms\n",
              quantile(rtt, 0), quantile(rtt, 0.5), quantile(rtt, 1));
  EXPECT_GE(quantile(rtt, 0), 9.9);  // each way at least 10 - 5 ms
  EXPECT_GT(quantile(rtt, 1) - quantile(rtt, 0), 2.0) << "no jitter to be seen";
  // A datagram every 0.1 ms on one flow: with +-5 ms of jitter, reordering would be certain.
  int received = 0, out_of_order = 0;
  ASSERT_EQ(netsim::probe::udp_loss(peer(lab, 1), peer(lab, 2), 1000, 100, 10, 500, &received,
                                    &out_of_order),
            "");
  EXPECT_EQ(received, 1000);
  EXPECT_EQ(out_of_order, 0);
}

TEST(NetsimTest, LossMatchesTheConfiguredRate) {
  SKIP_UNLESS_NETSIM();
  NetsimLab lab("l");
  ASSERT_EQ(lab.up(2, {"--loss", "10", "--seed", "7"}), "");
  constexpr int kSent = 2000;
  int received = 0, out_of_order = 0;
  ASSERT_EQ(netsim::probe::udp_loss(peer(lab, 1), peer(lab, 2), kSent, 200, 2, 500, &received,
                                    &out_of_order),
            "");
  const int lost = kSent - received;
  // Binomial(2000, 0.1): mean 200, sd 13.4; +-5 sd.
  std::printf("[ measure  ] loss 10%%: %d of %d datagrams lost\n", lost, kSent);
  EXPECT_GE(lost, 133);
  EXPECT_LE(lost, 267);
  EXPECT_EQ(out_of_order, 0);
}

TEST(NetsimTest, FlowCapLimitsEachFlowNotTheLink) {
  SKIP_UNLESS_NETSIM();
  NetsimLab lab("c");
  ASSERT_EQ(lab.up(2, {"--delay-ms", "10", "--flow-cap", "20mbit"}), "");
  expect_limited(goodput_mbit(peer(lab, 1), peer(lab, 2), 1, nullptr), 20);
  std::vector<double> per;
  expect_limited(goodput_mbit(peer(lab, 1), peer(lab, 2), 2, &per), 40);
  for (double f : per) EXPECT_LE(f / kMbit, 1.05 * 20);
}

TEST(NetsimTest, RateLimitsEachPeersUplinkOnly) {
  SKIP_UNLESS_NETSIM();
  NetsimLab lab("r");
  ASSERT_EQ(lab.up(2, {"--delay-ms", "5", "--rate", "30mbit"}), "");
  expect_limited(goodput_mbit(peer(lab, 1), peer(lab, 2), 2, nullptr), 30);
  // The master's uplink has no tbf.
  const double from_master = goodput_mbit(master(lab), peer(lab, 2), 1, nullptr);
  EXPECT_GE(from_master, 3 * 30.0);
  // set changes it.
  ASSERT_EQ(lab.set({"--rate", "10mbit"}), "");
  expect_limited(goodput_mbit(peer(lab, 1), peer(lab, 2), 1, nullptr), 10);
}

TEST(NetsimTest, ScriptRefusesAndCleansUp) {
  SKIP_UNLESS_NETSIM();
  NetsimLab lab("x");
  // Bad knobs: refused before anything is created.
  std::string out;
  EXPECT_NE(lab.script({"up", "--peers", "2", "--loss", "101", "--bin", QCCL_NETSIM_BIN}, &out),
            "");
  EXPECT_NE(
      lab.script({"up", "--peers", "2", "--flow-cap", "fast", "--bin", QCCL_NETSIM_BIN}, &out), "");
  EXPECT_EQ(::access(("/run/netns/" + lab.master_ns()).c_str(), F_OK), -1);
  ASSERT_EQ(lab.up(2, {}), "");
  // A second up of the same prefix is refused and leaves the first running.
  EXPECT_NE(lab.script({"up", "--peers", "2", "--bin", QCCL_NETSIM_BIN}, &out), "");
  // A bad set is refused (the knobs stay), a good one works.
  EXPECT_NE(lab.set({"--loss", "150"}), "");
  EXPECT_EQ(lab.set({"--loss", "0", "--delay-ms", "1"}), "");
  std::vector<double> rtt;
  EXPECT_EQ(netsim::probe::udp_rtts(peer(lab, 1), peer(lab, 2), 5, 5000, &rtt), "");
  // down is idempotent and removes everything.
  EXPECT_EQ(lab.script({"down"}, &out), "");
  EXPECT_EQ(lab.script({"down"}, &out), "");
  EXPECT_EQ(::access(("/run/netns/" + lab.master_ns()).c_str(), F_OK), -1);
  EXPECT_EQ(::access(("/run/netns/" + lab.peer_ns(1)).c_str(), F_OK), -1);
  EXPECT_EQ(::access(("/run/qccl-netsim/" + lab.prefix() + ".pid").c_str(), F_OK), -1);
}

}  // namespace
}  // namespace qccl::test
