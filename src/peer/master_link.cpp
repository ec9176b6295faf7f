#include "peer/master_link.hpp"

#include "common/logging.hpp"
#include "wire/codec.hpp"

namespace qccl::peer {

using net::use_nothrow;
using Clock = std::chrono::steady_clock;

MasterLink::MasterLink(asio::any_io_executor ex, std::vector<HostPort> masters,
                       net::Secret secret, MessageHandler on_message, LostHandler on_lost)
    : ex_(std::move(ex)),
      masters_(std::move(masters)),
      secret_(std::move(secret)),
      on_message_(std::move(on_message)),
      on_lost_(std::move(on_lost)),
      cancel_(ex_, Clock::time_point::max()) {}

net::awaitable<Result<wire::M2CWelcome>> MasterLink::connect(const wire::ControlMessage& hello,
                                                             Clock::time_point deadline,
                                                             Attempt attempt) {
  using namespace asio::experimental::awaitable_operators;
  // Dial until accepted: a master that is not up yet refuses, and we try again (the next
  // address of the list, and after a round of them a back-off of 10 ms growing to 100 ms).
  asio::steady_timer backoff(ex_);
  Status last = make_status(StatusCode::kMasterUnreachable, "cannot reach the master at {}",
                            format_masters());
  for (size_t round = 0;; ++round) {
    const size_t index = (attempt.first + round) % masters_.size();
    const HostPort& at = masters_[index];
    std::string where = format_host_port(at);
    // close() (the communicator was aborted or destroyed) ends the dialling at once: it fires
    // cancel_, which every wait below races against. Nobody waits for this result any more.
    if (closed_) {
      co_return make_status(StatusCode::kAborted, "connecting to {} was cancelled", where);
    }
    auto now = Clock::now();
    if (now >= deadline) {
      co_return make_status(StatusCode::kTimeout, "no answer from the master at {} in time ({})",
                            format_masters(), last.message());
    }
    auto budget = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::min<Clock::duration>(deadline - now, std::chrono::seconds(10)));
    auto dialled = co_await (net::connect_tcp(ex_, at.host, at.port, budget) ||
                             cancel_.async_wait(use_nothrow));
    if (dialled.index() == 1 || closed_) {
      co_return make_status(StatusCode::kAborted, "connecting to {} was cancelled", where);
    }
    auto sock = std::get<0>(std::move(dialled));
    if (sock.is_ok()) {
      conn_ = std::make_shared<net::Connection>(std::move(sock).value());
      refused_.reset();
      auto bound = std::min(deadline, attempt.bound == Clock::duration::max()
                                          ? deadline
                                          : Clock::now() + attempt.bound);
      auto welcome = co_await exchange(hello, bound, where);
      if (welcome.is_ok() && attempt.check) {
        Status fit = attempt.check(*welcome);
        if (!fit.is_ok()) welcome = fit;
      }
      if (welcome.is_ok()) {
        at_ = index;
        heartbeat_ = std::chrono::milliseconds(std::max<uint32_t>(10, welcome->heartbeat_interval_ms));
        timeout_ = std::chrono::milliseconds(std::max<uint32_t>(100, welcome->peer_timeout_ms));
        conn_->set_liveness(heartbeat_, timeout_);
        co_return welcome;
      }
      conn_->close();
      // A registration: the first answer counts, unless the master leads no run yet (a
      // standby, or one just restarted). A connection closed before any answer is no answer
      // (a master dying as it accepted): the dialling goes on. A resume: a refusal for good
      // (the master it followed goes on without it) ends it; any other failure sends it to
      // the next address.
      const bool not_leading = refused_ == wire::KickReason::kNotLeading;
      const bool unanswered =
          !refused_ && welcome.status().code() == StatusCode::kMasterUnreachable;
      if ((!attempt.check && !not_leading && !unanswered) ||
          welcome.status().code() == StatusCode::kKicked) {
        co_return welcome.status();
      }
      last = welcome.status();
      log::get("peer")->info("the master at {} did not take this peer: {}", where,
                             last.message());
    } else {
      last = sock.status();
    }
    if ((round + 1) % masters_.size() != 0) continue;  // the next address at once
    // 10 ms after the first round, doubling to 100 ms: a master restarted by a supervisor is
    // found within a few ms of listening.
    const auto pause = std::chrono::milliseconds(
        std::min<int64_t>(100, int64_t{10} << std::min<size_t>(round / masters_.size(), 4)));
    backoff.expires_after(pause);
    co_await (backoff.async_wait(use_nothrow) || cancel_.async_wait(use_nothrow));
  }
}

