#include "core/communicator.hpp"

#include <cstring>
#include <future>
#include <map>

#include "common/address.hpp"
#include "common/logging.hpp"
#include "core/allreduce_op.hpp"
#include "core/state_sync.hpp"
#include "net/io_thread.hpp"
#include "net/signal.hpp"
#include "peer/data_links.hpp"
#include "peer/link_probe.hpp"
#include "peer/master_link.hpp"
#include "wire/codec.hpp"

namespace qccl::core {

using Clock = std::chrono::steady_clock;
using net::use_nothrow;

// A pseudo operation tag: C2MOpDone with this tag and a failure tells the master that the
// ring itself is broken (no operation needed it yet), so that it moves the group on.
inline constexpr OpTag kRingFailureTag = ~OpTag{0};

class Communicator::Impl : public std::enable_shared_from_this<Impl> {
 public:
  Impl(CommOptions options, HostPort master)
      : options_(std::move(options)), master_addr_(std::move(master)), io_("qccl-comm"),
        log_(log::get("peer")), ops_changed_(io_.context().get_executor()) {}

  net::IoThread& io() { return io_; }

  Status init() {
    return io_.run_sync([&] {
      links_ = std::make_unique<peer::DataLinks>(
          io_.context().get_executor(),
          [this](std::shared_ptr<net::Connection> c, Epoch e) { start_reader(std::move(c), e); },
          [this](Epoch e, const Status&) { on_links_ready(e); },
          [this](Epoch e, const Status& why) { on_links_failed(e, why); });
      sync_ = std::make_shared<StateSync>(
          io_.context().get_executor(),
          [this](const wire::ControlMessage& m) {
            if (master_ && !fatal_) master_->send(m, global_epoch_);
          },
          [this] { check_drained(); });
      links_->set_state_handler([this](std::shared_ptr<net::Connection> c, const wire::Preamble& p) {
        sync_->adopt(std::move(c), p);
      });
      prober_ = std::make_shared<peer::LinkProber>(io_.context().get_executor(), connections(),
                                                   options_.auth_token);
      links_->set_probe_handler([this](std::shared_ptr<net::Connection> c, const wire::Preamble& p) {
        prober_->serve(std::move(c), p, settings_.timeout);
      });
      settings_.secret = options_.auth_token;  // before listening: every connection needs it
      links_->set_identity(kNoPeer, settings_);
      return links_->listen(listen_);
    });
  }

  Result<SyncOutcome> sync_shared_state(SyncRequest request) {
    auto promise = std::make_shared<StateSync::Promise>();
    auto fut = promise->get_future();
    io_.post([self = shared_from_this(), promise, req = std::move(request)]() mutable {
      self->start_sync(std::move(req), promise);
    });
    return fut.get();
  }

  void set_state_piece_hook(std::function<void(uint64_t)> hook) {
    io_.run_sync([&] { sync_->set_piece_hook(std::move(hook)); });
  }

  // ---- control calls (user threads) ----

  Status connect() {
    auto promise = std::make_shared<std::promise<Status>>();
    auto fut = promise->get_future();
    io_.post([self = shared_from_this(), promise] { self->start_connect(promise); });
    return fut.get();
  }

  Result<bool> vote(wire::VoteKind kind) {
    auto promise = std::make_shared<std::promise<Result<bool>>>();
    auto fut = promise->get_future();
    io_.post([self = shared_from_this(), promise, kind] { self->start_vote(kind, promise); });
    return fut.get();
  }

  Result<int64_t> attribute(Attribute attr) {
    return io_.run_sync([&]() -> Result<int64_t> {
      if (state_ != State::kConnected) return not_connected("qcclGetAttribute");
      switch (attr) {
        case Attribute::kGlobalWorldSize: return int64_t{view_.global_world_size};
        case Attribute::kGroupWorldSize: return int64_t{view_.group_world_size};
        case Attribute::kNumGroups: return int64_t{view_.num_groups};
        case Attribute::kLargestGroupSize: return int64_t{view_.largest_group_size};
        case Attribute::kRingRank: return int64_t{rank_};
        case Attribute::kEpoch: return static_cast<int64_t>(global_epoch_);
        case Attribute::kPeerId: return static_cast<int64_t>(self_);
      }
      return make_status(StatusCode::kInvalidArgument, "unknown attribute {}", static_cast<int>(attr));
    });
  }

  Result<std::vector<PeerEntry>> peers() {
    return io_.run_sync([&]() -> Result<std::vector<PeerEntry>> {
      if (state_ != State::kConnected) return not_connected("qcclGetPeers");
      std::vector<PeerEntry> out;
      for (const auto& m : view_.ring) out.push_back({m.id, format_host_port({m.host, m.port})});
      return out;
    });
  }

  // Parsed CommOptions::listen_address and advertise_address; set before init().
  ListenAddress listen_;
  HostPort advertise_;

  Result<std::shared_ptr<OpHandle>> all_reduce_async(const void* sendbuf, void* recvbuf,
                                                     const collectives::ReduceDesc& desc) {
    auto handle = std::make_shared<OpHandle>();
    Status st = io_.run_sync([&] { return start_op(sendbuf, recvbuf, desc, handle); });
    if (!st.is_ok()) return st;
    return handle;
  }

  Status await_ring(std::chrono::milliseconds bound) {
    auto promise = std::make_shared<std::promise<Status>>();
    auto fut = promise->get_future();
    io_.post([self = shared_from_this(), promise, bound] { self->start_ring_wait(promise, bound); });
    return fut.get();
  }

  std::chrono::milliseconds peer_timeout() {
    return io_.run_sync([&] {
      return state_ == State::kConnected ? settings_.timeout : std::chrono::milliseconds(0);
    });
  }

  void inject_fault(peer::FaultInjection f) {
    io_.run_sync([&] { links_->set_fault_injection(f); });
  }

  void shutdown() {
    auto drained = std::make_shared<std::promise<void>>();
    auto fut = drained->get_future();
    io_.post([self = shared_from_this(), drained] { self->begin_shutdown(drained); });
    // Bounded: every lane was closed, so pending I/O completes at once.
    fut.wait_for(std::chrono::seconds(5));
    io_.stop();
    io_.join();
  }

