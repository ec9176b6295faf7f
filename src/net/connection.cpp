#include "net/connection.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>

#include <array>
#include <cstring>

#include <asio/experimental/awaitable_operators.hpp>

#include "common/address.hpp"
#include "common/logging.hpp"

namespace qccl::net {

namespace {

// An IPv4 peer reaching a dual-stack listener shows as ::ffff:a.b.c.d: name it as IPv4, which
// others can dial whether or not they have IPv6.
asio::ip::address unmapped(asio::ip::address addr) {
  if (addr.is_v6() && addr.to_v6().is_v4_mapped()) {
    return asio::ip::make_address_v4(asio::ip::v4_mapped, addr.to_v6());
  }
  return addr;
}

}  // namespace

Connection::Connection(tcp::socket socket)
    : socket_(std::move(socket)), wake_writer_(socket_.get_executor()) {
  asio::error_code ec;
  socket_.set_option(tcp::no_delay(true), ec);
  auto local = socket_.local_endpoint(ec);
  if (!ec) local_ip_ = unmapped(local.address()).to_string();
  auto ep = socket_.remote_endpoint(ec);
  if (!ec) {
    ep.address(unmapped(ep.address()));
    remote_ip_ = ep.address().to_string();
    remote_ = ep.address().is_v6() ? fmt::format("[{}]:{}", remote_ip_, ep.port())
                                   : fmt::format("{}:{}", remote_ip_, ep.port());
  } else {
    remote_ = "(unknown)";
  }
}

Connection::~Connection() { close(); }

void Connection::set_liveness(std::chrono::milliseconds interval,
                              std::chrono::milliseconds timeout) {
  asio::error_code ec;
  socket_.set_option(asio::socket_base::keep_alive(true), ec);
  int fd = socket_.native_handle();
  int idle = std::max<int>(1, static_cast<int>(interval.count() / 1000));
  int count = std::max<int>(1, static_cast<int>(timeout.count() / std::max<int64_t>(1000, interval.count())));
  unsigned user_timeout = static_cast<unsigned>(timeout.count());
  // Best effort: a failure leaves the link with TCP's defaults, which are only slower.
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &idle, sizeof(idle));
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof(count));
  ::setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout, sizeof(user_timeout));
}

void Connection::set_notsent_lowat(uint32_t bytes) {
  // Best effort: without it the kernel buffers more, which only makes striping coarser.
  ::setsockopt(socket_.native_handle(), IPPROTO_TCP, TCP_NOTSENT_LOWAT, &bytes, sizeof(bytes));
}

TcpProgress Connection::tcp_progress() {
  if (!open_) return {};
  return read_tcp_progress(socket_.native_handle());
}

void Connection::enable_records(std::unique_ptr<RecordSealer> sealer,
                                std::unique_ptr<RecordOpener> opener) {
  sealer_ = std::move(sealer);
  opener_ = std::move(opener);
  rx_plain_.clear();
  rx_pos_ = 0;
}

awaitable<Status> Connection::read_exact(std::span<uint8_t> dst) {
  if (faults_) {
    ReadFault fault = faults_->before_read(dst.size());
    if (fault.hang) co_return co_await read_faulty(dst, fault);
  }
  if (opener_) co_return co_await read_records(dst);
  auto [ec, n] = co_await asio::async_read(socket_, asio::buffer(dst.data(), dst.size()),
                                           use_nothrow);
  bytes_read_ += n;
  if (ec) co_return io_status(StatusCode::kPeerLost, fmt::format("read from {}", remote_), ec);
  co_return Status::ok();
}

awaitable<Status> Connection::read_faulty(std::span<uint8_t> dst, ReadFault fault) {
  if (fault.close_window) {
    asio::error_code ec;
    socket_.set_option(asio::socket_base::receive_buffer_size(4096), ec);
  }
  // Only what has arrived already: with the window closed, waiting for more would trickle.
  size_t first = std::min({fault.bytes_first, dst.size(), bytes_available()});
  auto [ec, n] = co_await asio::async_read(socket_, asio::buffer(dst.data(), first), use_nothrow);
  bytes_read_ += n;
  if (ec) co_return io_status(StatusCode::kPeerLost, fmt::format("read from {}", remote_), ec);
  // Shared: the callback may outlive this frame when the loop is torn down mid-hang.
  auto closed = std::make_shared<Signal>(socket_.get_executor());
  on_closed([closed] { closed->notify(); });
  while (open_) co_await closed->wait();
  co_return make_status(StatusCode::kPeerLost, "injected stall of the connection from {}", remote_);
}

