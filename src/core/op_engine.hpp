// OpEngine: runs every collective operation of one communicator, whatever its kind: the op
// table, per-tag sequence numbers, early frames, the all-or-nothing commit with the master,
// aborts, restarts in a new group epoch, and the stall watchdog. A collective is an Op
// (core/op.hpp); the engine never looks inside one. It is the lanes' FrameSink
// (peer/frames.hpp): every inbound data frame is routed to its op here.
//
// One op per tag is in flight. An op's life, as the engine sees it:
//
//   start()          C2MOpStart to the master; begin() once the epoch's lanes are up
//   frames           place() / landed() / copy_landed() / keep(), forwarding what follows
//   locally done     C2MOpDone(ok) to the master (kWaitCommit)
//   M2COpResult ok   commit: the handle completes with success
//   failure          local (lanes, stall, mismatch: reported to the master), the master's
//                    abort, or the group epoch moving on; the op completes once its I/O has
//                    drained and the group is past its epoch (a retry then runs on the new
//                    ring), or is run again in the new epoch if the master never heard of it
//
// An abort of an op this peer has not started yet makes its next call of that tag fail the
// same way (docs/reliability.md §6), so all members either fail an op together or run it
// together.
//
// Thread-safety: loop thread only.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "common/logging.hpp"
#include "core/early_frames.hpp"
#include "core/op.hpp"
#include "core/op_stats.hpp"
#include "net/asio_common.hpp"
#include "peer/data_links.hpp"
#include "wire/messages.hpp"

namespace qccl::core {

// A pseudo operation tag: C2MOpDone with this tag and a failure tells the master that the
// ring itself is broken (no operation needed it yet), so that it moves the group on.
inline constexpr OpTag kRingFailureTag = ~OpTag{0};

class OpEngine final : public peer::FrameSink, public std::enable_shared_from_this<OpEngine> {
 public:
  struct Hooks {
    // Sends to the master; false (nothing sent) without a live master link.
    std::function<bool(const wire::ControlMessage&)> to_master;
    // The op table became empty (shutdown waits for that).
    std::function<void()> on_idle;
    // "peer N at host:port", the neighbour this peer sends to, for messages.
    std::function<std::string()> next_neighbour;
  };
  // Builds attempt `seq` of group epoch `epoch` of a call.
  using Maker = std::function<std::shared_ptr<Op>(uint64_t seq, Epoch epoch)>;

  OpEngine(asio::any_io_executor ex, Hooks hooks);
  // The lanes the ops send on and whose frames come here. REQUIRES: before anything else.
  void attach(peer::DataLinks& links) { links_ = &links; }

  // A user's call of `tag`; `call` names it in messages. The caller checked that the
  // communicator may run operations now.
  Status start(OpTag tag, std::string_view call, Maker make);
  // The op timeout sent with every later C2MOpStart (0 = none); the master enforces it.
  void set_op_timeout(uint32_t ms) { op_timeout_ms_ = ms; }
  uint32_t op_timeout() const { return op_timeout_ms_; }
  bool empty() const { return ops_.empty(); }
  // Where the ops that ended so far spent their time (thread_cpu left 0: the runtime's).
  const OpStats& stats() const { return stats_; }
  size_t size() const { return ops_.size(); }

  // The group moved to `epoch` (`ring`: its members' peer ids in ring order, this one at
  // `rank`): ops of older epochs end. Call before the lanes move to the new epoch.
  void on_group(Epoch epoch, std::vector<PeerId> ring, uint32_t rank);
  void on_links_ready(Epoch epoch);
  // Returns true if a running op reported the failure to the master.
  bool on_links_failed(Epoch epoch, const Status& why);
  void on_op_result(const wire::M2COpResult& r);
  // The communicator is dead (or closing): every op fails with `why` once drained.
  void on_fatal(const Status& why);
  // The master was lost and the runtime waits for a new one (docs/reliability.md, "Losing the
  // master"): every op fails with `why` (it completes once a new membership moves the group on,
  // or on_fatal), except those whose local part is done and that wait for the master's verdict:
  // the new master gives it (resume_report()).
  void on_master_lost(const Status& why);
  // For C2MResume: the ops waiting for their verdict, and per tag the last op this peer
  // committed in the current and the previous group epoch.
  std::vector<wire::ResumeOp> resume_report() const;
  // Fails an op whose data stopped moving for `stall` (a neighbour alive but not reading or
  // sending, which neither heartbeats nor TCP notice); checks every `tick`.
  void start_watchdog(std::chrono::milliseconds tick, std::chrono::milliseconds stall);

