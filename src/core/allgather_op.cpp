#include "core/allgather_op.hpp"

#include <cstdint>
#include <vector>

#include "core/fingerprint.hpp"

namespace qccl::core {

AllGatherOp::AllGatherOp(const AllGatherArgs& args, uint64_t seq, Epoch epoch,
                         std::shared_ptr<OpHandle> handle)
    : DataflowOp(args.tag, seq, epoch,
                 op_fingerprint("qccl.allgather.v1",
                                {args.count, static_cast<uint64_t>(args.dtype)}),
                 std::move(handle)),
      args_(args) {}

void AllGatherOp::start(uint32_t world, uint32_t rank) {
  size_t esize = dtype_size(args_.dtype);
  if (args_.count > 0 && world > SIZE_MAX / esize / args_.count) {
    return fail_locally(make_status(StatusCode::kInvalidArgument,
                                    "{}: {} peers x {} elements overflow", call(), world,
                                    args_.count));
  }
  Status ok = collectives::check_gather_buffers(call(), args_.sendbuf, args_.count, args_.recvbuf,
                                   args_.recv_capacity, rank * args_.count,
                                   world * args_.count, esize);
  if (!ok.is_ok()) return fail_locally(ok);
  std::vector<size_t> counts(world, args_.count);
  run(std::make_unique<collectives::RingAllGather>(args_.sendbuf, args_.recvbuf,
                                                   std::move(counts), esize, world, rank));
}

std::shared_ptr<Op> AllGatherOp::again(uint64_t seq, Epoch epoch,
                                       std::shared_ptr<OpHandle> handle) const {
  return std::make_shared<AllGatherOp>(args_, seq, epoch, std::move(handle));
}

}  // namespace qccl::core
