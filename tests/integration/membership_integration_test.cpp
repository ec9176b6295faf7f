// Membership through the public C API: a master and up to 4 peers as threads of this process.
// Joins, peer groups, the pending vote, graceful leaves and qcclConnect deadlines.
#include <qccl/qccl.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "support/cluster.hpp"
#include "support/watchdog.hpp"

QCCL_TEST_WATCHDOG(110);

namespace qccl::test {
namespace {

// Expected sizes, by group, of the whole run.
using GroupSizes = std::map<uint32_t, int64_t>;

// Every accepted peer agrees on the global attributes, has its group's size and a distinct
// ring rank 0..size-1 within its group. Returns the common epoch (-1 on failure).
int64_t expect_consistent(const Cluster& c, const GroupSizes& sizes) {
  int64_t total = 0, largest = 0;
  for (const auto& [g, n] : sizes) {
    total += n;
    largest = std::max(largest, n);
  }
  std::map<uint32_t, std::set<int64_t>> ranks;
  std::set<int64_t> epochs;
  for (size_t i : c.peers()) {
    SCOPED_TRACE("peer " + std::to_string(i) + " (group " + std::to_string(c.group_of(i)) + ")");
    PeerView v = c.view(i);
    EXPECT_EQ(v.global_world_size, total);
    EXPECT_EQ(v.group_world_size, sizes.at(c.group_of(i)));
    EXPECT_EQ(v.num_groups, static_cast<int64_t>(sizes.size()));
    EXPECT_EQ(v.largest_group_size, largest);
    EXPECT_GE(v.ring_rank, 0);
    EXPECT_LT(v.ring_rank, sizes.at(c.group_of(i)));
    EXPECT_TRUE(ranks[c.group_of(i)].insert(v.ring_rank).second)
        << "duplicate ring rank " << v.ring_rank;
    epochs.insert(v.epoch);
  }
  EXPECT_EQ(static_cast<int64_t>(c.peers().size()), total);
  EXPECT_EQ(epochs.size(), 1u) << "peers disagree on the epoch";
  return epochs.size() == 1 ? *epochs.begin() : -1;
}

// One Sum all-reduce of one int64 per peer in `group`, each contributing `i + 1`; checks the
// result and world size. All peers of the group must take part.
void expect_group_sum(Cluster& c, uint32_t group, uint64_t tag) {
  auto members = c.peers_in_group(group);
  int64_t expected = 0;
  for (size_t i : members) expected += static_cast<int64_t>(i) + 1;
  ASSERT_TRUE(c.run_on(members, [&](size_t i, qcclComm_t* comm) {
    int64_t v = static_cast<int64_t>(i) + 1;
    qcclReduceDesc_t d = {1, qcclInt64, qcclSum, tag, {qcclQuantNone, qcclInt64}};
    qcclReduceInfo_t info{};
    qcclResult_t r = qcclAllReduce(&v, &v, &d, comm, &info);
    ASSERT_EQ(r, qcclSuccess) << "peer " << i << ": " << describe(r);
    EXPECT_EQ(v, expected) << "peer " << i;
    EXPECT_EQ(info.world_size, members.size()) << "peer " << i;
  }));
}

TEST(Membership, StaggeredJoinsAgreeOnAttributes) {
  Cluster c;
  ASSERT_TRUE(c.ok());
  int64_t last_epoch = -1;
  for (int64_t n = 1; n <= 4; ++n) {
    SCOPED_TRACE("after joining peer " + std::to_string(n - 1));
    ASSERT_TRUE(c.add_peer(0));
    int64_t epoch = expect_consistent(c, {{0, n}});
    EXPECT_GT(epoch, last_epoch) << "the epoch must grow at every membership change";
    last_epoch = epoch;
  }
  // An update with nobody pending keeps the membership (and the agreement).
  ASSERT_TRUE(c.update_topology_all());
  int64_t epoch = expect_consistent(c, {{0, 4}});
  EXPECT_GE(epoch, last_epoch);
  expect_group_sum(c, 0, 1);
}

TEST(Membership, TwoGroupsOfTwo) {
  Cluster c;
  ASSERT_TRUE(c.ok());
  for (uint32_t g : {0u, 1u, 0u, 1u}) ASSERT_TRUE(c.add_peer(g));
  expect_consistent(c, {{0, 2}, {1, 2}});
  // Each group reduces over its own members only, with the same tag at the same time.
  std::vector<size_t> all = c.peers();
  std::map<uint32_t, int64_t> expected;
  for (size_t i : all) expected[c.group_of(i)] += static_cast<int64_t>(i) + 1;
  ASSERT_TRUE(c.run([&](size_t i, qcclComm_t* comm) {
    int64_t v = static_cast<int64_t>(i) + 1;
    qcclReduceDesc_t d = {1, qcclInt64, qcclSum, 7, {qcclQuantNone, qcclInt64}};
    qcclReduceInfo_t info{};
    qcclResult_t r = qcclAllReduce(&v, &v, &d, comm, &info);
    ASSERT_EQ(r, qcclSuccess) << "peer " << i << ": " << describe(r);
    EXPECT_EQ(v, expected[c.group_of(i)]) << "peer " << i;
    EXPECT_EQ(info.world_size, 2u) << "peer " << i;
  }));
}

TEST(Membership, GroupsOfThreeAndOne) {
  Cluster c;
  ASSERT_TRUE(c.ok());
  for (uint32_t g : {0u, 0u, 1u, 0u}) ASSERT_TRUE(c.add_peer(g));
  expect_consistent(c, {{0, 3}, {1, 1}});
  expect_group_sum(c, 0, 3);
  // The lone peer of group 1 has nobody to reduce with.
  auto lone = c.peers_in_group(1);
  ASSERT_EQ(lone.size(), 1u);
  float x = 1.0f;
  qcclReduceDesc_t d = {1, qcclFloat32, qcclSum, 3, {qcclQuantNone, qcclFloat32}};
  qcclResult_t r = qcclAllReduce(&x, &x, &d, c.comm(lone[0]), nullptr);
  EXPECT_EQ(r, qcclTooFewPeers) << describe(r);
  EXPECT_EQ(x, 1.0f);
}

TEST(Membership, PeersPendingWhileOneWaitsInConnect) {
  Cluster c;
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(c.grow(2));

  // Nobody waits: every peer answers 0.
  auto vote_all = [&](int expected) {
    ASSERT_TRUE(c.run([&](size_t i, qcclComm_t* comm) {
      int pending = -1;
      qcclResult_t r = qcclArePeersPending(comm, &pending);
      ASSERT_EQ(r, qcclSuccess) << "peer " << i << ": " << describe(r);
      EXPECT_EQ(pending, expected) << "peer " << i;
    }));
  };
  vote_all(0);

  // A third peer starts connecting; the accepted ones vote until they see it, all in the same
  // rounds with the same answers.
  size_t newcomer = 0;
  ASSERT_TRUE(c.begin_join(0, &newcomer));
  std::map<size_t, std::vector<int>> answers;
  std::mutex mu;
  auto deadline = Clock::now() + c.options().step_timeout;
  std::vector<size_t> old = c.peers();
  ASSERT_TRUE(c.run_on(old, [&](size_t i, qcclComm_t* comm) {
    std::vector<int> mine;
    for (;;) {
      int pending = -1;
      qcclResult_t r = qcclArePeersPending(comm, &pending);
      ASSERT_EQ(r, qcclSuccess) << "peer " << i << ": " << describe(r);
      mine.push_back(pending);
      if (pending != 0 || Clock::now() > deadline) break;
    }
    std::lock_guard<std::mutex> lock(mu);
    answers[i] = mine;
  }));
  ASSERT_EQ(answers.size(), 2u);
  EXPECT_EQ(answers[old[0]], answers[old[1]]) << "peers got different answers to one vote";
  EXPECT_EQ(answers[old[0]].back(), 1);

  // It is still waiting, and stays pending until the next update.
  EXPECT_FALSE(c.connect_returned(newcomer));
  vote_all(1);
  EXPECT_FALSE(c.connect_returned(newcomer));

  ASSERT_TRUE(c.update_topology_all());
  ASSERT_TRUE(c.finish_join(newcomer));
  expect_consistent(c, {{0, 3}});
  vote_all(0);  // the newcomer votes too now
}

TEST(Membership, GracefulDestroyShrinksTheOthers) {
  Cluster c;
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(c.grow(3));
  int64_t before = expect_consistent(c, {{0, 3}});

  EXPECT_EQ(c.destroy(1), qcclSuccess);
  ASSERT_TRUE(c.update_topology_all());
  int64_t after = expect_consistent(c, {{0, 2}});
  EXPECT_GT(after, before);
  expect_group_sum(c, 0, 11);

  EXPECT_EQ(c.destroy(0), qcclSuccess);
  ASSERT_TRUE(c.update_topology_all());
  int64_t last = expect_consistent(c, {{0, 1}});
  EXPECT_GT(last, after);
  int32_t x = 5;
  qcclReduceDesc_t d = {1, qcclInt32, qcclSum, 12, {qcclQuantNone, qcclInt32}};
  qcclResult_t r = qcclAllReduce(&x, &x, &d, c.comm(2), nullptr);
  EXPECT_EQ(r, qcclTooFewPeers) << describe(r);
}

TEST(Membership, ConnectTimesOutWhenNeverAdmitted) {
  Cluster c;
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(c.grow(1));

  constexpr uint32_t kTimeoutMs = 600;
  constexpr int64_t kMarginMs = 1500;
  qcclCommConfig_t cc = QCCL_COMM_CONFIG_INIT;
  cc.master_address = c.master_address().c_str();
  cc.connections_per_peer = c.options().connections_per_peer;
  cc.connect_timeout_ms = kTimeoutMs;
  qcclComm_t* comm = nullptr;
  ASSERT_EQ(qcclCommCreate(&cc, &comm), qcclSuccess) << qcclGetLastError();

  // Nobody votes, so it is never admitted.
  auto t0 = Clock::now();
  qcclResult_t r = qcclConnect(comm);
  int64_t ms = elapsed_ms(t0);
  EXPECT_EQ(r, qcclTimeout) << describe(r);
  EXPECT_NE(std::string(qcclGetLastError()).find("qcclConnect"), std::string::npos)
      << qcclGetLastError();
  EXPECT_GE(ms, kTimeoutMs - 50) << "returned before the deadline";
  EXPECT_LT(ms, kTimeoutMs + kMarginMs) << "took too long after the deadline";

  // The timed-out peer does not stay pending at the master (bounded poll: the master learns
  // of the closed connection asynchronously).
  auto deadline = Clock::now() + c.options().step_timeout;
  int pending = -1;
  do {
    r = qcclArePeersPending(c.comm(0), &pending);
    ASSERT_EQ(r, qcclSuccess) << describe(r);
  } while (pending != 0 && Clock::now() < deadline);
  EXPECT_EQ(pending, 0) << "the timed-out peer is still pending";

  // The same communicator may try again; this time the accepted peer admits it.
  size_t idx = 0;
  ASSERT_TRUE(c.begin_join_existing(comm, 0, &idx));
  ASSERT_TRUE(c.wait_until_pending());
  ASSERT_TRUE(c.update_topology_all());
  ASSERT_TRUE(c.finish_join(idx));
  expect_consistent(c, {{0, 2}});
  expect_group_sum(c, 0, 21);
}

TEST(Membership, ConnectToClosedPortEndsWithinTheBound) {
  // A port that was just in use by a master and is closed now.
  uint16_t port = 0;
  {
    Cluster gone;
    ASSERT_TRUE(gone.ok());
    port = gone.master_port();
  }
  constexpr uint32_t kTimeoutMs = 700;
  constexpr int64_t kMarginMs = 1500;
  std::string address = "127.0.0.1:" + std::to_string(port);
  qcclCommConfig_t cc = QCCL_COMM_CONFIG_INIT;
  cc.master_address = address.c_str();
  cc.connect_timeout_ms = kTimeoutMs;
  qcclComm_t* comm = nullptr;
  ASSERT_EQ(qcclCommCreate(&cc, &comm), qcclSuccess) << qcclGetLastError();
  auto t0 = Clock::now();
  qcclResult_t r = qcclConnect(comm);
  int64_t ms = elapsed_ms(t0);
  EXPECT_TRUE(r == qcclTimeout || r == qcclMasterUnreachable) << describe(r);
  EXPECT_NE(std::string(qcclGetLastError()).find("qcclConnect"), std::string::npos)
      << qcclGetLastError();
  EXPECT_LT(ms, kTimeoutMs + kMarginMs);
  // Not connected: control calls are refused.
  r = qcclUpdateTopology(comm);
  EXPECT_EQ(r, qcclInvalidUsage) << describe(r);
  EXPECT_EQ(qcclCommDestroy(comm), qcclSuccess) << qcclGetLastError();
}

}  // namespace
}  // namespace qccl::test
