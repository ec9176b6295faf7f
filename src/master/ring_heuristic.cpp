// The ring heuristic for groups too large for the exact search (see ring_graph.hpp).
//
// Bottleneck first, by a threshold search. Starting from any ring of reachable edges, a binary
// search over the distinct weights (between that ring's bottleneck and the upper bound "every
// vertex needs a good edge in and out") probes the middle value t: is there a ring with no edge
// below t? Thresholds whose good edges are not strongly connected are rejected without
// searching. A success moves the lower end to the found ring's actual bottleneck (at or above
// t); a failure lowers the upper end. Then the sum is improved at the final threshold with a
// search that never lets an edge fall below it.
//
// A probe first runs a few depth-first searches for a ring of good edges (random start,
// Warnsdorff order: the successor with the fewest free good successors first, pruned when an
// unvisited peer loses its last possible predecessor or successor, a bounded number of
// extensions each), which threads sparse good graphs; then the iterated local search below,
// from the best ring so far, with the cost (edges below t, minus the weight sum).
//
// The search at one threshold (improve): iterated local search. Local search applies improving
// moves until none is left, looking again only at peers next to a changed edge (a work queue,
// "don't look bits"), so a kick costs O(n) per touched peer instead of full O(n^2) scans:
//   - Or-opt: move a segment of 1-3 consecutive peers, unreversed, between two other
//     neighbours (3 edges change; no edge changes direction, so it suits asymmetric links);
//   - 2-opt: reverse a segment. With asymmetric links every inner edge changes direction;
//     prefix sums of the forward and backward costs make each candidate O(1).
// A kick is a local double bridge (A B C D -> A C B D with B and C of at most 10 peers), which
// no 2-opt/Or-opt move undoes; the kicked tour is kept when local search makes it no worse.
// Restarts begin from a randomized Warnsdorff walk (the DFS without backtracking).
//
// Work is bounded by the iteration counts below, never by the clock; randomness comes from
// std::mt19937_64 (its sequence is fixed by the standard) reduced by `%`, not from
// std::uniform_int_distribution or std::shuffle (implementation-defined). So the result depends
// on the graph and the seed only, unless the safety deadline stops the search first.
#include <algorithm>
#include <limits>
#include <random>

#include "master/ring_graph.hpp"

namespace qccl::master::ring {
namespace {

using Clock = std::chrono::steady_clock;
using Tour = std::vector<uint32_t>;

// Iteration counts: the deterministic work bound (docs/topology.md has the resulting times).
constexpr size_t kDfsAttempts = 16;       // per threshold probe, before the local search
constexpr size_t kDfsBudgetPerPeer = 32;  // DFS extensions per attempt, per peer
constexpr size_t kProbeRestarts = 3;      // the warm tour + 2 constructions
size_t probe_kicks(size_t n) { return 2 * n; }
size_t polish_kicks(size_t n) { return 8 * n; }
constexpr size_t kKickSegment = 10;  // longest segment a double bridge moves

struct Cost {
  int64_t bad = 0;  // edges below the threshold
  int64_t sum = 0;  // weight sum
  friend Cost operator+(Cost a, Cost b) { return {a.bad + b.bad, a.sum + b.sum}; }
  friend Cost operator-(Cost a, Cost b) { return {a.bad - b.bad, a.sum - b.sum}; }
};
// a is strictly better than b.
bool better(Cost a, Cost b) { return a.bad != b.bad ? a.bad < b.bad : a.sum > b.sum; }
bool improves(Cost delta) { return better(delta, Cost{}); }

int64_t min_weight(const Graph& g, const Tour& tour) {
  int64_t m = std::numeric_limits<int64_t>::max();
  for (size_t k = 0; k < tour.size(); ++k) {
    m = std::min(m, g.at(tour[k], tour[(k + 1) % tour.size()]));
  }
  return m;
}

class Search {
 public:
  Search(const Graph& g, uint64_t seed, Clock::time_point deadline)
      : g_(g), rng_(seed), deadline_(deadline) {}

