#include "core/runtime.hpp"

#include <time.h>

#include "common/logging.hpp"

namespace qccl::core {

using Clock = std::chrono::steady_clock;

Runtime::Runtime(CommOptions options, std::vector<HostPort> masters, ListenAddress listen,
                 HostPort advertise)
    : options_(std::move(options)),
      masters_(std::move(masters)),
      listen_(std::move(listen)),
      advertise_(std::move(advertise)),
      io_("qccl-comm"),
      log_(log::get("peer")),
      vote_(io_.context().get_executor()) {}

Status Runtime::init() {
  return io_.run_sync([&] {
    auto ex = io_.context().get_executor();
    engine_ = std::make_shared<OpEngine>(
        ex, OpEngine::Hooks{[this](const wire::ControlMessage& m) { return send_to_master(m); },
                            [this] { check_drained(); }, [this] { return next_neighbour(); }});
    links_ = std::make_unique<peer::DataLinks>(
        ex, *engine_, [this](Epoch e, const Status&) { on_links_ready(e); },
        [this](Epoch e, const Status& why) { on_links_failed(e, why); });
    engine_->attach(*links_);
    sync_ = std::make_shared<StateSync>(
        ex, [this](const wire::ControlMessage& m) { send_to_master(m); },
        [this] { check_drained(); });
    links_->set_state_handler([this](std::shared_ptr<net::Connection> c, const wire::Preamble& p) {
      sync_->adopt(std::move(c), p);
    });
    prober_ = std::make_shared<peer::LinkProber>(ex, connections(), secret());
    links_->set_probe_handler([this](std::shared_ptr<net::Connection> c, const wire::Preamble& p) {
      prober_->serve(std::move(c), p, settings_.timeout);
    });
    engine_->set_op_timeout(options_.op_timeout_ms);
    settings_.secret = secret();  // before listening: every connection needs it
    links_->set_identity(kNoPeer, settings_);
    return links_->listen(listen_);
  });
}

// ---- user threads ----

Status Runtime::connect() {
  auto promise = std::make_shared<std::promise<Status>>();
  auto fut = promise->get_future();
  io_.post([self = shared_from_this(), promise] { self->start_connect(promise); });
  return fut.get();
}

Result<bool> Runtime::vote(wire::VoteKind kind) {
  auto promise = std::make_shared<VoteCall::Promise>();
  auto fut = promise->get_future();
  io_.post([self = shared_from_this(), promise, kind] { self->start_vote(kind, promise); });
  return fut.get();
}

Result<int64_t> Runtime::attribute(Attribute attr) {
  return io_.run_sync([&]() -> Result<int64_t> {
    if (state_ != State::kConnected && state_ != State::kResuming) {
      return not_connected("qcclGetAttribute");
    }
    switch (attr) {
      case Attribute::kGlobalWorldSize: return int64_t{view_.global_world_size};
      case Attribute::kGroupWorldSize: return int64_t{view_.group_world_size};
      case Attribute::kNumGroups: return int64_t{view_.num_groups};
      case Attribute::kLargestGroupSize: return int64_t{view_.largest_group_size};
      case Attribute::kRingRank: return int64_t{rank_};
      case Attribute::kEpoch: return static_cast<int64_t>(global_epoch_);
      case Attribute::kPeerId: return static_cast<int64_t>(self_);
    }
    return make_status(StatusCode::kInvalidArgument, "unknown attribute {}",
                       static_cast<int>(attr));
  });
}

Result<std::vector<Communicator::PeerEntry>> Runtime::peers() {
  return io_.run_sync([&]() -> Result<std::vector<Communicator::PeerEntry>> {
    if (state_ != State::kConnected && state_ != State::kResuming) {
      return not_connected("qcclGetPeers");
    }
    std::vector<Communicator::PeerEntry> out;
    for (const auto& m : view_.ring) out.push_back({m.id, format_host_port({m.host, m.port})});
    return out;
  });
}

OpStats Runtime::stats() {
  return io_.run_sync([&] {
    OpStats out = engine_->stats();
    timespec cpu{};
    if (::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cpu) == 0) {
      out.thread_cpu = std::chrono::seconds(cpu.tv_sec) + std::chrono::nanoseconds(cpu.tv_nsec);
    }
    return out;
  });
}

