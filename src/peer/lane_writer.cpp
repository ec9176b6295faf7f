#include <algorithm>

#include "common/logging.hpp"
#include "peer/data_links.hpp"

// DataLinks, outbound: dialling the pool to the next neighbour, the lanes' writers, stall
// detection, retirement with resend, and the send queue (data_links.hpp).

namespace qccl::peer {

using net::use_nothrow;

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
  conn->set_coalesce_writes(settings_.coalesce_writes);
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
  if (faults_) conn->set_fault_policy(faults_);
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
    if (f.deferred) f.owner->fill(f.index);
    f.deferred = false;
    lane->journal.push_back(f);
    std::array<asio::const_buffer, 2> bufs{asio::buffer(f.head), asio::buffer(f.data, f.bytes)};
    Status st = co_await conn->write_gather(bufs);
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

void DataLinks::send(FrameOwner* owner, Epoch epoch, const FrameId& id, const uint8_t* data,
                     size_t bytes, bool deferred, uint32_t index) {
  OutFrame f;
  f.head = encode_data_head(epoch, id, bytes);
  f.data = data;
  f.bytes = bytes;
  f.owner = owner;
  f.deferred = deferred;
  f.index = index;
  queue_.push_back(std::move(f));
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

}  // namespace qccl::peer
