// The ring all-reduce driven through data links that fail on purpose, in one process:
// a lane that closes after N bytes (a reset connection), one lane that stops reading half way
// through a frame (a connection stalled by loss or a per-flow cap), and a peer that stops
// reading after N bytes (a hung process or a cut link, seen from its neighbour). While other
// lanes to the neighbour live, a broken or stalled lane's frames are resent on them and the
// operation succeeds; with no lane left every peer's op must fail with qcclPeerLost within the
// peer timeout, the in-place input must be restored, and an immediate retry must succeed.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "capi/handles.hpp"
#include "core/communicator.hpp"
#include "support/cluster.hpp"
#include "support/lane_faults.hpp"
#include "support/watchdog.hpp"

QCCL_TEST_WATCHDOG(110);

namespace qccl {
namespace {

using Clock = std::chrono::steady_clock;

constexpr uint32_t kPeerTimeoutMs = 1000;
constexpr uint32_t kVoteTimeoutMs = 10000;

// What one peer's all-reduce returned.
struct Outcome {
  qcclResult_t code = qcclInternalError;
  std::string error;  // describe(code), on the peer's thread
};

// n peers of support/cluster.hpp, and the communicators behind their handles (the C API is
// compiled into this test: see CMakeLists.txt), on which the test injects faults.
struct LaneCluster {
  test::Cluster cluster;
  std::vector<core::Communicator*> peers;

  explicit LaneCluster(int n, uint32_t connections_per_peer = 2)
      : cluster(options(connections_per_peer)) {
    EXPECT_TRUE(cluster.ok());
    EXPECT_TRUE(cluster.grow(static_cast<size_t>(n)));
    for (size_t i : cluster.peers()) peers.push_back(cluster.comm(i)->rep.get());
    EXPECT_EQ(peers.size(), static_cast<size_t>(n)) << "the cluster did not form";
  }

  static test::ClusterOptions options(uint32_t connections_per_peer) {
    test::ClusterOptions o;
    o.heartbeat_interval_ms = 100;
    o.peer_timeout_ms = kPeerTimeoutMs;
    o.vote_timeout_ms = kVoteTimeoutMs;
    o.connect_timeout_ms = 10000;
    o.connections_per_peer = connections_per_peer;
    return o;
  }

