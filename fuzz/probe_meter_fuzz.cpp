// Fuzz target: ProbeMeter (peer/probe_meter.hpp), the receiving end's bandwidth figure of a
// probe, which is fed by what a remote prober sends: the sizes of its reads and their times.
//
// Input: u16 window_ms, then records of 8 bytes, u32 bytes | u32 dt_ns (little-endian): each
// record reads `bytes` at the previous time plus dt_ns (the clock starts at an arbitrary point;
// times never decrease, as add() requires), except dt_ns = 0xFFFFFFFF, which calls finish().
// A trailing partial record is ignored. Read sizes go far beyond the real 64 KiB reads, and
// times down to 1 ns apart, so that the arithmetic is tried at its extremes.
// Oracle (checked after every call):
//   - started() turns true at the first read of a meter not yet done, and neither it nor
//     done() goes back to false; finish() makes done() true, and so does an
//     add() at least window_ms after the first read;
//   - bytes_per_s() is 0 until done() and never changes after it;
//   - bytes_per_s() <= (bytes of the reads after the first, up to done()) / (the smallest
//     positive time step between reads), and is 0 when time never moved.
#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>

#include "fuzz_check.hpp"
#include "peer/probe_meter.hpp"
#include "wire/byte_io.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using qccl::peer::ProbeMeter;
  using qccl::wire::load_le;
  using namespace std::chrono_literals;
  if (size < 2) return 0;
  const std::chrono::milliseconds window(load_le<uint16_t>(data));
  ProbeMeter meter(window);

  ProbeMeter::Clock::time_point now = ProbeMeter::Clock::time_point{} + 1000h;
  ProbeMeter::Clock::time_point first{}, prev{};
  bool started = false, done = false;
  uint64_t final_figure = 0;
  long double counted_bytes = 0;  // bytes of the reads after the first, while not done
  uint64_t min_step_ns = std::numeric_limits<uint64_t>::max();  // smallest positive step

  for (size_t at = 2; at + 8 <= size; at += 8) {
    const uint32_t bytes = load_le<uint32_t>(data + at);
    const uint32_t dt_ns = load_le<uint32_t>(data + at + 4);
    if (dt_ns == 0xFFFFFFFFu) {
      meter.finish();
      FUZZ_CHECK(meter.done());
    } else {
      now += std::chrono::nanoseconds(dt_ns);
      const bool was_done = meter.done();
      meter.add(bytes, now);
      if (!was_done) {
        if (started) {
          counted_bytes += bytes;
          if (now > prev) {
            min_step_ns = std::min<uint64_t>(
                min_step_ns, std::chrono::duration_cast<std::chrono::nanoseconds>(now - prev)
                                 .count());
          }
          if (now - first >= window) FUZZ_CHECK(meter.done());
        } else {
          first = now;
        }
        prev = now;
        started = true;  // a done meter ignores reads, even a never-started one
      }
    }

    FUZZ_CHECK(meter.started() == started);
    if (done) {
      FUZZ_CHECK(meter.done());
      FUZZ_CHECK(meter.bytes_per_s() == final_figure);
      continue;
    }
    if (!meter.done()) {
      FUZZ_CHECK(meter.bytes_per_s() == 0);
      continue;
    }
    done = true;
    final_figure = meter.bytes_per_s();
    if (min_step_ns == std::numeric_limits<uint64_t>::max()) {
      FUZZ_CHECK(final_figure == 0);
    } else {
      const long double bound = counted_bytes * 1e9L / static_cast<long double>(min_step_ns);
      // The meter computes in double: allow its rounding.
      FUZZ_CHECK(static_cast<long double>(final_figure) <= bound * (1 + 1e-12L) + 1);
    }
  }
  return 0;
}