 private:
  enum class State { kIdle, kConnecting, kConnected, kClosed };
  // A data frame that arrived before its op began here, and where it belongs.
  struct EarlyFrame {
    wire::P2PDataHeader header;
    std::vector<uint8_t> payload;
  };
  struct EarlyKey {
    Epoch epoch;
    OpTag tag;
    uint64_t seq;
    auto operator<=>(const EarlyKey&) const = default;
  };

  // The next op of a tag that the master aborted before this peer started it (a group epoch's
  // seq-th op of the tag, and why).
  struct AbortedAhead {
    uint64_t seq;
    Epoch epoch;
    Status why;
  };

  Status not_connected(std::string_view call) const {
    if (fatal_) return *fatal_;
    return make_status(StatusCode::kInvalidUsage, "{}: the communicator is not connected "
                       "(call qcclConnect first)", call);
  }

  // ---- connect ----

  void start_connect(std::shared_ptr<std::promise<Status>> promise) {
    if (fatal_) return promise->set_value(*fatal_);
    if (state_ != State::kIdle) {
      return promise->set_value(make_status(StatusCode::kInvalidUsage,
                                            "qcclConnect: already connected or connecting"));
    }
    state_ = State::kConnecting;
    connect_promise_ = promise;
    auto deadline = options_.connect_timeout_ms == 0
                        ? Clock::time_point::max()
                        : Clock::now() + std::chrono::milliseconds(options_.connect_timeout_ms);
    if (options_.connect_timeout_ms != 0) {
      connect_timer_.emplace(io_.context(), deadline);
      connect_timer_->async_wait([self = shared_from_this()](const asio::error_code& ec) {
        if (!ec) self->connect_timed_out();
      });
    }
    master_ = std::make_shared<peer::MasterLink>(
        io_.context().get_executor(), master_addr_, options_.auth_token,
        [this](const wire::ControlMessage& m, Epoch e) { on_master_message(m, e); },
        [this](const Status& why) { on_fatal(why); });
    asio::co_spawn(io_.context(), connect_flow(deadline), asio::detached);
  }

  net::awaitable<void> connect_flow(Clock::time_point deadline) {
    auto self = shared_from_this();
    auto link = master_;
    wire::C2MRegister reg{options_.peer_group,
                          advertise_.port != 0 ? advertise_.port : links_->port(),
                          advertise_.host};
    auto welcome = co_await link->connect(reg, deadline);
    if (link != master_ || state_ != State::kConnecting) co_return;  // timed out meanwhile
    if (!welcome.is_ok()) {
      finish_connect(welcome.status());
      co_return;
    }
    self_ = welcome->peer_id;
    settings_.heartbeat = std::chrono::milliseconds(welcome->heartbeat_interval_ms);
    settings_.timeout = std::chrono::milliseconds(welcome->peer_timeout_ms);
    peer::apply_tuning_env(settings_);
    stall_timeout_ = std::chrono::milliseconds(
        std::max(welcome->vote_timeout_ms, welcome->peer_timeout_ms));
    links_->set_identity(self_, settings_);
    sync_->set_identity(self_, settings_, connections());
    link->start();
    asio::co_spawn(io_.context(), stall_watchdog(), asio::detached);
    log_->info("registered with the master at {} as peer {}", format_host_port(master_addr_), self_);
    // Admission arrives as M2CMembership; the call returns once the ring links are up.
  }

  void connect_timed_out() {
    if (state_ != State::kConnecting) return;
    finish_connect(make_status(StatusCode::kTimeout,
                               "qcclConnect: not admitted within connect_timeout_ms = {} ms",
                               options_.connect_timeout_ms));
  }

  void finish_connect(Status st) {
    if (connect_timer_) connect_timer_->cancel();
    if (st.is_ok()) {
      state_ = State::kConnected;
    } else {
      // Back to the start: the caller may try again.
      if (master_) master_->close();
      master_.reset();
      state_ = fatal_ ? State::kClosed : State::kIdle;
    }
    if (connect_promise_) connect_promise_->set_value(st);
    connect_promise_.reset();
  }

  // ---- shared state ----

  // Control calls need a connected communicator with no operation or other control call in
  // progress.
  Status control_call_allowed(std::string_view call) const {
    if (state_ != State::kConnected) return not_connected(call);
    if (!ops_.empty()) {
      return make_status(StatusCode::kInvalidUsage,
                         "{}: {} operation(s) in flight; wait for them first", call, ops_.size());
    }
    if (vote_ || sync_->active()) {
      return make_status(StatusCode::kInvalidUsage, "{}: another control call is in progress",
                         call);
    }
    return Status::ok();
  }

  void start_sync(SyncRequest req, std::shared_ptr<StateSync::Promise> promise) {
    Status allowed = control_call_allowed("qcclSyncSharedState");
    if (!allowed.is_ok()) return promise->set_value(allowed);
    sync_->start(std::move(req), std::move(promise));
  }

  // ---- votes ----

  void start_vote(wire::VoteKind kind, std::shared_ptr<std::promise<Result<bool>>> promise) {
    Status allowed = control_call_allowed(vote_call_name(kind));
    if (!allowed.is_ok()) return promise->set_value(allowed);
    vote_ = VoteWait{kind, promise};
    master_->send(wire::C2MVote{kind}, global_epoch_);
  }

  void on_vote_result(const wire::M2CVoteResult& r) {
    if (!vote_ || vote_->kind != r.kind) return;
    if (r.status != StatusCode::kOk) {
      return finish_vote(make_status(r.status, "{}: {}", vote_call_name(r.kind), r.message));
    }
    if (r.kind == wire::VoteKind::kPeersPending) return finish_vote(r.peers_pending);
    vote_->pending = r.peers_pending;
    vote_->result_in = true;
    vote_deadline_.emplace(io_.context(), 2 * settings_.timeout);
    vote_deadline_->async_wait([self = shared_from_this()](const asio::error_code& ec) {
      if (!ec && self->vote_) {
        self->finish_vote(make_status(StatusCode::kPeerLost,
                                      "the connections to the next ring neighbour ({}) did not "
                                      "come up in time{}; call {} again",
                                      self->next_neighbour(),
                                      self->links_->failed()
                                          ? ": " + self->links_->failure().message()
                                          : std::string(),
                                      vote_call_name(self->vote_->kind)));
      }
    });
    maybe_finish_vote();
  }

