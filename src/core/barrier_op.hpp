// BarrierOp: a barrier as an Op (core/op.hpp). It carries no frames: its local part is done
// as soon as it starts, and the master commits it once every member of the group has started
// and reported it, which is exactly a barrier; a member lost before that aborts it everywhere
// (qcclPeerLost), like any op. Its fingerprint is the kind alone, so a barrier and another
// collective under the same tag are a qcclMismatch.
//
// Thread-safety: loop thread only.
#pragma once

#include "core/op.hpp"

namespace qccl::core {

class BarrierOp final : public Op {
 public:
  BarrierOp(OpTag tag, uint64_t seq, Epoch epoch, std::shared_ptr<OpHandle> handle);

  std::string_view call() const override { return "qcclBarrier"; }
  void start(uint32_t, uint32_t) override {}
  Result<FrameTarget> claim(uint32_t step, uint32_t segment, size_t bytes, uint32_t lane) override;
  void unclaim(uint32_t, uint32_t, uint32_t) override {}
  bool received(uint32_t, uint32_t) const override { return false; }
  void take_over(uint32_t, uint32_t, uint32_t, const uint8_t*) override {}
  void on_received(uint32_t, uint32_t, const uint8_t*) override {}
  bool frames_complete() const override { return true; }
  size_t max_frame_bytes() const override { return 0; }
  std::shared_ptr<Op> again(uint64_t seq, Epoch epoch,
                            std::shared_ptr<OpHandle> handle) const override;
};

// The fingerprint of every barrier.
uint64_t barrier_fingerprint();

}  // namespace qccl::core
