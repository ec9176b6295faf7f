// RingBroadcast driven without any network (ring_harness.hpp): every root of rings of 1 to 5
// peers, for empty, one-element, odd and multi-segment buffers, in random delivery orders,
// with and without resent frames; every peer must end with the root's bytes. Also the frames
// claim() refuses.
#include "collectives/ring_broadcast.hpp"

#include <gtest/gtest.h>

#include <memory>
#include <random>
#include <string>
#include <vector>

#include "ring_harness.hpp"

namespace qccl::collectives {
namespace {

std::vector<uint8_t> random_bytes(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<uint8_t> out(n);
  for (auto& b : out) b = static_cast<uint8_t>(rng());
  return out;
}

TEST(RingBroadcast, EveryPeerEndsWithTheRootsBytes) {
  const size_t elem = 4;
  // 100003 elements: 7 segments of at most 16384 (choose_segment_elems' 64 KiB floor).
  for (size_t count : {size_t{0}, size_t{1}, size_t{1001}, size_t{100003}}) {
    for (uint32_t world = 1; world <= 5; ++world) {
      for (uint32_t root = 0; root < world; ++root) {
        for (bool resends : {false, true}) {
          SCOPED_TRACE("count " + std::to_string(count) + " world " + std::to_string(world) +
                       " root " + std::to_string(root) + (resends ? " resends" : ""));
          const std::vector<uint8_t> data = random_bytes(count * elem, count + root);
          std::vector<std::vector<uint8_t>> bufs(world, std::vector<uint8_t>(count * elem, 0xAB));
          bufs[root] = data;
          std::vector<std::unique_ptr<RingBroadcast>> rings;
          for (uint32_t i = 0; i < world; ++i) {
            rings.push_back(
                std::make_unique<RingBroadcast>(bufs[i].data(), count, elem, world, i, root));
          }
          size_t segments = num_segments(count, choose_segment_elems(count, elem, 1));
          EXPECT_EQ(rings[root]->initial_frames(), world > 1 ? segments : 0);
          EXPECT_TRUE(rings[root]->complete());
          for (uint32_t i = 0; i < world; ++i) {
            EXPECT_EQ(rings[i]->expected_frames(), i == root ? 0 : segments);
          }
          auto tx = testing::deliver(rings, world * 7 + root + count, resends);
          for (uint32_t i = 0; i < world; ++i) ASSERT_EQ(bufs[i], data) << "rank " << i;
          // The peer before the root forwards nothing.
          if (world > 1) {
            EXPECT_EQ(tx[(root + world - 1) % world], 0u);
          }
        }
      }
    }
  }
}

TEST(RingBroadcast, OddElementSizeAndSegmentsFollowDistance) {
  // 3-byte elements, world 4, root 2: rank 1 (distance 3) receives step 2 and forwards nothing.
  const size_t count = 70001, elem = 3;
  const std::vector<uint8_t> data = random_bytes(count * elem, 5);
  std::vector<std::vector<uint8_t>> bufs(4, std::vector<uint8_t>(count * elem, 0));
  bufs[2] = data;
  std::vector<std::unique_ptr<RingBroadcast>> rings;
  for (uint32_t i = 0; i < 4; ++i) {
    rings.push_back(std::make_unique<RingBroadcast>(bufs[i].data(), count, elem, 4, i, 2));
  }
  EXPECT_EQ(rings[1]->distance(), 3u);
  EXPECT_EQ(rings[3]->distance(), 1u);
  testing::deliver(rings, 3, /*resends=*/true);
  for (uint32_t i = 0; i < 4; ++i) ASSERT_EQ(bufs[i], data) << "rank " << i;
}

TEST(RingBroadcast, ClaimRefusesImpossibleFrames) {
  const size_t count = 100003, elem = 4;
  const size_t seg = choose_segment_elems(count, elem, 1);
  const size_t last = num_segments(count, seg) - 1;
  const size_t last_bytes = (count - last * seg) * elem;
  std::vector<uint8_t> buf(count * elem);
  RingBroadcast root(buf.data(), count, elem, 4, 1, 1);
  RingBroadcast peer(buf.data(), count, elem, 4, 3, 1);  // distance 2: accepts step 1 only
  auto lost = [](const Result<RecvTarget>& r) {
    return !r.is_ok() && r.status().code() == StatusCode::kPeerLost;
  };
  EXPECT_TRUE(lost(root.claim(0, 0, seg * elem)));
  EXPECT_TRUE(lost(peer.claim(0, 0, seg * elem)));
  EXPECT_TRUE(lost(peer.claim(2, 0, seg * elem)));
  EXPECT_TRUE(lost(peer.claim(1, static_cast<uint32_t>(last + 1), seg * elem)));
  EXPECT_TRUE(lost(peer.claim(1, static_cast<uint32_t>(last), seg * elem)));  // short segment
  EXPECT_NE(peer.claim(0, 0, 4).status().message().find("step 1 only"), std::string::npos);
  auto ok = peer.claim(1, static_cast<uint32_t>(last), last_bytes, 7);
  ASSERT_TRUE(ok.is_ok()) << ok.status().message();
  EXPECT_FALSE(ok->staged);
  EXPECT_EQ(ok->dst, buf.data() + last * seg * elem);
  auto dup = peer.claim(1, static_cast<uint32_t>(last), last_bytes, 8);
  ASSERT_TRUE(dup.is_ok());
  EXPECT_EQ(dup->duplicate, Duplicate::kPending);
  EXPECT_EQ(dup->claimant, 7u);
  // A broadcast of nothing, or to oneself, has no frames at all.
  RingBroadcast empty(nullptr, 0, elem, 3, 2, 0);
  EXPECT_TRUE(empty.complete());
  EXPECT_TRUE(lost(empty.claim(1, 0, 0)));
  RingBroadcast alone(buf.data(), count, elem, 1, 0, 0);
  EXPECT_TRUE(alone.complete());
  EXPECT_EQ(alone.initial_frames(), 0u);
}

}  // namespace
}  // namespace qccl::collectives
