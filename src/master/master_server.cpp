#include "master/master_server.hpp"

#include <map>
#include <mutex>
#include <random>

#include "common/address.hpp"
#include "common/logging.hpp"
#include "master/membership.hpp"
#include "master/peer_hosts.hpp"
#include "net/auth.hpp"
#include "net/connection.hpp"
#include "net/io_thread.hpp"
#include "wire/codec.hpp"

namespace qccl::master {

using net::awaitable;
using net::tcp;
using net::use_nothrow;

namespace {

// A run (or master) id no other master picks (64 random bits; never 0, which a peer sends
// before it has one).
uint64_t random_run_id() {
  std::random_device rd;
  uint64_t id = 0;
  while (id == 0) id = (uint64_t{rd()} << 32) ^ rd();
  return id;
}

}  // namespace

class MasterServer::Impl {
 public:
  explicit Impl(MasterOptions options)
      : options_(std::move(options)),
        membership_(MembershipConfig{std::chrono::milliseconds(options_.peer_timeout_ms),
                                     std::chrono::milliseconds(options_.vote_timeout_ms),
                                     options_.heartbeat_interval_ms,
                                     std::chrono::milliseconds(options_.probe_ms),
                                     std::chrono::milliseconds(options_.probe_max_age_ms),
                                     random_run_id(), random_run_id(), options_.standby,
                                     std::chrono::milliseconds(options_.resume_grace_ms)}),
        log_(log::get("master")) {}

  Status start() {
    std::lock_guard<std::mutex> lock(mu_);
    if (io_) return make_status(StatusCode::kInvalidUsage, "the master was already started");
    QCCL_ASSIGN_OR_RETURN(HostPort hp, parse_host_port(options_.listen_address));
    io_ = std::make_unique<net::IoThread>("qccl-master");
    auto& ctx = io_->context();
    Status result = io_->run_sync([&]() -> Status {
      asio::error_code ec;
      auto addr = asio::ip::make_address(hp.host, ec);
      if (ec) {
        return make_status(StatusCode::kInvalidArgument,
                           "cannot listen on {}: '{}' is not an IP address",
                           options_.listen_address, hp.host);
      }
      acceptor_.emplace(ctx);
      tcp::endpoint ep(addr, hp.port);
      acceptor_->open(ep.protocol(), ec);
      if (!ec) acceptor_->set_option(tcp::acceptor::reuse_address(true), ec);
      if (!ec) acceptor_->bind(ep, ec);
      if (!ec) acceptor_->listen(asio::socket_base::max_listen_connections, ec);
      if (ec) {
        acceptor_.reset();
        return make_status(StatusCode::kInvalidArgument, "cannot listen on {}: {}",
                           options_.listen_address, ec.message());
      }
      port_ = acceptor_->local_endpoint().port();
      tick_timer_.emplace(ctx);
      Outbox out;
      membership_.start(Clock::now(), out);
      apply(out);
      asio::co_spawn(ctx, accept_loop(), asio::detached);
      asio::co_spawn(ctx, heartbeat_loop(), asio::detached);
      return Status::ok();
    });
    if (!result.is_ok()) {
      io_->stop();
      io_->join();
      io_.reset();
      return result;
    }
    log_->info("listening on {}:{} (heartbeat {} ms, peer timeout {} ms, vote timeout {} ms; "
               "{}){}",
               hp.host, port_.load(), options_.heartbeat_interval_ms, options_.peer_timeout_ms,
               options_.vote_timeout_ms,
               !options_.auth_token ? "no shared secret: connections neither authenticated nor "
                                      "encrypted"
               : options_.encrypt   ? "connections authenticated and encrypted"
                                    : "connections authenticated, not encrypted",
               options_.standby ? "; a standby: waiting to take over a run" : "");
    return Status::ok();
  }

  uint16_t port() const { return port_; }

  void stop() {
    std::lock_guard<std::mutex> lock(mu_);
    if (!io_ || stopping_) return;
    stopping_ = true;
    io_->post([this] {
      asio::error_code ec;
      if (acceptor_) acceptor_->close(ec);
      for (auto& [id, conn] : sessions_) conn->close();
      sessions_.clear();
      if (tick_timer_) tick_timer_->cancel();
      io_->stop();
    });
  }

