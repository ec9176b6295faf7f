// Bandwidth probes of qcclOptimizeTopology (docs/topology.md): a peer measuring the directed
// links into it, and driving the transfers out of it that other peers measure.
//
// A probe of link A -> B: A opens `lanes` connections to B's data listener (ConnKind::kProbe,
// as many as a ring pool has, so the figure is what a ring edge would get), sends its preamble
// and then writes as fast as it can on each. B measures the link as a whole (ProbeMeter over
// all of A's connections: about the window's second half, starting at the first byte). At the
// window's end B closes A's connections, which ends A's writes. Nothing travels back to A: on a
// shared uplink an answer would queue behind the probes' own bytes and arrive late.
//
// The master's plan gives each peer its targets and its sources with time slots (slot_ms each,
// counted from when the plan arrives; a slot's pairs share no endpoint). A peer reports, once its
// last target was probed and every source was measured (or its slot passed): the measured
// inbound links, and the targets it could not connect to (unreachable). A source that connected
// but gave no figure in time is reported at 1 byte/s: reachable, useless for a ring.
//
// Measurements arrive independently of the local plan (a source may start before this peer got
// its own plan), so they are kept per (round, source); older rounds are dropped when a plan
// starts, and at most kMaxInbound are kept.
//
// Thread-safety: loop thread only.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "net/asio_common.hpp"
#include "net/auth.hpp"
#include "net/connection.hpp"
#include "net/signal.hpp"
#include "peer/probe_meter.hpp"
#include "wire/frame.hpp"
#include "wire/messages.hpp"

namespace qccl::peer {

inline constexpr uint32_t kMaxProbeWindowMs = 60000;
inline constexpr uint16_t kMaxProbeLanes = 64;
inline constexpr size_t kMaxInbound = 1024;

class LinkProber : public std::enable_shared_from_this<LinkProber> {
 public:
  using Done = std::function<void(wire::C2MProbeResults)>;

  // `lanes` connections per probed link; `secret`: the run's shared secret, if any.
  LinkProber(asio::any_io_executor ex, uint32_t lanes, net::Secret secret);

  // Receiving end: measures an accepted connection whose kProbe preamble was read. Bounded by
  // the window plus `timeout`.
  void serve(std::shared_ptr<net::Connection> conn, const wire::Preamble& pre,
             std::chrono::milliseconds timeout);
  // Runs `plan` as peer `self`, then calls `done` with the results (unless cancelled first).
  // A plan still running is stopped; measurements of older rounds are dropped.
  void start(wire::M2CProbePlan plan, PeerId self, Done done);
  // Stops the running plan (done is not called) and closes every probe connection.
  void cancel();

 private:
  using Clock = std::chrono::steady_clock;
  using Key = std::pair<uint64_t, PeerId>;  // (round, source)

  // The link from one source in one round, as seen here.
  struct Inbound {
    explicit Inbound(std::chrono::milliseconds window) : meter(window) {}
    ProbeMeter meter;
    uint16_t lanes = 1;
    uint16_t closed = 0;
    std::vector<std::weak_ptr<net::Connection>> conns;
  };

  net::awaitable<void> measure(std::shared_ptr<net::Connection> conn, wire::Preamble pre,
                               std::chrono::milliseconds timeout);
  net::awaitable<void> run(wire::M2CProbePlan plan, PeerId self, Done done, uint64_t generation);
  // Sends to `target` on every lane until the target closes them or `slot_end`; false if no
  // lane could connect.
  net::awaitable<bool> send_to(const wire::RingMember& target, wire::Preamble pre,
                               Clock::time_point slot_end);
  net::awaitable<void> lane(wire::RingMember target, wire::Preamble pre,
                            Clock::time_point slot_end, std::shared_ptr<bool> connected);
  void close_inbound(Inbound& in);
  // Ends the running plan (its `done` is not called) and its outbound connections.
  void stop_outbound();

  asio::any_io_executor ex_;
  uint32_t lanes_;
  net::Secret secret_;
  uint64_t generation_ = 0;  // grows at every start() and cancel()
  uint64_t round_ = 0;       // of the newest plan
  std::map<Key, Inbound> inbound_;
  net::Signal measured_;     // an inbound measurement finished
  std::vector<std::weak_ptr<net::Connection>> outbound_;
  std::shared_ptr<asio::steady_timer> wait_;  // of the running plan
};

}  // namespace qccl::peer
