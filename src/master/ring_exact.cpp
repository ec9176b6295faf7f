// Exact ring searches over subsets (see ring_graph.hpp), and the graph helpers both searches
// share.
//
// has_ring: reach[S] is the set of vertices v such that a path of good edges starts at vertex
// 0, visits exactly the vertices of S and ends at v. Built in increasing order of S (a subset
// is only extended into larger ones), one bit operation per (S, v): O(2^n n).
//
// best_ring_exact: Held-Karp run backwards so that the lexicographically smallest optimum can
// be read off front to back. With the vertices other than 0 as bits, tail[R][v] is the best
// value of a path that starts at v, visits every vertex of R once and then returns to 0.
//   tail[{}][v] = val(v, 0)
//   tail[R][v]  = max over u in R of val(v, u) + tail[R \ u][u]
// The optimum is max over u of val(0, u) + tail[all \ u][u]; the order is rebuilt from vertex
// 0 by taking, at each step, the smallest u that still reaches the optimum. val(a, b) is the
// weight, minus kPenalty when the edge is below the threshold: one bad edge costs more than any
// sum of weights gains, so the optimum has the fewest bad edges first, then the largest sum.
// Everything is int64 arithmetic, so "still reaches the optimum" is an exact comparison.
#include "master/ring_graph.hpp"

#include <algorithm>
#include <bit>
#include <limits>

namespace qccl::master::ring {
namespace {

constexpr int64_t kPenalty = int64_t{1} << 46;
static_assert(kMaxWeight * static_cast<int64_t>(kMaxExactN) < kPenalty,
              "one bad edge must outweigh any ring's weight sum");
static_assert(kPenalty * static_cast<int64_t>(kMaxExactN) * 2 <
                  std::numeric_limits<int64_t>::max() / 2,
              "DP values must not overflow");

// Vertices reachable from 0 along good edges (forward) or against them (backward).
size_t reach_from_zero(const Graph& g, int64_t t, bool forward) {
  std::vector<size_t> stack{0};
  std::vector<bool> seen(g.n, false);
  seen[0] = true;
  size_t count = 1;
  while (!stack.empty()) {
    size_t v = stack.back();
    stack.pop_back();
    for (size_t u = 0; u < g.n; ++u) {
      if (u == v || seen[u]) continue;
      int64_t w = forward ? g.at(v, u) : g.at(u, v);
      if (w >= t) {
        seen[u] = true;
        ++count;
        stack.push_back(u);
      }
    }
  }
  return count;
}

}  // namespace

Graph Graph::subgraph(const std::vector<size_t>& keep) const {
  Graph s;
  s.n = keep.size();
  s.w.assign(s.n * s.n, 0);
  for (size_t i = 0; i < s.n; ++i) {
    for (size_t j = 0; j < s.n; ++j) {
      if (i != j) s.w[i * s.n + j] = at(keep[i], keep[j]);
    }
  }
  return s;
}

std::vector<int64_t> distinct_weights(const Graph& g) {
  std::vector<int64_t> v;
  for (size_t i = 0; i < g.n; ++i) {
    for (size_t j = 0; j < g.n; ++j) {
      if (i != j && g.at(i, j) > 0) v.push_back(g.at(i, j));
    }
  }
  std::sort(v.begin(), v.end());
  v.erase(std::unique(v.begin(), v.end()), v.end());
  return v;
}

int64_t bottleneck_upper_bound(const Graph& g) {
  int64_t bound = std::numeric_limits<int64_t>::max();
  for (size_t v = 0; v < g.n; ++v) {
    int64_t best_out = 0;
    int64_t best_in = 0;
    for (size_t u = 0; u < g.n; ++u) {
      if (u == v) continue;
      best_out = std::max(best_out, g.at(v, u));
      best_in = std::max(best_in, g.at(u, v));
    }
    bound = std::min({bound, best_out, best_in});
  }
  return bound;
}

bool may_have_ring(const Graph& g, int64_t t) {
  if (g.n <= 1) return true;
  if (bottleneck_upper_bound(g) < t) return false;
  return reach_from_zero(g, t, true) == g.n && reach_from_zero(g, t, false) == g.n;
}

bool has_ring(const Graph& g, int64_t t) {
  const size_t n = g.n;
  if (n <= 1) return true;
  std::vector<uint32_t> good_in(n, 0);  // good_in[u]: bit v set iff v -> u is good
  for (size_t v = 0; v < n; ++v) {
    for (size_t u = 0; u < n; ++u) {
      if (u != v && g.at(v, u) >= t) good_in[u] |= uint32_t{1} << v;
    }
  }
  const uint32_t full = (uint32_t{1} << n) - 1;
  std::vector<uint32_t> reach(size_t{1} << n, 0);
  reach[1] = 1;
  for (uint32_t s = 1; s < full; s += 2) {  // odd: every path starts at vertex 0
    const uint32_t ends = reach[s];
    if (ends == 0) continue;
    for (uint32_t rest = full & ~s; rest != 0; rest &= rest - 1) {
      const uint32_t u = static_cast<uint32_t>(std::countr_zero(rest));
      if (good_in[u] & ends) reach[s | (uint32_t{1} << u)] |= uint32_t{1} << u;
    }
  }
  return (reach[full] & good_in[0]) != 0;
}

std::vector<size_t> best_ring_exact(const Graph& g, int64_t t) {
  const size_t n = g.n;
  if (n == 1) return {0};
  auto val = [&](size_t a, size_t b) {
    int64_t w = g.at(a, b);
    return w >= t ? w : w - kPenalty;
  };
  // Bit k of a subset is vertex k + 1.
  const size_t m = n - 1;
  const uint32_t all = (uint32_t{1} << m) - 1;
  constexpr int64_t kNone = std::numeric_limits<int64_t>::min();
  std::vector<int64_t> tail((size_t{1} << m) * n, kNone);
  auto cell = [&](uint32_t r, size_t v) -> int64_t& { return tail[size_t{r} * n + v]; };
  for (size_t v = 1; v < n; ++v) cell(0, v) = val(v, 0);
  for (uint32_t r = 1; r <= all; ++r) {
    for (size_t v = 1; v < n; ++v) {
      if (r & (uint32_t{1} << (v - 1))) continue;
      int64_t best = kNone;
      for (uint32_t rest = r; rest != 0; rest &= rest - 1) {
        const int k = std::countr_zero(rest);
        const size_t u = static_cast<size_t>(k) + 1;
        best = std::max(best, val(v, u) + cell(r & ~(uint32_t{1} << k), u));
      }
      cell(r, v) = best;
    }
  }
  // The optimum, then the order: the smallest next vertex that still reaches it.
  int64_t need = kNone;
  for (size_t u = 1; u < n; ++u) {
    need = std::max(need, val(0, u) + cell(all & ~(uint32_t{1} << (u - 1)), u));
  }
  std::vector<size_t> order{0};
  size_t cur = 0;
  uint32_t r = all;
  while (r != 0) {
    for (uint32_t rest = r; rest != 0; rest &= rest - 1) {
      const int k = std::countr_zero(rest);
      const size_t u = static_cast<size_t>(k) + 1;
      const uint32_t after = r & ~(uint32_t{1} << k);
      if (val(cur, u) + cell(after, u) == need) {
        need -= val(cur, u);
        order.push_back(u);
        cur = u;
        r = after;
        break;
      }
    }
  }
  return order;
}

}  // namespace qccl::master::ring
