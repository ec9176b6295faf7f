#include "peer/data_links.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdlib>

#include "common/logging.hpp"

namespace qccl::peer {

using net::use_nothrow;

namespace {

std::optional<uint64_t> env_number(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v) return std::nullopt;
  char* end = nullptr;
  errno = 0;
  unsigned long long n = std::strtoull(v, &end, 10);
  if (errno != 0 || *end != '\0' || v[0] == '-') {
    log::get("peer")->warn("ignoring {}='{}': not a number", name, v);
    return std::nullopt;
  }
  return n;
}

}  // namespace

void apply_tuning_env(LinkSettings& settings) {
  if (auto ms = env_number("QCCL_LANE_STALL_MS")) settings.lane_stall = std::chrono::milliseconds(*ms);
  if (auto b = env_number("QCCL_TCP_NOTSENT_LOWAT")) {
    settings.notsent_lowat = static_cast<uint32_t>(std::min<uint64_t>(*b, 1u << 30));
  }
  if (auto b = env_number("QCCL_TCP_COALESCE")) settings.coalesce_writes = *b != 0;
}

DataLinks::DataLinks(asio::any_io_executor ex, FrameSink& sink, EpochHandler on_ready,
                     EpochHandler on_failed)
    : ex_(std::move(ex)),
      sink_(sink),
      on_ready_(std::move(on_ready)),
      on_failed_(std::move(on_failed)),
      work_(std::make_unique<net::Signal>(ex_)),
      readers_wake_(std::make_unique<net::Signal>(ex_)) {}

DataLinks::~DataLinks() { close_all(); }

Status DataLinks::listen(const ListenAddress& where) {
  asio::error_code ec;
  auto addr = asio::ip::make_address(where.host, ec);
  if (ec) return make_status(StatusCode::kInvalidArgument, "bad listen host '{}'", where.host);
  const bool any_v6 = addr.is_v6() && addr.to_v6().is_unspecified();
  std::string tried;
  for (uint32_t port = where.port_lo; port <= where.port_hi; ++port) {
    acceptor_.emplace(ex_);
    net::tcp::endpoint ep(addr, static_cast<uint16_t>(port));
    acceptor_->open(ep.protocol(), ec);
    if (ec && any_v6) {
      // No IPv6 on this host: the IPv4 wildcard serves every peer that can reach it.
      return listen(ListenAddress{"0.0.0.0", where.port_lo, where.port_hi});
    }
    if (!ec && any_v6) acceptor_->set_option(asio::ip::v6_only(false), ec);
    if (!ec) acceptor_->set_option(net::tcp::acceptor::reuse_address(true), ec);
    if (!ec) acceptor_->bind(ep, ec);
    if (!ec) acceptor_->listen(asio::socket_base::max_listen_connections, ec);
    if (!ec) {
      port_ = acceptor_->local_endpoint().port();
      asio::co_spawn(ex_, accept_loop(), asio::detached);
      return Status::ok();
    }
    tried = ec.message();
    acceptor_.reset();
    if (ec != asio::error::address_in_use) break;  // another port would fail alike
  }
  std::string where_text = format_host_port({where.host, where.port_lo});
  if (where.port_hi != where.port_lo) where_text += fmt::format("-{}", where.port_hi);
  return make_status(StatusCode::kInvalidArgument, "cannot listen for peers on {}: {}", where_text,
                     tried);
}

net::awaitable<void> DataLinks::accept_loop() {
  while (acceptor_ && acceptor_->is_open()) {
    auto [ec, socket] = co_await acceptor_->async_accept(use_nothrow);
    if (ec) {
      if (ec == asio::error::operation_aborted || !acceptor_ || !acceptor_->is_open()) co_return;
      continue;
    }
    auto conn = std::make_shared<net::Connection>(std::move(socket));
    conn->set_liveness(settings_.heartbeat, settings_.timeout);
    asio::co_spawn(ex_, accept_one(conn), asio::detached);
  }
}

net::awaitable<void> DataLinks::accept_one(std::shared_ptr<net::Connection> conn) {
  // Bounded: a silent dialer is cut by the park deadline below or by TCP liveness.
  asio::steady_timer deadline(ex_, settings_.timeout);
  deadline.async_wait([conn](const asio::error_code& ec) {
    if (!ec) conn->close();
  });
  auto pre = co_await net::receive_preamble(*conn, settings_.secret);
  log::get("peer")->debug("peer {}: inbound data connection from {}: {}", self_, conn->remote(),
                          pre.status().to_string());
  Status st = pre.status();
  if (pre.is_ok() && pre->kind == wire::ConnKind::kState && on_state_) {
    deadline.cancel();
    on_state_(std::move(conn), *pre);
    co_return;
  }
  if (pre.is_ok() && pre->kind == wire::ConnKind::kProbe && on_probe_) {
    deadline.cancel();
    on_probe_(std::move(conn), *pre);
    co_return;
  }
  if (!pre.is_ok() || pre->kind != wire::ConnKind::kData) {
    // A dialer that gave up (its epoch ended) is routine during churn; garbage and strangers
    // are not.
    auto level = st.is_ok() || st.code() == StatusCode::kAuthFailed ||
                         st.code() == StatusCode::kInvalidArgument
                     ? spdlog::level::warn
                     : spdlog::level::debug;
    log::get("peer")->log(level, "data connection from {} refused: {}", conn->remote(),
                          pre.is_ok() ? "not a data connection" : pre.status().message());
    deadline.cancel();
    conn->close();
    co_return;
  }
  if (pre->epoch < epoch_ || (pre->epoch == epoch_ && pre->peer_id != prev_)) {
    auto nack = wire::encode_preamble_ack({StatusCode::kPeerLost});
    std::array<asio::const_buffer, 1> b{asio::buffer(nack)};
    (void)co_await conn->write_gather(b);  // best effort: the connection is closed either way
    deadline.cancel();
    conn->close_after_flush();
    co_return;
  }
  deadline.cancel();
  if (pre->epoch > epoch_) {
    // We have not heard of this epoch yet: park the lane until set_ring() reaches it.
    auto timer = std::make_shared<asio::steady_timer>(ex_, settings_.timeout);
    parked_.push_back({conn, *pre, timer});
    timer->async_wait([this, conn](const asio::error_code& ec) {
      if (ec) return;  // adopted or dropped
      std::erase_if(parked_, [&](const Parked& p) { return p.conn == conn; });
      conn->close();
    });
    co_return;
  }
  adopt(conn, *pre);
}

