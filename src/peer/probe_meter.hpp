// ProbeMeter: the receiving end's estimate of one link's bandwidth during a bandwidth probe
// (link_probe.hpp). Pure: reads and times go in, a figure comes out.
//
// The window starts at the first read; the bytes of that read arrived before it, so they do not
// count. The figure covers (about) the window's second half, when TCP slow start is over: from
// the last read before the half to the first read at or after the window's end, the bytes read
// in between divided by the time between. Since a read's bytes arrived after the read before
// it, the interval is consistent, and it spans at least half a window however bursty the
// arrivals (GSO super-packets, a shaper's token bucket). A meter finished early (the sender
// closed) falls back to everything after the first read.
//
// Thread-safety: none.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>

namespace qccl::peer {

class ProbeMeter {
 public:
  using Clock = std::chrono::steady_clock;

  explicit ProbeMeter(std::chrono::milliseconds window) : window_(window) {}

  // `bytes` were read at `now` (non-decreasing). Finishes the meter once the window is over.
  void add(size_t bytes, Clock::time_point now);
  // Ends the measurement (idempotent); bytes_per_s() is final from here on.
  void finish();

  bool started() const { return first_.has_value(); }
  bool done() const { return done_; }
  // Bytes per second once done(); 0 when there was nothing to measure.
  uint64_t bytes_per_s() const { return bytes_per_s_; }

 private:
  std::chrono::milliseconds window_;
  std::optional<Clock::time_point> first_, mark_;
  Clock::time_point last_{};
  uint64_t total_ = 0, at_mark_ = 0;
  bool done_ = false;
  uint64_t bytes_per_s_ = 0;
};

}  // namespace qccl::peer
