// The barrier (core/barrier_op.hpp), the op engine's second collective, end to end: three
// communicators and a master in one process. A barrier completes on no member before every
// member has called it, then on all; a barrier and an all-reduce under one tag are a
// mismatch on every peer, after which the group goes on. The barrier is not public yet (issue
// 19), so the test reaches the communicator behind each handle (qccl_capi_in_test).
#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "capi/handles.hpp"
#include "core/communicator.hpp"
#include "support/cluster.hpp"
#include "support/watchdog.hpp"

QCCL_TEST_WATCHDOG(110);

namespace qccl {
namespace {

struct BarrierCluster {
  test::Cluster cluster;
  std::vector<core::Communicator*> peers;

  BarrierCluster() {
    EXPECT_TRUE(cluster.ok());
    EXPECT_TRUE(cluster.grow(3));
    for (size_t i : cluster.peers()) peers.push_back(cluster.comm(i)->rep.get());
  }
};

TEST(Barrier, CompletesOnNoMemberBeforeTheLastCallsItThenOnAll) {
  BarrierCluster c;
  ASSERT_EQ(c.peers.size(), 3u);
  for (int round = 0; round < 2; ++round) {
    auto a = c.peers[0]->barrier_async(5);
    auto b = c.peers[1]->barrier_async(5);
    ASSERT_TRUE(a.is_ok()) << a.status().to_string();
    ASSERT_TRUE(b.is_ok()) << b.status().to_string();
    // The master commits only once all three started it: peer 2 has not.
    EXPECT_FALSE((*a)->test());
    EXPECT_FALSE((*b)->test());
    Status last = c.peers[2]->barrier(5);
    EXPECT_TRUE(last.is_ok()) << last.to_string();
    core::ReduceInfo info;
    EXPECT_TRUE((*a)->wait(&info).is_ok());
    EXPECT_EQ(info.world_size, 3u);
    EXPECT_TRUE((*b)->wait(nullptr).is_ok());
  }
}

TEST(Barrier, ABarrierAndAnAllReduceUnderOneTagAreAMismatchEverywhere) {
  BarrierCluster c;
  ASSERT_EQ(c.peers.size(), 3u);
  std::vector<std::vector<float>> bufs(3, std::vector<float>(1000, 1.0f));
  std::vector<Status> st(3);
  ASSERT_TRUE(c.cluster.run([&](size_t i, qcclComm_t*) {
    if (i == 0) {
      st[i] = c.peers[i]->barrier(7);
      return;
    }
    collectives::ReduceDesc d;
    d.count = bufs[i].size();
    d.tag = 7;
    st[i] = c.peers[i]->all_reduce(bufs[i].data(), bufs[i].data(), d, nullptr);
  }));
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(st[i].code(), StatusCode::kMismatch) << "peer " << i << ": " << st[i].to_string();
  }
  // The group goes on: the same tag as a barrier everywhere.
  ASSERT_TRUE(c.cluster.run([&](size_t i, qcclComm_t*) { st[i] = c.peers[i]->barrier(7); }));
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_TRUE(st[i].is_ok()) << "peer " << i << ": " << st[i].to_string();
  }
}

TEST(Barrier, AGroupOfOneHasTooFewPeers) {
  test::Cluster cluster;
  ASSERT_TRUE(cluster.ok());
  ASSERT_TRUE(cluster.grow(1));
  Status st = cluster.comm(cluster.peers()[0])->rep->barrier(1);
  EXPECT_EQ(st.code(), StatusCode::kTooFewPeers);
  EXPECT_NE(st.message().find("qcclBarrier"), std::string::npos) << st.message();
}

}  // namespace
}  // namespace qccl
