// End-to-end test of qcclOptimizeTopology over shaped links (network namespaces, see
// tests/support/netns.hpp).
//
// Four hosts; every directed link is limited with htb: 200 mbit on the ring 0 -> 2 -> 1 -> 3
// -> 0, 20 mbit everywhere else (its reverse included), so exactly one directed ring has a fast
// bottleneck. The peers are started one at a time in index order (peer i+1 only after peer i
// printed "connected"), so the admission order, which is the default ring, is 0, 1, 2, 3: it
// uses the slow link 0 -> 1. Every peer runs qccl_test_peer --mode topo: all-reduces, then
// qcclOptimizeTopology, then all-reduces again. The test checks that every sum is right before
// and after, that the default ring has a slow link, that the ring rebuilt from every peer's
// QCCL_ATTR_RING_RANK is exactly the fast cycle, and that the call returned on every peer
// within 30 s (a deadline, not a speed requirement).
//
// Skips (with the reason) when not root or when ip/tc are missing.
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "qccl/qccl.h"
#include "support/netns.hpp"
#include "support/proc_cluster.hpp"
#include "support/stats.hpp"
#include "support/watchdog.hpp"

QCCL_TEST_WATCHDOG(110);

namespace qccl::test {
namespace {

using namespace std::chrono_literals;

constexpr int kHosts = 4;
constexpr uint64_t kFastBits = 200'000'000;
constexpr uint64_t kSlowBits = 20'000'000;
const std::vector<int> kFastRing{0, 2, 1, 3};  // data flows kFastRing[k] -> kFastRing[k+1]
constexpr int kIters = 3;

// True if a -> b is an edge of kFastRing.
bool is_fast(int a, int b) {
  for (size_t k = 0; k < kFastRing.size(); ++k) {
    if (kFastRing[k] == a && kFastRing[(k + 1) % kFastRing.size()] == b) return true;
  }
  return false;
}

// The peer indices in ring order (rank 0 first) from each index's rank; empty unless the
// ranks are a permutation of [0, n).
std::vector<int> ring_from_ranks(const std::vector<int64_t>& rank_of) {
  const int n = static_cast<int>(rank_of.size());
  std::vector<int> ring(n, -1);
  for (int i = 0; i < n; ++i) {
    if (rank_of[i] < 0 || rank_of[i] >= n || ring[rank_of[i]] != -1) return {};
    ring[rank_of[i]] = i;
  }
  return ring;
}

// True if `a` is a rotation of `b` (the same directed cycle).
bool same_cycle(const std::vector<int>& a, const std::vector<int>& b) {
  if (a.size() != b.size() || a.empty()) return false;
  for (size_t s = 0; s < a.size(); ++s) {
    bool all = true;
    for (size_t k = 0; k < a.size() && all; ++k) all = a[(s + k) % a.size()] == b[k];
    if (all) return true;
  }
  return false;
}

std::string to_string(const std::vector<int>& ring) {
  std::string s;
  for (int i : ring) s += (s.empty() ? "" : " -> ") + std::to_string(i);
  return ring.empty() ? "(not a ring)" : s + " -> " + std::to_string(ring[0]);
}

// The slow edges of a ring, as "a -> b" strings.
std::vector<std::string> slow_edges(const std::vector<int>& ring) {
  std::vector<std::string> out;
  for (size_t k = 0; k < ring.size(); ++k) {
    int a = ring[k], b = ring[(k + 1) % ring.size()];
    if (!is_fast(a, b)) out.push_back(std::to_string(a) + " -> " + std::to_string(b));
  }
  return out;
}

// A master started inside the lab's master namespace, listening on its address, port 0.
class NetnsMaster {
 public:
  explicit NetnsMaster(const NetnsLab& lab) {
    ScopedNetns inside(lab.master_ns());
    if (!inside.ok()) {
      error_ = inside.error();
      return;
    }
    const std::string listen = lab.master_ip() + ":0";
    qcclMasterConfig_t mc = QCCL_MASTER_CONFIG_INIT;
    mc.listen_address = listen.c_str();
    mc.heartbeat_interval_ms = 200;
    mc.peer_timeout_ms = 5000;  // not under test: generous on a loaded machine
    mc.vote_timeout_ms = 30000;
    mc.probe_ms = 150;  // 12 links, 2 at a time: about a second of probing
    uint16_t port = 0;
    if (qcclMasterCreate(&mc, &master_) != qcclSuccess || qcclMasterStart(master_) != qcclSuccess ||
        qcclMasterGetPort(master_, &port) != qcclSuccess) {
      error_ = qcclGetLastError();
      return;
    }
    address_ = lab.master_ip() + ":" + std::to_string(port);
  }
  ~NetnsMaster() {
    if (master_ != nullptr) qcclMasterDestroy(master_);
  }
  NetnsMaster(const NetnsMaster&) = delete;
  NetnsMaster& operator=(const NetnsMaster&) = delete;