  // "peer N at host:port", the ring neighbour this peer dials, for messages.
  std::string next_neighbour() const {
    if (view_.ring.size() < 2) return "none";
    const auto& nx = view_.ring[(rank_ + 1) % view_.ring.size()];
    return fmt::format("peer {} at {}", nx.id, format_host_port({nx.host, nx.port}));
  }

  static std::string_view vote_call_name(wire::VoteKind kind) {
    switch (kind) {
      case wire::VoteKind::kUpdateTopology: return "qcclUpdateTopology";
      case wire::VoteKind::kPeersPending: return "qcclArePeersPending";
      case wire::VoteKind::kOptimizeTopology: return "qcclOptimizeTopology";
    }
    return "a vote";
  }

  // The master's part of qcclOptimizeTopology: measure the links it names, report, and keep
  // waiting for the vote result (the new ring comes with it).
  void on_probe_plan(const wire::M2CProbePlan& plan) {
    if (!vote_ || vote_->kind != wire::VoteKind::kOptimizeTopology) {
      log_->warn("peer {}: probe plan {} outside qcclOptimizeTopology; ignored", self_, plan.round);
      return;
    }
    prober_->start(plan, self_, [self = shared_from_this()](wire::C2MProbeResults results) {
      if (self->master_ && !self->fatal_) self->master_->send(results, self->global_epoch_);
    });
  }

  void maybe_finish_vote() {
    if (vote_ && vote_->result_in && links_->ready() && links_->epoch() == group_epoch_) {
      finish_vote(vote_->pending);
    }
  }

  void finish_vote(Result<bool> result) {
    if (vote_deadline_) vote_deadline_->cancel();
    auto v = std::move(*vote_);
    vote_.reset();
    v.promise->set_value(std::move(result));
  }

  // ---- waiting for the ring (await_ring) ----

  bool ring_up() const {
    return links_->epoch() == group_epoch_ && links_->ready() && !links_->failed();
  }

  void start_ring_wait(std::shared_ptr<std::promise<Status>> promise,
                       std::chrono::milliseconds bound) {
    if (state_ != State::kConnected) return promise->set_value(not_connected("qcclAllReduce"));
    if (ring_up()) return promise->set_value(Status::ok());
    uint64_t id = ++last_ring_waiter_;
    auto timer = std::make_shared<asio::steady_timer>(io_.context(), bound);
    ring_waiters_.emplace(id, RingWaiter{promise, timer});
    timer->async_wait([self = shared_from_this(), id](const asio::error_code& ec) {
      if (ec) return;
      auto it = self->ring_waiters_.find(id);
      if (it == self->ring_waiters_.end()) return;
      auto p = std::move(it->second.promise);
      self->ring_waiters_.erase(it);
      p->set_value(Status::ok());  // the bound: the caller retries anyway
    });
  }

  // After any change of the links or of the membership, and when the communicator dies.
  void check_ring_waiters() {
    if (ring_waiters_.empty() || (!fatal_ && !ring_up())) return;
    auto waiters = std::move(ring_waiters_);
    ring_waiters_.clear();
    for (auto& [id, w] : waiters) {
      w.timer->cancel();
      w.promise->set_value(fatal_ ? *fatal_ : Status::ok());
    }
  }

  // ---- membership ----

  void on_master_message(const wire::ControlMessage& m, Epoch epoch) {
    if (const auto* mem = std::get_if<wire::M2CMembership>(&m)) return on_membership(*mem, epoch);
    if (const auto* res = std::get_if<wire::M2COpResult>(&m)) return on_op_result(*res);
    if (const auto* vr = std::get_if<wire::M2CVoteResult>(&m)) return on_vote_result(*vr);
    if (const auto* sp = std::get_if<wire::M2CSyncPlan>(&m)) return sync_->on_plan(*sp);
    if (const auto* sr = std::get_if<wire::M2CSyncResult>(&m)) return sync_->on_result(*sr);
    if (const auto* pp = std::get_if<wire::M2CProbePlan>(&m)) return on_probe_plan(*pp);
    if (const auto* k = std::get_if<wire::M2CKicked>(&m)) {
      return on_fatal(make_status(StatusCode::kKicked, "expelled by the master: {}", k->message));
    }
    log_->warn("unexpected message type {} from the master; ignored",
               static_cast<int>(wire::type_of(m)));
  }

  void on_membership(const wire::M2CMembership& m, Epoch epoch) {
    std::optional<uint32_t> rank;
    for (uint32_t i = 0; i < m.ring.size(); ++i) {
      if (m.ring[i].id == self_) rank = i;
    }
    if (!rank) {
      log_->warn("membership update without this peer (epoch {}); ignored", epoch);
      return;
    }
    global_epoch_ = epoch;
    bool group_changed = !admitted_ || m.group_epoch != group_epoch_;
    view_ = m;
    rank_ = *rank;
    admitted_ = true;
    sync_->on_ring(m.ring);
    if (!group_changed) return;
    group_epoch_ = m.group_epoch;
    next_seq_.clear();
    for (auto it = early_.begin(); it != early_.end();) {
      if (it->first.epoch >= group_epoch_) break;  // ordered by epoch first
      for (const auto& f : it->second) early_bytes_ -= f.payload.size();
      it = early_.erase(it);
    }
    ring_failure_reported_ = false;
    uint32_t n = static_cast<uint32_t>(m.ring.size());
    if (n < 2) aborted_ahead_.clear();  // the peers that failed those ops are gone
    std::optional<peer::DataLinks::Neighbour> next;
    PeerId prev = kNoPeer;
    if (n >= 2) {
      const auto& nx = m.ring[(*rank + 1) % n];
      next = peer::DataLinks::Neighbour{nx.id, nx.host, nx.port};
      prev = m.ring[(*rank + n - 1) % n].id;
    }
    log_->debug("peer {}: group epoch {}, rank {} of {}", self_, group_epoch_, rank_, n);
    // Operations of the old epoch end; they finish once their I/O has drained. Those the
    // master aborted (its M2COpResult came before this membership) fail. The others are run
    // again in the new epoch (restart_op): the master had no start of them when the group
    // changed, so it aborted them for no member, and the members that had not started them
    // yet start them in the new epoch. Failing them here would leave those members alone in
    // the op while this peer goes on to its next call: a stall until the vote timeout.
    for (auto& [tag, op] : snapshot_ops()) {
      if (op->epoch() < group_epoch_) {
        bool aborted = op->phase() == AllReduceOp::Phase::kFailing &&
                       op->failure_source() == FailSource::kMaster;
        if (!aborted && op->phase() != AllReduceOp::Phase::kDone) op->set_restart();
        fail_op(op, make_status(StatusCode::kPeerLost, "the group changed while the operation "
                                "ran (a peer left, failed or joined); retry"),
                FailSource::kEpochChange);
      }
    }
    links_->set_ring(group_epoch_, next, prev,
                     ring_lanes_for(options_.connections_per_peer, next ? next->host : ""));
    ops_changed_.notify();
  }

