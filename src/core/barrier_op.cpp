#include "core/barrier_op.hpp"

#include "core/fingerprint.hpp"

namespace qccl::core {

uint64_t barrier_fingerprint() {
  static const uint64_t hash = op_fingerprint("qccl.barrier.v1", {});
  return hash;
}

BarrierOp::BarrierOp(OpTag tag, uint64_t seq, Epoch epoch, std::shared_ptr<OpHandle> handle)
    : Op(tag, seq, epoch, barrier_fingerprint(), std::move(handle)) {}

Result<FrameTarget> BarrierOp::claim(uint32_t step, uint32_t segment, size_t bytes, uint32_t) {
  return make_status(StatusCode::kPeerLost,
                     "a data frame (step {}, segment {}, {} bytes) for a barrier, which has none",
                     step, segment, bytes);
}

std::shared_ptr<Op> BarrierOp::again(uint64_t seq, Epoch epoch,
                                     std::shared_ptr<OpHandle> handle) const {
  return std::make_shared<BarrierOp>(tag(), seq, epoch, std::move(handle));
}

}  // namespace qccl::core
