// Op deadlines (issue 19): three peers with an op timeout of 300 ms; one of them skips an
// operation. The master aborts it at its first start + 300 ms: the two callers get
// qcclTimeout, no sooner than 300 ms after the first of them called; the late peer's own call
// of it then fails with qcclTimeout at once; inputs are untouched and in-place buffers hold
// their input again; nobody is expelled, and the next all-reduce of all three succeeds with
// exact results. Once with the timeout from the config (a barrier skipped), once set at run
// time with qcclCommSetOpTimeout (an in-place all-reduce skipped).
#include <qccl/qccl.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <numeric>
#include <string>
#include <vector>

#include "capi/handles.hpp"
#include "core/communicator.hpp"
#include "support/cluster.hpp"
#include "support/watchdog.hpp"

QCCL_TEST_WATCHDOG(110);

namespace qccl {
namespace {

using test::Clock;
using test::describe;
using namespace std::chrono_literals;

constexpr uint32_t kOpTimeoutMs = 300;
constexpr int64_t kUpperBoundMs = 5000;  // generous: a loaded 2-core machine

test::ClusterOptions options() {
  test::ClusterOptions o;
  o.vote_timeout_ms = 30000;  // the straggler deadline: far away, so nobody can be expelled
  return o;
}

// Adds `n` peers whose config carries op_timeout_ms (the Cluster's own join steps).
::testing::AssertionResult grow_with_op_timeout(test::Cluster& cluster, size_t n, uint32_t ms) {
  for (size_t k = 0; k < n; ++k) {
    qcclCommConfig_t cc = QCCL_COMM_CONFIG_INIT;
    cc.master_address = cluster.master_address().c_str();
    cc.connections_per_peer = cluster.options().connections_per_peer;
    cc.connect_timeout_ms = cluster.options().connect_timeout_ms;
    cc.op_timeout_ms = ms;
    qcclComm_t* comm = nullptr;
    qcclResult_t r = qcclCommCreate(&cc, &comm);
    if (r != qcclSuccess) return ::testing::AssertionFailure() << describe(r);
    bool first = cluster.peers().empty();
    size_t idx = 0;
    auto ok = cluster.begin_join_existing(comm, 0, &idx);
    if (ok && !first) ok = cluster.wait_until_pending();
    if (ok && !first) ok = cluster.update_topology_all();
    if (ok) ok = cluster.finish_join(idx);
    if (!ok) return ok;
  }
  return ::testing::AssertionSuccess();
}

// The callers' times: each call's start and return. The master's deadline counts from the
// first start it saw, which is after the first call began: every caller returns at least the
// timeout after the first call began (a later caller may wait less than the timeout itself).
struct Timing {
  std::vector<Clock::time_point> started, returned;
  explicit Timing(size_t n) : started(n), returned(n) {}
  void expect_deadline(const std::vector<size_t>& callers) const {
    Clock::time_point first = Clock::time_point::max();
    for (size_t i : callers) first = std::min(first, started[i]);
    for (size_t i : callers) {
      auto since_first = std::chrono::duration_cast<std::chrono::milliseconds>(returned[i] - first);
      auto own = std::chrono::duration_cast<std::chrono::milliseconds>(returned[i] - started[i]);
      EXPECT_GE(since_first.count(), kOpTimeoutMs) << "peer " << i;
      EXPECT_LT(own.count(), kUpperBoundMs) << "peer " << i;
      std::printf("[ deadline ] peer %zu: qcclTimeout %lld ms after its call, %lld ms after the "
                  "first call\n",
                  i, static_cast<long long>(own.count()),
                  static_cast<long long>(since_first.count()));
    }
  }
};

// Every peer runs an all-reduce (sum) of tag `tag`; each gets exactly sum_i (i + 1) * x.
void expect_exact_all_reduce(test::Cluster& cluster, uint64_t tag) {
  std::vector<std::vector<int64_t>> bufs(3);
  std::vector<qcclResult_t> results(3, qcclInternalError);
  std::vector<qcclReduceInfo_t> infos(3);
  ASSERT_TRUE(cluster.run([&](size_t i, qcclComm_t* c) {
    bufs[i].resize(20000);
    for (size_t k = 0; k < bufs[i].size(); ++k) bufs[i][k] = static_cast<int64_t>((i + 1) * k);
    qcclReduceDesc_t d{};
    d.count = bufs[i].size();
    d.dtype = qcclInt64;
    d.op = qcclSum;
    d.tag = tag;
    results[i] = qcclAllReduce(bufs[i].data(), bufs[i].data(), &d, c, &infos[i]);
  }));
  for (size_t i = 0; i < 3; ++i) {
    ASSERT_EQ(results[i], qcclSuccess) << "peer " << i;
    EXPECT_EQ(infos[i].world_size, 3u);
    for (size_t k = 0; k < bufs[i].size(); k += 997) {
      ASSERT_EQ(bufs[i][k], static_cast<int64_t>(6 * k)) << "peer " << i << " element " << k;
    }
  }
  for (size_t i : cluster.peers()) EXPECT_EQ(cluster.view(i).group_world_size, 3);
}

TEST(OpDeadline, ASkippedBarrierTimesOutOnEveryPeerTheLateOneIncluded) {
  test::Cluster cluster(options());
  ASSERT_TRUE(cluster.ok());
  ASSERT_TRUE(grow_with_op_timeout(cluster, 3, kOpTimeoutMs));
  uint32_t ms = 0;
  ASSERT_EQ(qcclCommGetOpTimeout(cluster.comm(0), &ms), qcclSuccess);
  EXPECT_EQ(ms, kOpTimeoutMs);
  std::vector<Status> st(3);
  Timing timing(3);
  ASSERT_TRUE(cluster.run_on({0, 1}, [&](size_t i, qcclComm_t* c) {
    timing.started[i] = Clock::now();
    st[i] = c->rep->barrier(4);
    timing.returned[i] = Clock::now();
  }));
  for (size_t i : {0, 1}) {
    EXPECT_EQ(st[i].code(), StatusCode::kTimeout) << "peer " << i << ": " << st[i].to_string();
    EXPECT_NE(st[i].message().find("op timeout"), std::string::npos) << st[i].message();
  }
  timing.expect_deadline({0, 1});
  // The late peer calls it now: it failed already, with the same code.
  auto t0 = Clock::now();
  Status late = cluster.comm(2)->rep->barrier(4);
  EXPECT_EQ(late.code(), StatusCode::kTimeout) << late.to_string();
  EXPECT_LT(test::elapsed_ms(t0), kUpperBoundMs);
  expect_exact_all_reduce(cluster, 5);
  // The same tag again is a new barrier, which all three complete.
  ASSERT_TRUE(cluster.run([&](size_t i, qcclComm_t* c) { st[i] = c->rep->barrier(4); }));
  for (size_t i = 0; i < 3; ++i) EXPECT_TRUE(st[i].is_ok()) << st[i].to_string();
}

TEST(OpDeadline, SetAtRunTimeASkippedInPlaceAllReduceTimesOutAndRestoresTheInput) {
  test::Cluster cluster(options());
  ASSERT_TRUE(cluster.ok());
  ASSERT_TRUE(cluster.grow(3));
  for (size_t i : cluster.peers()) {
    ASSERT_EQ(qcclCommSetOpTimeout(cluster.comm(i), kOpTimeoutMs), qcclSuccess);
  }
  std::vector<std::vector<float>> bufs(3), inputs(3);
  for (size_t i = 0; i < 3; ++i) {
    bufs[i].resize(300000);  // larger than one segment: data really moves between 0 and 2
    std::iota(bufs[i].begin(), bufs[i].end(), static_cast<float>(i));
    inputs[i] = bufs[i];
  }
  qcclReduceDesc_t d{};
  d.count = bufs[0].size();
  d.dtype = qcclFloat32;
  d.op = qcclSum;
  d.tag = 9;
  std::vector<qcclResult_t> r(3, qcclInternalError);
  Timing timing(3);
  ASSERT_TRUE(cluster.run_on({0, 2}, [&](size_t i, qcclComm_t* c) {
    timing.started[i] = Clock::now();
    r[i] = qcclAllReduce(bufs[i].data(), bufs[i].data(), &d, c, nullptr);
    timing.returned[i] = Clock::now();
  }));
  for (size_t i : {0, 2}) {
    EXPECT_EQ(r[i], qcclTimeout) << "peer " << i;
    EXPECT_EQ(bufs[i], inputs[i]) << "peer " << i << ": the in-place input was not restored";
  }
  timing.expect_deadline({0, 2});
  qcclResult_t late = qcclAllReduce(bufs[1].data(), bufs[1].data(), &d, cluster.comm(1), nullptr);
  EXPECT_EQ(late, qcclTimeout) << describe(late);
  EXPECT_EQ(bufs[1], inputs[1]);
  expect_exact_all_reduce(cluster, 9);
}

}  // namespace
}  // namespace qccl
