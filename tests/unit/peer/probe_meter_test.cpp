// ProbeMeter (peer/probe_meter.hpp): the receiving end's bandwidth estimate of a probe, fed
// with synthetic read sizes and times: steady streams, slow start, bursty arrivals (a shaper
// releasing super-packets), a sender that stops early, and nothing at all.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>

#include "peer/probe_meter.hpp"
#include "support/watchdog.hpp"

QCCL_TEST_WATCHDOG(30);

namespace qccl::peer {
namespace {

using namespace std::chrono_literals;
using Clock = ProbeMeter::Clock;

const Clock::time_point t0 = Clock::time_point{} + 1000h;

// Feeds `bytes` every `every` from t0 until the meter is done (or `limit` reads).
void steady(ProbeMeter& m, size_t bytes, std::chrono::microseconds every, int limit = 100000) {
  for (int i = 0; i < limit && !m.done(); ++i) m.add(bytes, t0 + every * i);
}

TEST(ProbeMeter, SteadyStreamGivesItsRate) {
  ProbeMeter m(200ms);
  steady(m, 64 * 1024, 1000us);  // 64 KiB per ms = 65.536 MB/s
  ASSERT_TRUE(m.done());
  EXPECT_NEAR(static_cast<double>(m.bytes_per_s()), 65.536e6, 65.536e6 * 0.01);
}

TEST(ProbeMeter, FinishesAtTheFirstReadAfterTheWindow) {
  ProbeMeter m(100ms);
  m.add(10, t0);
  m.add(10, t0 + 99ms);
  EXPECT_FALSE(m.done());
  m.add(10, t0 + 100ms);
  EXPECT_TRUE(m.done());
  m.add(1'000'000, t0 + 101ms);  // ignored once done
  // Mark at the read before the half (t0), so (t0, 100ms]: 20 bytes in 0.1 s.
  EXPECT_EQ(m.bytes_per_s(), 200u);
}

TEST(ProbeMeter, SlowStartInTheFirstHalfDoesNotCount) {
  ProbeMeter m(200ms);
  // First half: ramping up from almost nothing; second half: 1 MB per 10 ms = 100 MB/s.
  Clock::time_point t = t0;
  size_t chunk = 1000;
  for (int i = 0; i < 10; ++i, t += 10ms, chunk *= 2) m.add(chunk, t);
  for (int i = 0; i < 12 && !m.done(); ++i, t += 10ms) m.add(1'000'000, t);
  ASSERT_TRUE(m.done());
  EXPECT_NEAR(static_cast<double>(m.bytes_per_s()), 100e6, 100e6 * 0.06);
}

TEST(ProbeMeter, BurstsAcrossTheHalfDoNotInflateTheFigure) {
  // A shaper at 2.5 MB/s releasing 64 KiB bursts every 26.2 ms, each read twice 1 ms apart:
  // pairs of reads straddling a boundary must not look like 64 KiB per millisecond.
  ProbeMeter m(150ms);
  const auto period = 26214us;
  for (int i = 0; i < 20 && !m.done(); ++i) {
    m.add(32 * 1024, t0 + period * i);
    if (!m.done()) m.add(32 * 1024, t0 + period * i + 1ms);
  }
  ASSERT_TRUE(m.done());
  EXPECT_NEAR(static_cast<double>(m.bytes_per_s()), 2.5e6, 2.5e6 * 0.25);
}

TEST(ProbeMeter, AGapThenABurstIsAveragedOverTheGap) {
  ProbeMeter m(100ms);
  m.add(1000, t0);
  m.add(1000, t0 + 10ms);
  // Nothing from 10 ms to 99 ms, then two reads: the interval starts at 10 ms, not at 99 ms.
  m.add(89'000, t0 + 99ms);
  m.add(1000, t0 + 100ms);
  ASSERT_TRUE(m.done());
  EXPECT_EQ(m.bytes_per_s(), 1'000'000u);  // 90 000 bytes over (10 ms, 100 ms]
}

TEST(ProbeMeter, ASenderThatStopsEarlyIsMeasuredOverWhatCame) {
  ProbeMeter m(200ms);
  m.add(5000, t0);
  m.add(5000, t0 + 10ms);
  m.add(5000, t0 + 20ms);
  m.finish();  // all its connections closed before the half
  EXPECT_TRUE(m.done());
  EXPECT_EQ(m.bytes_per_s(), 500'000u);  // 10 000 bytes after the first read, in 20 ms
}

TEST(ProbeMeter, NothingToMeasureGivesZero) {
  ProbeMeter none(100ms);
  EXPECT_FALSE(none.started());
  none.finish();
  EXPECT_EQ(none.bytes_per_s(), 0u);
  ProbeMeter one(100ms);
  one.add(1 << 20, t0);  // only the first read: it arrived before the window started
  EXPECT_TRUE(one.started());
  one.finish();
  EXPECT_EQ(one.bytes_per_s(), 0u);
}

// Found with fuzz/probe_meter_fuzz.cpp: bytes over a nanosecond can exceed what a uint64_t
// holds, and converting such a double to uint64_t is undefined (UBSan: "outside the range of
// representable values"). The figure saturates instead.
TEST(ProbeMeter, AFigureBeyondUint64Saturates) {
  ProbeMeter m(2ms);
  m.add(0, t0);
  m.add(0, t0 + 999999ns);
  for (int i = 0; i < 7; ++i) m.add(0xFFFFFFFFu, t0 + 1ms);  // 30 GB at the same instant
  m.finish();  // measured over (t0 + 999999 ns, t0 + 1 ms]: 3e19 bytes/s
  ASSERT_TRUE(m.done());
  EXPECT_EQ(m.bytes_per_s(), UINT64_MAX);
}

}  // namespace
}  // namespace qccl::peer