  bool stopped() const { return stopped_; }

  // The best tour found at threshold t from `warm` (restart 0) and restarts - 1 constructions,
  // each followed by `kicks` kicks. stop_when_good: return as soon as no edge is below t.
  Tour improve(Tour warm, int64_t t, size_t restarts, size_t kicks, bool stop_when_good) {
    t_ = t;
    Tour best = std::move(warm);
    local_search(best, Tour(best));
    Cost best_cost = cost(best);
    for (size_t r = 0; r < restarts && !stopped_; ++r) {
      if (stop_when_good && best_cost.bad == 0) break;
      Tour cur = best;
      if (r > 0) {
        cur = construct();
        local_search(cur, Tour(cur));
      }
      Cost cur_cost = cost(cur);
      for (size_t k = 0; k < kicks && !stopped_; ++k) {
        if (stop_when_good && cur_cost.bad == 0) break;
        Tour cand = cur;
        const std::vector<uint32_t> touched = double_bridge(cand);
        local_search(cand, touched);
        const Cost c = cost(cand);
        if (!better(cur_cost, c)) {
          cur = std::move(cand);
          cur_cost = c;
        }
      }
      if (better(cur_cost, best_cost)) {
        best = std::move(cur);
        best_cost = cur_cost;
      }
    }
    return best;
  }

  // Depth-first search for a ring of good edges at threshold t from a random peer: successors
  // in Warnsdorff order (fewest free good successors first, random among equals), pruned as
  // soon as an unvisited peer has no possible predecessor or successor left or the start peer
  // no possible predecessor. Gives up after `budget` extensions.
  bool dfs_ring(int64_t t, size_t budget, Tour& out) {
    t_ = t;
    const size_t n = g_.n;
    start_ = static_cast<uint32_t>(below(n));
    visited_.assign(n, false);
    in_cnt_.assign(n, 0);
    out_cnt_.assign(n, 0);
    start_in_ = 0;
    for (size_t v = 0; v < n; ++v) {
      for (size_t u = 0; u < n; ++u) {
        if (u == v || !good(v, u)) continue;
        ++out_cnt_[v];
        ++in_cnt_[u];
      }
    }
    start_in_ = in_cnt_[start_];
    visited_[start_] = true;
    budget_ = budget;
    out.assign(1, start_);
    return extend(out);
  }

  // Randomized Warnsdorff walk over the good edges at the current threshold.
  Tour construct() {
    const size_t n = g_.n;
    std::vector<size_t> free_out(n, 0);  // good edges to unvisited peers
    for (size_t v = 0; v < n; ++v) {
      for (size_t u = 0; u < n; ++u) free_out[v] += (u != v && good(v, u)) ? 1 : 0;
    }
    std::vector<bool> visited(n, false);
    auto visit = [&](uint32_t x) {
      visited[x] = true;
      for (size_t v = 0; v < n; ++v) {
        if (v != x && good(v, x)) --free_out[v];
      }
    };
    Tour tour{static_cast<uint32_t>(below(n))};
    visit(tour[0]);
    while (tour.size() < n) {
      const uint32_t cur = tour.back();
      uint32_t next = 0;
      size_t best_key = std::numeric_limits<size_t>::max();
      size_t ties = 0;
      int64_t fallback_w = -1;
      for (uint32_t u = 0; u < n; ++u) {
        if (visited[u]) continue;
        if (good(cur, u)) {
          if (free_out[u] < best_key) {
            best_key = free_out[u];
            next = u;
            ties = 1;
          } else if (free_out[u] == best_key && below(++ties) == 0) {
            next = u;
          }
        } else if (ties == 0 && g_.at(cur, u) > fallback_w) {
          fallback_w = g_.at(cur, u);  // no good edge: the fastest bad one
          next = u;
        }
      }
      tour.push_back(next);
      visit(next);
    }
    tick(n * n);
    return tour;
  }