awaitable<Result<size_t>> Connection::read_some(std::span<uint8_t> dst) {
  if (opener_ && !dst.empty()) {
    if (rx_pos_ == rx_plain_.size()) {
      auto direct = co_await read_record(dst);
      if (!direct.is_ok()) co_return rx_eof_ ? Result<size_t>(size_t{0}) : direct;
      if (*direct > 0) co_return *direct;
    }
    co_return take_plain(dst);
  }
  auto [ec, n] = co_await socket_.async_read_some(asio::buffer(dst.data(), dst.size()),
                                                  use_nothrow);
  bytes_read_ += n;
  if (ec == asio::error::eof) co_return size_t{0};
  if (ec) co_return io_status(StatusCode::kPeerLost, fmt::format("read from {}", remote_), ec);
  co_return n;
}

// ---- records (encryption on)

size_t Connection::take_plain(std::span<uint8_t> dst) {
  size_t n = std::min(dst.size(), rx_plain_.size() - rx_pos_);
  std::memcpy(dst.data(), rx_plain_.data() + rx_pos_, n);
  rx_pos_ += n;
  return n;
}

awaitable<Status> Connection::read_records(std::span<uint8_t> dst) {
  size_t done = 0;
  while (done < dst.size()) {
    if (rx_pos_ < rx_plain_.size()) {
      done += take_plain(dst.subspan(done));
      continue;
    }
    auto direct = co_await read_record(dst.subspan(done));
    if (!direct.is_ok()) co_return direct.status();
    done += *direct;
  }
  co_return Status::ok();
}

// Reads and opens the next record: straight into `direct` when its payload fits there
// (returns the payload's size), else into rx_plain_ (returns 0). Large reads thus decrypt in
// place in the caller's memory; only a record that straddles two reads is copied.
awaitable<Result<size_t>> Connection::read_record(std::span<uint8_t> direct) {
  std::array<uint8_t, kRecordHeaderSize> header;
  auto [ec, n] = co_await asio::async_read(socket_, asio::buffer(header), use_nothrow);
  bytes_read_ += n;
  rx_eof_ = ec == asio::error::eof && n == 0;
  if (ec) co_return io_status(StatusCode::kPeerLost, fmt::format("read from {}", remote_), ec);
  auto len = RecordOpener::payload_length(header);
  if (!len.is_ok()) co_return record_failed(len.status());
  const bool fits = *len <= direct.size();
  if (!fits) {
    rx_plain_.resize(*len);
    rx_pos_ = 0;
  }
  std::span<uint8_t> into = fits ? direct.first(*len) : std::span<uint8_t>(rx_plain_);
  std::array<uint8_t, kTagSize> tag;
  std::array<asio::mutable_buffer, 2> body{asio::buffer(into.data(), into.size()),
                                           asio::buffer(tag)};
  auto [ec2, n2] = co_await asio::async_read(socket_, body, use_nothrow);
  bytes_read_ += n2;
  Status st = ec2 ? io_status(StatusCode::kPeerLost, fmt::format("read from {}", remote_), ec2)
                  : opener_->open(header, into, tag);
  if (!st.is_ok()) {
    rx_plain_.clear();
    rx_pos_ = 0;
    co_return ec2 ? st : record_failed(st);
  }
  co_return fits ? *len : size_t{0};
}

// A record that is not what the other end sealed: someone on the path altered, injected,
// replayed or reordered bytes (or the other end is broken). Nothing more is read from it.
Status Connection::record_failed(const Status& why) {
  log::get("net")->warn("connection from {}: {}; dropping the connection", remote_, why.message());
  close();
  return make_status(StatusCode::kPeerLost, "connection from {} dropped: {}", remote_,
                     why.message());
}

awaitable<std::pair<asio::error_code, size_t>> Connection::write_raw(
    std::span<const asio::const_buffer> buffers) {
  auto [ec, n] = co_await asio::async_write(socket_, buffers, use_nothrow);
  bytes_written_ += n;
  co_return std::make_pair(ec, n);
}

awaitable<std::pair<asio::error_code, size_t>> Connection::send_more(
    std::span<const uint8_t> bytes) {
  size_t sent = 0;
  while (sent < bytes.size()) {
    auto [ec, n] = co_await socket_.async_send(
        asio::buffer(bytes.data() + sent, bytes.size() - sent), MSG_MORE, use_nothrow);
    sent += n;
    bytes_written_ += n;
    if (ec) co_return std::make_pair(ec, sent);
  }
  co_return std::make_pair(asio::error_code{}, sent);
}

