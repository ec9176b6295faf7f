#include "core/broadcast_op.hpp"

#include <algorithm>
#include <cstring>

#include "core/fingerprint.hpp"

namespace qccl::core {

BroadcastOp::BroadcastOp(const BroadcastArgs& args, uint64_t seq, Epoch epoch,
                         std::shared_ptr<OpHandle> handle)
    : DataflowOp(args.tag, seq, epoch,
                 op_fingerprint("qccl.broadcast.v1", {args.count,
                                                      static_cast<uint64_t>(args.dtype),
                                                      args.root}),
                 std::move(handle)),
      args_(args) {}

void BroadcastOp::start(uint32_t world, uint32_t rank) {
  auto root = std::find(members().begin(), members().end(), args_.root);
  if (root == members().end()) {
    return fail_locally(make_status(StatusCode::kInvalidArgument,
                                    "qcclBroadcast: the root, peer {}, is not in the group "
                                    "(epoch {}: {} peers)",
                                    args_.root, epoch(), world));
  }
  auto root_rank = static_cast<uint32_t>(root - members().begin());
  size_t bytes = args_.count * dtype_size(args_.dtype);
  if (root_rank != rank && bytes > 0) {
    backup_ = ScratchPool::borrow(bytes);
    backup_bytes_ = bytes;
    std::memcpy(backup_.data(), args_.buf, bytes);
  }
  run(std::make_unique<collectives::RingBroadcast>(args_.buf, args_.count,
                                                   dtype_size(args_.dtype), world, rank,
                                                   root_rank));
}

void BroadcastOp::restore_input() {
  if (backup_bytes_ > 0) std::memcpy(args_.buf, backup_.data(), backup_bytes_);
}

std::shared_ptr<Op> BroadcastOp::again(uint64_t seq, Epoch epoch,
                                       std::shared_ptr<OpHandle> handle) const {
  return std::make_shared<BroadcastOp>(args_, seq, epoch, std::move(handle));
}

}  // namespace qccl::core