  void wait() {
    net::IoThread* io = nullptr;
    {
      std::lock_guard<std::mutex> lock(mu_);
      io = io_.get();
    }
    if (io) io->join();
  }

  ~Impl() {
    stop();
    wait();
  }

 private:
  awaitable<void> accept_loop() {
    while (acceptor_ && acceptor_->is_open()) {
      auto [ec, socket] = co_await acceptor_->async_accept(use_nothrow);
      if (ec) {
        if (ec == asio::error::operation_aborted) co_return;
        log_->warn("accept failed: {}", ec.message());
        continue;
      }
      auto conn = std::make_shared<net::Connection>(std::move(socket));
      // Heartbeats detect a silent peer; keep-alive also reaps half-open sockets.
      conn->set_liveness(std::chrono::milliseconds(options_.heartbeat_interval_ms),
                         std::chrono::milliseconds(options_.peer_timeout_ms));
      asio::co_spawn(io_->context(), session(conn), asio::detached);
    }
  }

  // One control connection: preamble, registration, then messages until it ends.
  awaitable<void> session(std::shared_ptr<net::Connection> conn) {
    PeerId id = co_await handshake(conn);
    if (id == kNoPeer) {
      conn->close();
      co_return;
    }
    std::string why;
    for (;;) {
      auto frame = co_await conn->read_frame(wire::kMaxControlPayload);
      if (!frame.is_ok()) {
        why = frame.status().message();
        break;
      }
      auto msg = wire::decode_control(frame->first.type, frame->second);
      if (!msg.is_ok()) {
        why = "malformed message: " + msg.status().message();
        log_->warn("peer {} ({}): {}; closing its connection", id, conn->remote(), why);
        break;
      }
      Outbox out;
      membership_.on_message(id, *msg, Clock::now(), out);
      apply(out);
      if (!membership_.is_known(id)) co_return;  // left or expelled; apply() closed it
    }
    conn->close();
    if (sessions_.erase(id) && !stopping_) {
      Outbox out;
      membership_.on_disconnect(id, why, Clock::now(), out);
      apply(out);
    }
  }

  // Returns the registered (or resumed) peer's id, or kNoPeer if the connection must be dropped.
  awaitable<PeerId> handshake(std::shared_ptr<net::Connection> conn) {
    using namespace asio::experimental::awaitable_operators;
    asio::steady_timer deadline(io_->context(),
                                std::chrono::milliseconds(options_.peer_timeout_ms));
    auto exchange = [&]() -> awaitable<Result<wire::ControlMessage>> {
      auto preamble = co_await net::receive_preamble(*conn, net::make_secret(options_.auth_token, options_.encrypt));
      if (!preamble.is_ok()) co_return preamble.status();
      if (preamble->kind != wire::ConnKind::kControl) {
        co_return make_status(StatusCode::kInvalidArgument,
                              "data connection sent to the master port");
      }
      auto ack = wire::encode_preamble_ack({StatusCode::kOk});
      std::array<asio::const_buffer, 1> bufs{asio::buffer(ack)};
      QCCL_CO_RETURN_IF_ERROR(co_await conn->write_gather(bufs));
      auto frame = co_await conn->read_frame(wire::kMaxControlPayload);
      if (!frame.is_ok()) co_return frame.status();
      auto msg = wire::decode_control(frame->first.type, frame->second);
      if (!msg.is_ok()) co_return msg.status();
      if (!std::holds_alternative<wire::C2MRegister>(*msg) &&
          !std::holds_alternative<wire::C2MResume>(*msg)) {
        co_return make_status(StatusCode::kInvalidArgument,
                              "first message is neither C2MRegister nor C2MResume");
      }
      co_return std::move(msg).value();
    };
    auto outcome = co_await (exchange() || deadline.async_wait(use_nothrow));
    if (outcome.index() == 1) {
      log_->warn("{}: no registration within {} ms; closing", conn->remote(),
                 options_.peer_timeout_ms);
      co_return kNoPeer;
    }
    auto& first = std::get<0>(outcome);
    if (!first.is_ok()) {
      log_->warn("{}: rejected during handshake: {}", conn->remote(), first.status().message());
      co_return kNoPeer;
    }
    Outbox out;
    PeerId id = kNoPeer;
    // A refusal: a few bytes into an empty socket buffer, so the write completes at once.
    auto refuse = [&](wire::KickReason reason, const std::string& why) -> awaitable<void> {
      auto kicked = wire::encode_frame(wire::M2CKicked{reason, why}, 0);
      std::array<asio::const_buffer, 1> bufs{asio::buffer(kicked)};
      (void)co_await conn->write_gather(bufs);
    };
    if (const auto* reg = std::get_if<wire::C2MRegister>(&*first)) {
      if (!membership_.accepts_registrations(Clock::now())) {
        co_await refuse(wire::KickReason::kNotLeading,
                        "this master leads no run yet (a standby, or just restarted): try again");
        co_return kNoPeer;
      }
      id = membership_.on_register(*reg, conn->remote_ip(), Clock::now(), out);
    } else {
      const auto& resume = std::get<wire::C2MResume>(*first);
      auto resumed = membership_.on_resume(resume, conn->remote_ip(), Clock::now(), out);
      if (const auto* refusal = std::get_if<Membership::Refusal>(&resumed)) {
        log_->warn("{}: resume of peer {} refused: {}", conn->remote(), resume.peer_id,
                   refusal->why);
        co_await refuse(refusal->reason, refusal->why);
        co_return kNoPeer;
      }
      id = std::get<PeerId>(resumed);
    }
    sessions_[id] = conn;
    apply(out);
    co_return id;
  }

