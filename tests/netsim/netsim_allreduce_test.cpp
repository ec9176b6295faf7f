// netsim_allreduce_test: qccl all-reduce over the emulated WAN (netsim.sh, docs/netsim.md):
// 3 peers (in P-p1..p3) and the qccl-master binary (in P-master; ports 0), with a
// 20 ms one-way delay (RTT 40 ms) and 1% random loss on every packet in both directions.
//
//   1. plain: 2 all-reduces of 4 MiB (uint64; peer i adds 2^i, qccl_test_peer): every
//      element must be exactly 7 on every peer;
//   2. quantized: 2 MinMax uint8 Sum all-reduces of 4 MiB of float32 (qccl_netsim_quant_peer:
//      sines, not exactly encodable): the largest error must be within the bound of
//      docs/quantization.md §4 (and above 0), and every peer must get the same bytes;
//   3. a peer killed mid-run: 3 peers loop on 512 KiB all-reduces; after each has done 2,
//      peer 2 is SIGKILLed; both survivors must fail only with qcclPeerLost and then complete
//      2 all-reduces whose sum is 3 (tests/support/loop_recovery.hpp's follow_recovery).
//
// Skips (with the reason) when not root or when ip, tc or /dev/net/tun are missing.
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "netsim_lab.hpp"
#include "qccl/qccl.h"
#include "support/loop_recovery.hpp"
#include "support/proc_cluster.hpp"
#include "support/stats.hpp"
#include "support/watchdog.hpp"

QCCL_TEST_WATCHDOG(110);

