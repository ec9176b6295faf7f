#include "peer/probe_meter.hpp"

namespace qccl::peer {

using std::chrono::duration;

void ProbeMeter::add(size_t bytes, Clock::time_point now) {
  if (done_) return;
  if (!first_) {
    first_ = last_ = now;
    return;
  }
  const auto half = std::chrono::duration_cast<std::chrono::microseconds>(window_) / 2;
  if (!mark_ && now - *first_ >= half) {
    mark_ = last_;  // the read before this one: this read's bytes arrived after it
    at_mark_ = total_;
  }
  total_ += bytes;
  last_ = now;
  if (now - *first_ >= window_) finish();
}

void ProbeMeter::finish() {
  if (done_) return;
  done_ = true;
  double bytes = 0, seconds = 0;
  if (mark_ && last_ > *mark_) {
    bytes = static_cast<double>(total_ - at_mark_);
    seconds = duration<double>(last_ - *mark_).count();
  } else if (first_ && last_ > *first_) {
    bytes = static_cast<double>(total_);
    seconds = duration<double>(last_ - *first_).count();
  }
  const double rate = seconds > 0 ? bytes / seconds : 0;
  // Saturate: converting a double at or past 2^64 to uint64_t is undefined (in practice 0, the
  // slowest figure), and enough bytes read within nanoseconds get there.
  bytes_per_s_ = rate >= 0x1p64 ? UINT64_MAX : static_cast<uint64_t>(rate);
}

}  // namespace qccl::peer