  uint32_t connections() const {
    return options_.connections_per_peer == 0 ? kDefaultConnections : options_.connections_per_peer;
  }

  void on_links_ready(Epoch e) {
    if (e != group_epoch_) return;
    if (state_ == State::kConnecting && admitted_) finish_connect(Status::ok());
    maybe_finish_vote();
    for (auto& [tag, op] : snapshot_ops()) {
      if (op->epoch() == e && op->phase() == AllReduceOp::Phase::kWaitLinks) begin_op(op);
    }
    ops_changed_.notify();  // readers may be waiting for an op to begin
    check_ring_waiters();
  }

  void on_links_failed(Epoch e, const Status& why) {
    if (e != group_epoch_) return;
    bool reported = false;
    for (auto& [tag, op] : snapshot_ops()) {
      if (op->epoch() == e) reported |= fail_op(op, why, FailSource::kLocal);
    }
    if (!reported && (state_ == State::kConnecting || vote_)) report_ring_failure(why);
  }

  void report_ring_failure(const Status& why) {
    if (ring_failure_reported_ || !master_) return;
    ring_failure_reported_ = true;
    master_->send(wire::C2MOpDone{kRingFailureTag, 0, group_epoch_, StatusCode::kPeerLost,
                                  why.message()},
                  global_epoch_);
  }

  void on_fatal(const Status& why) {
    if (fatal_) return;
    fatal_ = why;
    if (why.code() == StatusCode::kAborted) {
      log_->debug("peer {}: {}", self_, why.message());
    } else {
      log_->warn("peer {}: {}", self_, why.message());
    }
    state_ = State::kClosed;
    if (connect_promise_) finish_connect(why);
    if (vote_) finish_vote(why);
    prober_->cancel();
    sync_->fail(why);
    for (auto& [tag, op] : snapshot_ops()) fail_op(op, why, FailSource::kMaster);
    links_->close_all();
    if (master_) master_->close();
    ops_changed_.notify();
    check_ring_waiters();
  }

  void begin_shutdown(std::shared_ptr<std::promise<void>> drained) {
    drained_ = drained;
    if (master_ && !fatal_) {
      leaving_ = true;
      auto link = master_;
      master_.reset();  // on_fatal must not close it before the leave is flushed
      link->leave(global_epoch_, [self = shared_from_this()] {
        self->leaving_ = false;
        self->check_drained();
      });
    }
    on_fatal(make_status(StatusCode::kAborted, "the communicator was destroyed"));
    check_drained();
  }

  void check_drained() {
    if (drained_ && ops_.empty() && !leaving_ && !sync_->active()) {
      drained_->set_value();
      drained_.reset();
    }
  }

  // ---- operations ----

  Status start_op(const void* sendbuf, void* recvbuf, const collectives::ReduceDesc& desc,
                  std::shared_ptr<OpHandle> handle) {
    if (state_ != State::kConnected) return not_connected("qcclAllReduce");
    if (vote_ || sync_->active()) {
      return make_status(StatusCode::kInvalidUsage, "qcclAllReduce: a control call is in progress");
    }
    if (ops_.count(desc.tag)) {
      return make_status(StatusCode::kInvalidUsage,
                         "qcclAllReduce: an operation with tag {} is already in flight", desc.tag);
    }
    if (view_.group_world_size < 2) {
      return make_status(StatusCode::kTooFewPeers,
                         "qcclAllReduce: the peer group has {} accepted peer(s); at least 2 are needed",
                         view_.group_world_size);
    }
    if (auto ahead = aborted_ahead_.extract(desc.tag)) {
      start_aborted_op(sendbuf, recvbuf, desc, ahead.mapped(), std::move(handle));
      return Status::ok();
    }
    uint64_t seq = next_seq_[desc.tag]++;
    auto op = std::make_shared<AllReduceOp>(desc, sendbuf, recvbuf, seq, group_epoch_, std::move(handle));
    op->set_progress_callback([this, raw = op.get()](AllReduceOp&) { after_io(raw); });
    ops_[desc.tag] = op;
    master_->send(wire::C2MOpStart{desc.tag, seq, group_epoch_, op->desc_hash()}, global_epoch_);
    if (links_->failed() && links_->epoch() == group_epoch_) {
      fail_op(op, links_->failure(), FailSource::kLocal);
    } else if (links_->ready() && links_->epoch() == group_epoch_) {
      begin_op(op);
    }
    ops_changed_.notify();
    return Status::ok();
  }

  // This call is an op that the master aborted before this peer started it (note_abort_ahead):
  // it fails as it failed on the peers that had started it, who go on to retry it or to their
  // next step. Started alone in the new epoch instead, it would wait for peers that never come
  // (until the vote timeout). Nothing goes to the master, which has forgotten the op.
  void start_aborted_op(const void* sendbuf, void* recvbuf, const collectives::ReduceDesc& desc,
                        const AbortedAhead& ahead, std::shared_ptr<OpHandle> handle) {
    auto op = std::make_shared<AllReduceOp>(desc, sendbuf, recvbuf, ahead.seq, ahead.epoch,
                                            std::move(handle));
    op->set_progress_callback([this, raw = op.get()](AllReduceOp&) { after_io(raw); });
    // The abort came before the new membership, which may not be here yet: then the op is
    // this epoch's `seq` and completes when the membership arrives (try_finish).
    if (ahead.epoch == group_epoch_) next_seq_[desc.tag] = ahead.seq + 1;
    ops_[desc.tag] = op;
    log_->debug("peer {}: tag {} seq {} epoch {} was aborted before this call started it: {}",
                self_, desc.tag, ahead.seq, ahead.epoch, ahead.why.message());
    fail_op(op, ahead.why, FailSource::kMaster);
    ops_changed_.notify();
  }

