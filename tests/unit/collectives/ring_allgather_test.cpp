// RingAllGather driven without any network (ring_harness.hpp): rings of 1 to 5 peers with
// equal counts, variable counts with zeros, one non-empty block and none, in and out of place,
// in random delivery orders, with and without resent frames; every peer must end with the
// exact concatenation. Also the frames claim() refuses.
#include "collectives/ring_allgather.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "ring_harness.hpp"

namespace qccl::collectives {
namespace {

using testing::show;

// Runs one all-gather of `counts` (one per rank, elements of `elem` bytes) and checks every
// rank's recvbuf against the concatenation of the inputs.
void check_allgather(const std::vector<size_t>& counts, size_t elem, bool in_place, bool resends,
                     uint64_t seed) {
  SCOPED_TRACE("counts " + show(counts) + (in_place ? "in place" : "") +
               (resends ? " resends" : ""));
  const auto world = static_cast<uint32_t>(counts.size());
  const size_t total = std::accumulate(counts.begin(), counts.end(), size_t{0});
  std::mt19937_64 rng(seed);
  std::vector<uint8_t> expect(total * elem);
  for (auto& b : expect) b = static_cast<uint8_t>(rng());
  std::vector<std::vector<uint8_t>> send(world), recv(world);
  std::vector<std::unique_ptr<RingAllGather>> rings;
  size_t offset = 0;
  for (uint32_t i = 0; i < world; ++i) {
    const uint8_t* own = expect.data() + offset * elem;
    send[i].assign(own, own + counts[i] * elem);
    recv[i].assign(total * elem, 0xAB);
    const void* src = send[i].data();
    if (in_place) {
      if (counts[i] > 0) std::memcpy(recv[i].data() + offset * elem, own, counts[i] * elem);
      src = recv[i].data() + offset * elem;
    }
    rings.push_back(std::make_unique<RingAllGather>(src, recv[i].data(), counts, elem, world, i));
    EXPECT_EQ(rings[i]->block(i), (Range{offset, counts[i]}));
    offset += counts[i];
  }
  auto tx = testing::deliver(rings, seed, resends);
  for (uint32_t i = 0; i < world; ++i) ASSERT_EQ(recv[i], expect) << "rank " << i;
  // Every block travels N-1 hops, once each (resent copies count again).
  if (!resends) {
    EXPECT_EQ(std::accumulate(tx.begin(), tx.end(), size_t{0}), (world - 1) * total * elem);
  }
}

TEST(RingAllGather, EqualCounts) {
  for (uint32_t world = 1; world <= 5; ++world) {
    // 20001 four-byte elements a block: two segments of at most 16384.
    for (size_t count : {size_t{0}, size_t{1}, size_t{1001}, size_t{20001}}) {
      for (bool in_place : {false, true}) {
        check_allgather(std::vector<size_t>(world, count), 4, in_place, in_place, world + count);
      }
    }
  }
}

TEST(RingAllGather, VariableCountsWithZeros) {
  const std::vector<size_t> pattern = {0, 3, 40001, 1, 0, 777};
  for (uint32_t world = 2; world <= 5; ++world) {
    for (uint32_t shift = 0; shift < world; ++shift) {
      std::vector<size_t> counts(world);
      for (uint32_t i = 0; i < world; ++i) counts[i] = pattern[(i + shift) % pattern.size()];
      for (bool in_place : {false, true}) {
        for (bool resends : {false, true}) {
          check_allgather(counts, 4, in_place, resends, world * 100 + shift);
        }
      }
    }
  }
}

TEST(RingAllGather, OneNonEmptyBlockAndOddElementSize) {
  for (uint32_t world = 1; world <= 5; ++world) {
    for (uint32_t k = 0; k < world; ++k) {
      std::vector<size_t> counts(world, 0);
      counts[k] = 30011;
      check_allgather(counts, 3, k % 2 == 0, true, world * 10 + k);
    }
  }
}

TEST(RingAllGather, ClaimRefusesImpossibleFrames) {
  // Rank 0 of 3: step 0 brings block 2 (100000 elements, 7 segments), step 1 block 1 (empty).
  const std::vector<size_t> counts = {5, 0, 100000};
  const size_t seg = choose_segment_elems(100000, 4, 1);
  ASSERT_EQ(num_segments(100000, seg), 7u);
  const size_t last_bytes = (100000 - 6 * seg) * 4;
  std::vector<uint8_t> send(5 * 4), recv(100005 * 4);
  RingAllGather ring(send.data(), recv.data(), counts, 4, 3, 0);
  EXPECT_EQ(ring.expected_frames(), 7u);
  EXPECT_EQ(ring.initial_frames(), 1u);
  EXPECT_EQ(ring.max_segment_bytes(), seg * 4);
  auto lost = [](const Result<RecvTarget>& r) {
    return !r.is_ok() && r.status().code() == StatusCode::kPeerLost;
  };
  EXPECT_TRUE(lost(ring.claim(2, 0, seg * 4)));           // no step 2 in a ring of 3
  EXPECT_TRUE(lost(ring.claim(1, 0, 0)));                 // block 1 is empty
  EXPECT_TRUE(lost(ring.claim(0, 7, seg * 4)));           // segment out of range
  EXPECT_TRUE(lost(ring.claim(0, 6, seg * 4)));           // the last segment is shorter
  EXPECT_TRUE(lost(ring.claim(0, 0, seg * 4 + 1)));       // wrong size
  auto ok = ring.claim(0, 6, last_bytes);
  ASSERT_TRUE(ok.is_ok()) << ok.status().message();
  EXPECT_EQ(ok->dst, recv.data() + (5 + 6 * seg) * 4);
  EXPECT_FALSE(ok->staged);
  auto fwd = ring.on_received(0, 6, nullptr);
  ASSERT_TRUE(fwd.has_value());  // forwarded at step 1 (rank 1 does not own block 2)
  EXPECT_EQ(fwd->step, 1u);
  EXPECT_EQ(fwd->data, ok->dst);
  auto again = ring.claim(0, 6, last_bytes);
  ASSERT_TRUE(again.is_ok());
  EXPECT_EQ(again->duplicate, Duplicate::kReceived);
}

}  // namespace
}  // namespace qccl::collectives
