// The ring all-reduce driven through data links that fail on purpose, in one process:
// a lane that closes after N bytes (a reset connection), one lane that stops reading half way
// through a frame (a connection stalled by loss or a per-flow cap), and a peer that stops
// reading after N bytes (a hung process or a cut link, seen from its neighbour). While other
// lanes to the neighbour live, a broken or stalled lane's frames are resent on them and the
// operation succeeds; with no lane left every peer's op must fail with kPeerLost within the
// peer timeout, the in-place input must be restored, and an immediate retry must succeed.
#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <memory>
#include <thread>
#include <vector>

#include "core/communicator.hpp"
#include "support/lane_faults.hpp"
#include "master/master_server.hpp"
#include "support/watchdog.hpp"

QCCL_TEST_WATCHDOG(110);

namespace qccl {
namespace {

using Clock = std::chrono::steady_clock;

constexpr uint32_t kPeerTimeoutMs = 1000;
constexpr uint32_t kVoteTimeoutMs = 10000;

struct Cluster {
  std::unique_ptr<master::MasterServer> master;
  std::vector<std::unique_ptr<core::Communicator>> peers;

  explicit Cluster(int n, uint32_t connections_per_peer = 2) {
    master::MasterOptions mo;
    mo.listen_address = "127.0.0.1:0";
    mo.heartbeat_interval_ms = 100;
    mo.peer_timeout_ms = kPeerTimeoutMs;
    mo.vote_timeout_ms = kVoteTimeoutMs;
    master = std::make_unique<master::MasterServer>(mo);
    EXPECT_TRUE(master->start().is_ok());
    std::string addr = "127.0.0.1:" + std::to_string(master->port());
    for (int i = 0; i < n; ++i) {
      core::CommOptions co;
      co.master_address = addr;
      co.connect_timeout_ms = 10000;
      co.connections_per_peer = connections_per_peer;
      auto c = core::Communicator::create(co);
      EXPECT_TRUE(c.is_ok());
      peers.push_back(std::move(c).value());
    }
    // Peer 0 is admitted alone; each later peer is admitted by a vote of those before it.
    EXPECT_TRUE(peers[0]->connect().is_ok());
    for (int i = 1; i < n; ++i) {
      auto joining = std::async(std::launch::async, [&, i] { return peers[i]->connect(); });
      // Peers-pending is a collective vote, so every member sees the same answer each round
      // and they all reach qcclUpdateTopology together once the newcomer has registered.
      std::vector<std::future<Status>> votes;
      for (int j = 0; j < i; ++j) {
        votes.push_back(std::async(std::launch::async, [&, j]() -> Status {
          for (int round = 0; round < 10000; ++round) {
            auto pending = peers[j]->are_peers_pending();
            if (!pending.is_ok()) return pending.status();
            if (*pending) return peers[j]->update_topology();
          }
          return Status(StatusCode::kTimeout, "the newcomer never registered");
        }));
      }
      for (auto& v : votes) EXPECT_TRUE(v.get().is_ok());
      EXPECT_TRUE(joining.get().is_ok());
    }
  }

  // Runs one in-place Sum all-reduce on every peer at once; peer i's buffer is filled with i+1.
  std::vector<Status> all_reduce(std::vector<std::vector<float>>& bufs, OpTag tag) {
    collectives::ReduceDesc d;
    d.count = bufs[0].size();
    d.tag = tag;
    std::vector<std::future<Status>> fs;
    for (size_t i = 0; i < peers.size(); ++i) {
      fs.push_back(std::async(std::launch::async, [&, i] {
        core::ReduceInfo info;
        return peers[i]->all_reduce(bufs[i].data(), bufs[i].data(), d, &info);
      }));
    }
    std::vector<Status> out;
    for (auto& f : fs) out.push_back(f.get());
    return out;
  }
};

std::vector<std::vector<float>> inputs(size_t n, size_t count) {
  std::vector<std::vector<float>> b(n);
  for (size_t i = 0; i < n; ++i) b[i].assign(count, static_cast<float>(i + 1));
  return b;
}

void expect_failed_and_restored(const std::vector<Status>& st,
                                const std::vector<std::vector<float>>& bufs) {
  for (size_t i = 0; i < st.size(); ++i) {
    EXPECT_EQ(st[i].code(), StatusCode::kPeerLost) << "peer " << i << ": " << st[i].to_string();
    for (float x : bufs[i]) {
      ASSERT_EQ(x, static_cast<float>(i + 1)) << "peer " << i << ": in-place input not restored";
    }
  }
}

void expect_sum(const std::vector<Status>& st, const std::vector<std::vector<float>>& bufs) {
  float want = 0;
  for (size_t i = 0; i < bufs.size(); ++i) want += static_cast<float>(i + 1);
  for (size_t i = 0; i < st.size(); ++i) {
    ASSERT_TRUE(st[i].is_ok()) << "peer " << i << ": " << st[i].to_string();
    for (float x : bufs[i]) ASSERT_EQ(x, want);
  }
}

TEST(FaultLink, LaneClosedMidOperationIsResentOnTheOtherLane) {
  Cluster c(3, /*connections_per_peer=*/2);
  constexpr size_t kCount = 4 << 20;  // 16 MiB: many segments in flight
  c.peers[1]->set_fault_policy_for_testing(test_support::lane_faults({.close_after_bytes = 1 << 20}));
  auto bufs = inputs(3, kCount);
  auto t0 = Clock::now();
  auto st = c.all_reduce(bufs, 7);
  expect_sum(st, bufs);
  // Well within the stall watchdog (vote timeout): nothing waited for a timeout.
  EXPECT_LT(Clock::now() - t0, std::chrono::milliseconds(kPeerTimeoutMs * 3));
}

TEST(FaultLink, LaneClosedMidOperationWithNoOtherLaneFailsEveryPeerThenRetrySucceeds) {
  Cluster c(3, /*connections_per_peer=*/1);
  constexpr size_t kCount = 4 << 20;
  c.peers[1]->set_fault_policy_for_testing(test_support::lane_faults({.close_after_bytes = 1 << 20}));
  auto bufs = inputs(3, kCount);
  auto t0 = Clock::now();
  auto st = c.all_reduce(bufs, 7);
  auto failed_after = Clock::now() - t0;
  expect_failed_and_restored(st, bufs);
  EXPECT_LT(failed_after, std::chrono::milliseconds(kPeerTimeoutMs));
  auto retry = c.all_reduce(bufs, 7);
  expect_sum(retry, bufs);
}

TEST(FaultLink, LaneStalledMidFrameIsDetectedAndItsFramesResent) {
  // Peer 2 stops reading one inbound lane half way through a frame. Its neighbour sees that
  // lane's data stay unacknowledged while the other lanes move, retires it after the lane
  // stall time (peer timeout / 5, at least 500 ms), and resends its frames on the others;
  // peer 2 takes the stalled frame in from the copy. Without that the operation would wait
  // for the stall watchdog (vote timeout) and fail.
  Cluster c(3, /*connections_per_peer=*/4);
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

TEST(FaultLink, PeerThatStopsReadingFailsTheOperationWithinThePeerTimeout) {
  // One lane per neighbour and 64 MiB: the neighbour's reduce-scatter alone sends ~43 MiB,
  // more than one socket's buffers absorb (tcp_rmem max is 32 MiB here, wmem 4 MiB), so the
  // sender must see a zero window; with more lanes the buffers could take it all, and only
  // the stall watchdog (vote timeout) would notice.
  Cluster c(3, /*connections_per_peer=*/1);
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
