#include "state/state_fetch.hpp"

#include <array>

#include "common/address.hpp"
#include "common/logging.hpp"
#include "state/state_hash.hpp"
#include "wire/codec.hpp"

namespace qccl::state {

using net::use_nothrow;
using namespace asio::experimental::awaitable_operators;

// Requests in flight per connection: one being answered, one queued behind it at the donor,
// so a connection never idles for a round trip between pieces. With few pieces per
// connection, one each, so that the first requests do not claim everything and leave the
// last donors idle.
constexpr size_t kRequestsInFlight = 2;

StateFetch::StateFetch(asio::any_io_executor ex, FetchSettings settings,
                       std::vector<FetchTarget> targets, std::vector<FetchDonor> donors)
    : ex_(ex), settings_(settings), targets_(std::move(targets)), changed_(ex) {
  piece_hashes_.resize(targets_.size());
  for (size_t t = 0; t < targets_.size(); ++t) {
    size_t n = piece_count(targets_[t].bytes);
    piece_hashes_[t].resize(n);
    for (size_t i = 0; i < n; ++i) {
      queue_.push_back(pieces_.size());
      pieces_.push_back({t, static_cast<uint32_t>(i)});
    }
  }
  remaining_ = pieces_.size();
  for (auto& d : donors) donors_[d.id] = Donor{std::move(d), false, {}};
}

net::awaitable<Status> StateFetch::run() {
  auto self = shared_from_this();
  uint32_t lanes = std::max<uint32_t>(1, settings_.connections_per_donor);
  size_t connections = donors_.size() * lanes;
  in_flight_ = pieces_.size() >= kRequestsInFlight * 2 * connections ? kRequestsInFlight : 1;
  for (auto& [id, d] : donors_) {
    for (uint16_t lane = 0; lane < lanes; ++lane) {
      ++workers_;
      asio::co_spawn(ex_, worker(id, lane), asio::detached);
    }
  }
  while (remaining_ > 0 && !cancelled_ && workers_ > 0) co_await changed_.wait();
  // Stop every connection, then wait until no read into the targets is in flight.
  for (auto& [id, d] : donors_) {
    for (const auto& c : d.conns) c->close();
  }
  while (workers_ > 0) co_await changed_.wait();
  if (cancelled_) co_return *cancelled_;
  if (remaining_ > 0) {
    co_return make_status(StatusCode::kPeerLost,
                          "shared-state download lost every donor with {} of {} pieces missing "
                          "(last: {})",
                          remaining_, pieces_.size(), last_failure_);
  }
  co_return verify_targets();
}

Status StateFetch::verify_targets() const {
  for (size_t t = 0; t < targets_.size(); ++t) {
    uint64_t h = combine_piece_hashes(piece_hashes_[t], targets_[t].bytes);
    if (h != targets_[t].hash) {
      return make_status(StatusCode::kInternal,
                         "shared-state entry {}: downloaded content hashes to {:016x}, the "
                         "elected hash is {:016x}", targets_[t].entry, h, targets_[t].hash);
    }
  }
  return Status::ok();
}

void StateFetch::drop_donor(PeerId id) {
  auto it = donors_.find(id);
  if (it != donors_.end()) disable_donor(it->second);
}

void StateFetch::disable_donor(Donor& d) {
  d.dropped = true;
  for (const auto& c : d.conns) c->close();
}

void StateFetch::cancel(Status why) {
  if (!cancelled_) cancelled_ = std::move(why);
  for (auto& [id, d] : donors_) disable_donor(d);
  changed_.notify();
}

net::awaitable<Status> StateFetch::handshake(net::Connection& conn, uint16_t lane) {
  wire::Preamble pre;
  pre.kind = wire::ConnKind::kState;
  pre.peer_id = settings_.self;
  pre.lane = lane;
  pre.lane_count = static_cast<uint16_t>(settings_.connections_per_donor);
  QCCL_CO_RETURN_IF_ERROR(co_await net::send_preamble(conn, pre, settings_.secret));
  std::array<uint8_t, wire::kPreambleAckSize> ack_bytes;
  QCCL_CO_RETURN_IF_ERROR(co_await conn.read_exact(ack_bytes));
  auto ack = wire::decode_preamble_ack(ack_bytes);
  if (!ack.is_ok()) co_return ack.status();
  if (ack->status != StatusCode::kOk) {
    co_return make_status(StatusCode::kPeerLost, "the donor refused the state connection ({})",
                          status_code_name(ack->status));
  }
  co_return Status::ok();
}

net::awaitable<void> StateFetch::worker(PeerId donor_id, uint16_t lane) {
  auto self = shared_from_this();
  auto log = log::get("state");
  std::deque<size_t> outstanding;
  Donor& donor = donors_.at(donor_id);
  std::shared_ptr<net::Connection> conn;
  Status why = Status::ok();
  auto sock = co_await net::connect_tcp(ex_, donor.info.host, donor.info.port, settings_.timeout);
  if (!sock.is_ok()) {
    why = sock.status();
  } else if (donor.dropped || cancelled_ || remaining_ == 0) {
    sock->close();  // nothing left for this lane: `conn` stays empty and the loop is skipped
  } else {
    conn = std::make_shared<net::Connection>(std::move(sock).value());
    conn->set_liveness(settings_.heartbeat, settings_.timeout);
    donor.conns.push_back(conn);
    asio::steady_timer deadline(ex_, settings_.timeout);
    auto outcome = co_await (handshake(*conn, lane) || deadline.async_wait(use_nothrow));
    why = outcome.index() == 0 ? std::get<0>(outcome)
                               : make_status(StatusCode::kPeerLost, "handshake timed out");
  }
  while (why.is_ok() && conn && conn->is_open() && !donor.dropped && !cancelled_) {
    while (outstanding.size() < in_flight_ && !queue_.empty()) {
      size_t pid = queue_.front();
      queue_.pop_front();
      outstanding.push_back(pid);
      const Piece& p = pieces_[pid];
      const FetchTarget& t = targets_[p.target];
      wire::FrameHeader fh;
      fh.type = static_cast<uint16_t>(wire::MsgType::kP2PStateRequest);
      fh.payload_len = wire::kP2PStateRequestSize;
      auto fhb = wire::encode_frame_header(fh);
      auto qb = wire::encode_state_request({t.entry, p.index, t.hash});
      std::array<asio::const_buffer, 2> bufs{asio::buffer(fhb), asio::buffer(qb)};
      why = co_await conn->write_gather(bufs);
      if (!why.is_ok()) break;
    }
    if (!why.is_ok()) break;
    if (outstanding.empty()) {
      if (remaining_ == 0) break;
      co_await changed_.wait();  // another connection may give pieces back
      continue;
    }
    why = co_await receive_piece(*conn, donor, pieces_[outstanding.front()]);
    if (!why.is_ok()) break;
    outstanding.pop_front();
    if (remaining_ == 0) changed_.notify();
  }
  if (!why.is_ok() && !cancelled_ && !donor.dropped) {
    log->info("state download from peer {} (lane {}): {}", donor_id, lane, why.message());
    last_failure_ = fmt::format("donor {} at {}: {}", donor_id,
                                format_host_port({donor.info.host, donor.info.port}),
                                why.message());
  }
  // Unanswered pieces go back to the front of the queue for the other connections.
  for (auto it = outstanding.rbegin(); it != outstanding.rend(); ++it) queue_.push_front(*it);
  if (conn) conn->close();
  --workers_;
  changed_.notify();
}

net::awaitable<Status> StateFetch::receive_piece(net::Connection& conn, Donor& donor,
                                                 const Piece& want) {
  const FetchTarget& t = targets_[want.target];
  auto header = co_await conn.read_header(
      static_cast<uint32_t>(wire::kP2PStatePieceHeaderSize + kPieceBytes));
  if (!header.is_ok()) co_return header.status();
  std::array<uint8_t, wire::kP2PStatePieceHeaderSize> phb;
  if (header->type != static_cast<uint16_t>(wire::MsgType::kP2PStatePiece) ||
      header->payload_len < phb.size()) {
    log::get("state")->warn("malformed state frame from peer {} (type {}, {} bytes); dropping "
                            "the connection", donor.info.id, header->type, header->payload_len);
    co_return make_status(StatusCode::kPeerLost, "malformed state frame");
  }
  QCCL_CO_RETURN_IF_ERROR(co_await conn.read_exact(phb));
  auto ph = wire::decode_state_piece_header(phb);
  if (!ph.is_ok()) co_return ph.status();
  size_t len = piece_size(t.bytes, want.index);
  if (ph->entry != t.entry || ph->piece != want.index) {
    co_return make_status(StatusCode::kPeerLost, "donor answered entry {} piece {}, not {} {}",
                          ph->entry, ph->piece, t.entry, want.index);
  }
  if (ph->status != StatusCode::kOk) {
    // The donor does not hold the elected content: no connection to it is any use.
    disable_donor(donor);
    co_return make_status(StatusCode::kPeerLost, "donor does not serve entry {} ({})", t.entry,
                          status_code_name(ph->status));
  }
  if (header->payload_len != phb.size() + len) {
    co_return make_status(StatusCode::kPeerLost, "piece {} of entry {} has {} bytes, expected {}",
                          want.index, t.entry, header->payload_len - phb.size(), len);
  }
  uint8_t* dst = len == 0 ? nullptr : t.data + piece_offset(want.index);
  QCCL_CO_RETURN_IF_ERROR(co_await conn.read_exact(std::span<uint8_t>(dst, len)));
  uint64_t h = hash_piece(dst, len);
  if (h != ph->piece_hash) {
    log::get("state")->warn("piece {} of entry {} from peer {} fails its hash check; dropping "
                            "the connection and fetching it again", want.index, t.entry,
                            donor.info.id);
    co_return make_status(StatusCode::kPeerLost, "corrupt piece");
  }
  piece_hashes_[want.target][want.index] = h;
  --remaining_;
  rx_bytes_ += len;
  rx_by_donor_[donor.info.id] += len;
  co_return Status::ok();
}

}  // namespace qccl::state
