// Op: one collective operation as the op engine (core/op_engine.hpp) drives it. The lifecycle
// that makes every collective all-or-nothing is written here once; a collective subclasses
// Op and implements its dataflow (the virtual hooks below): AllReduceOp, BarrierOp.
//
// Phases (forward only):
//   kWaitLinks   started; waiting for the data connections of its epoch
//   kRunning     frames flowing (start() queued the first ones)
//   kWaitCommit  local part done, C2MOpDone(ok) sent; waiting for the master's M2COpResult
//   kFailing     failed; waiting until no frame still touches the user's buffers and the
//                group has moved past the op's epoch, so that a retry runs on the new ring
//   kDone        the handle was completed, or handed to a new attempt (restart)
//
// Restart: an op whose group epoch ended without the master aborting it (no member's start
// had reached the master, so every member runs this call in the new epoch) is not failed but
// run again there (again()), with the same handle, once its I/O has drained.
//
// Frames: an op sends with send_frame() and receives through the engine, which asks claim()
// where a frame's payload goes and calls on_received() once it is there. A frame may come
// twice (a lane was retired and its frames resent): claim() says so (FrameTarget::Duplicate).
//
// Thread-safety: loop thread only.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string_view>
#include <vector>

#include "common/ids.hpp"
#include "common/status.hpp"
#include "core/op_handle.hpp"
#include "peer/frames.hpp"

namespace qccl::peer {
class DataLinks;
}

namespace qccl::core {

// Where the payload of an incoming frame goes (see collectives::RingAllReduce::RecvTarget).
struct FrameTarget {
  enum class Duplicate { kNo, kReceived, kPending };
  uint8_t* dst = nullptr;  // !staged: the payload's place
  size_t bytes = 0;
  bool staged = false;     // into the reader's staging buffer, then on_received() places it
  Duplicate duplicate = Duplicate::kNo;
  uint32_t claimant = 0;   // kPending: the lane reading the first copy
};

class Op : public peer::FrameOwner {
 public:
  enum class Phase { kWaitLinks, kRunning, kWaitCommit, kFailing, kDone };
  // Who says the op failed, weakest first. A stronger source overrides the status that a
  // weaker one recorded (e.g. the master's kMismatch beats a neighbour's closed connection).
  enum class FailSource { kLocal, kEpochChange, kMaster };

  Op(OpTag tag, uint64_t seq, Epoch epoch, uint64_t fingerprint, std::shared_ptr<OpHandle> handle);

  // ---- what a collective implements ----

  // The C call it serves, for messages ("qcclAllReduce").
  virtual std::string_view call() const = 0;
  // kWaitLinks -> kRunning: set up the dataflow for `world` peers, this one at ring `rank`
  // (members() lists them), and queue the first frames (send_frame). A call that cannot run on
  // this ring (e.g. a result buffer too small for this group size) says so with
  // fail_locally(); every member sees the same ring, so all of them fail it alike.
  virtual void start(uint32_t world, uint32_t rank) = 0;
  // Validates an incoming frame and claims it for `lane`, unless it is a duplicate.
  // kPeerLost with a message if the frame is impossible.
  virtual Result<FrameTarget> claim(uint32_t step, uint32_t segment, size_t bytes,
                                    uint32_t lane) = 0;
  // `lane`'s read broke off part way: the frame is free again (a resent copy will come).
  virtual void unclaim(uint32_t step, uint32_t segment, uint32_t lane) = 0;
  virtual bool received(uint32_t step, uint32_t segment) const = 0;
  // A copy read into `staging` completed before the first copy (whose lane was stopped).
  virtual void take_over(uint32_t step, uint32_t segment, uint32_t lane,
                         const uint8_t* staging) = 0;
  // The claimed frame's payload is in place (in `staging` if staged): take it in, and send
  // what follows from it.
  virtual void on_received(uint32_t step, uint32_t segment, const uint8_t* staging) = 0;
  // Every frame this peer expects has been received.
  virtual bool frames_complete() const = 0;
  // The largest frame payload: what a staging buffer must hold.
  virtual size_t max_frame_bytes() const = 0;
  // Gives back the caller's input (an in-place buffer) after a failure. Default: nothing.
  virtual void restore_input() {}
  // The master committed the op: last writes into the caller's buffers (results kept aside
  // until the outcome was known). Default: nothing.
  virtual void on_commit() {}
  // The same call again, as op `seq` of group epoch `epoch`, completing `handle`.
  virtual std::shared_ptr<Op> again(uint64_t seq, Epoch epoch,
                                    std::shared_ptr<OpHandle> handle) const = 0;

