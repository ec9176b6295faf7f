// Runtime: losing the master and resuming the run with a new one (runtime.hpp,
// docs/reliability.md "Losing the master").
#include "common/logging.hpp"
#include "core/runtime.hpp"

namespace qccl::core {

using Clock = std::chrono::steady_clock;

std::shared_ptr<peer::MasterLink> Runtime::make_master_link() {
  return std::make_shared<peer::MasterLink>(
      io_.context().get_executor(), masters_, secret(),
      [this](const wire::ControlMessage& m, Epoch e) { on_master_message(m, e); },
      [this](const Status& why) { on_master_lost(why); });
}

// The master link broke or went silent. Without master_reconnect_ms that ends the
// communicator (kMasterUnreachable). With it, a peer in the ring (connected, or joining: its
// lanes were coming up) resumes the run, and one still waiting for admission registers again.
void Runtime::on_master_lost(const Status& why) {
  if (fatal_) return;
  if (options_.master_reconnect_ms == 0) return on_fatal(why);
  if (state_ == State::kAwaitingAdmission) return register_again(why);
  if (state_ != State::kConnected && state_ != State::kJoining) return on_fatal(why);
  auto deadline = Clock::now() + std::chrono::milliseconds(options_.master_reconnect_ms);
  // A standby is tried before the address that was just lost (a stopped master there would
  // hold each attempt for the whole peer timeout).
  const size_t lost_at = master_ ? master_->address_index() : 0;
  log_->warn("peer {}: {}; looking for a master to resume the run for up to {} ms", self_,
             why.message(), options_.master_reconnect_ms);
  state_ = State::kResuming;
  if (master_) master_->close();
  master_.reset();
  // Everything in progress fails with a retryable code, except what waits for the master's
  // answer only (an op whose data all arrived, a vote, a sync whose download is done): the
  // lost master may have given it to some peers, so the new master gives it to the others,
  // alike. The retries wait until the run has resumed.
  Status retry = make_status(StatusCode::kPeerLost,
                             "the master was lost ({}); call again: the call waits until a master "
                             "resumes the run", why.message());
  prober_->cancel();
  sync_->on_master_lost(retry);
  engine_->on_master_lost(retry);
  resume_timer_.emplace(io_.context(), deadline);
  resume_timer_->async_wait([self = shared_from_this()](const asio::error_code& ec) {
    if (ec || self->state_ != State::kResuming) return;
    self->on_fatal(make_status(StatusCode::kMasterUnreachable,
                               "lost the master, and no master resumed the run within "
                               "master_reconnect_ms = {} ms",
                               self->options_.master_reconnect_ms));
  });
  resume_link_ = make_master_link();
  const size_t first = (lost_at + 1) % masters_.size();
  asio::co_spawn(io_.context(), resume_flow(resume_link_, deadline, first), asio::detached);
}

// The lost master had not admitted this peer: no ring holds it yet, so it registers again
// with whichever master leads the run next (the next address first; a master resuming the run
// refuses registrations until it leads it, and the dialling goes on). qcclConnect keeps
// waiting, bounded by its connect deadline and by master_reconnect_ms.
void Runtime::register_again(const Status& why) {
  const size_t lost_at = master_ ? master_->address_index() : 0;
  log_->warn("peer {}: {} before it was admitted; registering again for up to {} ms", self_,
             why.message(), options_.master_reconnect_ms);
  if (master_) master_->close();
  master_ = make_master_link();
  state_ = State::kRegistering;
  self_ = kNoPeer;
  auto deadline = std::min(connect_deadline_,
                           Clock::now() + std::chrono::milliseconds(options_.master_reconnect_ms));
  asio::co_spawn(io_.context(), connect_flow(deadline, (lost_at + 1) % masters_.size()),
                 asio::detached);
}

wire::C2MResume Runtime::resume_message() const {
  wire::C2MResume m;
  m.run_id = run_id_;
  m.generation = generation_;
  m.master_id = master_id_;
  m.peer_id = self_;
  m.peer_group = options_.peer_group;
  m.p2p_port = advertise_.port != 0 ? advertise_.port : links_->port();
  m.advertised_host = advertise_.host;
  m.global_epoch = global_epoch_;
  m.group_epoch = group_epoch_;
  for (const auto& member : view_.ring) m.ring.push_back(member.id);
  m.next_peer_id = next_peer_id_;
  if (auto rev = sync_->last_revision()) {
    m.has_revision = true;
    m.last_revision = *rev;
  }
  m.ops = engine_->resume_report();
  if (auto kind = vote_.waiting_result()) m.vote_waiting = static_cast<uint8_t>(*kind);
  m.vote_round = vote_round_;
  m.vote_pending = vote_pending_;
  if (auto wait = sync_->waiting_result()) {
    m.sync_waiting = true;
    m.sync_round = wait->round;
    m.sync_revision = wait->revision;
  }
  return m;
}

// A master may resume this run only as a newer generation of it.
Status Runtime::check_resumer(const wire::M2CWelcome& w) const {
  if (w.run_id != run_id_ || w.generation <= generation_ || w.peer_id != self_) {
    return make_status(StatusCode::kMasterUnreachable,
                       "it leads run {:016x} generation {} (peer {}); this peer follows run "
                       "{:016x} generation {} as peer {}",
                       w.run_id, w.generation, w.peer_id, run_id_, generation_, self_);
  }
  return Status::ok();
}

net::awaitable<void> Runtime::resume_flow(std::shared_ptr<peer::MasterLink> link,
                                          Clock::time_point deadline, size_t first) {
  auto self = shared_from_this();
  peer::MasterLink::Attempt attempt;
  attempt.check = [this](const wire::M2CWelcome& w) { return check_resumer(w); };
  attempt.bound = settings_.timeout;  // a stopped master accepts but never answers
  attempt.first = first;
  auto welcome = co_await link->connect(wire::ControlMessage(resume_message()), deadline, attempt);
  if (link != resume_link_ || state_ != State::kResuming) co_return;  // closed meanwhile
  resume_link_.reset();
  if (!welcome.is_ok() && welcome.status().code() == StatusCode::kKicked) {
    on_fatal(welcome.status());  // the run goes on without this peer: it joins again
    co_return;
  }
  if (!welcome.is_ok()) {
    on_fatal(make_status(StatusCode::kMasterUnreachable,
                         "lost the master, and no master resumed the run within "
                         "master_reconnect_ms = {} ms: {}",
                         options_.master_reconnect_ms, welcome.status().message()));
    co_return;
  }
  generation_ = welcome->generation;
  master_id_ = welcome->master_id;
  master_ = link;
  link->start();
  log_->info("peer {}: the master at {} (generation {}) took the resume; waiting for the ring",
             self_, format_host_port(link->address()), generation_);
  // Calls go on once its membership arrives (on_membership -> resumed()).
}

void Runtime::resumed() {
  // A joiner's qcclConnect returns once the new epoch's lanes are up (on_links_ready).
  state_ = connect_promise_ ? State::kJoining : State::kConnected;
  if (resume_timer_) resume_timer_->cancel();
  log_->info("peer {}: run resumed at group epoch {}, rank {} of {}", self_, group_epoch_, rank_,
             view_.ring.size());
  run_deferred();
}

bool Runtime::defer_while_resuming(std::function<void()> again) {
  if (state_ != State::kResuming) return false;
  deferred_.push_back(std::move(again));
  return true;
}

void Runtime::run_deferred() {
  auto calls = std::move(deferred_);
  deferred_.clear();
  for (auto& call : calls) call();
}

}  // namespace qccl::core
