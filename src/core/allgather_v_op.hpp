// AllGatherVOp: qcclAllGatherV as an Op (core/op.hpp): every member contributes its own
// number of elements (zero included); every member receives the concatenation in ring order
// and the per-member counts.
//
// No member knows the others' counts when it calls, so the op runs two ring all-gathers
// (collectives::RingAllGather) back to back on the same lanes:
//
//   sizes   steps 0..N-2: each member's count (8 bytes);
//   data    steps N-1..2N-3: the contributions, placed at offsets the counts give.
//
// A member may receive data frames before its own sizes phase completed (its predecessor
// finished first, and lanes reorder frames): those are kept aside (`early_`, read through the
// lane's staging buffer) and taken in once the counts are known. The result's room is checked
// then: a member whose recvbuf (recv_capacity elements) or counts array (counts_capacity
// entries) is too small fails the op, and so the whole group, with kInvalidArgument. The
// counts are written to the caller's array when the op commits.
//
// Thread-safety: loop thread only.
#pragma once

#include <map>
#include <memory>
#include <utility>
#include <vector>

#include "collectives/ring_allgather.hpp"
#include "core/collective_args.hpp"
#include "core/op.hpp"
#include "quant/dtype.hpp"

namespace qccl::core {

class AllGatherVOp final : public Op {
 public:
  AllGatherVOp(const AllGatherVArgs& args, uint64_t seq, Epoch epoch,
               std::shared_ptr<OpHandle> handle);

  std::string_view call() const override { return "qcclAllGatherV"; }
  void start(uint32_t world, uint32_t rank) override;
  Result<FrameTarget> claim(uint32_t step, uint32_t segment, size_t bytes, uint32_t lane) override;
  void unclaim(uint32_t step, uint32_t segment, uint32_t lane) override;
  bool received(uint32_t step, uint32_t segment) const override;
  void take_over(uint32_t step, uint32_t segment, uint32_t lane, const uint8_t* staging) override;
  void on_received(uint32_t step, uint32_t segment, const uint8_t* staging) override;
  bool frames_complete() const override;
  size_t max_frame_bytes() const override;
  void on_commit() override;
  std::shared_ptr<Op> again(uint64_t seq, Epoch epoch,
                            std::shared_ptr<OpHandle> handle) const override;

 private:
  // A data frame that came before the counts were known.
  struct Early {
    bool received = false;
    uint32_t claimant = 0;
    size_t bytes = 0;
    std::vector<uint8_t> payload;
  };
  using FrameKey = std::pair<uint32_t, uint32_t>;  // (data step, segment)

  uint32_t data_steps_begin() const { return world_ - 1; }
  template <class Ring>
  void forward(Ring& ring, uint32_t step_base, uint32_t step, uint32_t segment,
               const uint8_t* staging);
  // The sizes phase is complete: check the room, start the data phase, take in early frames.
  void start_data();

  AllGatherVArgs args_;
  uint32_t world_ = 0;
  uint32_t rank_ = 0;
  uint64_t own_count_;
  std::vector<uint64_t> counts_;  // the sizes phase's result, in ring order
  std::unique_ptr<collectives::RingAllGather> sizes_;
  std::unique_ptr<collectives::RingAllGather> data_;
  std::map<FrameKey, Early> early_;
};

}  // namespace qccl::core
