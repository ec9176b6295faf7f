// Unit tests of qccl_netsim's WAN model (emulation.hpp), on a simulated clock: rate parsing,
// IPv4 parsing, delay, jitter without reordering, loss, and the per-flow token bucket with
// its bounded queue. No I/O, no root.
#include "emulation.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <vector>

namespace qccl::netsim {
namespace {

constexpr int64_t kMs = 1'000'000;

// A minimal IPv4 packet of `len` bytes with a TCP/UDP port pair.
std::vector<uint8_t> packet(size_t len, uint8_t proto = 6, uint16_t sport = 1000,
                            uint16_t dport = 2000, uint16_t frag = 0) {
  std::vector<uint8_t> p(len, 0);
  p[0] = 0x45;
  p[2] = static_cast<uint8_t>(len >> 8);
  p[3] = static_cast<uint8_t>(len);
  p[6] = static_cast<uint8_t>(frag >> 8);
  p[7] = static_cast<uint8_t>(frag);
  p[9] = proto;
  const uint8_t src[4] = {10, 77, 0, 11}, dst[4] = {10, 77, 0, 12};
  std::memcpy(&p[12], src, 4);
  std::memcpy(&p[16], dst, 4);
  p[20] = static_cast<uint8_t>(sport >> 8);
  p[21] = static_cast<uint8_t>(sport);
  p[22] = static_cast<uint8_t>(dport >> 8);
  p[23] = static_cast<uint8_t>(dport);
  return p;
}

FlowKey flow(uint16_t sport = 1000) {
  auto p = packet(100, 6, sport);
  return *parse_ipv4(p.data(), p.size());
}

TEST(EmulationTest, ParsesRates) {
  EXPECT_EQ(parse_rate("20mbit"), 20'000'000u);
  EXPECT_EQ(parse_rate("1.5Gbit"), 1'500'000'000u);
  EXPECT_EQ(parse_rate("800kbit"), 800'000u);
  EXPECT_EQ(parse_rate("10mbps"), 80'000'000u);  // tc: bytes per second
  EXPECT_EQ(parse_rate("0"), 0u);
  EXPECT_EQ(parse_rate("none"), 0u);
  for (const char* bad : {"20", "fast", "-1mbit", "mbit", "1e20gbit", "20 mbit", ""}) {
    EXPECT_FALSE(parse_rate(bad).has_value()) << bad;
  }
}

TEST(EmulationTest, ParsesIpv4Flows) {
  auto p = packet(60, 17, 5353, 53);
  auto k = parse_ipv4(p.data(), p.size());
  ASSERT_TRUE(k);
  EXPECT_EQ(k->proto, 17);
  EXPECT_EQ(k->sport, 5353);
  EXPECT_EQ(k->dport, 53);
  const uint8_t dst[4] = {10, 77, 0, 12};
  EXPECT_EQ(std::memcmp(&k->dst, dst, 4), 0);
  // A later fragment has no ports; ICMP neither.
  auto frag = packet(60, 17, 5353, 53, 0x0010);
  EXPECT_EQ(parse_ipv4(frag.data(), frag.size())->sport, 0);
  auto icmp = packet(60, 1);
  EXPECT_EQ(parse_ipv4(icmp.data(), icmp.size())->dport, 0);
  // Not IPv4, too short, or longer than what was read.
  auto v6 = packet(60);
  v6[0] = 0x60;
  EXPECT_FALSE(parse_ipv4(v6.data(), v6.size()));
  EXPECT_FALSE(parse_ipv4(p.data(), 19));
  EXPECT_FALSE(parse_ipv4(p.data(), 59));
}

TEST(EmulationTest, DelaysEveryPacket) {
  Emulation e(Knobs{.delay_ms = 20}, 1);
  int64_t at = 0;
  ASSERT_EQ(e.admit(flow(), 1500, 5 * kMs, &at), Emulation::Verdict::kDeliver);
  EXPECT_EQ(at, 25 * kMs);
}

TEST(EmulationTest, JitterStaysInRangeAndNeverReordersAFlow) {
  Emulation e(Knobs{.delay_ms = 10, .jitter_ms = 5}, 3);
  // Sparse packets (20 ms apart, more than the jitter's span) draw their delays independently
  // over the whole range.
  int64_t lo = INT64_MAX, hi = 0, now = 0, at = 0;
  for (int i = 0; i < 1000; ++i, now += 20 * kMs) {
    ASSERT_EQ(e.admit(flow(), 1500, now, &at), Emulation::Verdict::kDeliver);
    lo = std::min(lo, at - now);
    hi = std::max(hi, at - now);
  }
  EXPECT_GE(lo, 5 * kMs);
  EXPECT_LT(lo, 6 * kMs);
  EXPECT_LE(hi, 15 * kMs);
  EXPECT_GT(hi, 14 * kMs);
  // Dense packets (0.1 ms apart) never overtake each other: each waits for the latest of its
  // predecessors, so their delays bunch towards delay + jitter.
  int64_t last = 0;
  for (int i = 0; i < 10000; ++i, now += kMs / 10) {
    ASSERT_EQ(e.admit(flow(), 1500, now, &at), Emulation::Verdict::kDeliver);
    ASSERT_GE(at, last) << "packet " << i << " overtook its predecessor";
    ASSERT_GE(at - now, 5 * kMs);
    ASSERT_LE(at - now, 15 * kMs);
    last = at;
  }
  // A smaller delay set later does not overtake packets already scheduled.
  e.set_knobs(Knobs{.delay_ms = 0});
  e.admit(flow(), 1500, now, &at);
  EXPECT_GE(at, last);
}

TEST(EmulationTest, LosesTheConfiguredShare) {
  Emulation e(Knobs{.loss_pct = 10}, 42);
  int lost = 0;
  for (int i = 0; i < 100000; ++i) {
    int64_t at = 0;
    if (e.admit(flow(), 100, i, &at) == Emulation::Verdict::kLost) ++lost;
  }
  EXPECT_NEAR(lost, 10000, 500);  // sd 95
  Emulation all(Knobs{.loss_pct = 100}, 1);
  int64_t at = 0;
  EXPECT_EQ(all.admit(flow(), 100, 0, &at), Emulation::Verdict::kLost);
}

TEST(EmulationTest, FlowCapPacesEachFlowAndBoundsItsQueue) {
  // 12 mbit = 1000 packets of 1500 bytes per second; offered: 4000 per second for 1 s.
  Emulation e(Knobs{.delay_ms = 0, .flow_cap_bps = 12'000'000}, 1);
  int64_t last = 0;
  int delivered = 0, dropped = 0;
  for (int i = 0; i < 4000; ++i) {
    int64_t at = 0;
    const int64_t now = i * kMs / 4;
    if (e.admit(flow(), 1500, now, &at) == Emulation::Verdict::kCapDrop) {
      ++dropped;
      continue;
    }
    ++delivered;
    EXPECT_LE(at - now, 100 * kMs + kMs) << "waited longer than the queue (delay + 100 ms)";
    last = at;
  }
  // The bucket (16 KB: 10 packets) plus 1 s at the cap plus a 100 ms queue, about 1110.
  EXPECT_NEAR(delivered, 1110, 15);
  EXPECT_EQ(delivered + dropped, 4000);
  EXPECT_NEAR(static_cast<double>(last), 1100.0 * kMs, 5.0 * kMs);
  // Another flow has its own bucket: not delayed by the first one's queue.
  int64_t at = 0;
  ASSERT_EQ(e.admit(flow(2), 1500, 1000 * kMs, &at), Emulation::Verdict::kDeliver);
  EXPECT_EQ(at, 1000 * kMs);
  // An explicit queue of 30 KB (20 packets at the cap: 20 ms).
  Emulation q(Knobs{.flow_cap_bps = 12'000'000, .flow_queue_bytes = 30'000}, 1);
  int ok = 0;
  for (int i = 0; i < 100; ++i) {
    if (q.admit(flow(), 1500, 0, &at) == Emulation::Verdict::kDeliver) ++ok;
  }
  EXPECT_NEAR(ok, 10 + 20, 2);
}

TEST(EmulationTest, ValidatesKnobs) {
  EXPECT_EQ(validate(Knobs{}), "");
  EXPECT_NE(validate(Knobs{.loss_pct = 101}), "");
  EXPECT_NE(validate(Knobs{.delay_ms = -1}), "");
  EXPECT_NE(validate(Knobs{.jitter_ms = 1e9}), "");
}

TEST(EmulationTest, ForgetsIdleFlows) {
  Emulation e(Knobs{.delay_ms = 1}, 1);
  int64_t at = 0;
  e.admit(flow(1), 100, 0, &at);
  e.admit(flow(2), 100, 50 * kMs, &at);
  EXPECT_EQ(e.flows(), 2u);
  EXPECT_EQ(e.expire(10 * kMs), 1u);
  EXPECT_EQ(e.flows(), 1u);
}

}  // namespace
}  // namespace qccl::netsim