// Seals `buffers` into records of up to kMaxRecordPayload bytes, kSealBatch records at a time
// into tx_sealed_, and writes each batch.
awaitable<Status> Connection::write_records(std::span<const asio::const_buffer> buffers) {
  constexpr size_t kSealBatch = 4;
  tx_sealed_.resize(kSealBatch * (kMaxRecordPayload + kRecordOverhead));
  size_t buf = 0;     // the buffer being sealed
  size_t offset = 0;  // and how far
  for (;;) {
    size_t used = 0;
    for (size_t r = 0; r < kSealBatch && buf < buffers.size(); ++r) {
      std::array<std::span<const uint8_t>, 16> parts;
      size_t count = 0;
      size_t payload = 0;
      while (buf < buffers.size() && payload < kMaxRecordPayload && count < parts.size()) {
        const auto* base = static_cast<const uint8_t*>(buffers[buf].data());
        size_t take = std::min(buffers[buf].size() - offset, kMaxRecordPayload - payload);
        if (take > 0) parts[count++] = std::span<const uint8_t>(base + offset, take);
        payload += take;
        offset += take;
        if (offset == buffers[buf].size()) {
          ++buf;
          offset = 0;
        }
      }
      if (payload == 0) break;
      auto sealed = sealer_->seal(std::span(parts.data(), count), tx_sealed_.data() + used);
      if (!sealed.is_ok()) co_return sealed.status();
      used += *sealed;
    }
    if (used == 0) co_return Status::ok();
    // As write_gather's coalescing: MSG_MORE while more batches follow, so that a batch the
    // socket takes in part does not push out a partial packet.
    const bool more = coalesce_ && buf < buffers.size();
    auto [ec, n] = more ? co_await send_more(std::span<const uint8_t>(tx_sealed_.data(), used))
                        : co_await write_raw(std::array<asio::const_buffer, 1>{
                              asio::buffer(tx_sealed_.data(), used)});
    if (ec) co_return io_status(StatusCode::kPeerLost, fmt::format("write to {}", remote_), ec);
  }
}

awaitable<Status> Connection::skip(size_t n) {
  std::array<uint8_t, 64 * 1024> sink;
  while (n > 0) {
    size_t chunk = std::min(n, sink.size());
    QCCL_CO_RETURN_IF_ERROR(co_await read_exact(std::span<uint8_t>(sink.data(), chunk)));
    n -= chunk;
  }
  co_return Status::ok();
}

awaitable<Result<wire::FrameHeader>> Connection::read_header(uint32_t max_payload) {
  std::array<uint8_t, wire::kFrameHeaderSize> bytes;
  Status st = co_await read_exact(bytes);
  if (!st.is_ok()) co_return st;
  co_return wire::decode_frame_header(bytes, max_payload);
}

awaitable<Result<std::pair<wire::FrameHeader, std::vector<uint8_t>>>> Connection::read_frame(
    uint32_t max_payload) {
  auto header = co_await read_header(max_payload);
  if (!header.is_ok()) co_return header.status();
  std::vector<uint8_t> payload(header->payload_len);
  Status st = co_await read_exact(payload);
  if (!st.is_ok()) co_return st;
  co_return std::make_pair(*header, std::move(payload));
}

namespace {

// The first `bytes` of `bufs`.
std::vector<asio::const_buffer> prefix(const std::vector<asio::const_buffer>& bufs, size_t bytes) {
  std::vector<asio::const_buffer> out;
  for (const auto& b : bufs) {
    if (bytes == 0) break;
    size_t n = std::min(bytes, b.size());
    out.emplace_back(b.data(), n);
    bytes -= n;
  }
  return out;
}

// Drops the first `bytes` of `bufs`.
void consume(std::vector<asio::const_buffer>& bufs, size_t bytes) {
  while (bytes > 0 && !bufs.empty()) {
    if (bufs.front().size() > bytes) {
      bufs.front() += bytes;
      return;
    }
    bytes -= bufs.front().size();
    bufs.erase(bufs.begin());
  }
}

}  // namespace

awaitable<Status> Connection::write_gather(std::span<const asio::const_buffer> buffers) {
  size_t total = asio::buffer_size(buffers);
  size_t written = 0;
  asio::error_code ec;
  if (sealer_) {
    QCCL_CO_RETURN_IF_ERROR(co_await write_records(buffers));
    if (faults_ && faults_->close_after_write(total)) close();
    co_return Status::ok();
  }
  if (!coalesce_ || total <= kCoalesceTail) {
    std::tie(ec, written) = co_await asio::async_write(socket_, buffers, use_nothrow);
  } else {
    // MSG_MORE until the last kCoalesceTail bytes: a send that the socket takes only in part
    // leaves its partial last packet for the next send to fill, instead of pushing it out
    // (TCP_NODELAY would); the last send, without MSG_MORE, pushes everything.
    std::vector<asio::const_buffer> rest(buffers.begin(), buffers.end());
    while (written < total) {
      size_t left = total - written;
      bool more = left > kCoalesceTail;
      auto [e, n] = co_await socket_.async_send(prefix(rest, more ? left - kCoalesceTail : left),
                                                more ? MSG_MORE : 0, use_nothrow);
      written += n;
      consume(rest, n);
      if (e) {
        ec = e;
        break;
      }
    }
  }
  bytes_written_ += written;
  if (ec) co_return io_status(StatusCode::kPeerLost, fmt::format("write to {}", remote_), ec);
  if (faults_ && faults_->close_after_write(written)) close();
  co_return Status::ok();
}