  // Runs one in-place Sum all-reduce on every peer at once; peer i's buffer is filled with i+1.
  std::vector<Outcome> all_reduce(std::vector<std::vector<float>>& bufs, uint64_t tag) {
    std::vector<Outcome> out(bufs.size());
    EXPECT_TRUE(cluster.run([&](size_t i, qcclComm_t* comm) {
      qcclReduceDesc_t d = {bufs[i].size(), qcclFloat32, qcclSum, tag,
                            {qcclQuantNone, qcclFloat32}};
      out[i].code = qcclAllReduce(bufs[i].data(), bufs[i].data(), &d, comm, nullptr);
      if (out[i].code != qcclSuccess) out[i].error = test::describe(out[i].code);
    }));
    return out;
  }
};

std::vector<std::vector<float>> inputs(size_t n, size_t count) {
  std::vector<std::vector<float>> b(n);
  for (size_t i = 0; i < n; ++i) b[i].assign(count, static_cast<float>(i + 1));
  return b;
}

void expect_failed_and_restored(const std::vector<Outcome>& st,
                                const std::vector<std::vector<float>>& bufs) {
  for (size_t i = 0; i < st.size(); ++i) {
    EXPECT_EQ(st[i].code, qcclPeerLost) << "peer " << i << ": " << st[i].error;
    for (float x : bufs[i]) {
      ASSERT_EQ(x, static_cast<float>(i + 1)) << "peer " << i << ": in-place input not restored";
    }
  }
}

void expect_sum(const std::vector<Outcome>& st, const std::vector<std::vector<float>>& bufs) {
  float want = 0;
  for (size_t i = 0; i < bufs.size(); ++i) want += static_cast<float>(i + 1);
  for (size_t i = 0; i < st.size(); ++i) {
    ASSERT_EQ(st[i].code, qcclSuccess) << "peer " << i << ": " << st[i].error;
    for (float x : bufs[i]) ASSERT_EQ(x, want);
  }
}

TEST(LaneFaults, LaneClosedMidOperationIsResentOnTheOtherLane) {
  LaneCluster c(3, /*connections_per_peer=*/2);
  ASSERT_EQ(c.peers.size(), 3u);
  constexpr size_t kCount = 4 << 20;  // 16 MiB: many segments in flight
  c.peers[1]->set_fault_policy_for_testing(
      test_support::lane_faults({.close_after_bytes = 1 << 20}));
  auto bufs = inputs(3, kCount);
  auto t0 = Clock::now();
  auto st = c.all_reduce(bufs, 7);
  expect_sum(st, bufs);
  // Well within the stall watchdog (vote timeout): nothing waited for a timeout.
  EXPECT_LT(Clock::now() - t0, std::chrono::milliseconds(kPeerTimeoutMs * 3));
}

TEST(LaneFaults, LaneClosedMidOperationWithNoOtherLaneFailsEveryPeerThenRetrySucceeds) {
  LaneCluster c(3, /*connections_per_peer=*/1);
  ASSERT_EQ(c.peers.size(), 3u);
  constexpr size_t kCount = 4 << 20;
  c.peers[1]->set_fault_policy_for_testing(
      test_support::lane_faults({.close_after_bytes = 1 << 20}));
  auto bufs = inputs(3, kCount);
  auto t0 = Clock::now();
  auto st = c.all_reduce(bufs, 7);
  auto failed_after = Clock::now() - t0;
  expect_failed_and_restored(st, bufs);
  EXPECT_LT(failed_after, std::chrono::milliseconds(kPeerTimeoutMs));
  auto retry = c.all_reduce(bufs, 7);
  expect_sum(retry, bufs);
}

TEST(LaneFaults, LaneStalledMidFrameIsDetectedAndItsFramesResent) {
  // Peer 2 stops reading one inbound lane half way through a frame. Its neighbour sees that
  // lane's data stay unacknowledged while the other lanes move, retires it after the lane
  // stall time (peer timeout / 5, at least 500 ms), and resends its frames on the others;
  // peer 2 takes the stalled frame in from the copy. Without that the operation would wait
  // for the stall watchdog (vote timeout) and fail.
  LaneCluster c(3, /*connections_per_peer=*/4);
  ASSERT_EQ(c.peers.size(), 3u);
  constexpr size_t kCount = 4 << 20;
  c.peers[2]->set_fault_policy_for_testing(
      test_support::lane_faults({.stall_lane_after_bytes = 1 << 20}));
  auto bufs = inputs(3, kCount);
  auto t0 = Clock::now();
  auto st = c.all_reduce(bufs, 8);
  auto took = Clock::now() - t0;
  expect_sum(st, bufs);
  EXPECT_LT(took, std::chrono::milliseconds(kVoteTimeoutMs / 2))
      << std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms";
  // The group goes on with the lanes it has, and a replacement.
  bufs = inputs(3, kCount);
  expect_sum(c.all_reduce(bufs, 8), bufs);
}

TEST(LaneFaults, PeerThatStopsReadingFailsTheOperationWithinThePeerTimeout) {
  // One lane per neighbour and 64 MiB: the neighbour's reduce-scatter alone sends ~43 MiB,
  // more than one socket's buffers absorb (tcp_rmem max is 32 MiB here, wmem 4 MiB), so the
  // sender must see a zero window; with more lanes the buffers could take it all, and only
  // the stall watchdog (vote timeout) would notice.
  LaneCluster c(3, /*connections_per_peer=*/1);
  ASSERT_EQ(c.peers.size(), 3u);
  constexpr size_t kCount = 16 << 20;
  c.peers[2]->set_fault_policy_for_testing(
      test_support::lane_faults({.stall_reads_after_bytes = 1 << 20}));
  auto bufs = inputs(3, kCount);
  auto t0 = Clock::now();
  auto st = c.all_reduce(bufs, 9);
  auto failed_after = Clock::now() - t0;
  expect_failed_and_restored(st, bufs);
  // The peer still heartbeats, but its neighbour's unacknowledged bytes (zero-window probes)
  // hit TCP_USER_TIMEOUT = peer timeout; allow the master's round and the rebuild on top. The
  // stall watchdog (vote timeout, longer here) is not what fires.
  EXPECT_LT(failed_after, std::chrono::milliseconds(kPeerTimeoutMs * 3))
      << std::chrono::duration_cast<std::chrono::milliseconds>(failed_after).count() << " ms";
  std::printf("stalled link detected after %lld ms (peer timeout %u ms)\n",
              static_cast<long long>(
                  std::chrono::duration_cast<std::chrono::milliseconds>(failed_after).count()),
              kPeerTimeoutMs);
  auto retry = c.all_reduce(bufs, 9);
  expect_sum(retry, bufs);
}

}  // namespace
}  // namespace qccl
