#include "core/allgather_v_op.hpp"

#include "core/fingerprint.hpp"
#include "quant/dtype.hpp"

namespace qccl::core {

AllGatherVOp::AllGatherVOp(const AllGatherVArgs& args, uint64_t seq, Epoch epoch,
                           std::shared_ptr<OpHandle> handle)
    : DataflowOp(args.tag, seq, epoch,
                 op_fingerprint("qccl.allgatherv.v1", {static_cast<uint64_t>(args.dtype)}),
                 std::move(handle)),
      args_(args) {}

void AllGatherVOp::start(uint32_t world, uint32_t rank) {
  if (args_.counts && args_.counts_capacity < world) {
    return fail_locally(make_status(StatusCode::kInvalidArgument,
                                    "{}: the group has {} peers and counts holds {}", call(),
                                    world, args_.counts_capacity));
  }
  run(std::make_unique<collectives::RingAllGatherV>(args_.sendbuf, args_.count, args_.recvbuf,
                                                    args_.recv_capacity,
                                                    dtype_size(args_.dtype), world, rank));
  // A group of one knows the counts at once: the result may not fit.
  if (!dataflow()->status().is_ok()) fail_locally(dataflow()->status());
}

void AllGatherVOp::on_commit() {
  if (!args_.counts) return;
  const auto& counts = dataflow()->counts();
  for (size_t i = 0; i < counts.size(); ++i) args_.counts[i] = counts[i];
}

std::shared_ptr<Op> AllGatherVOp::again(uint64_t seq, Epoch epoch,
                                        std::shared_ptr<OpHandle> handle) const {
  return std::make_shared<AllGatherVOp>(args_, seq, epoch, std::move(handle));
}

}  // namespace qccl::core
