// Runtime: the communicator's loop side (core/communicator.hpp is its facade). It owns the
// loop thread and everything on it: the master link, the data lanes (peer::DataLinks), the op
// engine, shared-state syncs, bandwidth probes and the membership view.
//
// Lifecycle (state_), forward only except where noted:
//
//   kIdle ---connect()---> kRegistering ---M2CWelcome---> kAwaitingAdmission
//   kAwaitingAdmission ---first M2CMembership---> kJoining (the first epoch's lanes come up)
//   kJoining ---lanes ready---> kConnected (connect() returns ok)
//   kRegistering / kAwaitingAdmission / kJoining ---error or connect deadline---> kIdle
//                                                  (connect() fails; it may be called again)
//   any ---fatal: expelled, master lost, aborted, destroyed---> kClosed (every call fails
//                                                                 with why)
//   kConnected ---master lost, master_reconnect_ms > 0---> kResuming (calls wait; C2MResume to
//                  the master's address, or the next of the list) ---membership of the new
//                  master---> kConnected; ---master_reconnect_ms passed---> kClosed
//   kJoining ---master lost, master_reconnect_ms > 0---> kResuming ---membership---> kJoining
//                  (it is in the lost master's ring: it resumes with the others)
//   kAwaitingAdmission ---master lost, master_reconnect_ms > 0---> kRegistering (it registers
//                  again, with the next master that leads the run; connect() still waits)
//
// While kConnected, at most one control call (a vote, VoteCall; or a sync, StateSync) runs,
// and only when no operation is in flight; operations run in the OpEngine. Destruction leaves
// gracefully (C2MLeave, flushed) and waits, bounded, until no operation or sync touches user
// memory. abort() is the same fatal path, with a graceful C2MLeave when registered, but
// nothing waits for it: every call in progress ends with kAborted at once, and the loop keeps
// answering later calls with kAborted until destruction.
//
// Thread-safety: the public methods are for user threads (they hand the call to the loop and
// wait); everything else runs on the loop.
#pragma once

#include <chrono>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <optional>
#include <vector>

#include "common/address.hpp"
#include "core/communicator.hpp"
#include "core/op_engine.hpp"
#include "core/state_sync.hpp"
#include "core/vote_call.hpp"
#include "net/io_thread.hpp"
#include "peer/data_links.hpp"
#include "peer/link_probe.hpp"
#include "peer/master_link.hpp"

namespace qccl::core {

class Runtime : public std::enable_shared_from_this<Runtime> {
 public:
  Runtime(CommOptions options, std::vector<HostPort> masters, ListenAddress listen,
          HostPort advertise);
  // Starts the data listener. REQUIRES: called once, before anything else.
  Status init();

  // ---- user threads ----
  Status connect();
  Result<bool> vote(wire::VoteKind kind);
  Result<int64_t> attribute(Attribute attr);
  Result<std::vector<Communicator::PeerEntry>> peers();
  // The engine's stats, with the loop thread's CPU time (core/op_stats.hpp).
  OpStats stats();
  // Starts an op made by `make` (OpEngine::Maker) for the call `call` of `tag`.
  Status start_op(OpTag tag, std::string_view call, OpEngine::Maker make);
  Status await_ring(std::chrono::milliseconds bound);
  std::chrono::milliseconds peer_timeout();
  Result<SyncOutcome> sync_shared_state(SyncRequest request);
  void set_fault_policy(std::shared_ptr<net::FaultPolicy> policy);
  // Ends every call in progress and every later one with kAborted ("the communicator was
  // aborted"), leaving the run. Returns at once; idempotent; any user thread.
  void abort();
  // The op timeout for operations started after the call (0 = none). Fails with the fatal
  // status once closed.
  Status set_op_timeout(uint32_t ms);
  uint32_t op_timeout();
  // Leaves, fails what is in flight with kAborted, waits (bounded) and stops the loop.
  void shutdown();

 private:
  enum class State {
    kIdle,
    kRegistering,
    kAwaitingAdmission,
    kJoining,
    kConnected,
    kResuming,
    kClosed
  };
  struct RingWaiter {
    std::shared_ptr<std::promise<Status>> promise;
    std::shared_ptr<asio::steady_timer> timer;
  };

  Status not_connected(std::string_view call) const;
  Status control_call_allowed(std::string_view call) const;
  uint32_t connections() const;
  net::Secret secret() const { return net::make_secret(options_.auth_token, options_.encrypt); }
  bool ring_up() const;
  std::string next_neighbour() const;
  bool send_to_master(const wire::ControlMessage& m);

