// DataflowOp<Ring>: an Op (core/op.hpp) whose frames are the dataflow of one ring object of
// collectives/ (RingAllReduce, RingBroadcast, RingAllGather, RingAllGatherV). Those classes
// share one frame interface (claim / unclaim / take_over / received / on_received, initial
// frames, complete, max_segment_bytes); this template forwards the op's frame hooks to it
// once, so a collective op only builds its ring in start() and adds what is its own (buffers
// kept aside, results placed at commit). A ring's on_received() returns the frame to forward
// (std::optional<Send>), or every frame it releases or an error (Result<std::vector<Send>>:
// the error fails the op, fail_locally).
//
// Thread-safety: loop thread only.
#pragma once

#include <memory>

#include "core/op.hpp"

namespace qccl::core {

// The rank a member at ring rank `rank` plays in a RingAllReduce: one back. The ring gives
// chunk c to rank c - 1 (the end of its reduction path); played one back, member r ends with
// chunk r, which reduce-scatter needs (block r to ring rank r). The all-reduce plays the same
// ranks, so every chunk follows the same path in both and a reduce-scatter block equals the
// all-reduce's block bit for bit, quantized or not.
inline uint32_t reduce_rank(uint32_t rank, uint32_t world) { return (rank + world - 1) % world; }

// A ring's answer to claim() (its RecvTarget), as the op engine takes it.
template <class RecvTarget>
FrameTarget to_frame_target(const RecvTarget& t) {
  using D = decltype(t.duplicate);
  FrameTarget out{t.dst, t.bytes, t.staged, FrameTarget::Duplicate::kNo, t.claimant};
  if (t.duplicate == D::kReceived) out.duplicate = FrameTarget::Duplicate::kReceived;
  if (t.duplicate == D::kPending) out.duplicate = FrameTarget::Duplicate::kPending;
  return out;
}

template <class Ring>
class DataflowOp : public Op {
 public:
  using Op::Op;

  Result<FrameTarget> claim(uint32_t step, uint32_t segment, size_t bytes,
                            uint32_t lane) override {
    if (!ring_) return not_started(step, segment);
    QCCL_ASSIGN_OR_RETURN(auto t, ring_->claim(step, segment, bytes, lane));
    return to_frame_target(t);
  }
  void unclaim(uint32_t step, uint32_t segment, uint32_t lane) override {
    if (ring_) ring_->unclaim(step, segment, lane);
  }
  bool received(uint32_t step, uint32_t segment) const override {
    return ring_ && ring_->received(step, segment);
  }
  void take_over(uint32_t step, uint32_t segment, uint32_t lane,
                 const uint8_t* staging) override {
    ring_->take_over(step, segment, lane, staging);
  }
  void on_received(uint32_t step, uint32_t segment, const uint8_t* staging) override {
    auto out = ring_->on_received(step, segment, staging);
    if constexpr (requires { out.is_ok(); }) {
      if (!out.is_ok()) return fail_locally(out.status());
      for (const auto& s : *out) send(s);
    } else if (out) {
      send(*out);
    }
  }
  // A deferred initial frame (see run()) is about to be written: encode it now.
  void fill(uint32_t index) override {
    if constexpr (requires(Ring& r) { r.fill_initial_frame(size_t{0}); }) {
      ring_->fill_initial_frame(index);  // only a running op's frames are still queued
    }
  }
  bool frames_complete() const override { return ring_ && ring_->complete(); }
  size_t max_frame_bytes() const override { return ring_ ? ring_->max_segment_bytes() : 0; }

 protected:
  // Sets the dataflow up and queues its first frames. `deferred`: each is filled (encoded)
  // right before a lane writes it (see Ring::fill_initial_frame).
  void run(std::unique_ptr<Ring> ring, bool deferred = false) {
    ring_ = std::move(ring);
    for (size_t j = 0; j < ring_->initial_frames(); ++j) send(ring_->initial_frame(j), deferred);
  }
  template <class Send>
  void send(const Send& s, bool deferred = false) {
    send_frame(s.step, s.segment, s.data, s.bytes, deferred, s.segment);
  }
  Ring* dataflow() { return ring_.get(); }
  const Ring* dataflow() const { return ring_.get(); }

 private:
  // A frame before start() set the dataflow up: start() failed (fail_locally), so no peer can
  // be sending this op's frames on this ring.
  Result<FrameTarget> not_started(uint32_t step, uint32_t segment) const {
    return make_status(StatusCode::kPeerLost,
                       "{}: frame (step {}, segment {}) for an operation that could not start",
                       call(), step, segment);
  }

  std::unique_ptr<Ring> ring_;
};

}  // namespace qccl::core
