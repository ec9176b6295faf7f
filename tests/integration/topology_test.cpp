// qcclOptimizeTopology through the public C API, on loopback (every link equally fast, so the
// solved ring is whatever the measurements favour): the call succeeds on every peer, each group
// keeps a valid ring, results stay exact across the change, a second call with fresh
// measurements changes nothing, and misuse gets the documented errors. That the solved ring
// avoids slow links is shown with real shaped links in tests/netns/topology_netns_test.cpp and
// with synthetic measurements in tests/unit/master/membership_topology_test.cpp.
#include <qccl/qccl.h>

#include <gtest/gtest.h>

#include <latch>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "support/cluster.hpp"
#include "support/watchdog.hpp"

QCCL_TEST_WATCHDOG(110);

namespace qccl::test {
namespace {

::testing::AssertionResult optimize_all(Cluster& c) {
  return c.run_checked(c.peers(), [](size_t, qcclComm_t* comm) -> std::string {
    qcclResult_t r = qcclOptimizeTopology(comm);
    return r == qcclSuccess ? "" : "qcclOptimizeTopology: " + describe(r);
  });
}

// Each group's ring ranks are 0..n-1 exactly once; returns peer index -> rank.
std::map<size_t, int64_t> ranks_by_peer(const Cluster& c) {
  std::map<uint32_t, std::set<int64_t>> ranks;
  std::map<size_t, int64_t> out;
  for (size_t i : c.peers()) {
    PeerView v = c.view(i);
    EXPECT_TRUE(ranks[c.group_of(i)].insert(v.ring_rank).second) << "peer " << i;
    EXPECT_GE(v.ring_rank, 0);
    EXPECT_LT(v.ring_rank, v.group_world_size);
    out[i] = v.ring_rank;
  }
  return out;
}

// A Sum all-reduce of 64 Ki uint64 per group (peer i contributes 2^i): every element must be
// the sum of the group's bits, on every peer.
void expect_exact_sums(Cluster& c, uint64_t tag) {
  std::map<uint32_t, uint64_t> expected;
  for (size_t i : c.peers()) expected[c.group_of(i)] |= uint64_t{1} << i;
  ASSERT_TRUE(c.run([&](size_t i, qcclComm_t* comm) {
    std::vector<uint64_t> v(64 * 1024, uint64_t{1} << i);
    qcclReduceDesc_t d = {v.size(), qcclUint64, qcclSum, tag, {qcclQuantNone, qcclUint64}};
    qcclReduceInfo_t info{};
    qcclResult_t r = qcclAllReduce(v.data(), v.data(), &d, comm, &info);
    ASSERT_EQ(r, qcclSuccess) << "peer " << i << ": " << describe(r);
    for (size_t k = 0; k < v.size(); ++k) {
      ASSERT_EQ(v[k], expected[c.group_of(i)]) << "peer " << i << " element " << k;
    }
  }));
}

TEST(OptimizeTopology, FourPeersKeepExactResultsAndASecondCallChangesNothing) {
  Cluster c;
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(c.grow(4));
  expect_exact_sums(c, 1);
  ASSERT_TRUE(optimize_all(c));
  auto first = ranks_by_peer(c);
  const int64_t epoch = c.view(0).epoch;
  expect_exact_sums(c, 2);
  // Every link now has a fresh measurement: nothing is probed, the same matrix gives the same
  // ring, and the membership (epoch) stays as it is.
  ASSERT_TRUE(optimize_all(c));
  EXPECT_EQ(ranks_by_peer(c), first);
  EXPECT_EQ(c.view(0).epoch, epoch);
  expect_exact_sums(c, 3);
}

TEST(OptimizeTopology, EachGroupGetsItsOwnRing) {
  Cluster c;
  ASSERT_TRUE(c.ok());
  for (uint32_t g : {0u, 1u, 0u, 1u, 0u}) ASSERT_TRUE(c.add_peer(g));
  ASSERT_TRUE(optimize_all(c));
  auto ranks = ranks_by_peer(c);
  EXPECT_EQ(ranks.size(), 5u);
  for (size_t i : c.peers()) {
    EXPECT_EQ(c.view(i).group_world_size, c.group_of(i) == 0 ? 3 : 2) << "peer " << i;
  }
  expect_exact_sums(c, 1);
}

TEST(OptimizeTopology, ANewPeerIsProbedAndJoinsTheRing) {
  Cluster c;
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(c.grow(3));
  ASSERT_TRUE(optimize_all(c));
  ASSERT_TRUE(c.add_peer(0));
  ASSERT_TRUE(optimize_all(c));  // the newcomer's links have no measurement yet
  EXPECT_EQ(ranks_by_peer(c).size(), 4u);
  expect_exact_sums(c, 1);
}

TEST(OptimizeTopology, SinglePeerReturnsAtOnce) {
  Cluster c;
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(c.grow(1));
  ASSERT_TRUE(optimize_all(c));
  EXPECT_EQ(c.view(0).ring_rank, 0);
}

TEST(OptimizeTopology, MisuseGetsClearErrors) {
  EXPECT_EQ(qcclOptimizeTopology(nullptr), qcclInvalidArgument);
  EXPECT_NE(std::string(qcclGetLastError()).find("qcclOptimizeTopology"), std::string::npos)
      << qcclGetLastError();

  Cluster c;
  ASSERT_TRUE(c.ok());
  qcclCommConfig_t cfg = QCCL_COMM_CONFIG_INIT;
  std::string address = c.master_address();
  cfg.master_address = address.c_str();
  qcclComm_t* comm = nullptr;
  ASSERT_EQ(qcclCommCreate(&cfg, &comm), qcclSuccess);
  EXPECT_EQ(qcclOptimizeTopology(comm), qcclInvalidUsage);  // not connected
  EXPECT_NE(std::string(qcclGetLastError()).find("not connected"), std::string::npos)
      << qcclGetLastError();
  EXPECT_EQ(qcclCommDestroy(comm), qcclSuccess);

  // While an operation is in flight: peer 1 starts its part only after peer 0's refused call,
  // so peer 0's operation cannot have finished by then.
  ASSERT_TRUE(c.grow(2));
  std::latch checked(1);
  ASSERT_TRUE(c.run([&](size_t i, qcclComm_t* peer) {
    std::vector<float> v(1 << 16, 1.0f);
    qcclReduceDesc_t d = {v.size(), qcclFloat32, qcclSum, 9, {qcclQuantNone, qcclFloat32}};
    qcclOp_t* op = nullptr;
    if (i == 1) checked.wait();
    ASSERT_EQ(qcclAllReduceAsync(v.data(), v.data(), &d, peer, &op), qcclSuccess);
    if (i == 0) {
      EXPECT_EQ(qcclOptimizeTopology(peer), qcclInvalidUsage);
      EXPECT_NE(std::string(qcclGetLastError()).find("in flight"), std::string::npos)
          << qcclGetLastError();
      checked.count_down();
    }
    EXPECT_EQ(qcclWait(op, nullptr), qcclSuccess) << "peer " << i;
    EXPECT_EQ(v[0], 2.0f);
  }));
}

}  // namespace
}  // namespace qccl::test