namespace qccl::test {
namespace {

using namespace std::chrono_literals;

constexpr int kPeers = 3;

// Starts peers 0..kPeers-1 (peer i in namespace p<i+1>) with `args` after the common ones
// (pc's binary: qccl_test_peer or qccl_netsim_quant_peer, which take the same four).
std::vector<ProcCluster::Handle> start_peers(ProcCluster& pc, const NetsimLab& lab,
                                             const std::string& master,
                                             const std::vector<std::string>& args) {
  std::vector<ProcCluster::Handle> hs;
  for (int i = 0; i < kPeers; ++i) {
    std::vector<std::string> a{"--master",        master,    "--index",
                               std::to_string(i), "--world", std::to_string(kPeers)};
    a.insert(a.end(), args.begin(), args.end());
    auto h = pc.spawn("peer " + std::to_string(i) + " (" + lab.peer_ns(i + 1) + ")", a, {},
                      lab.exec_prefix(lab.peer_ns(i + 1)));
    if (!h) {
      ADD_FAILURE() << "cannot start qccl_test_peer: " << pc.error();
      return {};
    }
    hs.push_back(*h);
  }
  return hs;
}

// Follows every peer of a run of `iters` ops to its "done" and exit 0; every op must have
// world kPeers and sum 7. Prints the op times.
void expect_exact_run(ProcCluster& pc, const std::vector<ProcCluster::Handle>& hs, int iters,
                      const char* what, Deadline deadline) {
  const uint64_t everyone = sum_of({0, 1, 2});
  for (auto h : hs) {
    int ops = 0;
    std::vector<double> ms;
    for (;;) {
      auto e = pc.next(h, deadline);
      ASSERT_TRUE(e) << pc.label(h) << ": no 'done' before the deadline (" << what << ")";
      if (e->is("done")) break;
      ASSERT_FALSE(e->is("bad") || e->is("corrupt") || e->is("error") || e->is("fail"))
          << pc.label(h) << ": " << e->raw;
      if (e->is("op")) {
        EXPECT_EQ(e->unum("sum"), everyone) << pc.label(h) << ": " << e->raw;
        EXPECT_EQ(e->num("world"), kPeers) << pc.label(h) << ": " << e->raw;
        ms.push_back(std::strtod(e->field("ms").value_or("-1").c_str(), nullptr));
        ++ops;
      }
    }
    EXPECT_EQ(ops, iters) << pc.label(h);
    auto st = pc.wait_exit(h, deadline);
    ASSERT_TRUE(st) << pc.label(h) << " did not exit after 'done'";
    EXPECT_TRUE(WIFEXITED(*st) && WEXITSTATUS(*st) == 0) << pc.label(h) << ": status " << *st;
    std::printf("[ measure  ] %s, %s: all-reduce median %.0f ms, max %.0f ms\n", what,
                pc.label(h).c_str(), median(ms), max_of(ms));
  }
}

TEST(NetsimAllReduceTest, ExactSumsAndRecoveryOverALossyWan) {
  if (std::string why = NetsimLab::unavailable_reason(); !why.empty()) {
    GTEST_SKIP() << "netsim test skipped: " << why;
  }
  // Declaration order = reverse destruction order: peers, then the master, then the WAN.
  // (ProcCluster kills its processes by pid in its destructor.)
  NetsimLab lab("a");
  ASSERT_EQ(lab.up(kPeers, {"--delay-ms", "20", "--loss", "1", "--seed", "11"}), "");
  // The qccl-master binary inside P-master: its heartbeats and votes cross the lossy WAN too.
  ProcCluster masters(QCCL_MASTER_BIN);
  auto m = masters.spawn("qccl-master",
                         {"--listen", lab.master_ip() + ":0", "--heartbeat-ms", "200",
                          "--peer-timeout-ms", "5000", "--vote-timeout-ms", "30000"},
                         {}, lab.exec_prefix(lab.master_ns()));
  ASSERT_TRUE(m) << masters.error();
  // "qccl-master listening on HOST:PORT"
  auto listening = masters.wait_kind(*m, "qccl-master", deadline_in(10s));
  ASSERT_TRUE(listening && listening->words.size() == 4) << "no listening line from qccl-master";
  const std::string master_address = listening->words[3];
  ProcCluster pc;

  {
    SCOPED_TRACE("plain");
    auto hs = start_peers(
        pc, lab, master_address,
        {"--mode", "loop", "--iters", "2", "--count", "524288", "--connect-timeout-ms", "20000"});
    ASSERT_EQ(hs.size(), static_cast<size_t>(kPeers));
    expect_exact_run(pc, hs, 2, "plain 4 MiB uint64", deadline_in(40s));
  }
  if (HasFatalFailure()) return;
  {
    SCOPED_TRACE("quantized");
    // Float data that MinMax does not encode exactly, checked against the error bound, and
    // the same result bytes on every peer (quant_peer.cpp).
    ProcCluster qpc(QCCL_NETSIM_QUANT_PEER_BIN);
    auto hs = start_peers(qpc, lab, master_address, {"--iters", "2", "--count", "1048576"});
    ASSERT_EQ(hs.size(), static_cast<size_t>(kPeers));
    std::map<int64_t, std::string> hash_of_op;
    for (auto h : hs) {
      int ops = 0;
      for (;;) {
        auto e = qpc.next(h, deadline_in(40s));
        ASSERT_TRUE(e) << qpc.label(h) << ": no 'done' before the deadline";
        if (e->is("done")) break;
        ASSERT_FALSE(e->is("bad") || e->is("error") || e->is("fail"))
            << qpc.label(h) << ": " << e->raw;
        if (!e->is("quant")) continue;
        ++ops;
        EXPECT_EQ(e->num("world"), kPeers) << e->raw;
        const double err = std::strtod(e->field("maxerr").value_or("1e9").c_str(), nullptr);
        const double bound = std::strtod(e->field("bound").value_or("0").c_str(), nullptr);
        EXPECT_LE(err, bound) << qpc.label(h) << ": " << e->raw;
        EXPECT_GT(err, 0.0) << "exact: the data does not exercise the quantization";
        auto [it, first] = hash_of_op.emplace(e->pos(1), *e->field("hash"));
        EXPECT_TRUE(first || it->second == *e->field("hash"))
            << qpc.label(h) << ": result bytes differ from another peer's: " << e->raw;
        std::printf("[ measure  ] MinMax uint8 of 4 MiB float32, %s: %s\n", qpc.label(h).c_str(),
                    e->raw.c_str());
      }
      EXPECT_EQ(ops, 2) << qpc.label(h);
      auto st = qpc.wait_exit(h, deadline_in(10s));
      ASSERT_TRUE(st) << qpc.label(h) << " did not exit after 'done'";
      EXPECT_TRUE(WIFEXITED(*st) && WEXITSTATUS(*st) == 0) << qpc.label(h) << ": status " << *st;
    }
  }
  if (HasFatalFailure()) return;
  {
    SCOPED_TRACE("kill");
    auto hs = start_peers(pc, lab, master_address,
                          {"--mode", "loop", "--iters", "0", "--count", "65536", "--tag", "2"});
    ASSERT_EQ(hs.size(), static_cast<size_t>(kPeers));
    for (auto h : hs) {
      auto e = pc.wait_for(
          h,
          [](const Event& ev) {
            return (ev.is("op") && ev.pos(1) >= 1) || ev.is("error") || ev.is("bad") ||
                   ev.is("fail");
          },
          deadline_in(30s));
      ASSERT_TRUE(e && e->is("op")) << pc.label(h) << ": " << (e ? e->raw : "no 2 ops in 30 s");
      EXPECT_EQ(e->unum("sum"), sum_of({0, 1, 2})) << e->raw;
    }
    const int64_t fault_us = pc.signal(hs[2], SIGKILL);
    const Deadline deadline = deadline_in(40s);
    std::vector<Recovery> rs;
    for (int i = 0; i < 2; ++i) {
      rs.push_back(follow_recovery(pc, hs[i], fault_us, sum_of({0, 1, 2}), sum_of({0, 1}), 2,
                                   deadline, {qcclPeerLost}));
      if (rs.back().first_success_us) {
        std::printf("[ measure  ] %s: first op of the survivors %.0f ms after the kill\n",
                    pc.label(hs[i]).c_str(), (*rs.back().first_success_us - fault_us) / 1e3);
      }
    }
    expect_same_sums(rs, "after the kill");
  }
}

}  // namespace
}  // namespace qccl::test