Status Runtime::start_op(OpTag tag, std::string_view call, OpEngine::Maker make) {
  for (;;) {
    // While the run waits for a new master the call waits (bounded by master_reconnect_ms).
    std::optional<std::future<void>> resumed;
    Status st = io_.run_sync([&]() -> Status {
      auto wake = std::make_shared<std::promise<void>>();
      if (defer_while_resuming([wake] { wake->set_value(); })) {
        resumed = wake->get_future();
        return Status::ok();
      }
      if (state_ != State::kConnected) return not_connected(call);
      if (vote_.active() || sync_->active()) {
        return make_status(StatusCode::kInvalidUsage, "{}: a control call is in progress", call);
      }
      return engine_->start(tag, call, make);
    });
    if (!resumed) return st;
    resumed->wait();
  }
}

Status Runtime::await_ring(std::chrono::milliseconds bound) {
  auto promise = std::make_shared<std::promise<Status>>();
  auto fut = promise->get_future();
  io_.post([self = shared_from_this(), promise, bound] { self->start_ring_wait(promise, bound); });
  return fut.get();
}

std::chrono::milliseconds Runtime::peer_timeout() {
  return io_.run_sync([&] {
    bool up = state_ == State::kConnected || state_ == State::kResuming;
    return up ? settings_.timeout : std::chrono::milliseconds(0);
  });
}

Result<SyncOutcome> Runtime::sync_shared_state(SyncRequest request) {
  auto promise = std::make_shared<StateSync::Promise>();
  auto fut = promise->get_future();
  io_.post([self = shared_from_this(), promise, req = std::move(request)]() mutable {
    self->start_sync(std::move(req), promise);
  });
  return fut.get();
}

void Runtime::set_fault_policy(std::shared_ptr<net::FaultPolicy> policy) {
  io_.run_sync([&] { links_->set_fault_policy(std::move(policy)); });
}

void Runtime::abort() {
  io_.post([self = shared_from_this()] {
    if (self->fatal_) return;  // already closed: aborted, expelled, master lost
    self->leave_master();
    self->on_fatal(make_status(StatusCode::kAborted, "the communicator was aborted"));
  });
}

Status Runtime::set_op_timeout(uint32_t ms) {
  return io_.run_sync([&]() -> Status {
    if (fatal_) return *fatal_;
    engine_->set_op_timeout(ms);
    return Status::ok();
  });
}

uint32_t Runtime::op_timeout() {
  return io_.run_sync([&] { return engine_->op_timeout(); });
}

void Runtime::shutdown() {
  auto drained = std::make_shared<std::promise<void>>();
  auto fut = drained->get_future();
  io_.post([self = shared_from_this(), drained] { self->begin_shutdown(drained); });
  // Bounded: every lane was closed, so pending I/O completes at once.
  fut.wait_for(std::chrono::seconds(5));
  io_.stop();
  io_.join();
}

// ---- helpers ----

Status Runtime::not_connected(std::string_view call) const {
  if (fatal_) return *fatal_;
  return make_status(StatusCode::kInvalidUsage,
                     "{}: the communicator is not connected (call qcclConnect first)", call);
}

// Control calls need a connected communicator with no operation or other control call in
// progress.
Status Runtime::control_call_allowed(std::string_view call) const {
  if (state_ != State::kConnected) return not_connected(call);
  if (!engine_->empty()) {
    return make_status(StatusCode::kInvalidUsage,
                       "{}: {} operation(s) in flight; wait for them first", call, engine_->size());
  }
  if (vote_.active() || sync_->active()) {
    return make_status(StatusCode::kInvalidUsage, "{}: another control call is in progress", call);
  }
  return Status::ok();
}

uint32_t Runtime::connections() const {
  return options_.connections_per_peer == 0 ? kDefaultConnections : options_.connections_per_peer;
}