  // connect
  void start_connect(std::shared_ptr<std::promise<Status>> promise);
  net::awaitable<void> connect_flow(std::chrono::steady_clock::time_point deadline,
                                    size_t first_master);
  void connect_timed_out();
  void finish_connect(Status st);
  // control calls
  void start_sync(SyncRequest req, std::shared_ptr<StateSync::Promise> promise);
  void start_vote(wire::VoteKind kind, std::shared_ptr<VoteCall::Promise> promise);
  void on_vote_result(const wire::M2CVoteResult& r);
  void on_probe_plan(const wire::M2CProbePlan& plan);
  void start_ring_wait(std::shared_ptr<std::promise<Status>> promise,
                       std::chrono::milliseconds bound);
  void check_ring_waiters();
  // losing the master (runtime_resume.cpp)
  std::shared_ptr<peer::MasterLink> make_master_link();
  void on_master_lost(const Status& why);
  void register_again(const Status& why);  // lost the master while waiting for admission
  net::awaitable<void> resume_flow(std::shared_ptr<peer::MasterLink> link,
                                   std::chrono::steady_clock::time_point deadline, size_t first);
  wire::C2MResume resume_message() const;
  Status check_resumer(const wire::M2CWelcome& w) const;
  void resumed();  // the new master's membership arrived
  // Runs `again` once the communicator is no longer resuming (or closed); true if deferred.
  bool defer_while_resuming(std::function<void()> again);
  void run_deferred();
  // the master, the membership and the lanes
  void on_master_message(const wire::ControlMessage& m, Epoch epoch);
  void on_membership(const wire::M2CMembership& m, Epoch epoch);
  void on_links_ready(Epoch e);
  void on_links_failed(Epoch e, const Status& why);
  void report_ring_failure(const Status& why);
  void on_fatal(const Status& why);
  // Sends C2MLeave if the master knows this peer, and lets go of the link (closed once the
  // leave is flushed; leaving_ until then).
  void leave_master();
  void begin_shutdown(std::shared_ptr<std::promise<void>> drained);
  void check_drained();

  CommOptions options_;
  std::vector<HostPort> masters_;
  ListenAddress listen_;
  HostPort advertise_;
  net::IoThread io_;
  std::shared_ptr<spdlog::logger> log_;
  std::shared_ptr<OpEngine> engine_;
  std::unique_ptr<peer::DataLinks> links_;
  std::shared_ptr<StateSync> sync_;
  std::shared_ptr<peer::MasterLink> master_;
  std::shared_ptr<peer::LinkProber> prober_;
  VoteCall vote_;
  peer::LinkSettings settings_;
  State state_ = State::kIdle;
  std::optional<Status> fatal_;  // set with kClosed
  PeerId self_ = kNoPeer;
  Epoch global_epoch_ = 0;
  Epoch group_epoch_ = 0;
  wire::M2CMembership view_;
  uint32_t rank_ = 0;
  bool ring_failure_reported_ = false;  // in this group epoch
  std::shared_ptr<std::promise<Status>> connect_promise_;
  std::optional<asio::steady_timer> connect_timer_;
  std::chrono::steady_clock::time_point connect_deadline_;
  std::map<uint64_t, RingWaiter> ring_waiters_;  // await_ring() calls, by id
  uint64_t last_ring_waiter_ = 0;
  // Shutdown: the promise the destructor waits on, and whether C2MLeave is still flushing.
  std::shared_ptr<std::promise<void>> drained_;
  bool leaving_ = false;
  // The run and the master generation this peer follows (M2CWelcome), and the next peer id
  // the master gives (M2CMembership): given back to a new master.
  uint64_t run_id_ = 0;
  uint64_t generation_ = 0;
  uint64_t master_id_ = 0;
  PeerId next_peer_id_ = 0;
  // The count of completed votes this peer saw last (M2CVoteResult.round, M2CMembership), and
  // the last vote's peers_pending: given back to a new master (C2MResume).
  uint64_t vote_round_ = 0;
  bool vote_pending_ = false;
  // Resuming: the link being dialled, the deadline's timer, and the calls waiting.
  std::shared_ptr<peer::MasterLink> resume_link_;
  std::optional<asio::steady_timer> resume_timer_;
  std::vector<std::function<void()>> deferred_;
};

}  // namespace qccl::core
