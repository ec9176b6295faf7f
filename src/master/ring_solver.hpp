// Ring solver: which cyclic order of a group's peers makes the fastest ring all-reduce, given
// the measured bandwidth of every directed link (pure: no I/O, no threads, no logging).
//
// A ring all-reduce moves the same bytes over every ring edge, so it runs at the speed of its
// slowest edge. solve_ring() therefore chooses, among all cyclic orders of the n peers:
//   1. the largest bottleneck (the slowest directed edge order[k] -> order[k+1]),
//   2. then the largest sum of edge bandwidths (a tie-break that prefers fast rings overall),
//   3. then the lexicographically smallest order (order[0] is always 0), so that the result
//      is the same on every machine.
// Exact (Held-Karp dynamic programming) up to SolverOptions::exact_max_n peers; beyond, a
// seeded iterated local search (Or-opt, asymmetric 2-opt, double-bridge kicks) that finds the
// bottleneck by a threshold search and then improves the sum. docs/topology.md ("Solver")
// describes both and gives their run times.
//
// Determinism: results depend only on the matrix and the options. Bandwidths are compared as
// integers (exactly proportional to the input for integral bandwidths below 2^40 bytes/s), the
// heuristic uses its own seeded generator and fixed iteration counts. The time budget is a
// safety cap only; if it is ever hit (RingSolution::budget_hit) the result depends on timing.
//
// Unreachable links (bandwidth 0) are never used when some ring avoids them. When none does,
// the solution is marked infeasible and suggest_expulsion() names the peers to expel.
//
// Thread-safety: pure functions; BandwidthMatrix is a value type.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace qccl::master {

// Directed bandwidth matrix of n peers (indices 0..n-1; the caller maps them to peer ids).
// at(i, j) is the measured bytes/s from peer i to peer j (i != j): 0 = unreachable, a negative
// value (or NaN or infinity) = unknown. The diagonal is ignored.
class BandwidthMatrix {
 public:
  static constexpr double kUnknown = -1.0;

  BandwidthMatrix() = default;
  // n peers, every link set to `fill`.
  explicit BandwidthMatrix(size_t n, double fill = kUnknown);

  size_t size() const { return n_; }
  // REQUIRES: i < size(), j < size().
  double at(size_t i, size_t j) const { return bw_[i * n_ + j]; }
  void set(size_t i, size_t j, double bytes_per_s) { bw_[i * n_ + j] = bytes_per_s; }
  // The matrix of the peers `keep` (in that order): index k of the result is keep[k] here.
  // REQUIRES: every element < size().
  BandwidthMatrix subset(const std::vector<size_t>& keep) const;

 private:
  size_t n_ = 0;
  std::vector<double> bw_;  // row-major n x n
};

struct SolverOptions {
  // Solve exactly (proven optimal) up to this many peers; the cost grows as 2^n n^2 (12 peers:
  // 0.25 ms, 16 peers: 5 ms; docs/topology.md). Values above 16 are treated as 16.
  size_t exact_max_n = 12;
  // Safety cap on the heuristic's run time. The heuristic's work is bounded by iteration
  // counts; this only stops a pathological run (the result then depends on timing).
  std::chrono::milliseconds budget{200};
  uint64_t seed = 1;  // the heuristic's random generator
  // Bandwidth assumed for unknown links. Unset: the (lower) median of the known reachable
  // links, or 1 byte/s when no link is known. 0: unknown links count as unreachable.
  std::optional<double> unknown_bandwidth;
};

struct RingSolution {
  // A cyclic order of all n indices, starting with 0; data flows order[k] -> order[k+1] and
  // order[n-1] -> order[0]. Empty for n = 0.
  std::vector<size_t> order;
  double bottleneck = 0;       // min over ring edges of the bandwidth (bytes/s); 0 when n < 2
  double total = 0;            // sum over ring edges, order[0] -> order[1] first
  bool exact = false;          // proven optimal (n <= exact_max_n)
  bool feasible = true;        // every ring edge is reachable (false: bottleneck is 0)
  size_t estimated_edges = 0;  // ring edges whose bandwidth was unknown (estimated)
  bool budget_hit = false;     // the time budget cut the heuristic short
};

RingSolution solve_ring(const BandwidthMatrix& m, const SolverOptions& opt = {});

struct ExpelledPeer {
  size_t index;        // index in the matrix
  std::string reason;  // why, without naming the peer ("reaches no other peer", ...)
};

// The peers to expel so that a ring of reachable links exists among the others; empty when
// one exists already. Peers that reach no remaining peer, or that no remaining peer reaches,
// go first (every ring needs them to); then the fewest peers that make a ring possible,
// preferring the peers with the fewest reachable links (in + out), then the lowest indices.
// That choice is exhaustive (proven fewest) up to 12 remaining peers and greedy beyond (the
// peer with the fewest reachable links, until the heuristic finds a ring). Unknown links
// count as reachable unless opt.unknown_bandwidth is 0. Sorted by index.
std::vector<ExpelledPeer> suggest_expulsion(const BandwidthMatrix& m,
                                            const SolverOptions& opt = {});

}  // namespace qccl::master
