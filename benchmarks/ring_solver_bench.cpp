// Ring solver micro-benchmark (master/ring_solver.hpp): solve time per group size on matrices
// with a planted ring of 500-1000 MB/s links among slow (1-100 MB/s), unreachable (10%) and a
// few fast decoy (up to 2000 MB/s) links. Prints a markdown table (docs/topology.md).
// Links the internal qccl_master target: it measures the solver, not the API.
//
// usage: qccl_ring_solver_bench [reps=5]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <random>
#include <vector>

#include "master/ring_solver.hpp"

namespace {

using qccl::master::BandwidthMatrix;

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
      p.m.set(i, j, bw * 1e6);
    }
  }
  std::vector<size_t> perm(n);
  std::iota(perm.begin(), perm.end(), size_t{0});
  for (size_t k = n - 1; k > 0; --k) std::swap(perm[k], perm[rng() % (k + 1)]);
  for (size_t k = 0; k < n; ++k) {
    const double bw = static_cast<double>(500 + rng() % 501) * 1e6;
    p.m.set(perm[k], perm[(k + 1) % n], bw);
    p.bottleneck = std::min(p.bottleneck, bw);
  }
  return p;
}

void run(size_t n, size_t exact_max_n, int reps) {
  qccl::master::SolverOptions opt;
  opt.exact_max_n = exact_max_n;
  opt.budget = std::chrono::milliseconds(10000);  // measure the iteration-bounded work
  std::vector<double> ms;
  double found = 0;
  double planted = 0;
  bool exact = false;
  bool hit = false;
  for (int r = 0; r < reps; ++r) {
    const Planted p = planted_ring(n, 1000 + static_cast<uint64_t>(r));
    const auto t0 = std::chrono::steady_clock::now();
    const qccl::master::RingSolution s = qccl::master::solve_ring(p.m, opt);
    ms.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    found += s.bottleneck / p.bottleneck;
    planted += 1;
    exact = s.exact;
    hit = hit || s.budget_hit;
  }
  std::sort(ms.begin(), ms.end());
  std::printf("| %zu | %s | %.3f | %.3f | %.2f |%s\n", n, exact ? "exact" : "heuristic",
              ms[ms.size() / 2], ms.back(), found / planted, hit ? " budget hit" : "");
}

}  // namespace

int main(int argc, char** argv) {
  const int reps = argc > 1 ? std::max(1, std::atoi(argv[1])) : 5;
  std::printf("| n | search | median ms | max ms | bottleneck / planted |\n");
  std::printf("|---|---|---|---|---|\n");
  for (size_t n : {4, 8, 10, 12}) run(n, 12, reps);
  for (size_t n : {12, 14, 16}) run(n, n == 12 ? 0 : 16, reps);  // exact vs heuristic overlap
  for (size_t n : {16, 32, 64, 128}) run(n, 12, reps);
  return 0;
}