  // The master aborted an op that this peer has not started (M2COpResult without a local op).
  // If it is the next op of this peer's sequence for that tag (same group epoch, seq = the
  // next one), the peers that had started it failed it: remember, so that this peer's call
  // fails too (start_aborted_op) instead of starting alone in the epoch the abort opened.
  // Anything else is a late answer about an op this peer already finished; it is ignored. So
  // are refusals of out-of-step calls (kInvalidUsage, docs/call-order.md): those calls are as
  // if never made, and the peers that made them call again in step with this one.
  void note_abort_ahead(const wire::M2COpResult& r) {
    if (r.status != StatusCode::kPeerLost || r.tag == kRingFailureTag ||
        r.op_epoch != group_epoch_) {
      return;
    }
    auto next = next_seq_.find(r.tag);
    if (r.seq != (next == next_seq_.end() ? 0 : next->second)) return;
    aborted_ahead_[r.tag] = AbortedAhead{r.seq, r.op_epoch, Status(r.status, r.message)};
  }

  void begin_op(const std::shared_ptr<AllReduceOp>& op) {
    op->begin(view_.group_world_size, rank_, *links_);
    auto early = early_.extract(EarlyKey{op->epoch(), op->tag(), op->seq()});
    if (early) {
      for (auto& f : early.mapped()) {
        early_bytes_ -= f.payload.size();
        if (!op->accepts_frames()) continue;
        Status st = deliver_early(op, f);
        if (!st.is_ok()) {
          links_->fail(st);
          break;
        }
      }
    }
    check_local_done(op);
  }

  // A frame kept aside before its op began, now taken in like one just read.
  Status deliver_early(const std::shared_ptr<AllReduceOp>& op, const EarlyFrame& f) {
    if (f.header.desc_hash != op->desc_hash()) {
      fail_op(op, make_status(StatusCode::kMismatch,
                              "peers passed different count, dtype, op or quantization for tag {}",
                              f.header.tag),
              FailSource::kLocal);
      return Status::ok();
    }
    auto target = op->ring().claim(f.header.step, f.header.segment, f.payload.size(), kEarlyClaimant);
    if (!target.is_ok()) return target.status();
    using Duplicate = collectives::RingAllReduce::Duplicate;
    if (target->duplicate == Duplicate::kReceived) return Status::ok();
    if (target->duplicate == Duplicate::kPending) {
      take_over(op, f.header, target->claimant, kEarlyClaimant, f.payload.data());
      return Status::ok();
    }
    if (!target->staged) std::memcpy(target->dst, f.payload.data(), f.payload.size());
    op->read_started();
    op->read_finished(f.payload.size() + wire::kFrameHeaderSize + wire::kP2PDataHeaderSize);
    auto fwd = op->ring().on_received(f.header.step, f.header.segment, f.payload.data());
    if (fwd) op->send(*fwd, *links_);
    return Status::ok();
  }

  void check_local_done(const std::shared_ptr<AllReduceOp>& op) {
    if (!op->locally_complete() || !master_) return;
    op->mark_reported();
    master_->send(wire::C2MOpDone{op->tag(), op->seq(), op->epoch(), StatusCode::kOk, ""},
                  global_epoch_);
  }

  // Returns true if this call failed the op and reported it to the master.
  // kLocal failures are told to the master; the others came from it (an abort, or the
  // group's epoch moved on) or from the communicator shutting down.
  using FailSource = AllReduceOp::FailSource;
  bool fail_op(const std::shared_ptr<AllReduceOp>& op, const Status& why, FailSource source) {
    bool report = source == FailSource::kLocal;
    bool changed = op->fail(why, links_.get(), source);
    if (changed && report && master_ && !fatal_) {
      master_->send(wire::C2MOpDone{op->tag(), op->seq(), op->epoch(), why.code(), why.message()},
                    global_epoch_);
    }
    try_finish(op);
    return changed && report;
  }

  void try_finish(const std::shared_ptr<AllReduceOp>& op) {
    bool moved = fatal_.has_value() || group_epoch_ > op->epoch();
    if (moved && !fatal_ && op->restart_pending() && op->drained()) {
      // Deferred: we may be inside on_membership, before the new epoch's links are set up.
      asio::post(io_.context(), [self = shared_from_this(), op] { self->restart_op(op); });
      return;
    }
    if (!op->try_finish(moved)) return;
    links_->forget(op.get());
    auto it = ops_.find(op->tag());
    if (it != ops_.end() && it->second == op) ops_.erase(it);
    ops_changed_.notify();
    check_drained();
  }

  // Runs an op of an older epoch again in the current one (see on_membership), with the same
  // handle and buffers; an in-place input is restored first.
  void restart_op(const std::shared_ptr<AllReduceOp>& op) {
    auto it = ops_.find(op->tag());
    if (it == ops_.end() || it->second != op || !op->restart_pending() || !op->drained()) return;
    if (fatal_) return try_finish(op);
    links_->forget(op.get());
    ops_.erase(it);
    auto handle = op->take_for_restart();
    log_->debug("peer {}: tag {} seq {} of epoch {} was not aborted by the master; run again in "
                "epoch {}", self_, op->tag(), op->seq(), op->epoch(), group_epoch_);
    Status st = start_op(op->sendbuf(), op->recvbuf(), op->desc(), handle);
    if (!st.is_ok()) handle->complete(st, ReduceInfo{});
    ops_changed_.notify();
    check_drained();
  }

  // After a send completed: deferred, because we are inside the op's own callback.
  void after_io(AllReduceOp* raw) {
    auto it = ops_.find(raw->tag());
    if (it == ops_.end() || it->second.get() != raw) return;
    asio::post(io_.context(), [self = shared_from_this(), op = it->second] {
      if (op->phase() == AllReduceOp::Phase::kFailing) {
        self->try_finish(op);
      } else {
        self->check_local_done(op);
      }
    });
  }