bool Connection::enqueue(std::vector<uint8_t> frame) {
  if (!open_ || closing_ || write_failed_) return false;
  if (queued_bytes_ + frame.size() > kMaxQueuedBytes) {
    log::get("net")->warn("{}: more than {} bytes queued, closing the connection", remote_,
                          kMaxQueuedBytes);
    close();
    return false;
  }
  queued_bytes_ += frame.size();
  queue_.push_back(std::move(frame));
  if (!writer_running_) {
    writer_running_ = true;
    asio::co_spawn(socket_.get_executor(), [self = shared_from_this()] { return self->writer_loop(); },
                   asio::detached);
  } else {
    wake_writer_.notify();
  }
  return true;
}

awaitable<void> Connection::writer_loop() {
  while (open_) {
    if (queue_.empty()) {
      if (closing_) break;
      co_await wake_writer_.wait();
      continue;
    }
    std::vector<uint8_t> frame = std::move(queue_.front());
    queue_.pop_front();
    queued_bytes_ -= frame.size();
    // Not write_gather: a queued frame (an ack on a data lane too) must not count towards a
    // test's fault policy.
    std::array<asio::const_buffer, 1> b{asio::buffer(frame)};
    Status st = Status::ok();
    if (sealer_) {
      st = co_await write_records(b);
    } else if (auto [ec, n] = co_await write_raw(b); ec) {
      st = io_status(StatusCode::kPeerLost, fmt::format("write to {}", remote_), ec);
    }
    if (!st.is_ok()) {
      // Keep the read side: the other end may have said its last word (e.g. the master's
      // M2CKicked) before closing, and the reader must still get it. It sees EOF after.
      if (open_) log::get("net")->debug("{}", st.message());
      write_failed_ = true;
      queue_.clear();
      queued_bytes_ = 0;
      asio::error_code ignored;
      socket_.shutdown(tcp::socket::shutdown_send, ignored);
      if (closing_) close();
      break;
    }
  }
  if (closing_) close();
  writer_running_ = false;
}

void Connection::close_after_flush() {
  if (!open_ || closing_) return;
  closing_ = true;
  if (!writer_running_) {
    close();
    return;
  }
  wake_writer_.notify();
  // A peer that does not read must not keep the socket open forever.
  auto timer = std::make_shared<asio::steady_timer>(socket_.get_executor(), std::chrono::seconds(2));
  timer->async_wait([self = shared_from_this(), timer](const asio::error_code&) { self->close(); });
}

void Connection::close() {
  if (!open_) return;
  open_ = false;
  asio::error_code ec;
  socket_.shutdown(tcp::socket::shutdown_both, ec);
  socket_.close(ec);
  wake_writer_.notify();
  auto callbacks = std::move(closed_callbacks_);
  closed_callbacks_.clear();
  for (auto& cb : callbacks) cb();
}

size_t Connection::bytes_available() const {
  asio::error_code ec;
  size_t n = open_ ? socket_.available(ec) : 0;
  return (ec ? 0 : n) + (rx_plain_.size() - rx_pos_);
}

void Connection::on_closed(std::function<void()> cb) {
  if (!open_) {
    cb();
    return;
  }
  closed_callbacks_.push_back(std::move(cb));
}

awaitable<Result<tcp::socket>> connect_tcp(const asio::any_io_executor& ex, const std::string& host,
                                           uint16_t port, std::chrono::milliseconds timeout) {
  using namespace asio::experimental::awaitable_operators;
  tcp::resolver resolver(ex);
  tcp::socket socket(ex);
  asio::steady_timer deadline(ex, timeout);
  auto attempt = [&]() -> awaitable<asio::error_code> {
    auto [rec, results] = co_await resolver.async_resolve(host, std::to_string(port), use_nothrow);
    if (rec) co_return rec;
    auto [cec, ep] = co_await asio::async_connect(socket, results, use_nothrow);
    co_return cec;
  };
  auto outcome = co_await (attempt() || deadline.async_wait(use_nothrow));
  if (outcome.index() == 1) {
    co_return make_status(StatusCode::kTimeout, "connect to {}: no answer within {} ms",
                          format_host_port({host, port}), timeout.count());
  }
  asio::error_code ec = std::get<0>(outcome);
  if (ec) {
    co_return io_status(StatusCode::kMasterUnreachable,
                        fmt::format("connect to {}", format_host_port({host, port})), ec);
  }
  socket.set_option(tcp::no_delay(true), ec);
  co_return std::move(socket);
}

}  // namespace qccl::net
