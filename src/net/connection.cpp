#include "net/connection.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>

#include <array>

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

awaitable<Status> Connection::read_exact(std::span<uint8_t> dst) {
  if (faults_) {
    ReadFault fault = faults_->before_read(dst.size());
    if (fault.hang) co_return co_await read_faulty(dst, fault);
  }
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
  auto [ec, n] = co_await socket_.async_read_some(asio::buffer(dst.data(), dst.size()),
                                                  use_nothrow);
  bytes_read_ += n;
  if (ec == asio::error::eof) co_return size_t{0};
  if (ec) co_return io_status(StatusCode::kPeerLost, fmt::format("read from {}", remote_), ec);
  co_return n;
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
    auto [ec, n] = co_await asio::async_write(socket_, asio::buffer(frame), use_nothrow);
    bytes_written_ += n;
    if (ec) {
      // Keep the read side: the other end may have said its last word (e.g. the master's
      // M2CKicked) before closing, and the reader must still get it. It sees EOF after.
      if (open_) log::get("net")->debug("write to {} failed: {}", remote_, ec.message());
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
  return ec ? 0 : n;
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
