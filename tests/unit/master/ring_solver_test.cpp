// Ring solver (master/ring_solver.hpp): known optima on hand-made matrices (slow pairs,
// asymmetric links, 0-2 peers, unknown links), exhaustive comparison with brute force over all
// orders for n = 3..10, the heuristic against the exact search and on planted rings up to 64
// peers, unreachable links and expulsion, and determinism.
#include "master/ring_solver.hpp"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <numeric>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "support/watchdog.hpp"

QCCL_TEST_WATCHDOG(120);

namespace qccl::master {
namespace {

using Order = std::vector<size_t>;
constexpr double kMB = 1e6;

BandwidthMatrix uniform(size_t n, double bw) {
  BandwidthMatrix m(n, bw);
  return m;
}

void set_both(BandwidthMatrix& m, size_t a, size_t b, double bw) {
  m.set(a, b, bw);
  m.set(b, a, bw);
}

// A random matrix of integral bandwidths drawn from `levels` values (few levels: many ties, so
// the sum and order tie-breaks are exercised); `zero_pct` percent of the links unreachable.
BandwidthMatrix random_matrix(size_t n, uint64_t seed, int levels, int zero_pct = 0) {
  std::mt19937_64 rng(seed);
  BandwidthMatrix m(n);
  for (size_t i = 0; i < n; ++i) {
    for (size_t j = 0; j < n; ++j) {
      if (i == j) continue;
      const bool zero = static_cast<int>(rng() % 100) < zero_pct;
      m.set(i, j, zero ? 0.0 : static_cast<double>(1 + rng() % levels) * kMB);
    }
  }
  return m;
}

// The optimum by enumeration of all (n-1)! orders starting with 0: the largest bottleneck,
// then the fewest unreachable edges, then the largest sum, then the smallest order.
struct Brute {
  double bottleneck = -1;
  size_t unreachable = 0;
  double total = 0;
  Order order;
};
Brute brute_force(const BandwidthMatrix& m) {
  const size_t n = m.size();
  Order order(n);
  std::iota(order.begin(), order.end(), size_t{0});
  Brute best;
  do {
    double b = 1e300;
    double sum = 0;
    size_t bad = 0;
    for (size_t k = 0; k < n; ++k) {
      const double w = m.at(order[k], order[(k + 1) % n]);
      b = std::min(b, w);
      sum += w;
      bad += w <= 0 ? 1 : 0;
    }
    const bool better = best.bottleneck < 0 || b > best.bottleneck ||
                        (b == best.bottleneck &&
                         (bad < best.unreachable || (bad == best.unreachable && sum > best.total)));
    if (better) best = Brute{b, bad, sum, order};
  } while (std::next_permutation(order.begin() + 1, order.end()));
  return best;
}

// Whether `order` is a permutation of 0..n-1 starting with 0.
bool is_ring(const Order& order, size_t n) {
  Order sorted = order;
  std::sort(sorted.begin(), sorted.end());
  for (size_t k = 0; k < sorted.size(); ++k) {
    if (sorted[k] != k) return false;
  }
  return order.size() == n && (n == 0 || order[0] == 0);
}

double bottleneck_of(const BandwidthMatrix& m, const Order& order) {
  double b = 1e300;
  for (size_t k = 0; k < order.size(); ++k) {
    b = std::min(b, m.at(order[k], order[(k + 1) % order.size()]));
  }
  return b;
}

SolverOptions heuristic_only() {
  SolverOptions opt;
  opt.exact_max_n = 0;  // the heuristic for every n >= 4
  return opt;
}

// ---- Hand-made matrices ----------------------------------------------------------------------

TEST(RingSolver, EmptyAndSinglePeer) {
  RingSolution s0 = solve_ring(BandwidthMatrix(0));
  EXPECT_TRUE(s0.order.empty());
  EXPECT_TRUE(s0.feasible);
  EXPECT_TRUE(s0.exact);

  RingSolution s1 = solve_ring(BandwidthMatrix(1));
  EXPECT_EQ(s1.order, Order({0}));
  EXPECT_TRUE(s1.feasible);
  EXPECT_EQ(s1.bottleneck, 0.0);
  EXPECT_TRUE(suggest_expulsion(BandwidthMatrix(1, 0.0)).empty());
}

TEST(RingSolver, TwoPeersNeedBothDirections) {
  BandwidthMatrix m(2);
  m.set(0, 1, 300 * kMB);
  m.set(1, 0, 100 * kMB);
  RingSolution s = solve_ring(m);
  EXPECT_EQ(s.order, Order({0, 1}));
  EXPECT_EQ(s.bottleneck, 100 * kMB);
  EXPECT_EQ(s.total, 400 * kMB);
  EXPECT_TRUE(s.feasible);
  EXPECT_TRUE(s.exact);

  m.set(1, 0, 0);  // 1 cannot reach 0: no ring of two
  s = solve_ring(m);
  EXPECT_FALSE(s.feasible);
  EXPECT_EQ(s.bottleneck, 0.0);
  std::vector<ExpelledPeer> expel = suggest_expulsion(m);
  ASSERT_EQ(expel.size(), 1u);
  EXPECT_EQ(expel[0].index, 0u);  // lowest index first: peer 0 is reached by no other peer
  EXPECT_EQ(expel[0].reason, "is reached by no other peer");
}

TEST(RingSolver, SymmetricRingAvoidsTheSlowPair) {
  BandwidthMatrix m = uniform(4, 100 * kMB);
  set_both(m, 1, 2, 10 * kMB);
  RingSolution s = solve_ring(m);
  EXPECT_EQ(s.order, Order({0, 1, 3, 2}));  // the smallest order without 1-2 or 2-1
  EXPECT_EQ(s.bottleneck, 100 * kMB);
  EXPECT_EQ(s.total, 400 * kMB);
  EXPECT_TRUE(s.exact);
  EXPECT_TRUE(s.feasible);
}

TEST(RingSolver, SymmetricRingAvoidsTwoSlowPairs) {
  BandwidthMatrix m = uniform(5, 100 * kMB);
  set_both(m, 0, 1, 10 * kMB);
  set_both(m, 2, 3, 20 * kMB);
  RingSolution s = solve_ring(m);
  EXPECT_EQ(s.order, Order({0, 2, 1, 3, 4}));
  EXPECT_EQ(s.bottleneck, 100 * kMB);
}

TEST(RingSolver, UnavoidableSlowPeerUsesItsFastestLinks) {
  // Peer 3 is slow both ways to everybody except peer 1 (in) and peer 0 (out): the best ring
  // enters 3 from 1 and leaves it to 0, at the bottleneck of the slower of the two.
  BandwidthMatrix m = uniform(4, 100 * kMB);
  for (size_t v = 0; v < 3; ++v) set_both(m, v, 3, 5 * kMB);
  m.set(1, 3, 50 * kMB);
  m.set(3, 0, 60 * kMB);
  m.set(0, 2, 200 * kMB);
  RingSolution s = solve_ring(m);
  EXPECT_EQ(s.order, Order({0, 2, 1, 3}));
  EXPECT_EQ(s.bottleneck, 50 * kMB);
  EXPECT_EQ(s.total, (200 + 100 + 50 + 60) * kMB);
}

TEST(RingSolver, AsymmetricLinksDecideTheDirection) {
  BandwidthMatrix m = uniform(3, 100 * kMB);
  m.set(1, 0, 1 * kMB);  // 0 -> 1 fast, 1 -> 0 slow
  EXPECT_EQ(solve_ring(m).order, Order({0, 1, 2}));
  EXPECT_EQ(solve_ring(m).bottleneck, 100 * kMB);

  m.set(1, 0, 100 * kMB);
  m.set(0, 1, 1 * kMB);  // the other way round
  EXPECT_EQ(solve_ring(m).order, Order({0, 2, 1}));

  // A fast directed cycle 0 -> 2 -> 1 -> 3 -> 0, everything else (its reverse too) slow.
  BandwidthMatrix c = uniform(4, 10 * kMB);
  const Order cycle{0, 2, 1, 3};
  for (size_t k = 0; k < 4; ++k) c.set(cycle[k], cycle[(k + 1) % 4], 100 * kMB);
  EXPECT_EQ(solve_ring(c).order, cycle);
  EXPECT_EQ(solve_ring(c).bottleneck, 100 * kMB);
  EXPECT_EQ(solve_ring(c, heuristic_only()).order, cycle);
}

TEST(RingSolver, UnknownLinksUseTheMedianOrTheCallersDefault) {
  // 0 -> 1 -> 2 -> 0 is fast except for the unknown 1 -> 2; the reverse ring is slow (10).
  BandwidthMatrix m = uniform(3, 10 * kMB);
  m.set(0, 1, 100 * kMB);
  m.set(2, 0, 100 * kMB);
  m.set(1, 2, BandwidthMatrix::kUnknown);
  // Known: 10, 10, 10, 100, 100 -> median 10: a tie on the bottleneck, the sum decides.
  RingSolution s = solve_ring(m);
  EXPECT_EQ(s.order, Order({0, 1, 2}));
  EXPECT_EQ(s.bottleneck, 10 * kMB);
  EXPECT_EQ(s.estimated_edges, 1u);

  SolverOptions opt;
  opt.unknown_bandwidth = 1000 * kMB;
  s = solve_ring(m, opt);
  EXPECT_EQ(s.order, Order({0, 1, 2}));
  EXPECT_EQ(s.bottleneck, 100 * kMB);

  opt.unknown_bandwidth = 0.0;  // unknown = unreachable: the reverse ring
  s = solve_ring(m, opt);
  EXPECT_EQ(s.order, Order({0, 2, 1}));
  EXPECT_EQ(s.estimated_edges, 0u);
  EXPECT_TRUE(s.feasible);

  // Nothing known at all: every link counts as 1 byte/s, the identity ring.
  s = solve_ring(BandwidthMatrix(4));
  EXPECT_EQ(s.order, Order({0, 1, 2, 3}));
  EXPECT_EQ(s.estimated_edges, 4u);
  EXPECT_TRUE(s.feasible);
}

// ---- Exhaustive comparison with brute force --------------------------------------------------

// Same bottleneck, sum and (integral bandwidths, so ties are exact) order as brute force.
void expect_brute_force_optimum(const BandwidthMatrix& m, const std::string& what) {
  const Brute want = brute_force(m);
  const RingSolution got = solve_ring(m);
  ASSERT_TRUE(got.exact) << what;
  EXPECT_EQ(got.bottleneck, std::max(0.0, want.bottleneck)) << what;
  EXPECT_EQ(got.total, want.total) << what;
  EXPECT_EQ(got.order, want.order) << what;
  EXPECT_EQ(got.feasible, want.unreachable == 0) << what;
}

TEST(RingSolver, ExactMatchesBruteForce) {
  for (size_t n = 3; n <= 10; ++n) {
    const int seeds = n <= 7 ? 40 : (n <= 9 ? 6 : 2);
    for (int seed = 0; seed < seeds; ++seed) {
      const uint64_t s = n * 1000 + static_cast<uint64_t>(seed);
      const int levels = seed % 2 == 0 ? 5 : 1000;  // many ties, or few
      expect_brute_force_optimum(random_matrix(n, s, levels),
                                 "n=" + std::to_string(n) + " seed=" + std::to_string(s));
    }
  }
}

TEST(RingSolver, ExactMatchesBruteForceWithUnreachableLinks) {
  for (size_t n = 3; n <= 8; ++n) {
    for (int seed = 0; seed < 30; ++seed) {
      const uint64_t s = 7000 + n * 100 + static_cast<uint64_t>(seed);
      expect_brute_force_optimum(random_matrix(n, s, 20, /*zero_pct=*/45),
                                 "n=" + std::to_string(n) + " seed=" + std::to_string(s));
    }
  }
}

// ---- The heuristic ---------------------------------------------------------------------------

TEST(RingSolver, HeuristicFindsTheExactBottleneck) {
  SolverOptions exact;
  exact.exact_max_n = 16;
  for (size_t n = 5; n <= 14; ++n) {
    for (int seed = 0; seed < 4; ++seed) {
      const uint64_t s = 9000 + n * 10 + static_cast<uint64_t>(seed);
      const BandwidthMatrix m = random_matrix(n, s, seed % 2 == 0 ? 50 : 100000, seed * 10);
      const RingSolution want = solve_ring(m, exact);
      const RingSolution got = solve_ring(m, heuristic_only());
      ASSERT_TRUE(want.exact);
      EXPECT_FALSE(got.exact);
      EXPECT_TRUE(is_ring(got.order, n));
      EXPECT_EQ(got.bottleneck, want.bottleneck) << "n=" << n << " seed=" << s;
      EXPECT_EQ(got.feasible, want.feasible) << "n=" << n << " seed=" << s;
      EXPECT_GE(got.total, 0.9 * want.total) << "n=" << n << " seed=" << s;
      if (got.total != want.total) {
        std::printf("  n=%zu seed=%llu heuristic sum %.4f of the optimum\n", n,
                    static_cast<unsigned long long>(s), got.total / want.total);
      }
    }
  }
}

// A random ring of 500-1000 MB/s links among slow (1-100 MB/s) and unreachable links, with
// some fast decoys (up to 2000 MB/s) that may or may not allow a better ring.
struct Planted {
  BandwidthMatrix m;
  double bottleneck;
};
Planted planted_ring(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  Planted p{BandwidthMatrix(n), 1e300};
  for (size_t i = 0; i < n; ++i) {
    for (size_t j = 0; j < n; ++j) {
      if (i == j) continue;
      const uint64_t r = rng() % 100;
      const double bw = r < 10 ? 0.0 : (r < 90 ? 1 + rng() % 100 : 1 + rng() % 2000);
      p.m.set(i, j, bw * kMB);
    }
  }
  std::vector<size_t> perm(n);
  std::iota(perm.begin(), perm.end(), size_t{0});
  for (size_t k = n - 1; k > 0; --k) std::swap(perm[k], perm[rng() % (k + 1)]);
  for (size_t k = 0; k < n; ++k) {
    const double bw = static_cast<double>(500 + rng() % 501) * kMB;
    p.m.set(perm[k], perm[(k + 1) % n], bw);
    p.bottleneck = std::min(p.bottleneck, bw);
  }
  return p;
}

TEST(RingSolver, HeuristicFindsPlantedRings) {
  for (size_t n : {16, 32, 64}) {
    for (uint64_t seed = 1; seed <= 3; ++seed) {
      const Planted p = planted_ring(n, seed * 31 + n);
      SolverOptions opt;  // sanitizer builds are slow: never the cap, stay deterministic
      opt.budget = std::chrono::milliseconds(4000);
      const auto start = std::chrono::steady_clock::now();
      const RingSolution s = solve_ring(p.m, opt);
      const double ms =
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
              .count();
      std::printf("  n=%zu seed=%llu: bottleneck %.0f MB/s (planted %.0f) in %.1f ms\n", n,
                  static_cast<unsigned long long>(seed), s.bottleneck / kMB, p.bottleneck / kMB,
                  ms);
      EXPECT_TRUE(is_ring(s.order, n));
      EXPECT_TRUE(s.feasible);
      EXPECT_GE(s.bottleneck, p.bottleneck) << "n=" << n << " seed=" << seed;
      EXPECT_EQ(s.bottleneck, bottleneck_of(p.m, s.order));
      EXPECT_FALSE(s.budget_hit);
      EXPECT_LT(ms, 5000.0);  // a hang detector, not a performance bound
    }
  }
}

TEST(RingSolver, PlantedRingWithoutDecoysIsFoundExactly) {
  // Without decoys the planted ring is the only ring of fast links: both searches find it.
  const size_t n = 40;
  std::mt19937_64 rng(5);
  BandwidthMatrix m(n);
  for (size_t i = 0; i < n; ++i) {
    for (size_t j = 0; j < n; ++j) m.set(i, j, static_cast<double>(1 + rng() % 100) * kMB);
  }
  std::vector<size_t> perm(n);
  std::iota(perm.begin(), perm.end(), size_t{0});
  for (size_t k = n - 1; k > 0; --k) std::swap(perm[k], perm[rng() % (k + 1)]);
  for (size_t k = 0; k < n; ++k) m.set(perm[k], perm[(k + 1) % n], 1000 * kMB);
  std::rotate(perm.begin(), std::find(perm.begin(), perm.end(), size_t{0}), perm.end());
  const RingSolution s = solve_ring(m);
  EXPECT_EQ(s.order, perm);
  EXPECT_EQ(s.bottleneck, 1000 * kMB);
}

// ---- Unreachable links and expulsion ---------------------------------------------------------

TEST(RingSolver, RingAvoidsUnreachableLinks) {
  BandwidthMatrix m = uniform(5, 100 * kMB);
  set_both(m, 0, 1, 0);
  set_both(m, 2, 3, 0);
  m.set(0, 4, 0);
  RingSolution s = solve_ring(m);
  EXPECT_TRUE(s.feasible);
  EXPECT_EQ(s.bottleneck, 100 * kMB);
  EXPECT_EQ(s.order, Order({0, 2, 1, 3, 4}));
  EXPECT_TRUE(suggest_expulsion(m).empty());
}

TEST(RingSolver, ExpelsThePeerThatReachesNobody) {
  BandwidthMatrix m = uniform(5, 100 * kMB);
  for (size_t v = 0; v < 5; ++v) m.set(3, v, 0);
  RingSolution s = solve_ring(m);
  EXPECT_FALSE(s.feasible);
  EXPECT_TRUE(s.exact);
  EXPECT_EQ(s.bottleneck, 0.0);
  std::vector<ExpelledPeer> expel = suggest_expulsion(m);
  ASSERT_EQ(expel.size(), 1u);
  EXPECT_EQ(expel[0].index, 3u);
  EXPECT_EQ(expel[0].reason, "reaches no other peer");
  EXPECT_TRUE(solve_ring(m.subset({0, 1, 2, 4})).feasible);
}

TEST(RingSolver, ExpelsThePeerReachableOnlyFromOne) {
  // Peers 3 and 4 are reachable only from peer 1, so no ring has both; 4 has fewer links.
  BandwidthMatrix m = uniform(5, 100 * kMB);
  for (size_t v : {0, 2, 3, 4}) {
    m.set(v, 3, 0);
    m.set(v, 4, 0);
  }
  for (size_t v : {1, 2, 3}) m.set(4, v, 0);  // 4 reaches only 0
  EXPECT_FALSE(solve_ring(m).feasible);
  std::vector<ExpelledPeer> expel = suggest_expulsion(m);
  ASSERT_EQ(expel.size(), 1u);
  EXPECT_EQ(expel[0].index, 4u);
  EXPECT_EQ(expel[0].reason,
            "no ring of reachable links exists with it (it has 2 of 8 possible reachable links, "
            "the fewest)");
  RingSolution s = solve_ring(m.subset({0, 1, 2, 3}));
  EXPECT_TRUE(s.feasible);
  EXPECT_EQ(s.order, Order({0, 1, 3, 2}));  // 3 entered from 1
}

TEST(RingSolver, ExpelsACascadeOfIsolatedPeers) {
  // 4 reaches only 3, and 3 is reached by nobody but 4: expelling 4 isolates 3.
  BandwidthMatrix m = uniform(5, 100 * kMB);
  for (size_t v : {0, 1, 2}) {
    m.set(4, v, 0);
    m.set(v, 3, 0);
  }
  for (size_t v : {0, 1, 2, 3}) m.set(v, 4, 0);  // and nobody reaches 4
  std::vector<ExpelledPeer> expel = suggest_expulsion(m);
  ASSERT_EQ(expel.size(), 2u);
  EXPECT_EQ(expel[0].index, 3u);
  EXPECT_EQ(expel[1].index, 4u);
  EXPECT_TRUE(solve_ring(m.subset({0, 1, 2})).feasible);
}

// Brute force: the fewest peers whose removal leaves a ring of reachable links.
size_t fewest_to_expel(const BandwidthMatrix& m) {
  const size_t n = m.size();
  size_t best = n;
  for (uint32_t drop = 0; drop < (1u << n); ++drop) {
    std::vector<size_t> keep;
    for (size_t v = 0; v < n; ++v) {
      if (!(drop & (1u << v))) keep.push_back(v);
    }
    if (n - keep.size() >= best) continue;
    const BandwidthMatrix sub = m.subset(keep);
    if (keep.size() <= 1 || brute_force(sub).unreachable == 0) best = n - keep.size();
  }
  return best;
}

TEST(RingSolver, ExpulsionIsMinimalAndMakesARing) {
  int infeasible = 0;
  for (size_t n = 3; n <= 7; ++n) {
    for (uint64_t seed = 0; seed < 25; ++seed) {
      const BandwidthMatrix m = random_matrix(n, 500 + n * 100 + seed, 10, /*zero_pct=*/65);
      const RingSolution s = solve_ring(m);
      const std::vector<ExpelledPeer> expel = suggest_expulsion(m);
      EXPECT_EQ(expel.empty(), s.feasible);
      if (s.feasible) continue;
      ++infeasible;
      EXPECT_EQ(expel.size(), fewest_to_expel(m)) << "n=" << n << " seed=" << seed;
      std::vector<size_t> keep;
      for (size_t v = 0; v < n; ++v) {
        auto it = std::find_if(expel.begin(), expel.end(),
                               [&](const ExpelledPeer& e) { return e.index == v; });
        if (it == expel.end()) keep.push_back(v);
      }
      EXPECT_TRUE(solve_ring(m.subset(keep)).feasible) << "n=" << n << " seed=" << seed;
    }
  }
  EXPECT_GT(infeasible, 40);  // the matrices exercise the expulsion path
}

TEST(RingSolver, GreedyExpulsionForLargeGroups) {
  // 30 peers; peers 7 and 19 reach nobody, peers 11 and 12 are reachable only from peer 5.
  BandwidthMatrix m = uniform(30, 100 * kMB);
  for (size_t v = 0; v < 30; ++v) {
    m.set(7, v, 0);
    m.set(19, v, 0);
    if (v != 5) {
      m.set(v, 11, 0);
      m.set(v, 12, 0);
    }
  }
  for (size_t v = 0; v < 30; ++v) {
    if (v != 0) m.set(12, v, 0);  // 12 reaches only 0: fewer links than 11
  }
  std::vector<ExpelledPeer> expel = suggest_expulsion(m);
  ASSERT_EQ(expel.size(), 3u);
  EXPECT_EQ(expel[0].index, 7u);
  EXPECT_EQ(expel[1].index, 12u);
  EXPECT_EQ(expel[2].index, 19u);
  std::vector<size_t> keep;
  for (size_t v = 0; v < 30; ++v) {
    if (v != 7 && v != 12 && v != 19) keep.push_back(v);
  }
  EXPECT_TRUE(solve_ring(m.subset(keep)).feasible);
}

// ---- Determinism -----------------------------------------------------------------------------

TEST(RingSolver, SameMatrixSameRing) {
  for (size_t n : {8, 24, 48}) {
    const Planted p = planted_ring(n, 77);
    // The same matrix, built in a shuffled order of set() calls.
    std::vector<std::pair<size_t, size_t>> cells;
    for (size_t i = 0; i < n; ++i) {
      for (size_t j = 0; j < n; ++j) cells.emplace_back(i, j);
    }
    std::mt19937_64 rng(3);
    for (size_t k = cells.size() - 1; k > 0; --k) std::swap(cells[k], cells[rng() % (k + 1)]);
    BandwidthMatrix shuffled(n, 12345.0);
    for (auto [i, j] : cells) shuffled.set(i, j, p.m.at(i, j));

    SolverOptions long_budget;  // never the cap, even under sanitizers: iteration-bounded only
    long_budget.budget = std::chrono::milliseconds(4000);
    const RingSolution a = solve_ring(p.m, long_budget);
    const RingSolution b = solve_ring(p.m, long_budget);
    const RingSolution c = solve_ring(shuffled, long_budget);
    EXPECT_FALSE(a.budget_hit);
    EXPECT_EQ(a.order, b.order) << n;
    EXPECT_EQ(a.order, c.order) << n;
    EXPECT_EQ(a.total, c.total) << n;
  }
}

TEST(RingSolver, RelabelledPeersSameOptimum) {
  // Renaming the peers changes the order (its lexicographic tie-break) but not the optimum.
  for (uint64_t seed = 0; seed < 10; ++seed) {
    const size_t n = 9;
    const BandwidthMatrix m = random_matrix(n, 4242 + seed, 8, 20);
    std::vector<size_t> perm(n);
    std::iota(perm.begin(), perm.end(), size_t{0});
    std::mt19937_64 rng(seed);
    for (size_t k = n - 1; k > 0; --k) std::swap(perm[k], perm[rng() % (k + 1)]);
    const RingSolution a = solve_ring(m);
    const RingSolution b = solve_ring(m.subset(perm));
    EXPECT_EQ(a.bottleneck, b.bottleneck);
    EXPECT_EQ(a.total, b.total);
    EXPECT_EQ(a.feasible, b.feasible);
  }
}

}  // namespace
}  // namespace qccl::master
