#include "state/state_server.hpp"

#include <array>

#include "common/logging.hpp"
#include "state/state_hash.hpp"
#include "wire/codec.hpp"

namespace qccl::state {

StateServer::StateServer(asio::any_io_executor ex) : ex_(std::move(ex)), log_(log::get("state")) {}

void StateServer::serve(std::vector<ServedEntry> entries) {
  entries_ = std::move(entries);
  serving_ = true;
  bytes_sent_ = 0;
  pieces_sent_ = 0;
}

void StateServer::stop(std::function<void()> drained) {
  serving_ = false;
  drained_ = std::move(drained);
  for (const auto& c : std::set(conns_)) c->close();
  check_drained();
}

void StateServer::check_drained() {
  if (serving_ || writes_in_flight_ != 0 || !drained_) return;
  entries_.clear();
  auto cb = std::move(drained_);
  drained_ = nullptr;
  asio::post(ex_, std::move(cb));
}

void StateServer::adopt(std::shared_ptr<net::Connection> conn, const wire::Preamble& preamble) {
  if (!serving_) {
    log_->debug("state connection from peer {} refused: no sync in progress",
                             preamble.peer_id);
    auto nack = wire::encode_preamble_ack({StatusCode::kInvalidUsage});
    conn->enqueue(std::vector<uint8_t>(nack.begin(), nack.end()));
    conn->close_after_flush();
    return;
  }
  conns_.insert(conn);
  asio::co_spawn(ex_, serve_connection(std::move(conn), preamble.peer_id), asio::detached);
}

net::awaitable<void> StateServer::serve_connection(std::shared_ptr<net::Connection> conn,
                                                   PeerId receiver) {
  auto self = shared_from_this();
  auto ack = wire::encode_preamble_ack({StatusCode::kOk});
  std::array<asio::const_buffer, 1> ack_buf{asio::buffer(ack)};
  if (!(co_await conn->write_gather(ack_buf)).is_ok()) conn->close();
  while (conn->is_open() && serving_) {
    auto header = co_await conn->read_header(wire::kP2PStateRequestSize);
    if (!header.is_ok()) break;
    if (header->type != static_cast<uint16_t>(wire::MsgType::kP2PStateRequest) ||
        header->payload_len != wire::kP2PStateRequestSize) {
      log_->warn("malformed state request from {} (type {}, {} bytes); dropping "
                              "the connection", conn->remote(), header->type, header->payload_len);
      break;
    }
    std::array<uint8_t, wire::kP2PStateRequestSize> body;
    if (!(co_await conn->read_exact(body)).is_ok()) break;
    if (!serving_) break;
    if (!(co_await answer(*conn, wire::decode_state_request(body), receiver)).is_ok()) break;
  }
  conn->close();
  conns_.erase(conn);
}

net::awaitable<Status> StateServer::answer(net::Connection& conn, const wire::P2PStateRequest& q,
                                           PeerId receiver) {
  wire::P2PStatePieceHeader ph{q.entry, q.piece, 0, StatusCode::kOk};
  const ServedEntry* e = q.entry < entries_.size() ? &entries_[q.entry] : nullptr;
  const uint8_t* data = nullptr;
  size_t len = 0;
  if (e == nullptr || !e->servable || e->hash != q.entry_hash ||
      q.piece >= e->piece_hashes.size()) {
    // Not the elected content (or a bad index): say so rather than send wrong bytes.
    ph.status = StatusCode::kInvalidArgument;
  } else {
    ph.piece_hash = e->piece_hashes[q.piece];
    len = piece_size(e->bytes, q.piece);
    data = len == 0 ? nullptr : e->data + piece_offset(q.piece);
  }
  wire::FrameHeader fh;
  fh.type = static_cast<uint16_t>(wire::MsgType::kP2PStatePiece);
  fh.payload_len = static_cast<uint32_t>(wire::kP2PStatePieceHeaderSize + len);
  auto fhb = wire::encode_frame_header(fh);
  auto phb = wire::encode_state_piece_header(ph);
  std::array<asio::const_buffer, 3> bufs{asio::buffer(fhb), asio::buffer(phb),
                                         asio::buffer(data, len)};
  ++writes_in_flight_;
  Status st = co_await conn.write_gather(bufs);
  --writes_in_flight_;
  if (st.is_ok() && ph.status == StatusCode::kOk) {
    bytes_sent_ += len;
    ++pieces_sent_;
    log_->debug("served piece {} of entry {} ({} bytes) to peer {}", q.piece,
                             q.entry, len, receiver);
  }
  check_drained();
  co_return st;
}

}  // namespace qccl::state