  // ---- the lifecycle, common to every collective ----

  OpTag tag() const { return tag_; }
  uint64_t seq() const { return seq_; }
  Epoch epoch() const { return epoch_; }
  // Identifies the call's descriptor (kind, count, dtype, ...): members must agree on it.
  uint64_t fingerprint() const { return fingerprint_; }
  Phase phase() const { return phase_; }
  bool accepts_frames() const { return phase_ == Phase::kRunning; }

  // kWaitLinks -> kRunning on the group's `ring` (peer ids in ring order), this peer at
  // `rank`. `links` outlives the op.
  void begin(std::vector<PeerId> ring, uint32_t rank, peer::DataLinks& links);
  // The members of the op's epoch in ring order (empty before begin).
  const std::vector<PeerId>& members() const { return ring_; }
  // The failure the op found in its own dataflow (fail_locally), for the engine to report.
  const std::optional<Status>& local_error() const { return local_error_; }

  // Payload reads into the op's memory in progress (they must end before completion).
  void read_started() { ++reads_; }
  void read_finished(size_t wire_bytes);
  // When data last moved for this op (begin, a frame received, a frame sent).
  std::chrono::steady_clock::time_point last_progress() const { return last_progress_; }

  // True once every frame was received and every send was written (and the op found no
  // error of its own): time to report done.
  bool locally_complete() const;
  void mark_reported() {
    phase_ = Phase::kWaitCommit;
    timeline_.frames_done = std::chrono::steady_clock::now();
  }
  // When the op was made, began (kRunning) and finished its frames (kWaitCommit); a time
  // point it has not reached is the epoch (core/op_stats.hpp).
  struct Timeline {
    std::chrono::steady_clock::time_point made, begun, frames_done;
  };
  const Timeline& timeline() const { return timeline_; }
  uint64_t tx_bytes() const { return tx_; }
  uint64_t rx_bytes() const { return rx_; }

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
  // kFailing and drained() -> kDone without completing the handle: restores the input and
  // returns the handle, for the next attempt (again()).
  std::shared_ptr<OpHandle> take_for_restart();
  // Completes the handle with success. REQUIRES: phase kWaitCommit.
  void commit(uint32_t world);
  // Completes a failing op if nothing touches the buffers any more and `epoch_moved` (the
  // group is past this op's epoch, or the communicator is shutting down). Restores the input.
  // Returns true when done.
  bool try_finish(bool epoch_moved);

  void on_sent(const Status& status, size_t bytes) override;
  // Called after every send completion, so the engine can check for completion.
  void set_progress_callback(std::function<void(Op&)> cb) { progress_ = std::move(cb); }

 protected:
  // Queues frame (step, segment) with payload [data, data + bytes) to the next neighbour.
  // `deferred`: fill(index) is called right before a lane writes it.
  void send_frame(uint32_t step, uint32_t segment, const uint8_t* data, size_t bytes,
                  bool deferred = false, uint32_t index = 0);
  // The op cannot go on (from start() or on_received()): the engine fails it and reports
  // `why` to the master, which fails it on every member.
  void fail_locally(Status why) {
    if (!local_error_) local_error_ = std::move(why);
  }

 private:
  OpTag tag_;
  uint64_t seq_;
  Epoch epoch_;
  uint64_t fingerprint_;
  std::shared_ptr<OpHandle> handle_;
  peer::DataLinks* links_ = nullptr;
  std::vector<PeerId> ring_;
  std::optional<Status> local_error_;
  Phase phase_ = Phase::kWaitLinks;
  size_t sends_in_flight_ = 0;
  size_t reads_ = 0;
  uint64_t tx_ = 0;
  uint64_t rx_ = 0;
  Status failure_;
  FailSource failure_source_ = FailSource::kLocal;
  bool restart_ = false;
  std::chrono::steady_clock::time_point last_progress_;
  Timeline timeline_;
  std::function<void(Op&)> progress_;
};

}  // namespace qccl::core