bool Runtime::ring_up() const {
  return links_->epoch() == group_epoch_ && links_->ready() && !links_->failed();
}

// "peer N at host:port", the ring neighbour this peer dials, for messages.
std::string Runtime::next_neighbour() const {
  if (view_.ring.size() < 2) return "none";
  const auto& nx = view_.ring[(rank_ + 1) % view_.ring.size()];
  return fmt::format("peer {} at {}", nx.id, format_host_port({nx.host, nx.port}));
}

bool Runtime::send_to_master(const wire::ControlMessage& m) {
  // While resuming, nothing goes to the master: reports about the lost master's epoch mean
  // nothing to the new one, which moves the group to a new epoch anyway.
  if (!master_ || fatal_ || state_ == State::kResuming) return false;
  master_->send(m, global_epoch_);
  return true;
}

// ---- connect ----

void Runtime::start_connect(std::shared_ptr<std::promise<Status>> promise) {
  if (fatal_) return promise->set_value(*fatal_);
  if (state_ != State::kIdle) {
    return promise->set_value(
        make_status(StatusCode::kInvalidUsage, "qcclConnect: already connected or connecting"));
  }
  state_ = State::kRegistering;
  connect_promise_ = promise;
  auto deadline = options_.connect_timeout_ms == 0
                      ? Clock::time_point::max()
                      : Clock::now() + std::chrono::milliseconds(options_.connect_timeout_ms);
  connect_deadline_ = deadline;
  if (options_.connect_timeout_ms != 0) {
    connect_timer_.emplace(io_.context(), deadline);
    connect_timer_->async_wait([self = shared_from_this()](const asio::error_code& ec) {
      if (!ec) self->connect_timed_out();
    });
  }
  master_ = make_master_link();
  asio::co_spawn(io_.context(), connect_flow(deadline, 0), asio::detached);
}

net::awaitable<void> Runtime::connect_flow(Clock::time_point deadline, size_t first_master) {
  auto self = shared_from_this();
  auto link = master_;
  wire::C2MRegister reg{options_.peer_group,
                        advertise_.port != 0 ? advertise_.port : links_->port(), advertise_.host};
  peer::MasterLink::Attempt attempt;
  attempt.first = first_master;
  auto welcome = co_await link->connect(wire::ControlMessage(reg), deadline, attempt);
  if (link != master_ || state_ != State::kRegistering) co_return;  // timed out meanwhile
  if (!welcome.is_ok()) {
    finish_connect(welcome.status());
    co_return;
  }
  state_ = State::kAwaitingAdmission;
  self_ = welcome->peer_id;
  run_id_ = welcome->run_id;
  generation_ = welcome->generation;
  master_id_ = welcome->master_id;
  settings_.heartbeat = std::chrono::milliseconds(welcome->heartbeat_interval_ms);
  settings_.timeout = std::chrono::milliseconds(welcome->peer_timeout_ms);
  peer::apply_tuning_env(settings_);
  links_->set_identity(self_, settings_);
  sync_->set_identity(self_, settings_, connections());
  link->start();
  // An op whose data stopped moving fails after the master's straggler deadline.
  engine_->start_watchdog(settings_.heartbeat,
                          std::chrono::milliseconds(
                              std::max(welcome->vote_timeout_ms, welcome->peer_timeout_ms)));
  log_->info("registered with the master at {} as peer {}", format_host_port(link->address()),
             self_);
  // Admission arrives as M2CMembership; the call returns once the ring lanes are up.
}

void Runtime::connect_timed_out() {
  if (state_ == State::kResuming && connect_promise_) {
    // A joiner that lost the master on its way in: the resume ends with the call.
    if (resume_link_) resume_link_->close();
    resume_link_.reset();
    if (resume_timer_) resume_timer_->cancel();
    state_ = State::kJoining;
  }
  if (state_ != State::kRegistering && state_ != State::kAwaitingAdmission &&
      state_ != State::kJoining) {
    return;
  }
  finish_connect(make_status(StatusCode::kTimeout,
                             "qcclConnect: not admitted within connect_timeout_ms = {} ms",
                             options_.connect_timeout_ms));
}

