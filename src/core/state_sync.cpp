#include "core/state_sync.hpp"

#include <algorithm>
#include <limits>
#include <set>

#include "common/logging.hpp"
#include "state/state_hash.hpp"

namespace qccl::core {

// The wire names tensor dtypes by DataType's values (and the C API by qcclDataType_t's).
static_assert(wire::kNumDataTypes == static_cast<int>(DataType::kNumTypes));

Result<SyncRequest> prepare_sync(std::span<const StateTensor> tensors, uint64_t revision,
                                 wire::SyncStrategy strategy) {
  if (tensors.size() > wire::kMaxStateEntries) {
    return make_status(StatusCode::kInvalidArgument,
                       "qcclSyncSharedState: {} tensors, over the limit of {}", tensors.size(),
                       wire::kMaxStateEntries);
  }
  std::vector<size_t> order(tensors.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(),
            [&](size_t a, size_t b) { return tensors[a].name < tensors[b].name; });
  SyncRequest req;
  req.vote.revision = revision;
  req.vote.strategy = strategy;
  std::vector<state::TensorBytes> to_hash;
  for (size_t k = 0; k < order.size(); ++k) {
    const StateTensor& t = tensors[order[k]];
    if (t.name.empty() || t.name.size() > wire::kMaxStringBytes) {
      return make_status(StatusCode::kInvalidArgument,
                         "qcclSyncSharedState: tensor {} has a name of {} bytes (1..{} allowed)",
                         order[k], t.name.size(), wire::kMaxStringBytes);
    }
    if (k > 0 && t.name == tensors[order[k - 1]].name) {
      return make_status(StatusCode::kInvalidArgument,
                         "qcclSyncSharedState: the name '{}' is used twice", t.name);
    }
    if (!is_valid(t.dtype)) {
      return make_status(StatusCode::kInvalidArgument,
                         "qcclSyncSharedState: tensor '{}' has an invalid dtype {}", t.name,
                         static_cast<int>(t.dtype));
    }
    if (t.data == nullptr && t.count != 0) {
      return make_status(StatusCode::kInvalidArgument,
                         "qcclSyncSharedState: tensor '{}' has data == NULL and count {}", t.name,
                         t.count);
    }
    size_t elem = dtype_size(t.dtype);
    if (t.count > std::numeric_limits<size_t>::max() / elem) {
      return make_status(StatusCode::kInvalidArgument,
                         "qcclSyncSharedState: tensor '{}' of {} elements overflows size_t",
                         t.name, t.count);
    }
    size_t bytes = t.count * elem;
    req.vote.entries.push_back({std::string(t.name), static_cast<uint8_t>(t.dtype),
                                static_cast<uint64_t>(t.count), 0, t.allow_inequality});
    state::ServedEntry s;
    s.data = static_cast<const uint8_t*>(t.data);
    s.bytes = bytes;
    s.servable = !t.allow_inequality;
    req.served.push_back(std::move(s));
    req.writable.push_back(static_cast<uint8_t*>(t.data));
    // allow_inequality tensors are never compared: no need to hash them.
    to_hash.push_back({t.data, t.allow_inequality ? 0 : bytes});
  }
  auto hashes = state::hash_tensors(to_hash);
  for (size_t k = 0; k < hashes.size(); ++k) {
    if (!req.served[k].servable) continue;
    req.vote.entries[k].hash = hashes[k].hash;
    req.served[k].hash = hashes[k].hash;
    req.served[k].piece_hashes = std::move(hashes[k].pieces);
  }
  return req;
}

StateSync::StateSync(asio::any_io_executor ex, SendFn send, std::function<void()> on_idle)
    : ex_(ex), send_(std::move(send)), on_idle_(std::move(on_idle)),
      server_(std::make_shared<state::StateServer>(ex)) {}

void StateSync::set_identity(PeerId self, peer::LinkSettings settings, uint32_t connections) {
  self_ = self;
  settings_ = settings;
  connections_ = connections;
}

void StateSync::start(SyncRequest request, std::shared_ptr<Promise> promise) {
  active_.emplace();
  active_->request = std::move(request);
  active_->promise = std::move(promise);
  // Serve before voting: a receiver may dial us as soon as the master decides.
  server_->serve(active_->request.served);
  send_(active_->request.vote);
}

void StateSync::on_plan(const wire::M2CSyncPlan& plan) {
  if (!active_ || active_->phase != Phase::kVoted || finishing_) return;
  if (plan.status != StatusCode::kOk) {
    finish(Status(plan.status, plan.message));
    return;
  }
  active_->round = plan.round;
  active_->revision = plan.revision;
  if (plan.fetch.empty()) {
    active_->phase = Phase::kWaitResult;  // a donor (or nothing differs): serve until the end
    return;
  }
  begin_fetch(plan);
}

void StateSync::begin_fetch(const wire::M2CSyncPlan& plan) {
  Active& a = *active_;
  std::vector<state::FetchTarget> targets;
  for (const wire::FetchEntry& f : plan.fetch) {
    if (f.entry >= a.request.served.size() || !a.request.served[f.entry].servable) {
      // The master never asks this; refuse rather than write where we should not.
      Status bad = make_status(StatusCode::kInternal,
                               "the master asked to download entry {} of {}", f.entry,
                               a.request.served.size());
      send_(wire::C2MSyncDone{plan.round, bad.code(), bad.message()});
      a.phase = Phase::kWaitResult;
      return;
    }
    // No need to stop serving this entry: its served hash is the old one, and a donor answers
    // only requests naming the hash it holds.
    targets.push_back({f.entry, a.request.writable[f.entry], a.request.served[f.entry].bytes,
                       f.hash});
    const uint8_t* old = a.request.writable[f.entry];
    a.backup.emplace_back(f.entry,
                          std::vector<uint8_t>(old, old + a.request.served[f.entry].bytes));
  }
  std::vector<state::FetchDonor> donors;
  for (const auto& d : plan.donors) {
    donors.push_back({d.id, d.host, d.port});
    a.donors.push_back(d.id);
  }
  a.phase = Phase::kFetching;
  state::FetchSettings fs{self_, connections_, settings_.heartbeat, settings_.timeout,
                          settings_.secret};
  a.fetch = std::make_shared<state::StateFetch>(ex_, fs, std::move(targets), std::move(donors));
  asio::co_spawn(ex_, a.fetch->run(),
                 [self = shared_from_this(), fetch = a.fetch](std::exception_ptr e, Status st) {
                   if (e) st = make_status(StatusCode::kInternal, "shared-state download failed");
                   if (self->active_ && self->active_->fetch == fetch) self->fetch_finished(st);
                 });
}

void StateSync::fetch_finished(const Status& st) {
  Active& a = *active_;
  a.rx_bytes = a.fetch->rx_bytes();
  a.fetch.reset();
  a.phase = Phase::kWaitResult;
  if (a.pending_end) {
    auto end = std::move(*a.pending_end);
    a.pending_end.reset();
    finish(std::move(end));
    return;
  }
  send_(wire::C2MSyncDone{a.round, st.code(), st.message()});
  if (!st.is_ok()) log::get("state")->warn("peer {}: {}", self_, st.message());
}

void StateSync::on_result(const wire::M2CSyncResult& r) {
  if (!active_ || active_->phase == Phase::kVoted || r.round != active_->round) return;
  Result<SyncOutcome> outcome = r.status == StatusCode::kOk
                                    ? Result<SyncOutcome>(SyncOutcome{r.revision, 0, 0})
                                    : Result<SyncOutcome>(Status(r.status, r.message));
  // At once, not when the server has drained: a master lost meanwhile asks for it.
  if (r.status == StatusCode::kOk) last_revision_ = r.revision;
  if (active_->fetch) {
    // Another receiver failed while we download: stop, then report.
    active_->pending_end = std::move(outcome);
    active_->fetch->cancel(Status(r.status, r.message));
    return;
  }
  finish(std::move(outcome));
}

void StateSync::on_ring(const std::vector<wire::RingMember>& ring) {
  if (!active_ || !active_->fetch) return;
  for (PeerId d : active_->donors) {
    bool present = std::any_of(ring.begin(), ring.end(),
                               [&](const wire::RingMember& m) { return m.id == d; });
    if (!present) active_->fetch->drop_donor(d);
  }
}

void StateSync::fail(const Status& why) {
  if (!active_) return;
  if (active_->fetch) {
    if (!active_->pending_end) active_->pending_end = Result<SyncOutcome>(why);
    active_->fetch->cancel(why);
    return;
  }
  finish(why);
}

void StateSync::on_master_lost(const Status& why) {
  if (!waiting_result()) fail(why);
}

std::optional<StateSync::Waiting> StateSync::waiting_result() const {
  if (!active_ || active_->phase != Phase::kWaitResult || active_->pending_end || finishing_) {
    return std::nullopt;
  }
  return Waiting{active_->round, active_->revision};
}

void StateSync::adopt(std::shared_ptr<net::Connection> conn, const wire::Preamble& preamble) {
  server_->adopt(std::move(conn), preamble);
}

void StateSync::finish(Result<SyncOutcome> outcome) {
  if (finishing_) return;
  finishing_ = true;
  server_->stop([self = shared_from_this(), outcome = std::move(outcome)]() mutable {
    Active a = std::move(*self->active_);
    self->active_.reset();
    self->finishing_ = false;
    if (outcome.is_ok()) {
      self->last_revision_ = outcome->revision;
      outcome->tx_bytes = self->server_->bytes_sent();
      outcome->rx_bytes = a.rx_bytes;
    } else {
      // Nothing touches the tensors any more (the download and the server have drained).
      for (const auto& [entry, bytes] : a.backup) {
        std::copy(bytes.begin(), bytes.end(), a.request.writable[entry]);
      }
    }
    a.promise->set_value(std::move(outcome));
    if (self->on_idle_) self->on_idle_();
  });
}

}  // namespace qccl::core