  void on_op_result(const wire::M2COpResult& r) {
    auto it = ops_.find(r.tag);
    if (it == ops_.end() || it->second->seq() != r.seq || it->second->epoch() != r.op_epoch) {
      note_abort_ahead(r);
      return;
    }
    auto op = it->second;
    // The master's aborts come before the membership that ends the op's epoch; an answer about
    // an epoch this peer has already left is its reply to our own late start or report
    // (reject_stale), which must not undo a restart (on_membership).
    if (r.status != StatusCode::kOk && r.op_epoch < group_epoch_ && op->restart_pending()) return;
    if (r.status == StatusCode::kOk) {
      if (op->phase() != AllReduceOp::Phase::kWaitCommit) {
        log_->error("commit for tag {} seq {} before this peer finished; ignored", r.tag, r.seq);
        return;
      }
      op->commit(r.world_size);
      links_->forget(op.get());
      ops_.erase(it);
      ops_changed_.notify();
      check_drained();
      return;
    }
    fail_op(op, Status(r.status, r.message), FailSource::kMaster);
  }

  std::vector<std::pair<OpTag, std::shared_ptr<AllReduceOp>>> snapshot_ops() const {
    return {ops_.begin(), ops_.end()};
  }

  // An operation whose data stopped moving (a neighbour alive but not reading or sending, so
  // neither heartbeats nor TCP notice) fails after the stall timeout. It equals the master's
  // straggler deadline (vote timeout), so a peer merely late to start an op is not punished
  // sooner here than there.
  net::awaitable<void> stall_watchdog() {
    auto self = shared_from_this();
    asio::steady_timer timer(io_.context());
    while (!fatal_) {
      timer.expires_after(settings_.heartbeat);
      co_await timer.async_wait(use_nothrow);
      auto now = Clock::now();
      for (auto& [tag, op] : snapshot_ops()) {
        if (op->phase() == AllReduceOp::Phase::kRunning &&
            now - op->last_progress() > stall_timeout_) {
          fail_op(op, make_status(StatusCode::kPeerLost,
                                  "no data moved for {} ms (a neighbour is hung or its link is "
                                  "cut; this peer sends to {})",
                                  stall_timeout_.count(), next_neighbour()),
                  FailSource::kLocal);
        }
      }
    }
  }

  // ---- inbound data ----

  // One inbound lane's reader: its connection, its claims' id, and where staged payloads go.
  struct InLane {
    std::shared_ptr<net::Connection> conn;
    uint32_t id = 0;
    std::vector<uint8_t> staging;
    bool io_error = false;  // the failure was the connection's (not malformed bytes)
  };

  void start_reader(std::shared_ptr<net::Connection> conn, Epoch epoch) {
    asio::co_spawn(io_.context(), read_lane(std::move(conn), epoch), asio::detached);
  }

  net::awaitable<void> read_lane(std::shared_ptr<net::Connection> conn, Epoch epoch) {
    auto self = shared_from_this();
    InLane lane{conn, ++last_lane_id_, {}, false};
    readers_[lane.id] = conn;
    Status st;
    while (conn->is_open() && epoch == group_epoch_ && !fatal_) {
      if (links_->should_stall_reads(inbound_bytes_)) {
        // Injected hang: stop reading until the epoch ends (as a stopped process would).
        while (conn->is_open() && epoch == group_epoch_ && !fatal_) co_await ops_changed_.wait();
        break;
      }
      st = co_await read_frame(lane, epoch);
      if (!st.is_ok()) break;
    }
    readers_.erase(lane.id);
    if (st.is_ok() || epoch != group_epoch_ || fatal_) co_return;
    // A lane that broke is resent on the others by its sender; garbage breaks the ring.
    if (lane.io_error) {
      (void)links_->inbound_lost(conn, st);
    } else {
      links_->fail(st);  // idempotent
    }
  }

  net::awaitable<Status> lane_read(InLane& lane, std::span<uint8_t> dst) {
    Status st = co_await lane.conn->read_exact(dst);
    if (!st.is_ok()) lane.io_error = true;
    co_return st;
  }

  net::awaitable<Status> lane_skip(InLane& lane, size_t bytes) {
    Status st = co_await lane.conn->skip(bytes);
    if (!st.is_ok()) lane.io_error = true;
    inbound_bytes_ += bytes;
    co_return st;
  }

  // A resent copy of a frame whose first copy another lane is still reading (that lane
  // stalled) arrived in full: stop that lane, and take the frame in from this copy.
  void take_over(const std::shared_ptr<AllReduceOp>& op, const wire::P2PDataHeader& dh,
                 uint32_t claimant, uint32_t lane_id, const uint8_t* payload) {
    auto stalled = readers_.find(claimant);
    if (stalled != readers_.end()) {
      if (auto conn = stalled->second.lock()) conn->close();
      ops_changed_.notify();
    }
    op->ring().take_over(dh.step, dh.segment, lane_id, payload);
    auto fwd = op->ring().on_received(dh.step, dh.segment, payload);
    if (fwd) op->send(*fwd, *links_);
    check_local_done(op);
  }