  bool ok() const { return !address_.empty(); }
  const std::string& error() const { return error_; }
  const std::string& address() const { return address_; }

 private:
  qcclMaster_t* master_ = nullptr;
  std::string address_;
  std::string error_;
};

// What one peer printed, by phase.
struct PeerRun {
  int64_t rank_before = -1, rank_after = -1;
  int64_t epoch_before = -1, epoch_after = -1;
  double optimize_ms = -1;
  std::vector<double> ms_before, ms_after;  // op times, printed (not asserted)
};

bool terminal(const Event& e) {
  return e.is("error") || e.is("vote-fail") || e.is("bad") || e.is("corrupt") || e.is("fail");
}

// Reads peer h's lines until `kind` (true) or a failure line, the deadline or EOF (false, with
// a gtest failure). Checks every op line on the way and adds its time to `ops`.
bool follow(ProcCluster& pc, ProcCluster::Handle h, const char* kind, Deadline deadline,
            std::vector<double>& ops, Event* found) {
  const uint64_t everyone = sum_of({0, 1, 2, 3});
  for (;;) {
    auto e = pc.next(h, deadline);
    if (!e) {
      ADD_FAILURE() << pc.label(h) << ": no '" << kind << "' line before the deadline";
      return false;
    }
    if (e->is(kind)) {
      if (found != nullptr) *found = *e;
      return true;
    }
    if (terminal(*e)) {
      ADD_FAILURE() << pc.label(h) << ": " << e->raw;
      return false;
    }
    if (e->is("op")) {
      EXPECT_EQ(e->unum("sum"), everyone) << pc.label(h) << ": " << e->raw;
      EXPECT_EQ(e->num("world"), kHosts) << pc.label(h) << ": " << e->raw;
      ops.push_back(std::strtod(e->field("ms").value_or("-1").c_str(), nullptr));
    }
  }
}

TEST(TopologyNetnsTest, OptimizeTopologyFindsTheOnlyFastRing) {
  if (std::string why = NetnsLab::unavailable_reason(); !why.empty()) {
    GTEST_SKIP() << "network-namespace test skipped: " << why;
  }
  // Declaration order = reverse destruction order: the peers die first, then the master,
  // then the namespaces.
  NetnsLab lab;
  ASSERT_TRUE(lab.build(kHosts)) << lab.error();
  for (int a = 0; a < kHosts; ++a) {
    for (int b = 0; b < kHosts; ++b) {
      if (a == b) continue;
      ASSERT_TRUE(lab.shape(a, b, is_fast(a, b) ? kFastBits : kSlowBits)) << lab.error();
    }
  }
  NetnsMaster master(lab);
  ASSERT_TRUE(master.ok()) << master.error();
  ProcCluster pc;

  // One at a time, so that admission order is index order.
  std::vector<ProcCluster::Handle> peers;
  for (int i = 0; i < kHosts; ++i) {
    std::vector<std::string> args{"--master", master.address(), "--index", std::to_string(i),
                                  "--world", std::to_string(kHosts), "--mode", "topo",
                                  "--iters", std::to_string(kIters), "--count", "65536",
                                  "--connect-timeout-ms", "20000"};
    auto h = pc.spawn("peer " + std::to_string(i) + " (" + lab.host_ns(i) + ")", args, {},
                      lab.exec_prefix(lab.host_ns(i)));
    ASSERT_TRUE(h) << pc.error();
    peers.push_back(*h);
    auto e = pc.wait_for(
        *h, [](const Event& ev) { return ev.is("connected") || ev.is("error"); }, deadline_in(20s));
    ASSERT_TRUE(e && e->is("connected"))
        << pc.label(*h) << ": " << (e ? e->raw : "not connected within 20 s");
  }

  std::vector<PeerRun> runs(kHosts);
  const Deadline ready_by = deadline_in(20s);
  for (int i = 0; i < kHosts; ++i) {
    Event ring("");
    ASSERT_TRUE(follow(pc, peers[i], "ring", ready_by, runs[i].ms_before, &ring));
    runs[i].rank_before = ring.num("rank");
    runs[i].epoch_before = ring.num("epoch");
  }
  // The ops before, and the call itself on every peer, within 30 s.
  const Deadline optimized_by = deadline_in(30s);
  for (int i = 0; i < kHosts; ++i) {
    Event opt("");
    ASSERT_TRUE(follow(pc, peers[i], "optimized", optimized_by, runs[i].ms_before, &opt))
        << lab.shaping_stats();
    runs[i].rank_after = opt.num("rank");
    runs[i].epoch_after = opt.num("epoch");
    runs[i].optimize_ms = std::strtod(opt.field("ms").value_or("-1").c_str(), nullptr);
  }
  const Deadline done_by = deadline_in(20s);
  for (int i = 0; i < kHosts; ++i) {
    ASSERT_TRUE(follow(pc, peers[i], "done", done_by, runs[i].ms_after, nullptr));
    auto st = pc.wait_exit(peers[i], deadline_in(10s));
    ASSERT_TRUE(st) << pc.label(peers[i]) << " did not exit after 'done'";
    EXPECT_TRUE(WIFEXITED(*st) && WEXITSTATUS(*st) == 0)
        << pc.label(peers[i]) << ": status " << *st;
  }

  std::vector<int64_t> before, after;
  for (int i = 0; i < kHosts; ++i) {
    SCOPED_TRACE(pc.label(peers[i]));
    EXPECT_EQ(runs[i].ms_before.size(), static_cast<size_t>(kIters));
    EXPECT_EQ(runs[i].ms_after.size(), static_cast<size_t>(kIters));
    EXPECT_EQ(runs[i].epoch_after, runs[0].epoch_after) << "peers disagree on the epoch";
    EXPECT_GT(runs[i].epoch_after, runs[i].epoch_before) << "the ring changed: a new epoch";
    before.push_back(runs[i].rank_before);
    after.push_back(runs[i].rank_after);
  }
  const std::vector<int> default_ring = ring_from_ranks(before);
  const std::vector<int> optimized_ring = ring_from_ranks(after);
  std::printf("[ measure  ] default ring %s (slow links: %zu), optimized ring %s\n",
              to_string(default_ring).c_str(), slow_edges(default_ring).size(),
              to_string(optimized_ring).c_str());
  for (int i = 0; i < kHosts; ++i) {
    std::printf("[ measure  ] peer %d: qcclOptimizeTopology returned after %.1f ms; 512 KiB "
                "all-reduce median %.1f ms before, %.1f ms after\n",
                i, runs[i].optimize_ms, median(runs[i].ms_before), median(runs[i].ms_after));
  }
  ASSERT_FALSE(default_ring.empty()) << "ranks before are not a permutation";
  EXPECT_FALSE(slow_edges(default_ring).empty())
      << "the default ring " << to_string(default_ring) << " has no slow link: nothing to test";
  EXPECT_TRUE(same_cycle(optimized_ring, kFastRing))
      << "optimized ring " << to_string(optimized_ring) << ", expected " << to_string(kFastRing)
      << "\n" << lab.shaping_stats();
}

}  // namespace
}  // namespace qccl::test
