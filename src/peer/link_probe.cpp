#include "peer/link_probe.hpp"

#include <algorithm>
#include <array>

#include "common/logging.hpp"

namespace qccl::peer {

using net::use_nothrow;
using std::chrono::milliseconds;

namespace {

constexpr size_t kProbeChunk = 64 * 1024;

// What a prober writes: the content does not matter (TCP does not compress).
const std::vector<uint8_t>& probe_bytes() {
  static const std::vector<uint8_t> bytes(kProbeChunk, 0);
  return bytes;
}

net::awaitable<Status> write_all(net::Connection& conn, std::span<const uint8_t> bytes) {
  std::array<asio::const_buffer, 1> b{asio::buffer(bytes.data(), bytes.size())};
  co_return co_await conn.write_gather(b);
}

}  // namespace

// ---- receiving end ----

LinkProber::LinkProber(asio::any_io_executor ex, uint32_t lanes, net::Secret secret)
    : ex_(std::move(ex)),
      lanes_(std::clamp<uint32_t>(lanes, 1, kMaxProbeLanes)),
      secret_(std::move(secret)),
      measured_(ex_) {}

void LinkProber::serve(std::shared_ptr<net::Connection> conn, const wire::Preamble& pre,
                       milliseconds timeout) {
  asio::co_spawn(ex_, measure(std::move(conn), pre, timeout), asio::detached);
}

net::awaitable<void> LinkProber::measure(std::shared_ptr<net::Connection> conn,
                                         wire::Preamble pre, milliseconds timeout) {
  auto self = shared_from_this();
  const Key key{pre.epoch, pre.peer_id};
  std::string refusal;
  bool late = false;  // a benign race (a lane after its link's measurement), not bad input
  if (pre.probe_window_ms == 0 || pre.probe_window_ms > kMaxProbeWindowMs) {
    refusal = fmt::format("window {} ms is outside 1..{}", pre.probe_window_ms, kMaxProbeWindowMs);
  } else if (pre.lane_count == 0 || pre.lane_count > kMaxProbeLanes) {
    refusal = fmt::format("{} connections is outside 1..{}", pre.lane_count, kMaxProbeLanes);
  } else if (!inbound_.count(key) && inbound_.size() >= kMaxInbound) {
    refusal = fmt::format("{} measurements are held already", inbound_.size());
  } else if (pre.epoch < round_) {
    refusal = fmt::format("round {} is over (round {} runs)", pre.epoch, round_);
    late = true;
  } else if (inbound_.count(key) && inbound_.at(key).meter.done()) {
    refusal = "the measurement of this link is over";
    late = true;
  }
  if (!refusal.empty()) {
    log::get("peer")->log(late ? spdlog::level::debug : spdlog::level::warn,
                          "probe connection from {} (peer {}) refused: {}", conn->remote(),
                          pre.peer_id, refusal);
    auto nack = wire::encode_preamble_ack({StatusCode::kInvalidArgument});
    (void)co_await write_all(*conn, nack);  // best effort: the connection is closed either way
    conn->close_after_flush();
    co_return;
  }
  Inbound& in = inbound_.try_emplace(key, milliseconds(pre.probe_window_ms)).first->second;
  in.lanes = pre.lane_count;
  in.conns.push_back(conn);
  // A silent or endless prober is cut here.
  asio::steady_timer guard(ex_, milliseconds(pre.probe_window_ms) + timeout);
  guard.async_wait([conn](const asio::error_code& ec) {
    if (!ec) conn->close();
  });
  auto ack = wire::encode_preamble_ack({StatusCode::kOk});
  conn->enqueue(std::vector<uint8_t>(ack.begin(), ack.end()));  // the prober does not wait for it
  std::vector<uint8_t> buf(kProbeChunk);
  for (;;) {
    auto n = co_await conn->read_some(buf);
    if (!n.is_ok() || *n == 0) break;
    auto it = inbound_.find(key);
    if (it == inbound_.end()) break;  // dropped with its round
    it->second.meter.add(*n, Clock::now());
    if (it->second.meter.done()) {
      close_inbound(it->second);  // ends the prober's writes on every lane
      break;
    }
  }
  guard.cancel();
  conn->close();
  auto it = inbound_.find(key);
  if (it != inbound_.end() && ++it->second.closed >= it->second.lanes) it->second.meter.finish();
  measured_.notify();
}

void LinkProber::close_inbound(Inbound& in) {
  for (const auto& weak : in.conns) {
    if (auto c = weak.lock()) c->close();
  }
  in.conns.clear();
}

// ---- sending end and the plan ----

void LinkProber::start(wire::M2CProbePlan plan, PeerId self, Done done) {
  stop_outbound();
  // Sources of this round may have started before the plan arrived: keep their measurements.
  round_ = std::max(round_, plan.round);
  for (auto it = inbound_.begin(); it != inbound_.end();) {
    if (it->first.first >= round_) break;  // ordered by round first
    close_inbound(it->second);
    it = inbound_.erase(it);
  }
  asio::co_spawn(
      ex_,
      [keep = shared_from_this(), plan = std::move(plan), self, done = std::move(done),
       generation = generation_]() mutable {
        return keep->run(std::move(plan), self, std::move(done), generation);
      },
      asio::detached);
}

void LinkProber::stop_outbound() {
  ++generation_;
  if (wait_) wait_->cancel();
  for (const auto& weak : outbound_) {
    if (auto c = weak.lock()) c->close();
  }
  outbound_.clear();
}

void LinkProber::cancel() {
  stop_outbound();
  for (auto& [key, in] : inbound_) close_inbound(in);
}

net::awaitable<void> LinkProber::run(wire::M2CProbePlan plan, PeerId self, Done done,
                                     uint64_t generation) {
  const auto start = Clock::now();
  const milliseconds slot(plan.slot_ms);
  auto timer = std::make_shared<asio::steady_timer>(ex_);
  wait_ = timer;
  auto cancelled = [&] { return generation != generation_; };
  wire::C2MProbeResults results;
  results.round = plan.round;
  for (const wire::ProbeTarget& t : plan.targets) {
    const auto slot_start = start + slot * t.slot;
    timer->expires_at(slot_start);
    co_await timer->async_wait(use_nothrow);
    if (cancelled()) co_return;
    wire::Preamble pre;
    pre.kind = wire::ConnKind::kProbe;
    pre.peer_id = self;
    pre.epoch = plan.round;
    pre.lane_count = static_cast<uint16_t>(lanes_);
    pre.probe_window_ms = plan.window_ms;
    bool reached = co_await send_to(t.peer, pre, slot_start + slot);
    if (cancelled()) co_return;
    if (!reached) results.unreachable.push_back(t.peer.id);
  }
  // The receiving end: until every source was measured or its slot (and a half) has passed.
  uint32_t last_slot = 0;
  for (const wire::ProbeTarget& s : plan.sources) last_slot = std::max(last_slot, s.slot);
  const auto deadline = start + slot * (last_slot + 1) + slot / 2;
  auto all_measured = [&] {
    return std::all_of(plan.sources.begin(), plan.sources.end(), [&](const wire::ProbeTarget& s) {
      auto it = inbound_.find({plan.round, s.peer.id});
      return it != inbound_.end() && it->second.meter.done();
    });
  };
  while (!plan.sources.empty() && !all_measured() && Clock::now() < deadline) {
    using namespace asio::experimental::awaitable_operators;
    timer->expires_at(deadline);
    co_await (measured_.wait() || timer->async_wait(use_nothrow));
    if (cancelled()) co_return;
  }
  for (const wire::ProbeTarget& s : plan.sources) {
    auto it = inbound_.find({plan.round, s.peer.id});
    if (it == inbound_.end()) continue;  // never connected: the source reports why, if it knows
    it->second.meter.finish();
    close_inbound(it->second);
    results.inbound.push_back({s.peer.id, std::max<uint64_t>(1, it->second.meter.bytes_per_s())});
  }
  log::get("peer")->debug("peer {}: probe round {}: measured {} inbound links, {} unreachable "
                          "targets", self, plan.round, results.inbound.size(),
                          results.unreachable.size());
  done(std::move(results));
}

net::awaitable<bool> LinkProber::send_to(const wire::RingMember& target, wire::Preamble pre,
                                         Clock::time_point slot_end) {
  outbound_.clear();
  auto remaining = std::make_shared<size_t>(lanes_);
  auto finished = std::make_shared<net::Signal>(ex_);
  auto connected = std::make_shared<bool>(false);
  for (uint32_t i = 0; i < lanes_; ++i) {
    pre.lane = static_cast<uint16_t>(i);
    asio::co_spawn(ex_, lane(target, pre, slot_end, connected),
                   [remaining, finished](std::exception_ptr) {
                     if (--*remaining == 0) finished->notify();
                   });
  }
  while (*remaining > 0) co_await finished->wait();
  co_return *connected;
}

net::awaitable<void> LinkProber::lane(wire::RingMember target, wire::Preamble pre,
                                      Clock::time_point slot_end, std::shared_ptr<bool> connected) {
  auto left = std::chrono::duration_cast<milliseconds>(slot_end - Clock::now());
  if (left <= milliseconds(0)) co_return;
  auto sock = co_await net::connect_tcp(ex_, target.host, target.port, left);
  if (!sock.is_ok()) {
    log::get("peer")->debug("probe of peer {} at {}:{}: {}", target.id, target.host, target.port,
                            sock.status().message());
    co_return;
  }
  *connected = true;
  auto conn = std::make_shared<net::Connection>(std::move(sock).value());
  outbound_.push_back(conn);
  asio::steady_timer deadline(ex_, slot_end);
  deadline.async_wait([conn](const asio::error_code& ec) {
    if (!ec) conn->close();
  });
  // Preamble, then bytes until the receiver closes (its window is over) or the slot ends. The
  // receiver's acknowledgement is not awaited: it may queue behind this peer's own probes.
  if ((co_await net::send_preamble(*conn, pre, secret_)).is_ok()) {
    while ((co_await write_all(*conn, probe_bytes())).is_ok()) {
    }
  }
  deadline.cancel();
  conn->close();
}

}  // namespace qccl::peer
