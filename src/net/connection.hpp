// Connection: one TCP stream speaking the qccl framing (wire/frame.hpp).
//
// Reads are awaited by exactly one reader coroutine at a time (the owner's). Writes come in
// two flavours: enqueue() hands a whole frame to an internal writer coroutine that writes
// queued frames in order (control links), while write_gather() is awaited directly by a
// caller that serialises its own writes (data lanes, which send straight from user memory).
// close() cancels every pending read and write; they complete with an error.
//
// After the handshake may turn on encryption (enable_records, net/record_cipher.hpp): every
// byte written from then on is sealed into AEAD records, every byte read is opened from them,
// and the callers see the same stream as before. A record that fails authentication fails the
// read (kPeerLost, logged with the remote address) and closes the connection.
//
// TCP_NODELAY is set on construction. set_liveness() adds keep-alive probes and
// TCP_USER_TIMEOUT so that a silently cut link fails pending I/O within the given time.
//
// Thread-safety: loop thread only. Owned through shared_ptr (coroutines keep it alive).
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "net/asio_common.hpp"
#include "net/fault_policy.hpp"
#include "net/record_cipher.hpp"
#include "net/signal.hpp"
#include "net/tcp_progress.hpp"
#include "wire/frame.hpp"

namespace qccl::net {

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  explicit Connection(tcp::socket socket);
  ~Connection();

  // Keep-alive every `interval`, and fail I/O when sent data stays unacknowledged (or the
  // peer stops answering probes) for `timeout`.
  void set_liveness(std::chrono::milliseconds interval, std::chrono::milliseconds timeout);

  // Limits the bytes queued in the kernel that TCP has not sent yet (TCP_NOTSENT_LOWAT): a
  // write completes once its tail is within `bytes` of the wire, so a slow connection does
  // not swallow frames that a faster one could send. Bytes in flight are not limited.
  void set_notsent_lowat(uint32_t bytes);
  // Tests only: faults to inject into this connection's reads and writes (net/fault_policy.hpp).
  void set_fault_policy(std::shared_ptr<FaultPolicy> policy) { faults_ = std::move(policy); }
  // How far TCP got with what was written (net/tcp_progress.hpp); zeros when closed.
  TcpProgress tcp_progress();

  // From now on, seal what is written and open what is read (both directions at once; the
  // handshake guarantees that neither side has sent a record before).
  void enable_records(std::unique_ptr<RecordSealer> sealer, std::unique_ptr<RecordOpener> opener);
  bool encrypted() const { return sealer_ != nullptr; }

  awaitable<Status> read_exact(std::span<uint8_t> dst);
  // Reads what is available (at least one byte); 0 = the peer closed its side (EOF).
  awaitable<Result<size_t>> read_some(std::span<uint8_t> dst);
  awaitable<Status> skip(size_t n);
  // Reads and validates one frame header (payload_len <= max_payload).
  awaitable<Result<wire::FrameHeader>> read_header(uint32_t max_payload);
  // Reads a whole control frame: header plus payload.
  awaitable<Result<std::pair<wire::FrameHeader, std::vector<uint8_t>>>> read_frame(
      uint32_t max_payload);

  // Writes all buffers; the caller guarantees that no other write is in progress.
  awaitable<Status> write_gather(std::span<const asio::const_buffer> buffers);
  // write_gather() of more than kCoalesceTail bytes sends full packets: with TCP_NODELAY
  // every send() the socket takes in part would otherwise push out its partial last packet,
  // so a large write became many small packets (each costing the sender, the receiver and an
  // ACK). Off by default (control links write small frames).
  void set_coalesce_writes(bool on) { coalesce_ = on; }
  static constexpr size_t kCoalesceTail = 64 * 1024;

  // Queues a complete frame for the internal writer. Returns false (and drops the frame) if
  // the connection is closed or more than `kMaxQueuedBytes` are waiting (a stuck reader).
  bool enqueue(std::vector<uint8_t> frame);
  // Closes once everything queued so far has been written (or after a short grace period).
  void close_after_flush();
  void close();
  bool is_open() const { return open_; }
  // Bytes received by the kernel but not yet read: a busy loop may not have read a heartbeat
  // that did arrive, and liveness checks must not call such a peer silent.
  size_t bytes_available() const;
  // Runs `cb` (on the loop) when the connection closes, or at once if it is closed already.
  void on_closed(std::function<void()> cb);

  // "ip:port" of the remote end, captured at construction.
  const std::string& remote() const { return remote_; }
  std::string remote_ip() const { return remote_ip_; }
  // This end's address (for the master: the address the peer reached it at).
  const std::string& local_ip() const { return local_ip_; }

  uint64_t bytes_read() const { return bytes_read_; }
  uint64_t bytes_written() const { return bytes_written_; }

  static constexpr size_t kMaxQueuedBytes = 64u << 20;

 private:
  awaitable<void> writer_loop();
  // read_exact as the fault policy says: part of it, then nothing until close().
  awaitable<Status> read_faulty(std::span<uint8_t> dst, ReadFault fault);
  // The encrypted paths of read_exact / read_some / write_gather / writer_loop.
  awaitable<Status> read_records(std::span<uint8_t> dst);
  size_t take_plain(std::span<uint8_t> dst);  // from the opened record not yet read
  awaitable<Result<size_t>> read_record(std::span<uint8_t> direct);
  awaitable<Status> write_records(std::span<const asio::const_buffer> buffers);
  Status record_failed(const Status& why);
  awaitable<std::pair<asio::error_code, size_t>> write_raw(std::span<const asio::const_buffer> buffers);
  awaitable<std::pair<asio::error_code, size_t>> send_more(std::span<const uint8_t> bytes);

  tcp::socket socket_;
  std::string remote_;
  std::string remote_ip_;
  std::string local_ip_;
  bool open_ = true;
  bool closing_ = false;
  bool writer_running_ = false;
  bool write_failed_ = false;
  std::deque<std::vector<uint8_t>> queue_;
  size_t queued_bytes_ = 0;
  Signal wake_writer_;
  std::vector<std::function<void()>> closed_callbacks_;
  uint64_t bytes_read_ = 0;
  uint64_t bytes_written_ = 0;
  bool coalesce_ = false;
  std::shared_ptr<FaultPolicy> faults_;
  // Encryption (enable_records): the opened plaintext of the last record not yet read, and
  // the buffer records are sealed into before they are written.
  std::unique_ptr<RecordSealer> sealer_;
  std::unique_ptr<RecordOpener> opener_;
  std::vector<uint8_t> rx_plain_;
  size_t rx_pos_ = 0;
  bool rx_eof_ = false;  // the last record read met a clean end of stream
  std::vector<uint8_t> tx_sealed_;
};

// Connects to host:port within `timeout` (resolution included), with TCP_NODELAY set.
awaitable<Result<tcp::socket>> connect_tcp(const asio::any_io_executor& ex, const std::string& host,
                                           uint16_t port, std::chrono::milliseconds timeout);

}  // namespace qccl::net