void DataLinks::adopt(std::shared_ptr<net::Connection> conn, const wire::Preamble& p) {
  auto ack = wire::encode_preamble_ack({StatusCode::kOk});
  conn->enqueue(std::vector<uint8_t>(ack.begin(), ack.end()));
  in_lanes_wanted_ = std::max<uint32_t>(1, p.lane_count);
  in_lanes_.push_back(conn);
  if (faults_) conn->set_fault_policy(faults_);
  asio::co_spawn(ex_, read_lane(conn, epoch_), asio::detached);
  check_ready();
}

void DataLinks::set_fault_policy(std::shared_ptr<net::FaultPolicy> policy) {
  faults_ = std::move(policy);
  for (auto& lane : out_lanes_) lane->conn->set_fault_policy(faults_);
  for (auto& conn : in_lanes_) conn->set_fault_policy(faults_);
}

void DataLinks::set_ring(Epoch epoch, std::optional<Neighbour> next, PeerId prev, uint32_t lanes) {
  Status why = make_status(StatusCode::kPeerLost, "the group moved to epoch {}", epoch);
  abandon_queue(why);
  for (auto& l : out_lanes_) l->conn->close();
  for (auto& c : in_lanes_) c->close();
  out_lanes_.clear();
  in_lanes_.clear();
  work_->notify();  // old writers notice the epoch change and end
  readers_wake_->notify();
  epoch_ = epoch;
  prev_ = prev;
  next_ = next;
  expect_inbound_ = prev != kNoPeer;
  out_lanes_wanted_ = next ? lanes : 0;
  next_lane_ = static_cast<uint16_t>(out_lanes_wanted_);
  lanes_replaced_ = 0;
  out_acked_ = 0;
  in_lanes_wanted_ = 0;
  ready_ = false;
  failure_.reset();
  if (next) {
    for (uint16_t i = 0; i < lanes; ++i) {
      asio::co_spawn(ex_, dial(epoch, *next, i, static_cast<uint16_t>(lanes), false), asio::detached);
    }
    asio::co_spawn(ex_, stall_monitor(epoch), asio::detached);
  }
  // Parked lanes that announced this epoch are adopted; older ones are dropped.
  auto parked = std::move(parked_);
  parked_.clear();
  for (auto& p : parked) {
    if (p.preamble.epoch > epoch) {
      parked_.push_back(p);
      continue;
    }
    p.timer->cancel();
    if (p.preamble.epoch == epoch && p.preamble.peer_id == prev) {
      adopt(p.conn, p.preamble);
    } else {
      p.conn->close();
    }
  }
  check_ready();
}

void DataLinks::check_ready() {
  if (ready_ || failure_) return;
  bool out_ok = out_acked_ == out_lanes_wanted_;
  bool in_ok = !expect_inbound_ || (in_lanes_wanted_ > 0 && in_lanes_.size() >= in_lanes_wanted_);
  log::get("peer")->debug("peer {}: epoch {} links: out {}/{} in {}/{}", self_, epoch_, out_acked_,
                          out_lanes_wanted_, in_lanes_.size(), in_lanes_wanted_);
  if (out_ok && in_ok) {
    ready_ = true;
    on_ready_(epoch_, Status::ok());
  }
}

void DataLinks::fail(const Status& cause) {
  if (failure_) return;
  // Whatever broke a lane (reset, timeout, garbage from the neighbour), the ring is broken:
  // for the group's operations that is a lost peer, which callers retry.
  Status why(StatusCode::kPeerLost, cause.message());
  failure_ = why;
  log::get("peer")->info("data links of epoch {} failed: {}", epoch_, why.message());
  for (auto& l : out_lanes_) l->conn->close();
  for (auto& c : in_lanes_) c->close();
  work_->notify();
  readers_wake_->notify();
  abandon_queue(why);
  on_failed_(epoch_, why);
}

void DataLinks::close_all() {
  asio::error_code ec;
  if (acceptor_) acceptor_->close(ec);
  for (auto& l : out_lanes_) l->conn->close();
  for (auto& c : in_lanes_) c->close();
  for (auto& p : parked_) {
    p.timer->cancel();
    p.conn->close();
  }
  parked_.clear();
  failure_ = make_status(StatusCode::kAborted, "the communicator is closing");
  work_->notify();
  readers_wake_->notify();
  abandon_queue(*failure_);
}

}  // namespace qccl::peer
