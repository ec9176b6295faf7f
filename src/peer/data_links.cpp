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
}

DataLinks::DataLinks(asio::any_io_executor ex, InboundHandler on_inbound, EpochHandler on_ready,
                     EpochHandler on_failed)
    : ex_(std::move(ex)),
      on_inbound_(std::move(on_inbound)),
      on_ready_(std::move(on_ready)),
      on_failed_(std::move(on_failed)),
      work_(std::make_unique<net::Signal>(ex_)) {}

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
  on_inbound_(conn, epoch_);
  check_ready();
}

void DataLinks::set_ring(Epoch epoch, std::optional<Neighbour> next, PeerId prev, uint32_t lanes) {
  Status why = make_status(StatusCode::kPeerLost, "the group moved to epoch {}", epoch);
  abandon_queue(why);
  for (auto& l : out_lanes_) l->conn->close();
  for (auto& c : in_lanes_) c->close();
  out_lanes_.clear();
  in_lanes_.clear();
  work_->notify();  // old writers notice the epoch change and end
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

net::awaitable<void> DataLinks::dial(Epoch epoch, Neighbour next, uint16_t lane, uint16_t lanes,
                                     bool replacement) {
  using namespace asio::experimental::awaitable_operators;
  auto sock = co_await net::connect_tcp(ex_, next.host, next.port, settings_.timeout);
  log::get("peer")->debug("peer {}: lane {} to peer {} ({}:{}) epoch {}: {}", self_, lane, next.id,
                          next.host, next.port, epoch, sock.is_ok() ? "connected" : sock.status().message());
  if (epoch != epoch_ || failure_) co_return;
  // A replacement that cannot be set up is only a lane fewer; the ring's own lanes must all
  // come up.
  auto give_up = [&](const Status& st) {
    if (replacement) {
      log::get("peer")->info("peer {}: replacement lane {} to peer {}: {}", self_, lane, next.id,
                             st.message());
    } else {
      fail(st);
    }
  };
  if (!sock.is_ok()) {
    give_up(make_status(StatusCode::kPeerLost, "cannot connect to peer {} at {}: {}", next.id,
                        format_host_port({next.host, next.port}), sock.status().message()));
    co_return;
  }
  auto conn = std::make_shared<net::Connection>(std::move(sock).value());
  conn->set_liveness(settings_.heartbeat, settings_.timeout);
  if (settings_.notsent_lowat > 0) conn->set_notsent_lowat(settings_.notsent_lowat);
  auto out = std::make_shared<OutLane>();
  out->conn = conn;
  out->index = lane;
  out_lanes_.push_back(out);
  wire::Preamble pre;
  pre.kind = wire::ConnKind::kData;
  pre.peer_id = self_;
  pre.epoch = epoch;
  pre.lane = lane;
  pre.lane_count = lanes;
  asio::steady_timer deadline(ex_, settings_.timeout);
  auto handshake = [&]() -> net::awaitable<Status> {
    QCCL_CO_RETURN_IF_ERROR(co_await net::send_preamble(*conn, pre, settings_.secret));
    std::array<uint8_t, wire::kPreambleAckSize> ack_bytes;
    QCCL_CO_RETURN_IF_ERROR(co_await conn->read_exact(ack_bytes));
    auto ack = wire::decode_preamble_ack(ack_bytes);
    if (!ack.is_ok()) co_return ack.status();
    if (ack->status != StatusCode::kOk) {
      co_return make_status(StatusCode::kPeerLost, "peer {} refused the connection (epoch {})",
                            next.id, epoch);
    }
    co_return Status::ok();
  };
  auto outcome = co_await (handshake() || deadline.async_wait(use_nothrow));
  if (epoch != epoch_ || failure_) co_return;
  Status st = outcome.index() == 0
                  ? std::get<0>(outcome)
                  : make_status(StatusCode::kPeerLost, "peer {} did not accept epoch {} in {} ms",
                                next.id, epoch, settings_.timeout.count());
  if (!st.is_ok()) {
    out->retired = true;
    conn->close();
    give_up(st);
    co_return;
  }
  out->moved = std::chrono::steady_clock::now();
  if (!replacement) ++out_acked_;
  check_ready();
  work_->notify();  // a replacement may have frames waiting
  co_await writer(epoch, out);
}

net::awaitable<void> DataLinks::writer(Epoch epoch, std::shared_ptr<OutLane> lane) {
  auto& conn = lane->conn;
  while (epoch == epoch_ && !failure_ && !lane->retired) {
    if (!conn->is_open()) {
      retire(*lane, make_status(StatusCode::kPeerLost, "data lane to {} closed", conn->remote()),
             false);
      co_return;
    }
    if (queue_.empty()) {
      co_await work_->wait();
      continue;
    }
    OutFrame f = queue_.front();
    queue_.pop_front();
    if (!queue_.empty()) work_->notify();  // let another idle lane take the next one
    if (f.deferred) f.owner->fill(f);
    f.deferred = false;
    lane->journal.push_back(f);
    std::array<asio::const_buffer, 2> bufs{asio::buffer(f.header), asio::buffer(f.data, f.bytes)};
    Status st = co_await conn->write_gather(bufs);
    bytes_sent_ += f.bytes;
    if (faults_.close_after_bytes != 0 && bytes_sent_ >= faults_.close_after_bytes) {
      faults_.close_after_bytes = 0;
      log::get("peer")->warn("peer {}: fault injection: closing a data lane after {} bytes", self_,
                             bytes_sent_);
      conn->close();
    }
    // Retire before telling the owner: its frame (journaled) is copied while it is alive.
    if (!st.is_ok() && epoch == epoch_ && !failure_) retire(*lane, st, false);
    if (!f.copy) f.owner->on_sent(st, f.bytes);
    if (!st.is_ok()) co_return;
  }
}

std::chrono::milliseconds DataLinks::lane_stall() const {
  if (settings_.lane_stall.count() > 0) return settings_.lane_stall;
  return std::clamp(settings_.timeout / 5, std::chrono::milliseconds(500),
                    std::chrono::milliseconds(2000));
}

net::awaitable<void> DataLinks::stall_monitor(Epoch epoch) {
  using Clock = std::chrono::steady_clock;
  const auto stall = lane_stall();
  asio::steady_timer tick(ex_);
  while (epoch == epoch_ && !failure_) {
    tick.expires_after(std::max(stall / 8, std::chrono::milliseconds(20)));
    co_await tick.async_wait(use_nothrow);
    if (epoch != epoch_ || failure_) co_return;
    auto now = Clock::now();
    bool healthy = false;
    std::vector<std::shared_ptr<OutLane>> stalled;
    for (auto& lane : out_lanes_) {
      if (lane->retired || !lane->conn->is_open()) continue;
      auto progress = lane->conn->tcp_progress();
      if (progress.outstanding == 0 || progress.acked > lane->acked) {
        lane->acked = progress.acked;
        lane->moved = now;
      }
      if (now - lane->moved >= stall) {
        stalled.push_back(lane);
      } else {
        healthy = true;
      }
    }
    // All stalled is the neighbour not reading, or the path down: TCP liveness, the master and
    // the stall watchdog deal with that. Replacements are limited to one pool per epoch.
    if (!healthy) continue;
    for (auto& lane : stalled) {
      bool replace = lanes_replaced_ < out_lanes_wanted_;
      retire(*lane,
             make_status(StatusCode::kPeerLost, "data lane {} to {} stalled for {} ms", lane->index,
                         lane->conn->remote(),
                         std::chrono::duration_cast<std::chrono::milliseconds>(now - lane->moved).count()),
             replace);
      if (epoch != epoch_ || failure_) co_return;
    }
  }
}

void DataLinks::retire(OutLane& lane, const Status& why, bool replace) {
  if (lane.retired) return;
  lane.retired = true;
  lane.conn->close();  // a write in progress ends with an error; its frame is journaled
  // Copies, taken now: the receiver may still lack any of these frames, and the memory they
  // point to may change once it has them (all-gather values land where partial sums were).
  uint64_t bytes = 0;
  for (auto it = lane.journal.rbegin(); it != lane.journal.rend(); ++it) {
    OutFrame copy = *it;
    auto data = std::make_shared<std::vector<uint8_t>>(it->data, it->data + it->bytes);
    copy.data = data->data();
    copy.copy = std::move(data);
    bytes += copy.bytes;
    queue_.push_front(std::move(copy));
  }
  size_t frames = lane.journal.size();
  lane.journal.clear();
  size_t live = static_cast<size_t>(std::count_if(
      out_lanes_.begin(), out_lanes_.end(), [](const auto& l) { return !l->retired; }));
  log::get("peer")->info("peer {}: {}; resending its {} frames ({} bytes) on the {} other lane(s)",
                         self_, why.message(), frames, bytes, live);
  std::erase_if(out_lanes_, [&](const auto& l) { return l.get() == &lane; });
  if (live == 0) {
    fail(why);
    return;
  }
  if (replace && next_) {
    ++lanes_replaced_;
    asio::co_spawn(ex_,
                   dial(epoch_, *next_, next_lane_++, static_cast<uint16_t>(out_lanes_wanted_), true),
                   asio::detached);
  }
  work_->notify();
}

bool DataLinks::inbound_lost(const std::shared_ptr<net::Connection>& conn, const Status& why) {
  conn->close();
  std::erase(in_lanes_, conn);
  if (failure_) return false;
  // Before the epoch is ready a lost lane would leave the pool short for good.
  bool others = ready_ && std::any_of(in_lanes_.begin(), in_lanes_.end(),
                                      [](const auto& c) { return c->is_open(); });
  if (!others) {
    fail(why);
    return false;
  }
  log::get("peer")->info("peer {}: inbound data lane from {} lost ({}); {} lane(s) remain", self_,
                         conn->remote(), why.message(), in_lanes_.size());
  return true;
}

bool DataLinks::should_stall_reads(uint64_t bytes_read_total) {
  if (faults_.stall_reads_after_bytes == 0 || bytes_read_total < faults_.stall_reads_after_bytes) {
    return false;
  }
  faults_.stall_reads_after_bytes = 0;
  log::get("peer")->warn("peer {}: fault injection: inbound lanes stop reading after {} bytes",
                         self_, bytes_read_total);
  return true;
}

bool DataLinks::should_stall_lane(uint64_t bytes_read_total) {
  if (faults_.stall_lane_after_bytes == 0 || bytes_read_total < faults_.stall_lane_after_bytes) {
    return false;
  }
  faults_.stall_lane_after_bytes = 0;
  log::get("peer")->warn("peer {}: fault injection: one inbound lane stops reading mid-frame after "
                         "{} bytes", self_, bytes_read_total);
  return true;
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

void DataLinks::enqueue(OutFrame frame) {
  queue_.push_back(frame);
  work_->notify();
}

size_t DataLinks::cancel(const FrameOwner* owner) {
  size_t own = static_cast<size_t>(std::count_if(
      queue_.begin(), queue_.end(), [&](const OutFrame& f) { return f.owner == owner && !f.copy; }));
  forget(owner);
  return own;
}

void DataLinks::forget(const FrameOwner* owner) {
  std::erase_if(queue_, [&](const OutFrame& f) { return f.owner == owner; });
  for (auto& lane : out_lanes_) {
    std::erase_if(lane->journal, [&](const OutFrame& f) { return f.owner == owner; });
  }
}

void DataLinks::abandon_queue(const Status& why) {
  auto queue = std::move(queue_);
  queue_.clear();
  for (auto& f : queue) {
    if (!f.copy) f.owner->on_sent(why, 0);
  }
  for (auto& lane : out_lanes_) lane->journal.clear();
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
  abandon_queue(*failure_);
}

}  // namespace qccl::peer