  void apply(Outbox& out) {
    for (const auto& line : out.log) log_->info("{}", line);
    for (const auto& line : out.debug) log_->debug("{}", line);
    for (auto& s : out.sends) {
      auto it = sessions_.find(s.to);
      if (it == sessions_.end()) continue;
      localize_peer_hosts(s.message, it->second->local_ip());
      it->second->enqueue(wire::encode_frame(s.message, s.epoch));
    }
    for (PeerId id : out.disconnects) {
      auto it = sessions_.find(id);
      if (it == sessions_.end()) continue;
      it->second->close_after_flush();
      sessions_.erase(it);
    }
    schedule_tick();
  }

  void schedule_tick() {
    if (!tick_timer_) return;
    auto next = membership_.next_deadline();
    if (!next) {
      tick_timer_->cancel();
      return;
    }
    // +1 ms so the deadline has passed when the tick runs.
    tick_timer_->expires_at(*next + std::chrono::milliseconds(1));
    tick_timer_->async_wait([this](const asio::error_code& ec) {
      if (ec || stopping_) return;
      auto now = Clock::now();
      // A loop that ran late may not have read heartbeats that did arrive in time.
      for (auto& [id, conn] : sessions_) {
        if (conn->bytes_available() > 0) membership_.on_alive(id, now);
      }
      Outbox out;
      membership_.on_tick(now, out);
      apply(out);
    });
  }

  awaitable<void> heartbeat_loop() {
    asio::steady_timer timer(io_->context());
    auto frame = wire::encode_frame(wire::M2CHeartbeat{}, 0);
    while (!stopping_) {
      timer.expires_after(std::chrono::milliseconds(options_.heartbeat_interval_ms));
      auto [ec] = co_await timer.async_wait(use_nothrow);
      if (ec || stopping_) co_return;
      for (auto& [id, conn] : sessions_) conn->enqueue(frame);
    }
  }

  MasterOptions options_;
  Membership membership_;
  std::shared_ptr<spdlog::logger> log_;
  std::mutex mu_;
  std::unique_ptr<net::IoThread> io_;
  std::atomic<bool> stopping_{false};
  std::atomic<uint16_t> port_{0};
  std::optional<tcp::acceptor> acceptor_;
  std::optional<asio::steady_timer> tick_timer_;
  std::map<PeerId, std::shared_ptr<net::Connection>> sessions_;
};

MasterServer::MasterServer(MasterOptions options)
    : impl_(std::make_unique<Impl>(std::move(options))) {}
MasterServer::~MasterServer() = default;
Status MasterServer::start() { return impl_->start(); }
uint16_t MasterServer::port() const { return impl_->port(); }
void MasterServer::stop() { impl_->stop(); }
void MasterServer::wait() { impl_->wait(); }

}  // namespace qccl::master
