// DataLinks, inbound: one reader per adopted lane, which decodes each frame's head, asks the
// sink where the payload goes and reads it there (data_links.hpp, frames.hpp).

#include <algorithm>

#include "common/logging.hpp"
#include "peer/data_links.hpp"

namespace qccl::peer {

net::awaitable<void> DataLinks::read_lane(std::shared_ptr<net::Connection> conn, Epoch epoch) {
  InLane lane{conn, ++last_lane_id_, {}, false};
  readers_[lane.id] = conn;
  Status st;
  while (conn->is_open() && epoch == epoch_ && !failure_) {
    st = co_await read_frame(lane, epoch);
    if (!st.is_ok()) break;
  }
  readers_.erase(lane.id);
  if (st.is_ok() || epoch != epoch_ || failure_) co_return;
  // A lane that broke is resent on the others by its sender; garbage breaks the ring.
  if (lane.io_error) {
    inbound_lost(conn, st);
  } else {
    fail(st);
  }
}

net::awaitable<Status> DataLinks::lane_read(InLane& lane, std::span<uint8_t> dst) {
  Status st = co_await lane.conn->read_exact(dst);
  if (!st.is_ok()) lane.io_error = true;
  co_return st;
}

net::awaitable<Status> DataLinks::lane_skip(InLane& lane, size_t bytes) {
  Status st = co_await lane.conn->skip(bytes);
  if (!st.is_ok()) lane.io_error = true;
  co_return st;
}

net::awaitable<Status> DataLinks::read_frame(InLane& lane, Epoch epoch) {
  net::Connection& conn = *lane.conn;
  // Frame header and data header are contiguous: one read for both.
  DataHead head;
  QCCL_CO_RETURN_IF_ERROR(co_await lane_read(lane, head));
  auto decoded = decode_data_head(head);
  if (!decoded.is_ok() || decoded->epoch != epoch) {
    Status why = decoded.is_ok() ? make_status(StatusCode::kPeerLost, "epoch {}, not {}",
                                               decoded->epoch, epoch)
                                 : decoded.status();
    log::get("peer")->warn("malformed data frame from {} ({}); dropping the connection",
                           conn.remote(), why.message());
    co_return make_status(StatusCode::kPeerLost, "malformed data frame from {}", conn.remote());
  }
  const FrameId& id = decoded->id;
  const size_t body = decoded->payload;
  Placement where;
  for (;;) {
    if (epoch != epoch_ || failure_ || !conn.is_open()) {
      co_return make_status(StatusCode::kPeerLost, "epoch {} ended", epoch);
    }
    where = sink_.place(epoch, id, body, lane.id);
    if (where.kind != Placement::Kind::kWait) break;
    // Backpressure: the op has not begun here and the early-frame budget is used up. Bounded
    // like any straggler: the call comes, or the master expels whoever lags and the epoch ends.
    co_await readers_wake_->wait();
  }
  auto& staging = lane.staging;
  if (staging.size() < std::max(where.staging, where.bytes)) {
    staging.resize(std::max(where.staging, where.bytes));
  }
  switch (where.kind) {
    case Placement::Kind::kSkip:
      co_return co_await lane_skip(lane, body);
    case Placement::Kind::kBad:
      log::get("peer")->warn("bad data frame from {}: {}", conn.remote(), where.error.message());
      co_return where.error;
    case Placement::Kind::kKeep: {
      std::vector<uint8_t> payload(body);
      QCCL_CO_RETURN_IF_ERROR(co_await lane_read(lane, payload));
      if (epoch != epoch_) co_return Status::ok();
      co_return sink_.keep(epoch, id, std::move(payload));
    }
    case Placement::Kind::kReadCopy: {
      // Into staging, not the op's memory: the first copy's read may still write there.
      QCCL_CO_RETURN_IF_ERROR(
          co_await lane_read(lane, std::span<uint8_t>(staging.data(), where.bytes)));
      if (epoch == epoch_) sink_.copy_landed(epoch, id, lane.id, where.claimant, staging.data());
      co_return Status::ok();
    }
    case Placement::Kind::kRead: {
      uint8_t* dst = where.dst != nullptr ? where.dst : staging.data();
      Status st = co_await lane_read(lane, std::span<uint8_t>(dst, where.bytes));
      Status sunk = sink_.landed(epoch, id, body, lane.id, st, staging.data());
      co_return st.is_ok() ? sunk : st;
    }
    case Placement::Kind::kWait:
      break;
  }
  co_return Status::ok();
}

void DataLinks::stop_inbound_lane(uint32_t lane) {
  auto reader = readers_.find(lane);
  if (reader == readers_.end()) return;
  if (auto conn = reader->second.lock()) conn->close();
}

void DataLinks::inbound_lost(const std::shared_ptr<net::Connection>& conn, const Status& why) {
  conn->close();
  std::erase(in_lanes_, conn);
  if (failure_) return;
  // Before the epoch is ready a lost lane would leave the pool short for good.
  bool others = ready_ && std::any_of(in_lanes_.begin(), in_lanes_.end(),
                                      [](const auto& c) { return c->is_open(); });
  if (!others) {
    fail(why);
    return;
  }
  log::get("peer")->info("peer {}: inbound data lane from {} lost ({}); {} lane(s) remain", self_,
                         conn->remote(), why.message(), in_lanes_.size());
}

}  // namespace qccl::peer
