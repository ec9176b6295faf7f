// The WAN model of qccl_netsim (docs/netsim.md), without any I/O: the knobs, rate parsing, the
// IPv4 5-tuple of a packet, and the per-flow state that turns "packet of L bytes read at time
// t" into "drop it" or "deliver it at time d". The forwarder (forwarder.hpp) owns one Emulation
// and asks it once per packet.
//
// Per packet, in this order:
//   1. loss: dropped with probability loss_pct / 100 (a seeded PRNG, so runs repeat);
//   2. per-flow cap (flow_cap_bps > 0): a token bucket per flow (rate = the cap, bucket =
//      max(16 KB, 4 ms at the cap)) in front of a FIFO; a packet that would wait longer than
//      the queue allows (flow_queue_bytes at the cap, default cap x (delay + 100 ms)) is
//      dropped, like a cloud's per-flow shaper;
//   3. delay: the packet leaves the shaper and arrives delay_ms later, plus a uniform jitter
//      in [-jitter_ms, +jitter_ms] (never below 0);
//   4. order: a packet never arrives before the previous packet of its flow (so jitter does
//      not reorder a flow; netem without "rate" does reorder).
// Times are nanoseconds of one monotonic clock (the caller's).
//
// Thread-safety: none; one owner (the forwarder's single thread).
#pragma once

#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <unordered_map>

namespace qccl::netsim {

// The emulation's settings; the forwarder's flags and its control file set them.
struct Knobs {
  double delay_ms = 0;            // one-way
  double jitter_ms = 0;           // uniform +-, never reorders a flow
  double loss_pct = 0;            // [0, 100]
  uint64_t flow_cap_bps = 0;      // bits/s per flow, 0 = no cap
  uint64_t flow_queue_bytes = 0;  // per-flow shaper queue, 0 = cap x (delay + 100 ms)
};

// "20mbit", "1.5gbit", "800kbit", "100000bit", "10mbps" (tc units: bps = bytes/s) or
// "0"/"none"/"off" (= 0, no limit). Returns nullopt on anything else.
std::optional<uint64_t> parse_rate(std::string_view text);

// An empty string if `k` is valid, else why not.
std::string validate(const Knobs& k);

// What the IPv4 header of a packet says: its destination and its flow. Ports are 0 for
// protocols other than TCP and UDP and for non-first fragments.
struct FlowKey {
  uint32_t src = 0, dst = 0;  // network byte order
  uint16_t sport = 0, dport = 0;
  uint8_t proto = 0;
  bool operator==(const FlowKey&) const = default;
};
struct FlowKeyHash {
  size_t operator()(const FlowKey& k) const {
    uint64_t h = (uint64_t{k.src} << 32 | k.dst) * 0x9E3779B97F4A7C15ull;
    h ^= (uint64_t{k.sport} << 24 | uint64_t{k.dport} << 8 | k.proto) * 0xC2B2AE3D27D4EB4Full;
    return static_cast<size_t>(h ^ (h >> 29));
  }
};

// The flow of an IPv4 packet, or nullopt if it is not a well-formed IPv4 packet.
std::optional<FlowKey> parse_ipv4(const uint8_t* pkt, size_t len);

class Emulation {
 public:
  enum class Verdict { kDeliver, kLost, kCapDrop };

  explicit Emulation(const Knobs& knobs, uint64_t seed);

  // Takes effect for packets from now on; packets already scheduled keep their times, and a
  // flow's order is still kept (a smaller delay does not overtake earlier packets).
  void set_knobs(const Knobs& knobs);
  const Knobs& knobs() const { return knobs_; }

  // The fate of a packet of `len` bytes of `flow` read at `now_ns`; on kDeliver, *deliver_ns
  // is when it is to be written out.
  Verdict admit(const FlowKey& flow, size_t len, int64_t now_ns, int64_t* deliver_ns);

  // Forgets flows idle since before `older_than_ns` whose shaper queue is empty.
  size_t expire(int64_t older_than_ns);
  size_t flows() const { return flows_.size(); }

 private:
  struct FlowState {
    int64_t tat_ns = 0;           // token bucket: theoretical arrival time of the next byte
    int64_t last_deliver_ns = 0;  // the flow's latest delivery time (no reordering)
    int64_t last_seen_ns = 0;
  };

  Knobs knobs_;
  int64_t delay_ns_ = 0, jitter_ns_ = 0;
  double ns_per_byte_ = 0;       // at the cap
  int64_t burst_ns_ = 0;         // bucket depth, as time at the cap
  int64_t queue_ns_ = 0;         // longest wait in the shaper queue
  uint64_t loss_threshold_ = 0;  // a draw below it is a loss
  std::mt19937_64 rng_;
  std::unordered_map<FlowKey, FlowState, FlowKeyHash> flows_;
};

}  // namespace qccl::netsim