 private:
  bool good(size_t a, size_t b) const { return g_.at(a, b) >= t_; }
  Cost edge(uint32_t a, uint32_t b) const {
    const int64_t w = g_.at(a, b);
    return Cost{w < t_ ? 1 : 0, w};
  }
  Cost cost(const Tour& tour) const {
    Cost c;
    for (size_t k = 0; k < tour.size(); ++k) c = c + edge(tour[k], tour[(k + 1) % tour.size()]);
    return c;
  }

  // DFS step of dfs_ring: extends path (whose last peer is e) by every candidate in turn.
  // in_cnt_[w] / out_cnt_[w] count the good edges into an unvisited w from unvisited peers and
  // e, and out of w to unvisited peers and the start; start_in_ the good edges into the start
  // from unvisited peers and e.
  bool extend(Tour& path) {
    const size_t n = g_.n;
    const uint32_t e = path.back();
    if (path.size() == n) return good(e, start_);
    std::vector<std::pair<uint64_t, uint32_t>> cands;  // (out_cnt, random) -> peer
    for (uint32_t u = 0; u < n; ++u) {
      if (!visited_[u] && good(e, u))
        cands.emplace_back((uint64_t{out_cnt_[u]} << 32) | (rng_() >> 32), u);
    }
    std::sort(cands.begin(), cands.end());
    for (const auto& [key, u] : cands) {
      if (budget_ == 0 || stopped_) return false;
      --budget_;
      tick(n);
      // e stops being a possible predecessor; u stops being a possible successor.
      visited_[u] = true;
      bool dead = false;
      for (uint32_t w = 0; w < n; ++w) {
        if (visited_[w]) continue;
        in_cnt_[w] -= good(e, w) ? 1 : 0;
        out_cnt_[w] -= good(w, u) ? 1 : 0;
        dead = dead || in_cnt_[w] == 0 || out_cnt_[w] == 0;
      }
      const size_t e_to_start = (e != start_ && good(e, start_)) ? 1 : 0;
      start_in_ -= e_to_start;
      dead = dead || start_in_ == 0;
      if (!dead) {
        path.push_back(u);
        if (extend(path)) return true;
        path.pop_back();
      }
      start_in_ += e_to_start;
      for (uint32_t w = 0; w < n; ++w) {
        if (visited_[w]) continue;
        in_cnt_[w] += good(e, w) ? 1 : 0;
        out_cnt_[w] += good(w, u) ? 1 : 0;
      }
      visited_[u] = false;
    }
    return false;
  }

  // Local search with a work queue ("don't look bits"): only peers next to a changed edge are
  // looked at again, so a kick costs O(n) per touched peer rather than full scans.
  void local_search(Tour& tour, const std::vector<uint32_t>& seeds) {
    const size_t n = tour.size();
    queued_.assign(n, false);
    queue_.clear();
    size_t head = 0;
    auto push = [&](uint32_t v) {
      if (!queued_[v]) {
        queued_[v] = true;
        queue_.push_back(v);
      }
    };
    for (uint32_t v : seeds) push(v);
    pos_.resize(n);
    for (size_t k = 0; k < n; ++k) pos_[tour[k]] = k;
    std::vector<uint32_t> touched;
    while (head < queue_.size() && !stopped_) {
      const uint32_t v = queue_[head++];
      queued_[v] = false;
      touched.clear();
      if (or_opt_at(tour, pos_[v], touched) || two_opt_at(tour, pos_[v], touched)) {
        for (size_t k = 0; k < n; ++k) pos_[tour[k]] = k;
        push(v);
        for (uint32_t x : touched) push(x);
      }
      if (head > 4 * n) {
        queue_.erase(queue_.begin(), queue_.begin() + static_cast<ptrdiff_t>(head));
        head = 0;
      }
    }
  }

