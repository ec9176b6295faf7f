#include "core/early_frames.hpp"

namespace qccl::core {

void EarlyFrames::add(Epoch epoch, EarlyFrame frame) {
  bytes_ += frame.payload.size();
  Key key{epoch, frame.id.tag, frame.id.seq};
  frames_[key].push_back(std::move(frame));
}

std::vector<EarlyFrame> EarlyFrames::take(Epoch epoch, OpTag tag, uint64_t seq) {
  auto node = frames_.extract(Key{epoch, tag, seq});
  if (!node) return {};
  for (const auto& f : node.mapped()) bytes_ -= f.payload.size();
  return std::move(node.mapped());
}

void EarlyFrames::drop_before(Epoch epoch) {
  for (auto it = frames_.begin(); it != frames_.end();) {
    if (it->first.epoch >= epoch) break;
    for (const auto& f : it->second) bytes_ -= f.payload.size();
    it = frames_.erase(it);
  }
}

}  // namespace qccl::core
