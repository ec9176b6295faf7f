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
// Receiving: every inbound lane has a reader here that decodes each frame's head and asks the
// FrameSink (the op engine) where the payload goes (peer/frames.hpp), reads it there and
// reports back. A frame may arrive twice (a resent copy): the sink says so, and the reader
// reads the copy aside; if the copy completes first, the lane still reading the first copy is
// stopped (stop_inbound_lane). Losing one inbound lane is tolerated while others remain: its
// sender resends what it carried. Malformed bytes drop the lane and fail the epoch. The
// listener also accepts shared-state connections and bandwidth probes, and hands them to the
// state and probe handlers.
//
// Files: data_links.cpp (listener, epochs, readiness), lane_writer.cpp (outbound lanes),
// lane_reader.cpp (inbound lanes).
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
#include "net/fault_policy.hpp"
#include "net/signal.hpp"
#include "peer/data_frame.hpp"
#include "peer/frames.hpp"
#include "wire/messages.hpp"

namespace qccl::peer {

struct LinkSettings {
  std::chrono::milliseconds heartbeat{1000};
  std::chrono::milliseconds timeout{10000};  // connect/handshake bound and TCP user timeout
  net::Secret secret;                        // every connection authenticates with it, if set
  // A lane whose data stays unacknowledged this long, while another lane moves, is retired.
  // 0 = timeout / 5, between 500 ms and 2 s.
  std::chrono::milliseconds lane_stall{0};
  uint32_t notsent_lowat = 256 * 1024;  // TCP_NOTSENT_LOWAT of outbound lanes; 0 = unset
  bool coalesce_writes = true;  // outbound lanes' Connection::set_coalesce_writes
};

// Tuning knobs from the environment (docs/performance.md): QCCL_LANE_STALL_MS (lane_stall),
// QCCL_TCP_NOTSENT_LOWAT (bytes; 0 = leave the kernel's default) and QCCL_TCP_COALESCE
// (coalesce_writes; 0 = off). A value that is not a number is ignored with a warning.
void apply_tuning_env(LinkSettings& settings);

class DataLinks {
 public:
  struct Neighbour {
    PeerId id = kNoPeer;
    std::string host;
    uint16_t port = 0;
  };
  using EpochHandler = std::function<void(Epoch, const Status&)>;

  // `sink` takes the inbound frames; it outlives this object.
  DataLinks(asio::any_io_executor ex, FrameSink& sink, EpochHandler on_ready,
            EpochHandler on_failed);
  ~DataLinks();

  // Binds the data listener to the first free port of the address's range (port 0 =
  // ephemeral) and starts accepting. Host "::" listens on IPv6 and IPv4 alike (falling back to
  // "0.0.0.0" where the host has no IPv6). kInvalidArgument names the address if nothing binds.
  Status listen(const ListenAddress& where);
  uint16_t port() const { return port_; }
  void set_identity(PeerId self, LinkSettings settings) { self_ = self; settings_ = settings; }
  // Tests only: every data lane (both directions, those up now and those to come) consults
  // `policy` (net/fault_policy.hpp).
  void set_fault_policy(std::shared_ptr<net::FaultPolicy> policy);
  // Where accepted shared-state connections (ConnKind::kState) go, after their preamble.
  using StateHandler = std::function<void(std::shared_ptr<net::Connection>, const wire::Preamble&)>;
  void set_state_handler(StateHandler h) { on_state_ = std::move(h); }
  // Where accepted bandwidth probes (ConnKind::kProbe) go, after their preamble.
  void set_probe_handler(StateHandler h) { on_probe_ = std::move(h); }

  // Moves to a new group epoch: drops every lane of older epochs (their queued frames are
  // abandoned), dials `lanes` connections to `next` and expects the pool of `prev`.
  // With no neighbours (a group of one) the epoch is ready at once.
  void set_ring(Epoch epoch, std::optional<Neighbour> next, PeerId prev, uint32_t lanes);

  Epoch epoch() const { return epoch_; }
  bool ready() const { return ready_; }
  bool failed() const { return failure_.has_value(); }
  const Status& failure() const { return *failure_; }  // REQUIRES: failed()

  // Queues frame `id` of `owner`'s op of group epoch `epoch`, payload [data, data + bytes),
  // on the current epoch's pool. `deferred`: owner->fill(index) before the lane reads the
  // payload. REQUIRES: ready(), !failed().
  void send(FrameOwner* owner, Epoch epoch, const FrameId& id, const uint8_t* data, size_t bytes,
            bool deferred, uint32_t index);
  // Takes back the frames of `owner` that have not started and forgets it (see forget());
  // returns how many of its own frames were taken back (resent copies are not counted).
  size_t cancel(const FrameOwner* owner);
  // The owner is done (committed or failed): its frames are never resent, and its memory may
  // go. Queued resent copies of its frames are dropped.
  void forget(const FrameOwner* owner);
  // The sink's answers may have changed (an op began or ended): readers waiting (kWait, or
  // for an op to begin) ask again.
  void wake_readers() { readers_wake_->notify(); }
  // A resent copy took over the frame inbound lane `lane` is still reading: stop that lane
  // (its sender resends nothing more on it; the others carry on).
  void stop_inbound_lane(uint32_t lane);
  // Marks the current epoch failed (e.g. a reader hit an error) and closes its lanes.
  void fail(const Status& why);
  void close_all();

 private:
  // A frame queued on the pool. A resent copy points into `copy`, and its owner is not
  // called (it is only the key that cancel() and forget() match).
  struct OutFrame {
    DataHead head{};
    const uint8_t* data = nullptr;
    size_t bytes = 0;
    FrameOwner* owner = nullptr;
    bool deferred = false;
    uint32_t index = 0;
    std::shared_ptr<const std::vector<uint8_t>> copy;
  };
  // One inbound lane's reader state.
  struct InLane {
    std::shared_ptr<net::Connection> conn;
    uint32_t id = 0;  // the claimant id the sink sees
    std::vector<uint8_t> staging;
    bool io_error = false;  // the failure was the connection's (not malformed bytes)
  };

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
  net::awaitable<void> read_lane(std::shared_ptr<net::Connection> conn, Epoch epoch);
  net::awaitable<Status> read_frame(InLane& lane, Epoch epoch);
  net::awaitable<Status> lane_read(InLane& lane, std::span<uint8_t> dst);
  net::awaitable<Status> lane_skip(InLane& lane, size_t bytes);
  // An inbound lane's reader ended with `why` (EOF, reset, a stopped read). The epoch goes on
  // without it if it was ready and other inbound lanes remain (the sender resends what the
  // lane carried); otherwise it fails.
  void inbound_lost(const std::shared_ptr<net::Connection>& conn, const Status& why);
  void check_ready();
  void abandon_queue(const Status& why);

  asio::any_io_executor ex_;
  FrameSink& sink_;
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
  std::shared_ptr<net::FaultPolicy> faults_;
  // Inbound lane readers by claimant id, to stop one whose frame a resent copy took over.
  uint32_t last_lane_id_ = 0;
  std::map<uint32_t, std::weak_ptr<net::Connection>> readers_;
  std::unique_ptr<net::Signal> readers_wake_;
};

}  // namespace qccl::peer
