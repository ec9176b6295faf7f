// solve_ring and suggest_expulsion (master/ring_solver.hpp): from bandwidths to the integer
// graph the searches use (ring_graph.hpp), the choice between the exact and the heuristic
// search, and the expulsion rules.
//
// Bandwidths become integer weights by one power-of-two scaling: the largest bandwidth maps into
// [2^39, 2^40). Multiplying by a power of two is exact in floating point, so integral
// bandwidths below 2^40 bytes/s (1 TB/s) keep exact ratios, ties included; anything else is
// rounded at a resolution of 2^-40 of the fastest link. A reachable link never rounds to 0.
#include "master/ring_solver.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

#include <fmt/format.h>

#include "master/ring_graph.hpp"

namespace qccl::master {
namespace {

constexpr size_t kExactExpelMaxN = 12;  // exhaustive expulsion search up to this many peers

bool is_unknown(double v) { return !(v >= 0) || std::isinf(v); }  // negative, NaN or inf

// The matrix with unknown links estimated (eff) and as integer weights (graph).
struct Prepared {
  ring::Graph graph;
  std::vector<double> eff;
  std::vector<bool> estimated;
};

Prepared prepare(const BandwidthMatrix& m, const SolverOptions& opt) {
  const size_t n = m.size();
  std::vector<double> known;
  for (size_t i = 0; i < n; ++i) {
    for (size_t j = 0; j < n; ++j) {
      if (i != j && !is_unknown(m.at(i, j)) && m.at(i, j) > 0) known.push_back(m.at(i, j));
    }
  }
  double estimate = 1.0;
  if (opt.unknown_bandwidth && !is_unknown(*opt.unknown_bandwidth)) {
    estimate = *opt.unknown_bandwidth;
  } else if (!known.empty()) {
    auto mid = known.begin() + static_cast<ptrdiff_t>((known.size() - 1) / 2);
    std::nth_element(known.begin(), mid, known.end());
    estimate = *mid;
  }
  Prepared p;
  p.graph.n = n;
  p.graph.w.assign(n * n, 0);
  p.eff.assign(n * n, 0.0);
  p.estimated.assign(n * n, false);
  double max_bw = 0;
  for (size_t i = 0; i < n; ++i) {
    for (size_t j = 0; j < n; ++j) {
      if (i == j) continue;
      const bool unknown = is_unknown(m.at(i, j));
      p.eff[i * n + j] = unknown ? estimate : m.at(i, j);
      p.estimated[i * n + j] = unknown;
      max_bw = std::max(max_bw, p.eff[i * n + j]);
    }
  }
  if (max_bw > 0) {
    int exp = 0;
    std::frexp(max_bw, &exp);  // max_bw < 2^exp
    for (size_t k = 0; k < n * n; ++k) {
      if (p.eff[k] > 0) {
        p.graph.w[k] = std::max<int64_t>(1, std::llround(std::ldexp(p.eff[k], 40 - exp)));
      }
    }
  }
  return p;
}

RingSolution describe(std::vector<size_t> order, const Prepared& p) {
  RingSolution s;
  s.order = std::move(order);
  const size_t n = s.order.size();
  if (n < 2) return s;
  s.bottleneck = std::numeric_limits<double>::infinity();
  for (size_t k = 0; k < n; ++k) {
    const size_t e = s.order[k] * n + s.order[(k + 1) % n];
    s.bottleneck = std::min(s.bottleneck, p.eff[e]);
    s.total += p.eff[e];
    s.feasible = s.feasible && p.graph.w[e] > 0;
    s.estimated_edges += p.estimated[e] ? 1 : 0;
  }
  return s;
}

// Exact: the largest threshold with a ring (binary search, has_ring is monotone), then the best
// ring at it. Without any ring of reachable edges, the threshold is the smallest positive
// weight, so the ring has the fewest unreachable edges.
std::vector<size_t> solve_exact(const ring::Graph& g) {
  const std::vector<int64_t> vals = ring::distinct_weights(g);
  if (vals.empty()) return ring::best_ring_exact(g, 1);
  size_t lo = 0;
  if (ring::has_ring(g, vals[0])) {
    auto ub = std::upper_bound(vals.begin(), vals.end(), ring::bottleneck_upper_bound(g));
    size_t hi = static_cast<size_t>(ub - vals.begin()) - 1;
    while (lo < hi) {
      const size_t mid = lo + (hi - lo + 1) / 2;
      if (ring::may_have_ring(g, vals[mid]) && ring::has_ring(g, vals[mid])) {
        lo = mid;
      } else {
        hi = mid - 1;
      }
    }
  }
  return ring::best_ring_exact(g, vals[lo]);
}

size_t exact_limit(const SolverOptions& opt) {
  return std::max<size_t>(3, std::min(opt.exact_max_n, ring::kMaxExactN));
}

// Whether a ring of reachable links exists among `keep` (exact up to kMaxExactN peers).
bool reachable_ring(const ring::Graph& g, const std::vector<size_t>& keep,
                    const SolverOptions& opt) {
  if (keep.size() <= 1) return true;
  const ring::Graph sub = g.subgraph(keep);
  if (!ring::may_have_ring(sub, 1)) return false;
  if (sub.n <= ring::kMaxExactN) return ring::has_ring(sub, 1);
  const auto deadline = std::chrono::steady_clock::now() + opt.budget;
  const ring::HeuristicResult h = ring::best_ring_heuristic(sub, opt.seed, deadline);
  for (size_t k = 0; k < sub.n; ++k) {
    if (sub.at(h.order[k], h.order[(k + 1) % sub.n]) <= 0) return false;
  }
  return true;
}

// Reachable links of v to and from the other peers of `alive`: {out, in}.
std::pair<size_t, size_t> degree(const ring::Graph& g, const std::vector<size_t>& alive, size_t v) {
  size_t out = 0;
  size_t in = 0;
  for (size_t u : alive) {
    if (u == v) continue;
    out += g.at(v, u) > 0 ? 1 : 0;
    in += g.at(u, v) > 0 ? 1 : 0;
  }
  return {out, in};
}

std::vector<size_t> without(const std::vector<size_t>& alive, const std::vector<size_t>& drop) {
  std::vector<size_t> keep;
  for (size_t v : alive) {
    if (std::find(drop.begin(), drop.end(), v) == drop.end()) keep.push_back(v);
  }
  return keep;
}

// Expels, one at a time and lowest index first, the peers no ring could include: no reachable
// link out to, or in from, the others still alive.
void expel_isolated(const ring::Graph& g, std::vector<size_t>& alive,
                    std::vector<ExpelledPeer>& out) {
  bool changed = true;
  while (changed && alive.size() > 1) {
    changed = false;
    const char* others = out.empty() ? "other peer" : "remaining peer";
    for (size_t v : alive) {
      auto [dout, din] = degree(g, alive, v);
      if (dout == 0 || din == 0) {
        out.push_back({v, dout == 0 ? fmt::format("reaches no {}", others)
                                    : fmt::format("is reached by no {}", others)});
        alive = without(alive, {v});
        changed = true;
        break;
      }
    }
  }
}

std::string no_ring_reason(size_t links, size_t peers) {
  return fmt::format(
      "no ring of reachable links exists with it (it has {} of {} possible reachable links, the "
      "fewest)",
      links, 2 * (peers - 1));
}

// The fewest peers whose removal leaves a ring, exhaustively: subsets by size, then by their
// total number of reachable links, then by index.
std::vector<size_t> fewest_exact(const ring::Graph& g, const std::vector<size_t>& alive,
                                 const std::vector<size_t>& links, const SolverOptions& opt) {
  const size_t m = alive.size();
  for (size_t k = 1; k < m; ++k) {
    std::vector<std::pair<size_t, std::vector<size_t>>> subsets;  // (links, positions)
    std::vector<bool> pick(m, false);
    std::fill(pick.begin(), pick.begin() + static_cast<ptrdiff_t>(k), true);
    do {  // prev_permutation over a sorted-descending mask: index-lexicographic subsets
      std::vector<size_t> pos;
      size_t total = 0;
      for (size_t x = 0; x < m; ++x) {
        if (pick[x]) {
          pos.push_back(x);
          total += links[x];
        }
      }
      subsets.emplace_back(total, std::move(pos));
    } while (std::prev_permutation(pick.begin(), pick.end()));
    std::sort(subsets.begin(), subsets.end());
    for (const auto& [total, pos] : subsets) {
      std::vector<size_t> drop;
      for (size_t x : pos) drop.push_back(alive[x]);
      if (reachable_ring(g, without(alive, drop), opt)) return pos;
    }
  }
  return {};  // unreachable: a single peer is always a ring
}

}  // namespace

BandwidthMatrix::BandwidthMatrix(size_t n, double fill) : n_(n), bw_(n * n, fill) {}

BandwidthMatrix BandwidthMatrix::subset(const std::vector<size_t>& keep) const {
  BandwidthMatrix s(keep.size());
  for (size_t i = 0; i < keep.size(); ++i) {
    for (size_t j = 0; j < keep.size(); ++j) s.set(i, j, at(keep[i], keep[j]));
  }
  return s;
}

RingSolution solve_ring(const BandwidthMatrix& m, const SolverOptions& opt) {
  const size_t n = m.size();
  if (n == 0) {
    RingSolution s;
    s.exact = true;
    return s;
  }
  const Prepared p = prepare(m, opt);
  if (n <= exact_limit(opt)) {
    RingSolution s = describe(solve_exact(p.graph), p);
    s.exact = true;
    return s;
  }
  const auto deadline = std::chrono::steady_clock::now() + opt.budget;
  ring::HeuristicResult h = ring::best_ring_heuristic(p.graph, opt.seed, deadline);
  RingSolution s = describe(std::move(h.order), p);
  s.budget_hit = h.budget_hit;
  return s;
}

std::vector<ExpelledPeer> suggest_expulsion(const BandwidthMatrix& m, const SolverOptions& opt) {
  const ring::Graph g = prepare(m, opt).graph;
  std::vector<size_t> alive(m.size());
  for (size_t v = 0; v < alive.size(); ++v) alive[v] = v;
  std::vector<ExpelledPeer> out;
  if (reachable_ring(g, alive, opt)) return out;
  expel_isolated(g, alive, out);
  while (!reachable_ring(g, alive, opt)) {
    std::vector<size_t> links;
    for (size_t v : alive) {
      auto [dout, din] = degree(g, alive, v);
      links.push_back(dout + din);
    }
    if (alive.size() <= kExactExpelMaxN) {
      for (size_t x : fewest_exact(g, alive, links, opt)) {
        out.push_back({alive[x], no_ring_reason(links[x], alive.size())});
      }
      break;
    }
    // Greedy: the fewest links, then the lowest index; then whoever that isolates.
    const size_t x =
        static_cast<size_t>(std::min_element(links.begin(), links.end()) - links.begin());
    out.push_back({alive[x], no_ring_reason(links[x], alive.size())});
    alive = without(alive, {alive[x]});
    expel_isolated(g, alive, out);
  }
  std::sort(out.begin(), out.end(),
            [](const ExpelledPeer& a, const ExpelledPeer& b) { return a.index < b.index; });
  return out;
}

}  // namespace qccl::master