  // Segments of 1-3 peers that contain position i at either end, moved unreversed between two
  // other neighbours: applies the first improving move.
  bool or_opt_at(Tour& tour, size_t i, std::vector<uint32_t>& touched) {
    const size_t n = tour.size();
    const size_t max_len = std::min<size_t>(3, n - 2);
    for (size_t len = 1; len <= max_len; ++len) {
      for (size_t from : {i, (i + n - (len - 1)) % n}) {
        if (or_opt_segment(tour, from, len, touched)) return true;
        if (len == 1) break;
      }
    }
    return false;
  }

  bool or_opt_segment(Tour& tour, size_t i, size_t len, std::vector<uint32_t>& touched) {
    const size_t n = tour.size();
    const uint32_t p = tour[(i + n - 1) % n];
    const uint32_t s0 = tour[i];
    const uint32_t s1 = tour[(i + len - 1) % n];
    const uint32_t q = tour[(i + len) % n];
    const Cost cut = edge(p, q) - edge(p, s0) - edge(s1, q);
    // Insert between a -> b, an edge of the remaining cycle q ... p other than p -> q.
    const size_t slots = n - len - 1;
    tick(slots);
    for (size_t k = 0; k < slots; ++k) {
      const uint32_t a = tour[(i + len + k) % n];
      const uint32_t b = tour[(i + len + k + 1) % n];
      if (improves(cut + edge(a, s0) + edge(s1, b) - edge(a, b))) {
        Tour moved;
        moved.reserve(n);
        for (size_t x = 0; x <= k; ++x) moved.push_back(tour[(i + len + x) % n]);
        for (size_t x = 0; x < len; ++x) moved.push_back(tour[(i + x) % n]);
        for (size_t x = k + 1; x < n - len; ++x) moved.push_back(tour[(i + len + x) % n]);
        tour = std::move(moved);
        touched.insert(touched.end(), {p, s0, s1, q, a, b});
        return true;
      }
    }
    return false;
  }

  // Reversals of a segment that starts right after position i: applies the first improving.
  bool two_opt_at(Tour& tour, size_t i, std::vector<uint32_t>& touched) {
    const size_t n = tour.size();
    if (n < 4) return false;
    auto at = [&](size_t k) { return tour[(i + k) % n]; };  // positions relative to i
    // fwd[k] / rev[k]: cost of the edges between relative positions 1..k, forwards / reversed.
    fwd_.assign(n, Cost{});
    rev_.assign(n, Cost{});
    for (size_t k = 1; k + 1 < n; ++k) {
      fwd_[k + 1] = fwd_[k] + edge(at(k), at(k + 1));
      rev_[k + 1] = rev_[k] + edge(at(k + 1), at(k));
    }
    tick(2 * n);
    const uint32_t a = at(0);
    const uint32_t c = at(1);
    for (size_t j = 2; j < n; ++j) {
      // Reverse relative positions 1..j: a -> c ... d -> b becomes a -> d ... c -> b.
      const uint32_t d = at(j);
      const uint32_t b = at((j + 1) % n);
      const Cost delta = edge(a, d) + edge(c, b) - edge(a, c) - edge(d, b) + (rev_[j] - fwd_[j]);
      if (improves(delta)) {
        std::rotate(tour.begin(), tour.begin() + static_cast<ptrdiff_t>(i), tour.end());
        std::reverse(tour.begin() + 1, tour.begin() + static_cast<ptrdiff_t>(j + 1));
        touched.insert(touched.end(), {a, c, d, b});
        return true;
      }
    }
    return false;
  }

  // A B C D -> A C B D, with B and C of 1..kKickSegment peers (D may be empty). Returns the
  // peers at the ends of the changed edges.
  std::vector<uint32_t> double_bridge(Tour& tour) {
    const size_t n = tour.size();
    const size_t p1 = 1 + below(n - 2);
    const size_t p2 = p1 + 1 + below(std::min(kKickSegment, n - p1 - 1));
    const size_t p3 = p2 + 1 + below(std::min(kKickSegment, n - p2));
    std::vector<uint32_t> touched{tour[p1 - 1], tour[p1],     tour[p2 - 1],
                                  tour[p2],     tour[p3 - 1], tour[p3 % n]};
    Tour out(tour.begin(), tour.begin() + static_cast<ptrdiff_t>(p1));
    out.insert(out.end(), tour.begin() + static_cast<ptrdiff_t>(p2),
               tour.begin() + static_cast<ptrdiff_t>(p3));
    out.insert(out.end(), tour.begin() + static_cast<ptrdiff_t>(p1),
               tour.begin() + static_cast<ptrdiff_t>(p2));
    out.insert(out.end(), tour.begin() + static_cast<ptrdiff_t>(p3), tour.end());
    tour = std::move(out);
    return touched;
  }

