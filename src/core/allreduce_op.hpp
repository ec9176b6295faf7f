// AllReduceOp: qcclAllReduce as an Op (core/op.hpp): the ring dataflow of
// collectives::RingAllReduce, and the all-or-nothing restore of an in-place input.
//
// Thread-safety: loop thread only.
#pragma once

#include <memory>

#include "collectives/reduce_desc.hpp"
#include "collectives/ring_allreduce.hpp"
#include "core/dataflow_op.hpp"
#include "core/scratch_pool.hpp"

namespace qccl::core {

class AllReduceOp final : public DataflowOp<collectives::RingAllReduce> {
 public:
  // REQUIRES: validate(desc) ok; buffers valid until the handle completes.
  AllReduceOp(const collectives::ReduceDesc& desc, const void* sendbuf, void* recvbuf,
              uint64_t seq, Epoch epoch, std::shared_ptr<OpHandle> handle);

  std::string_view call() const override { return "qcclAllReduce"; }
  void start(uint32_t world, uint32_t rank) override;
  void restore_input() override;
  std::shared_ptr<Op> again(uint64_t seq, Epoch epoch,
                            std::shared_ptr<OpHandle> handle) const override;

 private:
  collectives::ReduceDesc desc_;
  const void* sendbuf_;
  void* recvbuf_;
  ScratchPool::Buffer backup_;  // in-place input, restored on failure
  size_t backup_bytes_ = 0;
};

}  // namespace qccl::core
