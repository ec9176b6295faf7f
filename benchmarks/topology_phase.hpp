// The --optimize-topology phase of qccl_allreduce_bench (benchmarks/topology_netns.sh runs it):
// the peer side reports its ring position and times qcclOptimizeTopology; the parent side
// admits peers one at a time (so the default ring is the index order) and turns the reported
// positions back into a ring. Lines to the parent, one write each (bench_common.hpp):
//   JOINED index              the peer was admitted (qcclConnect returned)
//   RING phase index rank     its QCCL_ATTR_RING_RANK in phase `default` / `optimized`
//   OPTIMIZED ms              qcclOptimizeTopology's time, slowest peer (peer 0 sends it)
#pragma once

#include "bench_common.hpp"

namespace qccl_bench {

// ---- peer side -----------------------------------------------------------------------------

inline void report_ring(int fd, int index, PeerCtx& ctx, const char* phase) {
  int64_t rank = -1;
  check(qcclGetAttribute(ctx.comm, QCCL_ATTR_RING_RANK, &rank), "qcclGetAttribute(ring rank)");
  send_line(fd, std::string("RING ") + phase + " " + std::to_string(index) + " " +
                    std::to_string(rank));
}

// qcclOptimizeTopology between two barriers, so that its time is the call's alone: the
// probes, the solve and the new ring's connections.
inline void optimize_topology(int fd, int index, PeerCtx& ctx) {
  allreduce_max(ctx, 0.0);
  int64_t t0 = now_ns();
  check(qcclOptimizeTopology(ctx.comm), "qcclOptimizeTopology");
  double ms = allreduce_max(ctx, ns_to_ms(now_ns() - t0));
  char buf[64];
  std::snprintf(buf, sizeof buf, "OPTIMIZED %.3f", ms);
  if (index == 0) send_line(fd, buf);
}

// ---- parent side ---------------------------------------------------------------------------

// Reads lines until peer `index` reports that it was admitted; false (printed) on an ERROR
// line, the deadline or EOF.
inline bool wait_joined(LineReader& reader, int index, int64_t deadline_ns) {
  const std::string want = "JOINED " + std::to_string(index);
  std::string line;
  while (reader.next(line, deadline_ns)) {
    if (line == want) return true;
    if (line.rfind("ERROR", 0) == 0) {
      std::fprintf(stderr, "%s\n", line.c_str());
      return false;
    }
  }
  std::fprintf(stderr, "peer %d not admitted: %s\n", index, reader.error().c_str());
  return false;
}

// Peer indices in ring order (data flows ring[k] -> ring[k+1]) from each index's rank;
// empty unless the ranks are a permutation.
inline std::vector<int> ring_of(const std::vector<int64_t>& rank_of) {
  std::vector<int> ring(rank_of.size(), -1);
  for (size_t i = 0; i < rank_of.size(); ++i) {
    int64_t r = rank_of[i];
    if (r < 0 || r >= int64_t(ring.size()) || ring[size_t(r)] != -1) return {};
    ring[size_t(r)] = int(i);
  }
  return ring;
}

inline std::string ring_string(const std::vector<int>& ring) {
  std::string s;
  for (int i : ring) s += std::to_string(i) + " -> ";
  return ring.empty() ? "?" : s + std::to_string(ring[0]);
}

}  // namespace qccl_bench