// Preambles, the hello (C2MRegister or C2MResume) and the master's answer on conn_, bounded.
net::awaitable<Result<wire::M2CWelcome>> MasterLink::exchange(const wire::ControlMessage& hello,
                                                              Clock::time_point bound,
                                                              std::string where) {
  using namespace asio::experimental::awaitable_operators;
  asio::steady_timer timer(ex_, bound);
  auto talk = [&]() -> net::awaitable<Result<wire::M2CWelcome>> {
    wire::Preamble pre;
    pre.kind = wire::ConnKind::kControl;
    QCCL_CO_RETURN_IF_ERROR(co_await net::send_preamble(*conn_, pre, secret_));
    auto hello_frame = wire::encode_frame(hello, 0);
    std::array<asio::const_buffer, 1> out{asio::buffer(hello_frame)};
    QCCL_CO_RETURN_IF_ERROR(co_await conn_->write_gather(out));
    std::array<uint8_t, wire::kPreambleAckSize> ack_bytes;
    QCCL_CO_RETURN_IF_ERROR(co_await conn_->read_exact(ack_bytes));
    auto ack = wire::decode_preamble_ack(ack_bytes);
    if (!ack.is_ok()) co_return ack.status();
    if (ack->status == StatusCode::kAuthFailed) {
      co_return make_status(ack->status, "authentication failed: the master requires a shared "
                                         "secret and this peer has none (auth_token)");
    }
    if (ack->status != StatusCode::kOk) {
      co_return make_status(ack->status, "the master refused the connection");
    }
    auto frame = co_await conn_->read_frame(wire::kMaxControlPayload);
    if (!frame.is_ok()) co_return frame.status();
    auto msg = wire::decode_control(frame->first.type, frame->second);
    if (!msg.is_ok()) co_return msg.status();
    if (auto* kicked = std::get_if<wire::M2CKicked>(&*msg)) {
      refused_ = kicked->reason;
      // kWrongRun, kNotLeading: that master cannot take this peer, another (or later) may.
      bool elsewhere = kicked->reason == wire::KickReason::kWrongRun ||
                       kicked->reason == wire::KickReason::kNotLeading;
      co_return make_status(elsewhere ? StatusCode::kMasterUnreachable : StatusCode::kKicked,
                            "the master refused this peer: {}", kicked->message);
    }
    if (!std::holds_alternative<wire::M2CWelcome>(*msg)) {
      co_return make_status(StatusCode::kMasterUnreachable, "unexpected first message from the master");
    }
    co_return std::get<wire::M2CWelcome>(*msg);
  };
  auto outcome = co_await (talk() || timer.async_wait(use_nothrow));
  if (outcome.index() == 1) {
    co_return make_status(StatusCode::kTimeout, "the master at {} did not answer in time", where);
  }
  auto welcome = std::get<0>(std::move(outcome));
  if (!welcome.is_ok() && welcome.status().code() == StatusCode::kPeerLost) {
    co_return Status(StatusCode::kMasterUnreachable, welcome.status().message());
  }
  co_return welcome;
}

std::string MasterLink::format_masters() const {
  std::string out;
  for (const auto& m : masters_) out += (out.empty() ? "" : ",") + format_host_port(m);
  return out;
}

void MasterLink::start() {
  last_heard_ = Clock::now();
  auto self = shared_from_this();
  asio::co_spawn(ex_, [self] { return self->read_loop(); }, asio::detached);
  asio::co_spawn(ex_, [self] { return self->heartbeat_loop(); }, asio::detached);
}

net::awaitable<void> MasterLink::read_loop() {
  auto self = shared_from_this();
  for (;;) {
    auto frame = co_await conn_->read_frame(wire::kMaxControlPayload);
    if (!frame.is_ok() && closed_) {
      conn_->close();  // after leave(): the master's EOF (or our own close())
      co_return;
    }
    if (!frame.is_ok()) {
      lost(make_status(StatusCode::kMasterUnreachable, "lost the connection to the master: {}",
                       frame.status().message()));
      co_return;
    }
    last_heard_ = Clock::now();
    auto msg = wire::decode_control(frame->first.type, frame->second);
    if (!msg.is_ok()) {
      log::get("peer")->error("malformed message from the master: {}; closing",
                              msg.status().message());
      lost(make_status(StatusCode::kMasterUnreachable, "malformed message from the master: {}",
                       msg.status().message()));
      co_return;
    }
    // After leave() only the master's EOF matters.
    if (closed_ || std::holds_alternative<wire::M2CHeartbeat>(*msg)) continue;
    on_message_(*msg, frame->first.epoch);
  }
}

net::awaitable<void> MasterLink::heartbeat_loop() {
  auto self = shared_from_this();
  asio::steady_timer timer(ex_);
  auto beat = wire::encode_frame(wire::C2MHeartbeat{}, 0);
  while (!closed_ && conn_->is_open()) {
    timer.expires_after(heartbeat_);
    co_await timer.async_wait(use_nothrow);
    if (closed_) co_return;
    if (conn_->bytes_available() > 0) last_heard_ = Clock::now();  // arrived, not yet read
    if (Clock::now() - last_heard_ > timeout_) {
      lost(make_status(StatusCode::kMasterUnreachable, "the master was silent for {} ms",
                       timeout_.count()));
      co_return;
    }
    conn_->enqueue(beat);
  }
}

void MasterLink::send(const wire::ControlMessage& m, Epoch epoch) {
  if (conn_) conn_->enqueue(wire::encode_frame(m, epoch));
}

void MasterLink::leave(Epoch epoch, std::function<void()> done) {
  if (!conn_ || closed_) {
    done();
    return;
  }
  send(wire::C2MLeave{}, epoch);
  closed_ = true;
  conn_->on_closed(std::move(done));
  // The master closes the connection once it has taken the leave, and read_loop closes ours
  // at that EOF: what another peer asks the master after this peer's qcclCommDestroy returned
  // finds it gone. A master that does not close within kLeaveBound is not waited for.
  auto bound = std::make_shared<asio::steady_timer>(ex_, kLeaveBound);
  conn_->on_closed([bound] { bound->cancel(); });
  bound->async_wait([conn = conn_, bound](const asio::error_code&) { conn->close(); });
}

void MasterLink::close() {
  closed_ = true;
  cancel_.cancel();
  if (conn_) conn_->close();
}

void MasterLink::lost(const Status& why) {
  if (closed_ || lost_reported_) return;
  lost_reported_ = true;
  conn_->close();
  on_lost_(why);
}

}  // namespace qccl::peer