  net::awaitable<Status> read_frame(InLane& lane, Epoch epoch) {
    net::Connection& conn = *lane.conn;
    // Frame header and data header are contiguous: one read for both.
    std::array<uint8_t, wire::kFrameHeaderSize + wire::kP2PDataHeaderSize> head;
    QCCL_CO_RETURN_IF_ERROR(co_await lane_read(lane, head));
    auto header = wire::decode_frame_header(
        std::span<const uint8_t, wire::kFrameHeaderSize>(head.data(), wire::kFrameHeaderSize),
        wire::kMaxDataPayload);
    if (!header.is_ok()) co_return header.status();
    if (header->type != static_cast<uint16_t>(wire::MsgType::kP2PData) ||
        header->payload_len < wire::kP2PDataHeaderSize || header->epoch != epoch) {
      log_->warn("malformed data frame from {} (type {}, {} bytes, epoch {}); dropping the "
                 "connection", conn.remote(), header->type, header->payload_len, header->epoch);
      co_return make_status(StatusCode::kPeerLost, "malformed data frame from {}", conn.remote());
    }
    auto dh = wire::decode_data_header(std::span<const uint8_t, wire::kP2PDataHeaderSize>(
        head.data() + wire::kFrameHeaderSize, wire::kP2PDataHeaderSize));
    if (!dh.is_ok()) co_return dh.status();
    size_t body = header->payload_len - wire::kP2PDataHeaderSize;
    // Find the local operation; wait (bounded: see below) if this peer has not started it.
    std::shared_ptr<AllReduceOp> op;
    for (;;) {
      if (epoch != group_epoch_ || fatal_ || !conn.is_open()) {
        co_return make_status(StatusCode::kPeerLost, "epoch {} ended", epoch);
      }
      auto it = ops_.find(dh->tag);
      // Frames of an older attempt of this tag are stale; a later one waits for the local
      // call. The wait ends when the call comes, or when the master expels whoever lags
      // (vote timeout) and the epoch ends.
      if (it != ops_.end() && it->second->epoch() == epoch && it->second->seq() > dh->seq) break;
      // The op must also have begun: our outbound lanes may come up after the neighbour's.
      if (it != ops_.end() && it->second->epoch() == epoch && it->second->seq() == dh->seq &&
          it->second->phase() != AllReduceOp::Phase::kWaitLinks) {
        op = it->second;
        break;
      }
      if (it == ops_.end() && next_seq_.count(dh->tag) && next_seq_[dh->tag] > dh->seq) break;
      // Not begun here yet. Peers may start concurrent ops in different orders, so keep the
      // frame aside rather than block this lane (frames of other ops queue behind it); past
      // the budget, wait: that is backpressure, bounded like any straggler.
      if (early_bytes_ + body <= kMaxEarlyBytes) {
        EarlyFrame f{*dh, std::vector<uint8_t>(body)};
        QCCL_CO_RETURN_IF_ERROR(co_await lane_read(lane, f.payload));
        inbound_bytes_ += body;
        if (epoch != group_epoch_) co_return Status::ok();
        // The op may have begun while the payload was read: then take the frame in now.
        auto now = ops_.find(dh->tag);
        if (now != ops_.end() && now->second->epoch() == epoch && now->second->seq() == dh->seq &&
            now->second->phase() != AllReduceOp::Phase::kWaitLinks) {
          auto begun = now->second;
          if (begun->accepts_frames()) {
            QCCL_CO_RETURN_IF_ERROR(deliver_early(begun, f));
            check_local_done(begun);
          }
          co_return Status::ok();
        }
        early_bytes_ += body;
        early_[EarlyKey{epoch, dh->tag, dh->seq}].push_back(std::move(f));
        co_return Status::ok();
      }
      co_await ops_changed_.wait();
    }
    if (!op || !op->accepts_frames()) co_return co_await lane_skip(lane, body);
    if (dh->desc_hash != op->desc_hash()) {
      fail_op(op, make_status(StatusCode::kMismatch,
                              "peers passed different count, dtype, op or quantization for tag {}",
                              dh->tag),
              FailSource::kLocal);
      co_return co_await lane_skip(lane, body);
    }
    auto target = op->ring().claim(dh->step, dh->segment, body, lane.id);
    if (!target.is_ok()) {
      log_->warn("bad data frame from {}: {}", conn.remote(), target.status().message());
      co_return target.status();
    }
    using Duplicate = collectives::RingAllReduce::Duplicate;
    if (target->duplicate == Duplicate::kReceived) co_return co_await lane_skip(lane, body);
    auto& staging = lane.staging;
    if (target->staged && staging.size() < target->bytes) {
      staging.resize(op->ring().max_segment_bytes());
    }
    if (target->duplicate == Duplicate::kPending) {
      // Into staging, not the user's memory: the first copy's read may still write there.
      QCCL_CO_RETURN_IF_ERROR(co_await lane_read(lane, std::span<uint8_t>(staging.data(), target->bytes)));
      inbound_bytes_ += body;
      if (op->accepts_frames() && !op->ring().received(dh->step, dh->segment)) {
        take_over(op, *dh, target->claimant, lane.id, staging.data());
      }
      co_return Status::ok();
    }
    uint8_t* dst = target->staged ? staging.data() : target->dst;
    op->read_started();
    Status st;
    if (links_->should_stall_lane(inbound_bytes_)) {
      // Injected: half the payload, then nothing until the lane is closed (a take-over); the
      // window closes, so that the sender sees its data stay unacknowledged.
      conn.shrink_receive_buffer_for_testing();
      st = co_await lane_read(lane, std::span<uint8_t>(dst, target->bytes / 2));
      while (st.is_ok() && conn.is_open() && epoch == group_epoch_ && !fatal_) {
        co_await ops_changed_.wait();
      }
      if (st.is_ok()) {
        lane.io_error = true;
        st = make_status(StatusCode::kPeerLost, "injected stall of the lane from {}", conn.remote());
      }
    } else {
      st = co_await lane_read(lane, std::span<uint8_t>(dst, target->bytes));
    }
    op->read_finished(body + wire::kFrameHeaderSize + wire::kP2PDataHeaderSize);
    inbound_bytes_ += body;
    if (!st.is_ok() || !op->accepts_frames()) {
      // The sender resends a frame whose read broke off (or another lane took it over).
      if (!st.is_ok() && op->accepts_frames()) op->ring().unclaim(dh->step, dh->segment, lane.id);
      try_finish(op);
      co_return st;
    }
    auto fwd = op->ring().on_received(dh->step, dh->segment, staging.data());
    if (fwd) op->send(*fwd, *links_);
    check_local_done(op);
    co_return Status::ok();
  }

