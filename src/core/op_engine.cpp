#include "core/op_engine.hpp"

#include <cstring>

namespace qccl::core {

using Clock = std::chrono::steady_clock;
using peer::Placement;
using Duplicate = FrameTarget::Duplicate;

OpEngine::OpEngine(asio::any_io_executor ex, Hooks hooks)
    : ex_(std::move(ex)), hooks_(std::move(hooks)), log_(log::get("peer")) {}

// ---- starting ----

Status OpEngine::start(OpTag tag, std::string_view call, Maker make) {
  if (ops_.count(tag)) {
    return make_status(StatusCode::kInvalidUsage,
                       "{}: an operation with tag {} is already in flight", call, tag);
  }
  if (world_ < 2) {
    return make_status(StatusCode::kTooFewPeers,
                       "{}: the peer group has {} accepted peer(s); at least 2 are needed", call,
                       world_);
  }
  if (auto ahead = aborted_ahead_.extract(tag)) {
    start_aborted(tag, ahead.mapped(), make);
    return Status::ok();
  }
  uint64_t seq = next_seq_[tag]++;
  auto op = make(seq, group_epoch_);
  add(op);
  hooks_.to_master(wire::C2MOpStart{tag, seq, group_epoch_, op->fingerprint(), op_timeout_ms_});
  if (links_->failed() && links_->epoch() == group_epoch_) {
    fail(op, links_->failure(), FailSource::kLocal);
  } else if (links_->ready() && links_->epoch() == group_epoch_) {
    begin(op);
  }
  changed();
  return Status::ok();
}

void OpEngine::add(const std::shared_ptr<Op>& op) {
  op->set_progress_callback([this](Op& o) { after_io(&o); });
  ops_[op->tag()] = op;
}

// This call is an op that the master aborted before this peer started it (note_abort_ahead):
// it fails as it failed on the peers that had started it, who go on to retry it or to their
// next step. Started alone in the new epoch instead, it would wait for peers that never come
// (until the vote timeout). Nothing goes to the master, which has forgotten the op.
void OpEngine::start_aborted(OpTag tag, const AbortedAhead& ahead, const Maker& make) {
  auto op = make(ahead.seq, ahead.epoch);
  // The abort came before the new membership, which may not be here yet: then the op is
  // this epoch's `seq` and completes when the membership arrives (try_finish).
  if (ahead.epoch == group_epoch_) next_seq_[tag] = ahead.seq + 1;
  add(op);
  log_->debug("tag {} seq {} epoch {} was aborted before this call started it: {}", tag,
              ahead.seq, ahead.epoch, ahead.why.message());
  fail(op, ahead.why, FailSource::kMaster);
  changed();
}

// The master aborted an op that this peer has not started (M2COpResult without a local op).
// If it is the next op of this peer's sequence for that tag (same group epoch, seq = the next
// one), the peers that had started it failed it (a lost peer, a member whose call could not
// run on this ring, e.g. too little room for the result: Op::fail_locally): remember, so that
// this peer's call fails too (start_aborted) instead of starting alone in the epoch the abort
// opened. Anything else is a
// late answer about an op this peer already finished; it is ignored. So are refusals of
// out-of-step calls (kInvalidUsage, docs/call-order.md): those calls are as if never made, and
// the peers that made them call again in step with this one. An op the master aborted at its
// deadline (kTimeout) is remembered the same way: this peer was late to it, and its call fails
// with kTimeout as the others' did (docs/reliability.md §7).
void OpEngine::note_abort_ahead(const wire::M2COpResult& r) {
  if (r.status == StatusCode::kOk || r.status == StatusCode::kInvalidUsage ||
      r.tag == kRingFailureTag || r.op_epoch != group_epoch_) {
    return;
  }
  auto next = next_seq_.find(r.tag);
  if (r.seq != (next == next_seq_.end() ? 0 : next->second)) return;
  aborted_ahead_[r.tag] = AbortedAhead{r.seq, r.op_epoch, Status(r.status, r.message)};
}

void OpEngine::begin(const std::shared_ptr<Op>& op) {
  op->begin(ring_, rank_, *links_);
  for (auto& f : early_.take(op->epoch(), op->tag(), op->seq())) {
    if (!op->accepts_frames() || op->local_error()) continue;
    Status st = deliver_early(op, f);
    if (!st.is_ok()) {
      links_->fail(st);
      break;
    }
  }
  check_local_done(op);
}

// ---- membership and links ----

void OpEngine::on_group(Epoch epoch, std::vector<PeerId> ring, uint32_t rank) {
  const auto world = static_cast<uint32_t>(ring.size());
  // Commits of the epoch before the one ending are no longer needed (resume_report()).
  std::erase_if(committed_, [&](const auto& kv) { return kv.first.second < group_epoch_; });
  group_epoch_ = epoch;
  world_ = world;
  ring_ = std::move(ring);
  rank_ = rank;
  next_seq_.clear();
  early_.drop_before(epoch);
  if (world < 2) aborted_ahead_.clear();  // the peers that failed those ops are gone
  // Operations of the old epoch end; they finish once their I/O has drained. Those the
  // master aborted (its M2COpResult came before this membership) fail. The others are run
  // again in the new epoch (restart): the master had no start of them when the group
  // changed, so it aborted them for no member, and the members that had not started them
  // yet start them in the new epoch. Failing them here would leave those members alone in
  // the op while this peer goes on to its next call: a stall until the vote timeout.
  for (auto& op : snapshot()) {
    if (op->epoch() >= epoch) continue;
    bool aborted = op->phase() == Op::Phase::kFailing &&
                   op->failure_source() == FailSource::kMaster;
    if (!aborted && op->phase() != Op::Phase::kDone) op->set_restart();
    fail(op, make_status(StatusCode::kPeerLost, "the group changed while the operation ran (a "
                         "peer left, failed or joined); retry"),
         FailSource::kEpochChange);
  }
  changed();
}

void OpEngine::on_links_ready(Epoch epoch) {
  for (auto& op : snapshot()) {
    if (op->epoch() == epoch && op->phase() == Op::Phase::kWaitLinks) begin(op);
  }
  changed();  // readers may be waiting for an op to begin
}

bool OpEngine::on_links_failed(Epoch epoch, const Status& why) {
  bool reported = false;
  for (auto& op : snapshot()) {
    if (op->epoch() == epoch) reported |= fail(op, why, FailSource::kLocal);
  }
  return reported;
}

void OpEngine::on_fatal(const Status& why) {
  fatal_ = why;
  for (auto& op : snapshot()) fail(op, why, FailSource::kMaster);
  changed();
}

void OpEngine::on_master_lost(const Status& why) {
  for (auto& op : snapshot()) {
    if (op->phase() != Op::Phase::kWaitCommit) fail(op, why, FailSource::kMaster);
  }
  changed();
}

std::vector<wire::ResumeOp> OpEngine::resume_report() const {
  std::vector<wire::ResumeOp> out;
  for (const auto& [tag, op] : ops_) {
    if (op->phase() == Op::Phase::kWaitCommit) out.push_back({tag, op->seq(), op->epoch(), false});
  }
  for (const auto& [key, seq] : committed_) out.push_back({key.first, seq, key.second, true});
  return out;
}

void OpEngine::on_op_result(const wire::M2COpResult& r) {
  auto it = ops_.find(r.tag);
  if (it == ops_.end() || it->second->seq() != r.seq || it->second->epoch() != r.op_epoch) {
    note_abort_ahead(r);
    return;
  }
  auto op = it->second;
  // The master's aborts come before the membership that ends the op's epoch; an answer about
  // an epoch this peer has already left is its reply to our own late start or report
  // (reject_stale), which must not undo a restart (on_group).
  if (r.status != StatusCode::kOk && r.op_epoch < group_epoch_ && op->restart_pending()) return;
  if (r.status == StatusCode::kOk) {
    if (op->phase() != Op::Phase::kWaitCommit) {
      log_->error("commit for tag {} seq {} before this peer finished; ignored", r.tag, r.seq);
      return;
    }
    op->commit(r.world_size);
    committed_[{op->tag(), op->epoch()}] = op->seq();
    erase(op);
    return;
  }
  fail(op, Status(r.status, r.message), FailSource::kMaster);
}

// ---- inbound frames ----

namespace {

// `op` is the one frame `id` of group epoch `epoch` belongs to, and has begun.
bool is_begun(const Op& op, Epoch epoch, const peer::FrameId& id) {
  return op.epoch() == epoch && op.seq() == id.seq && op.phase() != Op::Phase::kWaitLinks;
}

}  // namespace

std::shared_ptr<Op> OpEngine::begun(Epoch epoch, const peer::FrameId& id) const {
  auto it = ops_.find(id.tag);
  if (it == ops_.end() || !is_begun(*it->second, epoch, id)) return nullptr;
  return it->second;
}

Placement OpEngine::place(Epoch epoch, const peer::FrameId& id, size_t payload, uint32_t lane) {
  Placement skip;
  if (epoch != group_epoch_ || fatal_) return skip;
  auto it = ops_.find(id.tag);
  // Frames of an older attempt of this tag are stale; a later one waits for the local call.
  // The wait ends when the call comes, or when the master expels whoever lags (vote timeout)
  // and the epoch ends.
  if (it != ops_.end() && it->second->epoch() == epoch && it->second->seq() > id.seq) return skip;
  auto next = next_seq_.find(id.tag);
  if (it == ops_.end() && next != next_seq_.end() && next->second > id.seq) return skip;
  // The op must also have begun: our outbound lanes may come up after the neighbour's.
  if (it == ops_.end() || !is_begun(*it->second, epoch, id)) {
    // Not begun here yet. Keep the frame aside rather than block this lane; past the budget,
    // wait: that is backpressure, bounded like any straggler.
    Placement p;
    p.kind = early_.fits(payload) ? Placement::Kind::kKeep : Placement::Kind::kWait;
    return p;
  }
  const auto& op = it->second;
  if (!op->accepts_frames()) return skip;
  if (id.fingerprint != op->fingerprint()) {
    fail_mismatch(op);
    return skip;
  }
  auto target = op->claim(id.step, id.segment, payload, lane);
  if (!target.is_ok()) {
    Placement bad;
    bad.kind = Placement::Kind::kBad;
    bad.error = target.status();
    return bad;
  }
  if (target->duplicate == Duplicate::kReceived) return skip;
  Placement p;
  p.bytes = target->bytes;
  bool staged = target->staged || target->duplicate == Duplicate::kPending;
  p.staging = staged ? op->max_frame_bytes() : 0;
  if (target->duplicate == Duplicate::kPending) {
    p.kind = Placement::Kind::kReadCopy;
    p.claimant = target->claimant;
    return p;
  }
  p.kind = Placement::Kind::kRead;
  p.dst = target->staged ? nullptr : target->dst;
  op->read_started();
  return p;
}

Status OpEngine::landed(Epoch epoch, const peer::FrameId& id, size_t payload, uint32_t lane,
                        const Status& read, const uint8_t* staging) {
  // The op cannot have ended: a read in progress holds it (Op::drained).
  auto it = ops_.find(id.tag);
  if (it == ops_.end() || it->second->epoch() != epoch || it->second->seq() != id.seq) {
    log_->error("a frame of tag {} seq {} landed with no op to take it", id.tag, id.seq);
    return read;
  }
  auto op = it->second;
  op->read_finished(payload + peer::kDataHeadBytes);
  if (!read.is_ok() || !op->accepts_frames()) {
    // The sender resends a frame whose read broke off (or another lane took it over).
    if (!read.is_ok() && op->accepts_frames()) op->unclaim(id.step, id.segment, lane);
    try_finish(op);
    return read;
  }
  take_in(*op, id, staging);
  check_local_done(op);
  return Status::ok();
}

void OpEngine::take_in(Op& op, const peer::FrameId& id, const uint8_t* staging) {
  auto t0 = Clock::now();
  op.on_received(id.step, id.segment, staging);
  stats_.frame_work += Clock::now() - t0;
}

void OpEngine::copy_landed(Epoch epoch, const peer::FrameId& id, uint32_t lane, uint32_t claimant,
                           const uint8_t* staging) {
  auto op = begun(epoch, id);
  if (op && op->accepts_frames() && !op->received(id.step, id.segment)) {
    take_over(op, id, claimant, lane, staging);
  }
}

Status OpEngine::keep(Epoch epoch, const peer::FrameId& id, std::vector<uint8_t> payload) {
  if (epoch != group_epoch_) return Status::ok();
  // The op may have begun while the payload was read: then take the frame in now.
  if (auto op = begun(epoch, id)) {
    if (!op->accepts_frames()) return Status::ok();
    Status st = deliver_early(op, EarlyFrame{id, std::move(payload)});
    check_local_done(op);
    return st;
  }
  early_.add(epoch, EarlyFrame{id, std::move(payload)});
  return Status::ok();
}

// A frame kept aside before its op began, now taken in like one just read.
Status OpEngine::deliver_early(const std::shared_ptr<Op>& op, const EarlyFrame& f) {
  if (f.id.fingerprint != op->fingerprint()) {
    fail_mismatch(op);
    return Status::ok();
  }
  auto target = op->claim(f.id.step, f.id.segment, f.payload.size(), kEarlyClaimant);
  if (!target.is_ok()) return target.status();
  if (target->duplicate == Duplicate::kReceived) return Status::ok();
  if (target->duplicate == Duplicate::kPending) {
    take_over(op, f.id, target->claimant, kEarlyClaimant, f.payload.data());
    return Status::ok();
  }
  if (!target->staged) std::memcpy(target->dst, f.payload.data(), f.payload.size());
  op->read_started();
  op->read_finished(f.payload.size() + peer::kDataHeadBytes);
  take_in(*op, f.id, f.payload.data());
  return Status::ok();
}

// A resent copy of a frame whose first copy another lane is still reading (that lane
// stalled) arrived in full: stop that lane, and take the frame in from this copy.
void OpEngine::take_over(const std::shared_ptr<Op>& op, const peer::FrameId& id,
                         uint32_t claimant, uint32_t lane, const uint8_t* payload) {
  links_->stop_inbound_lane(claimant);
  changed();
  op->take_over(id.step, id.segment, lane, payload);
  take_in(*op, id, payload);
  check_local_done(op);
}

// ---- completion ----

// A frame of the op's (tag, seq) with another fingerprint: its sender's call differs.
void OpEngine::fail_mismatch(const std::shared_ptr<Op>& op) {
  fail(op, make_status(StatusCode::kMismatch, "peers passed different arguments to {} for tag {} "
                       "(count, dtype, op, quantization or kind)", op->call(), op->tag()),
       FailSource::kLocal);
}

void OpEngine::check_local_done(const std::shared_ptr<Op>& op) {
  if (op->local_error() && op->accepts_frames()) {
    fail(op, *op->local_error(), FailSource::kLocal);
    return;
  }
  if (!op->locally_complete()) return;
  if (!hooks_.to_master(
          wire::C2MOpDone{op->tag(), op->seq(), op->epoch(), StatusCode::kOk, ""})) {
    return;
  }
  op->mark_reported();
}

bool OpEngine::fail(const std::shared_ptr<Op>& op, const Status& why, FailSource source) {
  bool report = source == FailSource::kLocal;
  bool changed_now = op->fail(why, links_, source);
  bool reported = false;
  if (changed_now && report && !fatal_) {
    reported = hooks_.to_master(
        wire::C2MOpDone{op->tag(), op->seq(), op->epoch(), why.code(), why.message()});
  }
  try_finish(op);
  return changed_now && report && reported;
}

void OpEngine::try_finish(const std::shared_ptr<Op>& op) {
  bool moved = fatal_.has_value() || group_epoch_ > op->epoch();
  if (moved && !fatal_ && op->restart_pending() && op->drained()) {
    // Deferred: we may be inside on_group, before the new epoch's lanes are set up.
    asio::post(ex_, [self = shared_from_this(), op] { self->restart(op); });
    return;
  }
  if (!op->try_finish(moved)) return;
  erase(op);
}

// Runs an op of an older epoch again in the current one (see on_group), with the same handle
// and buffers; an in-place input is restored first.
void OpEngine::restart(const std::shared_ptr<Op>& op) {
  auto it = ops_.find(op->tag());
  if (it == ops_.end() || it->second != op || !op->restart_pending() || !op->drained()) return;
  if (fatal_) return try_finish(op);
  links_->forget(op.get());
  ops_.erase(it);
  auto handle = op->take_for_restart();
  log_->debug("tag {} seq {} of epoch {} was not aborted by the master; run again in epoch {}",
              op->tag(), op->seq(), op->epoch(), group_epoch_);
  Status st = start(op->tag(), op->call(), [op, handle](uint64_t seq, Epoch epoch) {
    return op->again(seq, epoch, handle);
  });
  if (!st.is_ok()) handle->complete(st, ReduceInfo{});
  changed();
  if (ops_.empty()) hooks_.on_idle();
}

// After a send completed: deferred, because we are inside the op's own callback.
void OpEngine::after_io(Op* raw) {
  auto it = ops_.find(raw->tag());
  if (it == ops_.end() || it->second.get() != raw) return;
  asio::post(ex_, [self = shared_from_this(), op = it->second] {
    if (op->phase() == Op::Phase::kFailing) {
      self->try_finish(op);
    } else {
      self->check_local_done(op);
    }
  });
}

void OpEngine::account(const Op& op) {
  const auto& t = op.timeline();
  const Clock::time_point unset{};
  auto end = Clock::now();
  auto begun = t.begun == unset ? end : t.begun;
  auto done = t.frames_done == unset ? end : t.frames_done;  // a failed op's frames never finished
  ++stats_.ops;
  stats_.wait_ring += begun - t.made;
  stats_.data += done - begun;
  stats_.commit += end - done;
  stats_.tx_bytes += op.tx_bytes();
  stats_.rx_bytes += op.rx_bytes();
}

void OpEngine::erase(const std::shared_ptr<Op>& op) {
  account(*op);
  links_->forget(op.get());
  auto it = ops_.find(op->tag());
  if (it != ops_.end() && it->second == op) ops_.erase(it);
  changed();
  if (ops_.empty()) hooks_.on_idle();
}

void OpEngine::changed() { links_->wake_readers(); }

std::vector<std::shared_ptr<Op>> OpEngine::snapshot() const {
  std::vector<std::shared_ptr<Op>> out;
  for (const auto& [tag, op] : ops_) out.push_back(op);
  return out;
}

// ---- stall watchdog ----

void OpEngine::start_watchdog(std::chrono::milliseconds tick, std::chrono::milliseconds stall) {
  if (watchdog_started_) return;  // a second qcclConnect, or a registration again
  watchdog_started_ = true;
  asio::co_spawn(ex_, watchdog(tick, stall), asio::detached);
}

// The stall time equals the master's straggler deadline (vote timeout), so a peer merely late
// to start an op is not punished sooner here than there.
net::awaitable<void> OpEngine::watchdog(std::chrono::milliseconds tick,
                                        std::chrono::milliseconds stall) {
  auto self = shared_from_this();
  asio::steady_timer timer(ex_);
  while (!fatal_) {
    timer.expires_after(tick);
    co_await timer.async_wait(net::use_nothrow);
    auto now = Clock::now();
    for (auto& op : snapshot()) {
      if (op->phase() == Op::Phase::kRunning && now - op->last_progress() > stall) {
        fail(op, make_status(StatusCode::kPeerLost,
                             "no data moved for {} ms (a neighbour is hung or its link is cut; "
                             "this peer sends to {})",
                             stall.count(), hooks_.next_neighbour()),
             FailSource::kLocal);
      }
    }
  }
}

}  // namespace qccl::core
