// DataLinks: a peer's data connections to its ring neighbours, per group epoch.
//
// For the current group epoch the peer dials `lanes` TCP connections (a pool) to its next
// neighbour and accepts the pool of its previous neighbour. Every connection starts with a
// Preamble (kind kData, sender id, group epoch, lane index, pool size) answered by a
// PreambleAck. A connection announcing an epoch this peer has not heard of yet is parked
// until set_ring() reaches that epoch (or the park deadline passes); an older one is refused.
//
// Sending (adaptive striping): frames are queued in one FIFO per epoch and written by
// whichever lane of the pool is free, so one operation's segments use every connection and a
// slow lane (loss, a per-flow rate cap) takes fewer. TCP_NOTSENT_LOWAT keeps each socket's
// unsent backlog small, so "free" means "the network took the last frame", not "the kernel
// buffered it". Each frame points into caller memory, which must stay valid until its
// on_sent() callback, called exactly once per frame (success, failure or abandoned at an
// epoch change), unless the frame was taken back with cancel().
//
// Stalled lanes: every lane keeps a journal of the frames it wrote for owners still alive
// (forget() ends that). A lane whose written bytes stay unacknowledged by TCP for the stall
// time while another lane is healthy, or that fails with an I/O error while others live, is
// retired: closed, and copies of all its journaled frames go to the front of the queue, for
// the other lanes (the receiver drops the copies it already has, RingAllReduce::claim). A
// stalled lane is replaced by a new connection; the epoch fails only when no lane is left.
//
// Receiving: inbound lanes are handed to the owner (on_inbound), which runs their reader.
// Losing one inbound lane is tolerated while others remain (inbound_lost): its sender resends
// what it carried. The listener also accepts shared-state connections and bandwidth probes,
// and hands them to the state and probe handlers.
//
// Thread-safety: loop thread only.
#pragma once

#include <array>
#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/address.hpp"
#include "net/asio_common.hpp"
#include "net/auth.hpp"
#include "net/connection.hpp"
#include "net/signal.hpp"
#include "wire/frame.hpp"
#include "wire/messages.hpp"

namespace qccl::peer {

struct OutFrame;

// Receives the completion of a queued frame.
class FrameOwner {
 public:
  virtual ~FrameOwner() = default;
  virtual void on_sent(const Status& status, size_t bytes) = 0;
  // Called by the lane that is about to write a frame with `deferred` set, right before it
  // reads [data, data + bytes): the owner fills the payload then (e.g. encodes it), so that
  // filling frame k+1 overlaps the write of frame k instead of preceding all of them.
  virtual void fill(const OutFrame& frame) { (void)frame; }
};

struct OutFrame {
  std::array<uint8_t, wire::kFrameHeaderSize + wire::kP2PDataHeaderSize> header{};
  const uint8_t* data = nullptr;
  size_t bytes = 0;
  FrameOwner* owner = nullptr;
  bool deferred = false;   // owner->fill(*this) before writing
  uint32_t index = 0;      // the owner's own reference, for fill()
  // A resent copy: `data` points into `copy`, and the owner is not called (it is only the
  // key that cancel() and forget() match).
  std::shared_ptr<const std::vector<uint8_t>> copy;
};


// Faults injected on purpose, for tests only (never set by the public API). Each fires once.
struct FaultInjection {
  uint64_t close_after_bytes = 0;        // close an outbound lane once this many bytes were sent
  uint64_t stall_reads_after_bytes = 0;  // stop reading inbound lanes after this many bytes
  // One inbound lane stops reading half way through the first frame it starts after this many
  // bytes (a connection stalled by loss or a cap while the others flow).
  uint64_t stall_lane_after_bytes = 0;
};

struct LinkSettings {
  std::chrono::milliseconds heartbeat{1000};
  std::chrono::milliseconds timeout{10000};  // connect/handshake bound and TCP user timeout
  net::Secret secret;                        // every connection authenticates with it, if set
  // A lane whose data stays unacknowledged this long, while another lane moves, is retired.
  // 0 = timeout / 5, between 500 ms and 2 s.
  std::chrono::milliseconds lane_stall{0};
  uint32_t notsent_lowat = 256 * 1024;  // TCP_NOTSENT_LOWAT of outbound lanes; 0 = unset
};

// Tuning knobs from the environment (docs/performance.md): QCCL_LANE_STALL_MS (lane_stall)
// and QCCL_TCP_NOTSENT_LOWAT (bytes; 0 = leave the kernel's default). A value that is not a
// number is ignored with a warning.
void apply_tuning_env(LinkSettings& settings);

class DataLinks {
 public:
  struct Neighbour {
    PeerId id = kNoPeer;
    std::string host;
    uint16_t port = 0;
  };
  using InboundHandler = std::function<void(std::shared_ptr<net::Connection>, Epoch)>;
  using EpochHandler = std::function<void(Epoch, const Status&)>;

  DataLinks(asio::any_io_executor ex, InboundHandler on_inbound, EpochHandler on_ready,
            EpochHandler on_failed);
  ~DataLinks();

