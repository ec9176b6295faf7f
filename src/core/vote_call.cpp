#include "core/vote_call.hpp"

namespace qccl::core {

std::string_view VoteCall::call_name(wire::VoteKind kind) {
  switch (kind) {
    case wire::VoteKind::kUpdateTopology: return "qcclUpdateTopology";
    case wire::VoteKind::kPeersPending: return "qcclArePeersPending";
    case wire::VoteKind::kOptimizeTopology: return "qcclOptimizeTopology";
  }
  return "a vote";
}

std::optional<wire::VoteKind> VoteCall::kind() const {
  if (!vote_) return std::nullopt;
  return vote_->kind;
}

std::optional<wire::VoteKind> VoteCall::waiting_result() const {
  if (!vote_ || vote_->result_in) return std::nullopt;
  return vote_->kind;
}

void VoteCall::start(wire::VoteKind kind, std::shared_ptr<Promise> promise) {
  vote_ = Wait{kind, std::move(promise)};
}

void VoteCall::on_result(const wire::M2CVoteResult& r, bool ring_up,
                         std::chrono::milliseconds bound, std::function<Status()> late) {
  if (!vote_ || vote_->kind != r.kind) return;
  if (r.status != StatusCode::kOk) {
    return finish(make_status(r.status, "{}: {}", call_name(r.kind), r.message));
  }
  if (r.kind == wire::VoteKind::kPeersPending) return finish(r.peers_pending);
  vote_->pending = r.peers_pending;
  vote_->result_in = true;
  deadline_.emplace(ex_, bound);
  deadline_->async_wait([this, late = std::move(late)](const asio::error_code& ec) {
    if (!ec && vote_) finish(late());
  });
  if (ring_up) this->ring_up();
}

void VoteCall::ring_up() {
  if (vote_ && vote_->result_in) finish(vote_->pending);
}

void VoteCall::finish(Result<bool> result) {
  if (!vote_) return;
  if (deadline_) deadline_->cancel();
  auto v = std::move(*vote_);
  vote_.reset();
  v.promise->set_value(std::move(result));
}

}  // namespace qccl::core