  size_t below(size_t k) { return static_cast<size_t>(rng_() % k); }

  // Counts work and looks at the clock every 2^16 evaluations (the safety cap only).
  void tick(size_t evaluations) {
    work_ += evaluations;
    if (work_ >= next_check_) {
      next_check_ = work_ + (uint64_t{1} << 16);
      if (Clock::now() >= deadline_) stopped_ = true;
    }
  }

  const Graph& g_;
  std::mt19937_64 rng_;
  Clock::time_point deadline_;
  int64_t t_ = 1;
  uint64_t work_ = 0;
  uint64_t next_check_ = 0;
  bool stopped_ = false;
  // Scratch of local_search / two_opt_at.
  std::vector<size_t> pos_;
  std::vector<uint32_t> queue_;
  std::vector<bool> queued_;
  std::vector<Cost> fwd_;
  std::vector<Cost> rev_;
  // State of dfs_ring.
  uint32_t start_ = 0;
  size_t budget_ = 0;
  size_t start_in_ = 0;
  std::vector<bool> visited_;
  std::vector<size_t> in_cnt_;
  std::vector<size_t> out_cnt_;
};

// Whether a ring with every edge >= t turns up: DFS attempts, then iterated local search from
// `best`. On success `best` is that ring.
bool probe(Search& s, const Graph& g, int64_t t, Tour& best) {
  Tour cand;
  for (size_t a = 0; a < kDfsAttempts && !s.stopped(); ++a) {
    if (s.dfs_ring(t, kDfsBudgetPerPeer * g.n, cand)) {
      best = std::move(cand);
      return true;
    }
  }
  cand = s.improve(best, t, kProbeRestarts, probe_kicks(g.n), true);
  if (min_weight(g, cand) < t) return false;
  best = std::move(cand);
  return true;
}

size_t index_of(const std::vector<int64_t>& vals, int64_t v) {
  return static_cast<size_t>(std::lower_bound(vals.begin(), vals.end(), v) - vals.begin());
}

}  // namespace

HeuristicResult best_ring_heuristic(const Graph& g, uint64_t seed, Clock::time_point deadline) {
  const size_t n = g.n;
  const std::vector<int64_t> vals = distinct_weights(g);
  Tour best(n);
  for (uint32_t v = 0; v < n; ++v) best[v] = v;
  Search s(g, seed, deadline);
  if (!vals.empty()) {
    if (probe(s, g, vals[0], best)) {
      size_t lo = index_of(vals, min_weight(g, best));
      size_t hi = index_of(vals, bottleneck_upper_bound(g) + 1) - 1;
      while (lo < hi && !s.stopped()) {
        const size_t mid = lo + (hi - lo + 1) / 2;
        if (may_have_ring(g, vals[mid]) && probe(s, g, vals[mid], best)) {
          lo = index_of(vals, min_weight(g, best));
        } else {
          hi = mid - 1;
        }
      }
      best = s.improve(best, vals[lo], 1, polish_kicks(n), false);
    } else {
      // No ring of reachable links found: the fewest unreachable edges, then the sum.
      best = s.improve(best, vals[0], kProbeRestarts, polish_kicks(n), false);
    }
  }
  std::rotate(best.begin(), std::find(best.begin(), best.end(), 0u), best.end());
  return HeuristicResult{std::vector<size_t>(best.begin(), best.end()), s.stopped()};
}

}  // namespace qccl::master::ring