  // peer::FrameSink
  peer::Placement place(Epoch epoch, const peer::FrameId& id, size_t payload,
                        uint32_t lane) override;
  Status landed(Epoch epoch, const peer::FrameId& id, size_t payload, uint32_t lane,
                const Status& read, const uint8_t* staging) override;
  void copy_landed(Epoch epoch, const peer::FrameId& id, uint32_t lane, uint32_t claimant,
                   const uint8_t* staging) override;
  Status keep(Epoch epoch, const peer::FrameId& id, std::vector<uint8_t> payload) override;

 private:
  using FailSource = Op::FailSource;
  // The next op of a tag that the master aborted before this peer started it (a group epoch's
  // seq-th op of the tag, and why).
  struct AbortedAhead {
    uint64_t seq;
    Epoch epoch;
    Status why;
  };

  void add(const std::shared_ptr<Op>& op);
  void start_aborted(OpTag tag, const AbortedAhead& ahead, const Maker& make);
  void note_abort_ahead(const wire::M2COpResult& r);
  void begin(const std::shared_ptr<Op>& op);
  // The op `id` names, if it is this epoch's and has begun.
  std::shared_ptr<Op> begun(Epoch epoch, const peer::FrameId& id) const;
  Status deliver_early(const std::shared_ptr<Op>& op, const EarlyFrame& f);
  void take_over(const std::shared_ptr<Op>& op, const peer::FrameId& id, uint32_t claimant,
                 uint32_t lane, const uint8_t* payload);
  // op.on_received(), timed into stats_.frame_work.
  void take_in(Op& op, const peer::FrameId& id, const uint8_t* staging);
  void check_local_done(const std::shared_ptr<Op>& op);
  void fail_mismatch(const std::shared_ptr<Op>& op);
  // Returns true if this call failed the op and reported it to the master (kLocal failures
  // are; the others came from it, from the group's epoch moving on, or from shutdown).
  bool fail(const std::shared_ptr<Op>& op, const Status& why, FailSource source);
  void try_finish(const std::shared_ptr<Op>& op);
  void restart(const std::shared_ptr<Op>& op);
  void after_io(Op* raw);
  void erase(const std::shared_ptr<Op>& op);
  // Adds an ended op's spans to stats_.
  void account(const Op& op);
  void changed();
  std::vector<std::shared_ptr<Op>> snapshot() const;
  net::awaitable<void> watchdog(std::chrono::milliseconds tick, std::chrono::milliseconds stall);

  asio::any_io_executor ex_;
  Hooks hooks_;
  peer::DataLinks* links_ = nullptr;
  std::shared_ptr<spdlog::logger> log_;
  Epoch group_epoch_ = 0;
  uint32_t world_ = 0;
  std::vector<PeerId> ring_;
  uint32_t rank_ = 0;
  std::optional<Status> fatal_;
  bool watchdog_started_ = false;
  std::map<OpTag, std::shared_ptr<Op>> ops_;
  std::map<OpTag, uint64_t> next_seq_;
  // Per (tag, group epoch): the seq of the last op committed, for this and the previous epoch
  // (a lost master may have moved some members on before others heard its verdict).
  std::map<std::pair<OpTag, Epoch>, uint64_t> committed_;
  // Per tag: the next op of this peer's sequence, aborted by the master before it started here.
  std::map<OpTag, AbortedAhead> aborted_ahead_;
  EarlyFrames early_;
  uint32_t op_timeout_ms_ = 0;
  OpStats stats_;
  // Early frames claim as this lane id and complete at once.
  static constexpr uint32_t kEarlyClaimant = 0;
};

}  // namespace qccl::core
