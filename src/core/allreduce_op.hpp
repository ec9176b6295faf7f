// AllReduceOp: qcclAllReduce as an Op (core/op.hpp): the ring dataflow of
// collectives::RingAllReduce, and the all-or-nothing restore of an in-place input.
//
// Thread-safety: loop thread only.
#pragma once

#include <memory>
#include <vector>

#include "collectives/reduce_desc.hpp"
#include "collectives/ring_allreduce.hpp"
#include "core/op.hpp"

namespace qccl::core {

class AllReduceOp final : public Op {
 public:
  // REQUIRES: validate(desc) ok; buffers valid until the handle completes.
  AllReduceOp(const collectives::ReduceDesc& desc, const void* sendbuf, void* recvbuf,
              uint64_t seq, Epoch epoch, std::shared_ptr<OpHandle> handle);

  std::string_view call() const override { return "qcclAllReduce"; }
  void start(uint32_t world, uint32_t rank) override;
  Result<FrameTarget> claim(uint32_t step, uint32_t segment, size_t bytes, uint32_t lane) override;
  void unclaim(uint32_t step, uint32_t segment, uint32_t lane) override;
  bool received(uint32_t step, uint32_t segment) const override;
  void take_over(uint32_t step, uint32_t segment, uint32_t lane, const uint8_t* staging) override;
  void on_received(uint32_t step, uint32_t segment, const uint8_t* staging) override;
  bool frames_complete() const override;
  size_t max_frame_bytes() const override;
  void restore_input() override;
  std::shared_ptr<Op> again(uint64_t seq, Epoch epoch,
                            std::shared_ptr<OpHandle> handle) const override;
  void fill(uint32_t index) override;

 private:
  void send(const collectives::RingAllReduce::Send& s, bool deferred = false);

  collectives::ReduceDesc desc_;
  const void* sendbuf_;
  void* recvbuf_;
  std::unique_ptr<collectives::RingAllReduce> ring_;
  std::vector<uint8_t> backup_;  // in-place input, restored on failure
};

}  // namespace qccl::core
