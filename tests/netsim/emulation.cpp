#include "emulation.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>

namespace qccl::netsim {

namespace {

constexpr uint64_t kMinBurstBytes = 16 * 1024;
constexpr double kBurstSeconds = 0.004;
constexpr double kQueueExtraSeconds = 0.100;  // default queue: cap x (delay + 100 ms)

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

}  // namespace

std::optional<uint64_t> parse_rate(std::string_view text) {
  const std::string t = lower(text);
  if (t == "0" || t == "none" || t == "off") return 0;
  struct Unit {
    const char* suffix;
    double bits;
  };
  // Longest suffixes first: "mbit" must not be read as "bit".
  static constexpr Unit kUnits[] = {{"gbit", 1e9}, {"mbit", 1e6}, {"kbit", 1e3}, {"gbps", 8e9},
                                    {"mbps", 8e6}, {"kbps", 8e3}, {"bit", 1},    {"bps", 8}};
  for (const Unit& u : kUnits) {
    const size_t n = std::strlen(u.suffix);
    if (t.size() <= n || t.compare(t.size() - n, n, u.suffix) != 0) continue;
    const std::string number = t.substr(0, t.size() - n);
    char* end = nullptr;
    const double v = std::strtod(number.c_str(), &end);
    if (end != number.c_str() + number.size() || !std::isfinite(v) || v <= 0) return std::nullopt;
    const double bits = v * u.bits;
    if (bits < 1000 || bits > 1e12) return std::nullopt;  // 1 kbit/s .. 1 Tbit/s
    return static_cast<uint64_t>(bits);
  }
  return std::nullopt;
}

std::string validate(const Knobs& k) {
  if (!(k.delay_ms >= 0 && k.delay_ms <= 10000)) return "--delay-ms must be in [0, 10000]";
  if (!(k.jitter_ms >= 0 && k.jitter_ms <= 10000)) return "--jitter-ms must be in [0, 10000]";
  if (!(k.loss_pct >= 0 && k.loss_pct <= 100)) return "--loss must be a percentage in [0, 100]";
  if (k.flow_queue_bytes > (uint64_t{1} << 30)) return "--flow-queue-kb must be at most 1 GiB";
  return "";
}

std::optional<FlowKey> parse_ipv4(const uint8_t* pkt, size_t len) {
  if (len < 20 || (pkt[0] >> 4) != 4) return std::nullopt;
  const size_t ihl = static_cast<size_t>(pkt[0] & 0x0f) * 4;
  const size_t total = size_t{pkt[2]} << 8 | pkt[3];
  if (ihl < 20 || ihl > len || total < ihl || total > len) return std::nullopt;
  FlowKey k;
  std::memcpy(&k.src, pkt + 12, 4);
  std::memcpy(&k.dst, pkt + 16, 4);
  k.proto = pkt[9];
  const bool first_fragment = ((size_t{pkt[6]} << 8 | pkt[7]) & 0x1fff) == 0;
  if ((k.proto == 6 || k.proto == 17) && first_fragment && total >= ihl + 4) {
    k.sport = static_cast<uint16_t>(pkt[ihl] << 8 | pkt[ihl + 1]);
    k.dport = static_cast<uint16_t>(pkt[ihl + 2] << 8 | pkt[ihl + 3]);
  }
  return k;
}

Emulation::Emulation(const Knobs& knobs, uint64_t seed) : rng_(seed) { set_knobs(knobs); }

void Emulation::set_knobs(const Knobs& k) {
  knobs_ = k;
  delay_ns_ = static_cast<int64_t>(k.delay_ms * 1e6);
  jitter_ns_ = static_cast<int64_t>(k.jitter_ms * 1e6);
  loss_threshold_ =
      k.loss_pct >= 100 ? UINT64_MAX : static_cast<uint64_t>(k.loss_pct / 100.0 * 0x1p64);
  if (k.flow_cap_bps == 0) {
    ns_per_byte_ = 0;
    burst_ns_ = queue_ns_ = 0;
    return;
  }
  const double bytes_per_s = static_cast<double>(k.flow_cap_bps) / 8;
  ns_per_byte_ = 1e9 / bytes_per_s;
  const double burst = std::max<double>(kMinBurstBytes, bytes_per_s * kBurstSeconds);
  burst_ns_ = static_cast<int64_t>(burst * ns_per_byte_);
  const double queue = k.flow_queue_bytes > 0
                           ? static_cast<double>(k.flow_queue_bytes)
                           : bytes_per_s * (k.delay_ms / 1000 + kQueueExtraSeconds);
  queue_ns_ = static_cast<int64_t>(queue * ns_per_byte_);
}

Emulation::Verdict Emulation::admit(const FlowKey& flow, size_t len, int64_t now_ns,
                                    int64_t* deliver_ns) {
  if (loss_threshold_ > 0 && rng_() < loss_threshold_) return Verdict::kLost;
  FlowState& f = flows_[flow];
  f.last_seen_ns = now_ns;
  int64_t leave = now_ns;
  if (ns_per_byte_ > 0) {
    // GCRA form of the token bucket: the packet conforms once tat + its transmission time is
    // within one bucket of the clock; until then it waits in the flow's FIFO.
    const int64_t tat =
        std::max(f.tat_ns, now_ns) + static_cast<int64_t>(static_cast<double>(len) * ns_per_byte_);
    leave = std::max(now_ns, tat - burst_ns_);
    if (leave - now_ns > queue_ns_) return Verdict::kCapDrop;
    f.tat_ns = tat;
  }
  int64_t at = leave + delay_ns_;
  if (jitter_ns_ > 0) {
    const double u = static_cast<double>(rng_() >> 11) * 0x1p-53;  // [0, 1)
    at += static_cast<int64_t>((2 * u - 1) * static_cast<double>(jitter_ns_));
    at = std::max(at, leave);
  }
  at = std::max(at, f.last_deliver_ns);
  f.last_deliver_ns = at;
  *deliver_ns = at;
  return Verdict::kDeliver;
}

size_t Emulation::expire(int64_t older_than_ns) {
  return std::erase_if(flows_, [&](const auto& kv) {
    const FlowState& f = kv.second;
    return f.last_seen_ns < older_than_ns && f.tat_ns < older_than_ns &&
           f.last_deliver_ns < older_than_ns;
  });
}

}  // namespace qccl::netsim
