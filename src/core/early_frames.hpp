// EarlyFrames: data frames that arrived before their op began on this peer, kept until it
// does. Peers may start concurrent ops in different orders, so a lane must not block on a
// frame whose op is not here yet (frames of other ops queue behind it). The store has a byte
// budget; past it the lane waits (backpressure), bounded like any straggler.
//
// Thread-safety: loop thread only.
#pragma once

#include <cstdint>
#include <map>
#include <vector>

#include "common/ids.hpp"
#include "peer/frames.hpp"

namespace qccl::core {

struct EarlyFrame {
  peer::FrameId id;
  std::vector<uint8_t> payload;
};

class EarlyFrames {
 public:
  static constexpr size_t kMaxBytes = size_t{64} << 20;

  bool fits(size_t payload) const { return bytes_ + payload <= kMaxBytes; }
  void add(Epoch epoch, EarlyFrame frame);
  // The frames kept for op (epoch, tag, seq), removed from the store, in arrival order.
  std::vector<EarlyFrame> take(Epoch epoch, OpTag tag, uint64_t seq);
  // Drops the frames of group epochs before `epoch`.
  void drop_before(Epoch epoch);
  size_t bytes() const { return bytes_; }

 private:
  struct Key {
    Epoch epoch;
    OpTag tag;
    uint64_t seq;
    auto operator<=>(const Key&) const = default;
  };
  std::map<Key, std::vector<EarlyFrame>> frames_;  // ordered by epoch first
  size_t bytes_ = 0;
};

}  // namespace qccl::core