  // Binds the data listener to the first free port of the address's range (port 0 =
  // ephemeral) and starts accepting. Host "::" listens on IPv6 and IPv4 alike (falling back to
  // "0.0.0.0" where the host has no IPv6). kInvalidArgument names the address if nothing binds.
  Status listen(const ListenAddress& where);
  uint16_t port() const { return port_; }
  void set_identity(PeerId self, LinkSettings settings) { self_ = self; settings_ = settings; }
  void set_fault_injection(FaultInjection f) { faults_ = f; }
  // Where accepted shared-state connections (ConnKind::kState) go, after their preamble.
  using StateHandler = std::function<void(std::shared_ptr<net::Connection>, const wire::Preamble&)>;
  void set_state_handler(StateHandler h) { on_state_ = std::move(h); }
  // Where accepted bandwidth probes (ConnKind::kProbe) go, after their preamble.
  void set_probe_handler(StateHandler h) { on_probe_ = std::move(h); }
  // Inbound side of the injection: true once reads should stall (checked by the reader).
  bool should_stall_reads(uint64_t bytes_read_total);
  bool should_stall_lane(uint64_t bytes_read_total);

  // Moves to a new group epoch: drops every lane of older epochs (their queued frames are
  // abandoned), dials `lanes` connections to `next` and expects the pool of `prev`.
  // With no neighbours (a group of one) the epoch is ready at once.
  void set_ring(Epoch epoch, std::optional<Neighbour> next, PeerId prev, uint32_t lanes);

  Epoch epoch() const { return epoch_; }
  bool ready() const { return ready_; }
  bool failed() const { return failure_.has_value(); }
  const Status& failure() const { return *failure_; }  // REQUIRES: failed()

  // Queues a frame on the current epoch's pool. REQUIRES: ready(), !failed().
  void enqueue(OutFrame frame);
  // Takes back the frames of `owner` that have not started and forgets it (see forget());
  // returns how many of its own frames were taken back (resent copies are not counted).
  size_t cancel(const FrameOwner* owner);
  // The owner is done (committed or failed): its frames are never resent, and its memory may
  // go. Queued resent copies of its frames are dropped.
  void forget(const FrameOwner* owner);
  // An inbound lane's reader ended with `why` (EOF, reset, a stopped read). Returns true if
  // the epoch goes on without it (it was ready and other inbound lanes remain: the sender
  // resends what the lane carried); otherwise fails the epoch and returns false.
  bool inbound_lost(const std::shared_ptr<net::Connection>& conn, const Status& why);
  // Marks the current epoch failed (e.g. a reader hit an error) and closes its lanes.
  void fail(const Status& why);
  void close_all();

 private:
  net::awaitable<void> accept_loop();
  net::awaitable<void> accept_one(std::shared_ptr<net::Connection> conn);
  // One outbound connection and what it carries.
  struct OutLane {
    std::shared_ptr<net::Connection> conn;
    uint16_t index = 0;
    std::vector<OutFrame> journal;  // written frames of owners still alive
    uint64_t acked = 0;             // bytes TCP has acknowledged, when last looked at
    std::chrono::steady_clock::time_point moved;  // when `acked` last grew, or it had none out
    bool retired = false;
  };
  net::awaitable<void> dial(Epoch epoch, Neighbour next, uint16_t lane, uint16_t lanes,
                            bool replacement);
  net::awaitable<void> writer(Epoch epoch, std::shared_ptr<OutLane> lane);
  net::awaitable<void> stall_monitor(Epoch epoch);
  std::chrono::milliseconds lane_stall() const;
  // Closes `lane` and queues copies of its journal for the others; fails the epoch if no
  // lane is left, or dials a replacement if `replace`.
  void retire(OutLane& lane, const Status& why, bool replace);
  void adopt(std::shared_ptr<net::Connection> conn, const wire::Preamble& p);
  void check_ready();
  void abandon_queue(const Status& why);

  asio::any_io_executor ex_;
  InboundHandler on_inbound_;
  EpochHandler on_ready_;
  EpochHandler on_failed_;
  StateHandler on_state_;
  StateHandler on_probe_;
  PeerId self_ = kNoPeer;
  LinkSettings settings_;
  std::optional<net::tcp::acceptor> acceptor_;
  uint16_t port_ = 0;

  Epoch epoch_ = 0;
  PeerId prev_ = kNoPeer;
  std::optional<Neighbour> next_;
  uint16_t next_lane_ = 0;        // index of the next lane dialled (replacements count on)
  uint32_t lanes_replaced_ = 0;   // in this epoch; at most one pool's worth
  bool expect_inbound_ = false;
  uint32_t out_lanes_wanted_ = 0;
  std::vector<std::shared_ptr<OutLane>> out_lanes_;
  size_t out_acked_ = 0;
  std::vector<std::shared_ptr<net::Connection>> in_lanes_;
  uint32_t in_lanes_wanted_ = 0;  // announced by prev's preambles
  bool ready_ = false;
  std::optional<Status> failure_;
  std::deque<OutFrame> queue_;
  std::unique_ptr<net::Signal> work_;
  // Inbound connections announcing a future epoch, with their preambles.
  struct Parked {
    std::shared_ptr<net::Connection> conn;
    wire::Preamble preamble;
    std::shared_ptr<asio::steady_timer> timer;
  };
  std::vector<Parked> parked_;
  FaultInjection faults_;
  uint64_t bytes_sent_ = 0;
};

}  // namespace qccl::peer
