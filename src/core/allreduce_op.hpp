// AllReduceOp: one all-reduce as seen by the communicator's loop: the ring dataflow plus the
// bookkeeping that makes it all-or-nothing.
//
// Phases (forward only):
//   kWaitLinks   started; waiting for the data connections of its epoch
//   kRunning     frames flowing
//   kWaitCommit  local part done, C2MOpDone(ok) sent; waiting for the master's M2COpResult
//   kFailing     failed; waiting until no frame still touches the user's buffers and the
//                group has moved past the op's epoch, so that a retry runs on the new ring
//   kDone        the handle was completed, or handed to a new attempt (restart)
//
// Restart: an op whose group epoch ended without the master aborting it (no member's start
// had reached the master, so every member runs this call in the new epoch) is not failed but
// run again there, with the same handle, once its I/O has drained (Communicator).
//
// Thread-safety: loop thread only.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "collectives/reduce_desc.hpp"
#include "collectives/ring_allreduce.hpp"
#include "core/op_handle.hpp"
#include "peer/data_links.hpp"

namespace qccl::core {

class AllReduceOp : public peer::FrameOwner {
 public:
  enum class Phase { kWaitLinks, kRunning, kWaitCommit, kFailing, kDone };

  AllReduceOp(const collectives::ReduceDesc& desc, const void* sendbuf, void* recvbuf,
              uint64_t seq, Epoch epoch, std::shared_ptr<OpHandle> handle);

  const collectives::ReduceDesc& desc() const { return desc_; }
  const void* sendbuf() const { return sendbuf_; }
  void* recvbuf() const { return recvbuf_; }
  OpTag tag() const { return desc_.tag; }
  uint64_t seq() const { return seq_; }
  Epoch epoch() const { return epoch_; }
  uint64_t desc_hash() const { return desc_hash_; }
  Phase phase() const { return phase_; }
  bool accepts_frames() const { return phase_ == Phase::kRunning; }

  // kWaitLinks -> kRunning: builds the ring and queues the first frames.
  void begin(uint32_t world, uint32_t rank, peer::DataLinks& links);
  collectives::RingAllReduce& ring() { return *ring_; }

  // Payload reads into the user's memory in progress (they must end before completion).
  void read_started() { ++reads_; }
  void read_finished(size_t bytes) {
    --reads_, rx_ += bytes;
    last_progress_ = std::chrono::steady_clock::now();
  }
  // When data last moved for this op (begin, a frame received, a frame sent).
  std::chrono::steady_clock::time_point last_progress() const { return last_progress_; }
  // A forwarded frame to queue (from the reader, after on_received).
  // `deferred`: an initial frame whose payload fill() encodes when a lane takes it.
  void send(const collectives::RingAllReduce::Send& s, peer::DataLinks& links,
            bool deferred = false);

  // True once every frame was received and every send was written: time to report done.
  bool locally_complete() const;
  void mark_reported() { phase_ = Phase::kWaitCommit; }

  // Who says the op failed, weakest first. A stronger source overrides the status that a
  // weaker one recorded (e.g. the master's kMismatch beats a neighbour's closed connection).
  enum class FailSource { kLocal, kEpochChange, kMaster };
  // Records a failure and takes back queued frames. Returns true if the op was not failing
  // before. A local failure after the local part completed is ignored: only the master
  // decides that op's fate now.
  bool fail(Status why, peer::DataLinks* links, FailSource source);
  const Status& failure() const { return failure_; }
  FailSource failure_source() const { return failure_source_; }
  // To be run again in the group's new epoch instead of failing (see the file comment). A
  // master's abort cancels it.
  void set_restart() { restart_ = true; }
  bool restart_pending() const { return restart_ && phase_ == Phase::kFailing; }
  // No frame reads from or writes into the user's buffers any more.
  bool drained() const { return sends_in_flight_ == 0 && reads_ == 0; }
  // kFailing and drained() -> kDone without completing the handle: restores an in-place input
  // and returns the handle for the new attempt.
  std::shared_ptr<OpHandle> take_for_restart();
  // Completes the handle with success. REQUIRES: phase kWaitCommit.
  void commit(uint32_t world);
  // Completes a failing op if nothing touches the buffers any more and `epoch_moved`
  // (the group is past this op's epoch, or the communicator is shutting down). Restores an
  // in-place input. Returns true when done.
  bool try_finish(bool epoch_moved);

  void on_sent(const Status& status, size_t bytes) override;
  void fill(const peer::OutFrame& frame) override;
  // Called after every send completion, so the owner can check for completion.
  void set_progress_callback(std::function<void(AllReduceOp&)> cb) { progress_ = std::move(cb); }

 private:
  collectives::ReduceDesc desc_;
  const void* sendbuf_;
  void* recvbuf_;
  uint64_t seq_;
  Epoch epoch_;
  uint64_t desc_hash_;
  std::shared_ptr<OpHandle> handle_;
  Phase phase_ = Phase::kWaitLinks;
  std::unique_ptr<collectives::RingAllReduce> ring_;
  std::vector<uint8_t> backup_;  // in-place input, restored on failure
  size_t sends_in_flight_ = 0;
  size_t reads_ = 0;
  uint64_t tx_ = 0;
  uint64_t rx_ = 0;
  Status failure_;
  FailSource failure_source_ = FailSource::kLocal;
  bool restart_ = false;
  std::chrono::steady_clock::time_point last_progress_;
  std::function<void(AllReduceOp&)> progress_;
};

}  // namespace qccl::core
