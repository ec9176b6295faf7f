#include "core/allgather_op.hpp"

#include <cstdint>
#include <vector>

#include "core/fingerprint.hpp"

namespace qccl::core {

Status check_gather_buffers(std::string_view call, const void* sendbuf, size_t send_count,
                            const void* recvbuf, size_t recv_capacity, size_t own_offset,
                            size_t total, size_t elem_size) {
  if (total > recv_capacity) {
    return make_status(StatusCode::kInvalidArgument,
                       "{}: the result has {} elements and recvbuf holds {}", call, total,
                       recv_capacity);
  }
  if (send_count == 0 || total == 0) return Status::ok();
  auto s = static_cast<const uint8_t*>(sendbuf);
  auto r = static_cast<const uint8_t*>(recvbuf);
  size_t send_bytes = send_count * elem_size;
  size_t recv_bytes = total * elem_size;
  bool overlap = s < r + recv_bytes && r < s + send_bytes;
  if (overlap && s != r + own_offset * elem_size) {
    return make_status(StatusCode::kInvalidArgument,
                       "{}: sendbuf overlaps recvbuf but is not this peer's block of it (element "
                       "{}, its place in ring order): in place, the contribution must sit there",
                       call, own_offset);
  }
  return Status::ok();
}

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
  Status ok = check_gather_buffers(call(), args_.sendbuf, args_.count, args_.recvbuf,
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
