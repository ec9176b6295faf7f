// Internal to the ring solver (master/ring_solver.hpp): the bandwidth matrix as the searches
// see it, and the searches themselves (ring_exact.cpp, ring_heuristic.cpp). Not for use outside
// src/master/ring_*.cpp and their tests.
//
// Weights are integers: 0 = unreachable, otherwise >= 1 and below 2^41. ring_solver.cpp
// derives them from the bandwidths by a power-of-two scaling (exact for integral bandwidths
// below 2^40), so comparisons and sums are exact and ties break the same way everywhere.
// "Good" edges at threshold t are those with weight >= t (t >= 1 never admits an unreachable
// edge).
//
// Thread-safety: pure functions.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace qccl::master::ring {

inline constexpr int64_t kMaxWeight = int64_t{1} << 41;  // weights are < kMaxWeight
inline constexpr size_t kMaxExactN = 16;                 // 2^15 * 16 DP cells (4 MiB)

struct Graph {
  size_t n = 0;
  std::vector<int64_t> w;  // row-major n x n; the diagonal is unused

  int64_t at(size_t i, size_t j) const { return w[i * n + j]; }
  // The graph of the vertices `keep` (index k of the result is keep[k] here).
  Graph subgraph(const std::vector<size_t>& keep) const;
};

// The distinct positive weights, ascending: the candidate bottleneck values.
std::vector<int64_t> distinct_weights(const Graph& g);

// The largest threshold any ring can reach: every vertex needs a good edge out and in.
int64_t bottleneck_upper_bound(const Graph& g);

// True iff a directed Hamiltonian cycle of good edges (>= t) exists: a bitset DP over the
// subsets, O(2^n n). n <= 1 is always true. REQUIRES: n <= kMaxExactN.
bool has_ring(const Graph& g, int64_t t);

// Necessary conditions for a ring of good edges: every vertex has a good edge in and out and
// the good edges connect all vertices strongly. O(n^2).
bool may_have_ring(const Graph& g, int64_t t);

// Exact (Held-Karp, O(2^n n^2)): among all rings, the fewest edges below t, then the largest
// weight sum, then the lexicographically smallest order; order[0] = 0.
// REQUIRES: 1 <= n <= kMaxExactN.
std::vector<size_t> best_ring_exact(const Graph& g, int64_t t);

struct HeuristicResult {
  std::vector<size_t> order;  // order[0] = 0
  bool budget_hit = false;
};

// Iterated local search (ring_heuristic.cpp): the largest bottleneck it can find, then the
// largest sum at that bottleneck; deterministic for a given seed unless `deadline` passes.
// REQUIRES: n >= 4.
HeuristicResult best_ring_heuristic(const Graph& g, uint64_t seed,
                                    std::chrono::steady_clock::time_point deadline);

}  // namespace qccl::master::ring