void Runtime::finish_connect(Status st) {
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

// ---- control calls ----

void Runtime::start_sync(SyncRequest req, std::shared_ptr<StateSync::Promise> promise) {
  if (defer_while_resuming([this, req, promise]() mutable { start_sync(std::move(req), promise); })) {
    return;
  }
  Status allowed = control_call_allowed("qcclSyncSharedState");
  if (!allowed.is_ok()) return promise->set_value(allowed);
  sync_->start(std::move(req), std::move(promise));
}

void Runtime::start_vote(wire::VoteKind kind, std::shared_ptr<VoteCall::Promise> promise) {
  if (defer_while_resuming([this, kind, promise] { start_vote(kind, promise); })) return;
  Status allowed = control_call_allowed(VoteCall::call_name(kind));
  if (!allowed.is_ok()) return promise->set_value(allowed);
  vote_.start(kind, std::move(promise));
  master_->send(wire::C2MVote{kind}, global_epoch_);
}

void Runtime::on_vote_result(const wire::M2CVoteResult& r) {
  if (r.status == StatusCode::kOk && r.round > vote_round_) {
    vote_round_ = r.round;
    vote_pending_ = r.peers_pending;
  }
  bool lanes_ready = links_->ready() && links_->epoch() == group_epoch_;
  vote_.on_result(r, lanes_ready, 2 * settings_.timeout, [this, kind = r.kind] {
    return make_status(StatusCode::kPeerLost,
                       "the connections to the next ring neighbour ({}) did not come up in "
                       "time{}; call {} again",
                       next_neighbour(),
                       links_->failed() ? ": " + links_->failure().message() : std::string(),
                       VoteCall::call_name(kind));
  });
}

// The master's part of qcclOptimizeTopology: measure the links it names, report, and keep
// waiting for the vote result (the new ring comes with it).
void Runtime::on_probe_plan(const wire::M2CProbePlan& plan) {
  if (vote_.kind() != wire::VoteKind::kOptimizeTopology) {
    log_->warn("peer {}: probe plan {} outside qcclOptimizeTopology; ignored", self_, plan.round);
    return;
  }
  prober_->start(plan, self_, [self = shared_from_this()](wire::C2MProbeResults results) {
    self->send_to_master(results);
  });
}

void Runtime::start_ring_wait(std::shared_ptr<std::promise<Status>> promise,
                              std::chrono::milliseconds bound) {
  if (defer_while_resuming([this, promise, bound] { start_ring_wait(promise, bound); })) return;
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

// After any change of the lanes or of the membership, and when the communicator dies.
void Runtime::check_ring_waiters() {
  if (ring_waiters_.empty() || (!fatal_ && !ring_up())) return;
  auto waiters = std::move(ring_waiters_);
  ring_waiters_.clear();
  for (auto& [id, w] : waiters) {
    w.timer->cancel();
    w.promise->set_value(fatal_ ? *fatal_ : Status::ok());
  }
}

// ---- the master, the membership and the lanes ----

void Runtime::on_master_message(const wire::ControlMessage& m, Epoch epoch) {
  if (const auto* mem = std::get_if<wire::M2CMembership>(&m)) return on_membership(*mem, epoch);
  if (const auto* res = std::get_if<wire::M2COpResult>(&m)) return engine_->on_op_result(*res);
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

void Runtime::on_membership(const wire::M2CMembership& m, Epoch epoch) {
  if (state_ == State::kIdle || state_ == State::kClosed || state_ == State::kRegistering) return;
  std::optional<uint32_t> rank;
  for (uint32_t i = 0; i < m.ring.size(); ++i) {
    if (m.ring[i].id == self_) rank = i;
  }
  if (!rank) {
    log_->warn("membership update without this peer (epoch {}); ignored", epoch);
    return;
  }
  global_epoch_ = epoch;
  next_peer_id_ = m.next_peer_id;
  vote_round_ = std::max(vote_round_, m.vote_round);
  bool admission = state_ == State::kAwaitingAdmission;
  bool resuming = state_ == State::kResuming;
  bool group_changed = admission || m.group_epoch != group_epoch_;
  view_ = m;
  rank_ = *rank;
  if (admission) state_ = State::kJoining;
  sync_->on_ring(m.ring);
  if (!group_changed) {
    if (resuming) resumed();
    return;
  }
  group_epoch_ = m.group_epoch;
  ring_failure_reported_ = false;
  uint32_t n = static_cast<uint32_t>(m.ring.size());
  std::optional<peer::DataLinks::Neighbour> next;
  PeerId prev = kNoPeer;
  if (n >= 2) {
    const auto& nx = m.ring[(*rank + 1) % n];
    next = peer::DataLinks::Neighbour{nx.id, nx.host, nx.port};
    prev = m.ring[(*rank + n - 1) % n].id;
  }
  log_->debug("peer {}: group epoch {}, rank {} of {}", self_, group_epoch_, rank_, n);
  // The ops end before the lanes move: an op of the old epoch takes back its queued frames.
  std::vector<PeerId> ids;
  for (const auto& member : m.ring) ids.push_back(member.id);
  engine_->on_group(group_epoch_, std::move(ids), rank_);
  links_->set_ring(group_epoch_, next, prev,
                   ring_lanes_for(options_.connections_per_peer, next ? next->host : ""));
  if (resuming) resumed();
}

void Runtime::on_links_ready(Epoch e) {
  if (e != group_epoch_) return;
  if (state_ == State::kJoining) finish_connect(Status::ok());
  vote_.ring_up();
  engine_->on_links_ready(e);
  check_ring_waiters();
}

void Runtime::on_links_failed(Epoch e, const Status& why) {
  if (e != group_epoch_) return;
  bool reported = engine_->on_links_failed(e, why);
  bool connecting = state_ == State::kAwaitingAdmission || state_ == State::kJoining;
  if (!reported && (connecting || vote_.active())) report_ring_failure(why);
}

void Runtime::report_ring_failure(const Status& why) {
  if (ring_failure_reported_ || !master_ || state_ == State::kResuming) return;
  ring_failure_reported_ = true;
  master_->send(
      wire::C2MOpDone{kRingFailureTag, 0, group_epoch_, StatusCode::kPeerLost, why.message()},
      global_epoch_);
}

void Runtime::on_fatal(const Status& why) {
  if (fatal_) return;
  fatal_ = why;
  if (why.code() == StatusCode::kAborted) {
    log_->debug("peer {}: {}", self_, why.message());
  } else {
    log_->warn("peer {}: {}", self_, why.message());
  }
  state_ = State::kClosed;
  if (resume_link_) resume_link_->close();
  resume_link_.reset();
  if (resume_timer_) resume_timer_->cancel();
  if (connect_promise_) finish_connect(why);
  vote_.finish(why);
  prober_->cancel();
  sync_->fail(why);
  engine_->on_fatal(why);
  links_->close_all();
  if (master_) master_->close();
  check_ring_waiters();
  run_deferred();
}

void Runtime::leave_master() {
  // Before M2CWelcome the master does not know this peer (a C2MLeave would be read as its
  // registration): on_fatal just closes the link then.
  bool registered = state_ == State::kAwaitingAdmission || state_ == State::kJoining ||
                    state_ == State::kConnected || state_ == State::kResuming;
  if (!master_ || fatal_ || !registered) return;
  leaving_ = true;
  auto link = master_;
  master_.reset();  // on_fatal must not close it before the leave is flushed
  link->leave(global_epoch_, [self = shared_from_this()] {
    self->leaving_ = false;
    self->check_drained();
  });
}

void Runtime::begin_shutdown(std::shared_ptr<std::promise<void>> drained) {
  drained_ = drained;
  leave_master();
  on_fatal(make_status(StatusCode::kAborted, "the communicator was destroyed"));
  check_drained();
}

void Runtime::check_drained() {
  if (drained_ && engine_->empty() && !leaving_ && !sync_->active()) {
    drained_->set_value();
    drained_.reset();
  }
}

}  // namespace qccl::core