  CommOptions options_;
  HostPort master_addr_;
  net::IoThread io_;
  std::shared_ptr<spdlog::logger> log_;
  std::unique_ptr<peer::DataLinks> links_;
  std::shared_ptr<StateSync> sync_;
  std::shared_ptr<peer::MasterLink> master_;
  peer::LinkSettings settings_;
  std::chrono::milliseconds stall_timeout_{60000};
  State state_ = State::kIdle;
  std::optional<Status> fatal_;
  PeerId self_ = kNoPeer;
  Epoch global_epoch_ = 0;
  Epoch group_epoch_ = 0;
  bool admitted_ = false;
  wire::M2CMembership view_;
  uint32_t rank_ = 0;
  bool ring_failure_reported_ = false;
  std::map<OpTag, std::shared_ptr<AllReduceOp>> ops_;
  // Inbound lane readers by claim id (RingAllReduce::claim), to stop one whose frame a
  // resent copy took over. Early frames claim as kEarlyClaimant and complete at once.
  static constexpr uint32_t kEarlyClaimant = 0;
  uint32_t last_lane_id_ = 0;
  std::map<uint32_t, std::weak_ptr<net::Connection>> readers_;
  std::map<OpTag, uint64_t> next_seq_;
  // Per tag: the next op of this peer's sequence, aborted by the master before it started here.
  std::map<OpTag, AbortedAhead> aborted_ahead_;
  net::Signal ops_changed_;
  static constexpr size_t kMaxEarlyBytes = size_t{64} << 20;
  std::map<EarlyKey, std::vector<EarlyFrame>> early_;
  size_t early_bytes_ = 0;
  std::shared_ptr<std::promise<Status>> connect_promise_;
  std::optional<asio::steady_timer> connect_timer_;
  struct VoteWait {
    wire::VoteKind kind;
    std::shared_ptr<std::promise<Result<bool>>> promise;
    bool result_in = false;
    bool pending = false;
  };
  std::optional<VoteWait> vote_;
  std::optional<asio::steady_timer> vote_deadline_;
  std::shared_ptr<peer::LinkProber> prober_;
  struct RingWaiter {
    std::shared_ptr<std::promise<Status>> promise;
    std::shared_ptr<asio::steady_timer> timer;
  };
  std::map<uint64_t, RingWaiter> ring_waiters_;  // await_ring() calls, by id
  uint64_t last_ring_waiter_ = 0;
  std::shared_ptr<std::promise<void>> drained_;
  bool leaving_ = false;
  uint64_t inbound_bytes_ = 0;
};

// ---- facade ----

Result<std::unique_ptr<Communicator>> Communicator::create(CommOptions options) {
  QCCL_ASSIGN_OR_RETURN(HostPort master, parse_host_port(options.master_address));
  if (options.auth_token && options.auth_token->empty()) {
    return make_status(StatusCode::kInvalidArgument, "auth_token is empty; pass NULL for none");
  }
  if (options.connections_per_peer > 64) {
    return make_status(StatusCode::kInvalidArgument,
                       "connections_per_peer = {} is over the limit of 64", options.connections_per_peer);
  }
  ListenAddress listen{"::", 0, 0};
  if (!options.listen_address.empty()) {
    QCCL_ASSIGN_OR_RETURN(listen, parse_listen_address(options.listen_address));
  }
  HostPort advertise;
  if (!options.advertise_address.empty()) {
    QCCL_ASSIGN_OR_RETURN(advertise, parse_advertise_address(options.advertise_address));
  }
  auto impl = std::make_shared<Impl>(std::move(options), std::move(master));
  impl->listen_ = std::move(listen);
  impl->advertise_ = std::move(advertise);
  QCCL_RETURN_IF_ERROR(impl->init());
  return std::unique_ptr<Communicator>(new Communicator(std::move(impl)));
}

Communicator::Communicator(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

Communicator::~Communicator() { impl_->shutdown(); }

Status Communicator::connect() { return impl_->connect(); }

Result<std::vector<Communicator::PeerEntry>> Communicator::peers() const { return impl_->peers(); }

uint32_t ring_lanes_for(uint32_t configured, std::string_view host) {
  if (configured != 0) return configured;
  return is_loopback_host(host) ? kDefaultLoopbackLanes : kDefaultRemoteLanes;
}

void Communicator::inject_fault_for_testing(uint64_t close_after_bytes,
                                            uint64_t stall_reads_after_bytes,
                                            uint64_t stall_lane_after_bytes) {
  impl_->inject_fault({close_after_bytes, stall_reads_after_bytes, stall_lane_after_bytes});
}

Status Communicator::await_ring(std::chrono::milliseconds bound) { return impl_->await_ring(bound); }

std::chrono::milliseconds Communicator::peer_timeout() const { return impl_->peer_timeout(); }

Status Communicator::update_topology() {
  auto r = impl_->vote(wire::VoteKind::kUpdateTopology);
  return r.is_ok() ? Status::ok() : r.status();
}

Result<bool> Communicator::are_peers_pending() { return impl_->vote(wire::VoteKind::kPeersPending); }

Status Communicator::optimize_topology() {
  auto r = impl_->vote(wire::VoteKind::kOptimizeTopology);
  return r.is_ok() ? Status::ok() : r.status();
}

Result<int64_t> Communicator::attribute(Attribute attr) const { return impl_->attribute(attr); }

Status Communicator::sync_shared_state(std::span<const StateTensor> tensors, uint64_t* revision,
                                       wire::SyncStrategy strategy, SyncInfo* info) {
  // Checked and hashed here, on the caller's thread (hashing uses a few helper threads).
  QCCL_ASSIGN_OR_RETURN(SyncRequest req, prepare_sync(tensors, *revision, strategy));
  QCCL_ASSIGN_OR_RETURN(SyncOutcome out, impl_->sync_shared_state(std::move(req)));
  *revision = out.revision;
  if (info != nullptr) *info = SyncInfo{out.tx_bytes, out.rx_bytes};
  return Status::ok();
}

void Communicator::set_state_piece_hook_for_testing(std::function<void(uint64_t)> hook) {
  impl_->set_state_piece_hook(std::move(hook));
}

Result<std::shared_ptr<OpHandle>> Communicator::all_reduce_async(
    const void* sendbuf, void* recvbuf, const collectives::ReduceDesc& desc) {
  return impl_->all_reduce_async(sendbuf, recvbuf, desc);
}

Status Communicator::all_reduce(const void* sendbuf, void* recvbuf,
                                const collectives::ReduceDesc& desc, ReduceInfo* info) {
  auto handle = all_reduce_async(sendbuf, recvbuf, desc);
  if (!handle.is_ok()) return handle.status();
  return (*handle)->wait(info);
}

}  // namespace qccl::core
