// RingAllGatherV driven without any network (ring_harness.hpp): groups of 1 to 5 peers with
// counts including zeros, all zero and one multi-segment block, in and out of place, in random
// delivery orders, with and without resent frames; every peer must end with the exact
// concatenation and the counts. Also: data frames that reach a peer before its counts are
// complete (held back on purpose, and one still being read when they complete), a recvbuf too
// small on one peer, and the frames claim() refuses.
#include "collectives/ring_allgather_v.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <numeric>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "ring_harness.hpp"
#include "wire/frame.hpp"

namespace qccl::collectives {
namespace {

using testing::show;

struct Case {
  std::vector<size_t> counts;  // one per rank
  size_t elem = 4;
  bool in_place = false;
  bool resends = false;
  int hold = -1;  // >= 0: this rank's counts frames are delivered last
  uint64_t seed = 1;
};

// Runs one all-gather-v and checks every rank's recvbuf (room for the total and 3 more
// elements, which must stay untouched) and counts.
void check_allgatherv(const Case& c) {
  SCOPED_TRACE("counts " + show(c.counts) + (c.in_place ? " in place" : "") +
               (c.resends ? " resends" : "") + " hold " + std::to_string(c.hold));
  const auto world = static_cast<uint32_t>(c.counts.size());
  const size_t total = std::accumulate(c.counts.begin(), c.counts.end(), size_t{0});
  const size_t capacity = total + 3;
  std::mt19937_64 rng(c.seed);
  std::vector<uint8_t> expect(capacity * c.elem, 0xAB);
  for (size_t b = 0; b < total * c.elem; ++b) expect[b] = static_cast<uint8_t>(rng());
  std::vector<std::vector<uint8_t>> send(world), recv(world);
  std::vector<std::unique_ptr<RingAllGatherV>> rings;
  size_t offset = 0;
  for (uint32_t i = 0; i < world; ++i) {
    const uint8_t* own = expect.data() + offset * c.elem;
    send[i].assign(own, own + c.counts[i] * c.elem);
    recv[i].assign(capacity * c.elem, 0xAB);
    const void* src = send[i].data();
    if (c.in_place) {
      if (c.counts[i] > 0) std::memcpy(recv[i].data() + offset * c.elem, own, c.counts[i] * c.elem);
      src = recv[i].data() + offset * c.elem;
    }
    rings.push_back(std::make_unique<RingAllGatherV>(src, c.counts[i], recv[i].data(), capacity,
                                                     c.elem, world, i));
    offset += c.counts[i];
  }
  std::function<bool(const testing::InFlight&)> last;
  if (c.hold >= 0) {
    last = [&](const testing::InFlight& f) {
      return (f.from + 1) % world == static_cast<uint32_t>(c.hold) && f.send.step + 1 < world;
    };
  }
  testing::deliver(rings, c.seed, c.resends, last);
  for (uint32_t i = 0; i < world; ++i) {
    ASSERT_TRUE(rings[i]->status().is_ok()) << rings[i]->status().message();
    ASSERT_TRUE(rings[i]->counts_known()) << "rank " << i;
    EXPECT_EQ(rings[i]->counts(), c.counts) << "rank " << i;
    ASSERT_EQ(recv[i], expect) << "rank " << i;
  }
  if (c.hold >= 0) {
    // Rank hold-1 learns the counts without the held frames and sends its own block at once.
    if (c.counts[(c.hold + world - 1) % world] > 0) {
      EXPECT_GT(rings[c.hold]->early_frames(), 0u);
    }
  }
}

// Counts of every shape for `world` ranks, rotated by `shift`.
std::vector<std::vector<size_t>> count_sets(uint32_t world, uint32_t shift) {
  const std::vector<size_t> mixed = {0, 3, 40001, 1, 0, 777};  // 40001: three segments
  std::vector<std::vector<size_t>> sets;
  std::vector<size_t> m(world), zeros(world, 0), one(world, 0), equal(world, 5);
  for (uint32_t i = 0; i < world; ++i) m[i] = mixed[(i + shift) % mixed.size()];
  one[shift % world] = 30011;
  return {m, zeros, one, equal};
}

TEST(RingAllGatherV, GroupOfOneIsCompleteAtOnce) {
  for (size_t count : {size_t{0}, size_t{7}, size_t{40001}}) {
    for (bool in_place : {false, true}) {
      std::vector<uint8_t> send(count * 4), recv(count * 4 + 8, 0xAB);
      for (size_t b = 0; b < send.size(); ++b) send[b] = static_cast<uint8_t>(b * 7);
      if (in_place && !send.empty()) std::memcpy(recv.data(), send.data(), send.size());
      RingAllGatherV ring(in_place ? recv.data() : send.data(), count, recv.data(), count + 2, 4,
                          1, 0);
      EXPECT_TRUE(ring.status().is_ok()) << ring.status().message();
      EXPECT_TRUE(ring.complete());
      EXPECT_TRUE(ring.counts_known());
      EXPECT_EQ(ring.counts(), std::vector<size_t>{count});
      EXPECT_EQ(ring.initial_frames(), 0u);
      if (!send.empty()) {
        EXPECT_EQ(std::memcmp(recv.data(), send.data(), send.size()), 0);
      }
      EXPECT_EQ(recv[count * 4], 0xAB);
    }
  }
}

TEST(RingAllGatherV, RandomOrdersAndResends) {
  for (uint32_t world = 1; world <= 5; ++world) {
    for (uint32_t shift = 0; shift < world; ++shift) {
      for (const auto& counts : count_sets(world, shift)) {
        for (int mode = 0; mode < 4; ++mode) {
          check_allgatherv({counts, 4, (mode & 1) != 0, (mode & 2) != 0, -1,
                            world * 1000 + shift * 10 + mode});
        }
      }
    }
  }
}

TEST(RingAllGatherV, OddElementSize) {
  for (uint32_t world = 2; world <= 5; ++world) {
    check_allgatherv({count_sets(world, 1)[0], 3, world % 2 == 0, true, -1, world});
  }
}

TEST(RingAllGatherV, DataFramesBeforeTheCounts) {
  for (uint32_t world = 2; world <= 5; ++world) {
    for (uint32_t hold = 0; hold < world; ++hold) {
      for (const auto& counts : count_sets(world, hold + 1)) {
        for (bool resends : {false, true}) {
          check_allgatherv({counts, 4, hold % 2 == 1, resends, static_cast<int>(hold),
                            world * 100 + hold * 10 + resends});
        }
      }
    }
  }
}

// Rank 0 of 3, counts {2, 0, 1}: a data frame from rank 2 (C0, data step 0 = step 2) is still
// being read when the counts complete; its read then fails once (resent) and completes on
// the resent copy, which is forwarded; its own block goes out when the counts complete.
TEST(RingAllGatherV, EarlyFrameStillBeingReadWhenCountsComplete) {
  for (bool fail_first : {false, true}) {
    const uint32_t world = 3;
    const uint32_t c0 = 0x01020304, cc = 0x0A0B0C0D;
    uint32_t mine[2] = {0x11111111, 0x22222222};
    std::vector<uint32_t> recv(4, 0xABABABAB);
    RingAllGatherV ring(mine, 2, recv.data(), 4, 4, world, 0);
    ASSERT_EQ(ring.initial_frames(), 1u);
    EXPECT_EQ(ring.max_segment_bytes(), wire::kMaxSegmentBytes);
    // The data frame first: staged, kept aside.
    auto t = ring.claim(2, 0, 4, 1);
    ASSERT_TRUE(t.is_ok()) << t.status().message();
    EXPECT_TRUE(t->staged);
    EXPECT_EQ(t->duplicate, Duplicate::kNo);
    auto dup = ring.claim(2, 0, 4, 2);
    ASSERT_TRUE(dup.is_ok());
    EXPECT_EQ(dup->duplicate, Duplicate::kPending);
    EXPECT_EQ(dup->claimant, 1u);
    EXPECT_FALSE(ring.received(2, 0));
    // The counts: count 2 (1) at step 0 from rank 2, count 1 (0) at step 1 via rank 2.
    uint64_t n2 = 1, n1 = 0;
    auto a = ring.claim(0, 0, 8, 3);
    ASSERT_TRUE(a.is_ok());
    std::memcpy(a->dst, &n2, 8);
    auto out = ring.on_received(0, 0, nullptr);
    ASSERT_TRUE(out.is_ok());
    EXPECT_EQ(out->size(), 1u);  // count 2 forwarded at step 1
    EXPECT_FALSE(ring.counts_known());
    auto b = ring.claim(1, 0, 8, 3);
    ASSERT_TRUE(b.is_ok());
    std::memcpy(b->dst, &n1, 8);
    out = ring.on_received(1, 0, nullptr);
    ASSERT_TRUE(out.is_ok()) << out.status().message();
    ASSERT_TRUE(ring.counts_known());
    EXPECT_EQ(ring.counts(), (std::vector<size_t>{2, 0, 1}));
    ASSERT_EQ(out->size(), 1u);  // the own block, data step 0
    EXPECT_EQ((*out)[0].step, 2u);
    EXPECT_EQ((*out)[0].bytes, 8u);
    EXPECT_EQ((*out)[0].data, reinterpret_cast<uint8_t*>(recv.data()));
    EXPECT_FALSE(ring.complete());  // C0 is still being read
    EXPECT_LT(ring.max_segment_bytes(), wire::kMaxSegmentBytes);  // the data ring's
    // Another copy while the first is read: still pending; a wrong size is refused.
    EXPECT_EQ(ring.claim(2, 0, 4, 2)->duplicate, Duplicate::kPending);
    EXPECT_FALSE(ring.claim(2, 0, 8, 2).is_ok());
    uint8_t staging[4];
    std::memcpy(staging, &cc, 4);
    if (fail_first) {
      ring.unclaim(2, 0, 2);  // not the holder: no-op
      EXPECT_EQ(ring.claim(2, 0, 4, 2)->duplicate, Duplicate::kPending);
      ring.unclaim(2, 0, 1);  // the read failed: the resent copy goes to its place
      auto again = ring.claim(2, 0, 4, 2);
      ASSERT_TRUE(again.is_ok());
      EXPECT_EQ(again->duplicate, Duplicate::kNo);
      EXPECT_FALSE(again->staged);
      EXPECT_EQ(again->dst, reinterpret_cast<uint8_t*>(&recv[2]));
      std::memcpy(again->dst, &c0, 4);
    } else {
      std::memcpy(staging, &c0, 4);
    }
    out = ring.on_received(2, 0, staging);
    ASSERT_TRUE(out.is_ok());
    ASSERT_EQ(out->size(), 1u);  // C0 forwarded to rank 1 at data step 1
    EXPECT_EQ((*out)[0].step, 3u);
    EXPECT_EQ((*out)[0].data, reinterpret_cast<uint8_t*>(&recv[2]));
    EXPECT_TRUE(ring.received(2, 0));
    EXPECT_EQ(ring.claim(2, 0, 4, 2)->duplicate, Duplicate::kReceived);
    EXPECT_TRUE(ring.complete());
    EXPECT_EQ(recv, (std::vector<uint32_t>{mine[0], mine[1], c0, 0xABABABAB}));
  }
}

// Rank 0 of 2, counts {1, 1}: an early data frame's first read fails while a resent copy is
// being read; the copy completes (take_over) before the counts are known, or a third copy is
// claimed instead. Either way the frame is kept and placed once the counts are known.
TEST(RingAllGatherV, EarlyFrameReadFailsWhileACopyIsRead) {
  for (bool third : {false, true}) {
    uint32_t mine = 0x11111111, theirs = 0x22222222;
    std::vector<uint32_t> recv(2, 0xABABABAB);
    RingAllGatherV ring(&mine, 1, recv.data(), 2, 4, 2, 0);
    ASSERT_TRUE(ring.claim(1, 0, 4, 1).is_ok());
    EXPECT_EQ(ring.claim(1, 0, 4, 2)->duplicate, Duplicate::kPending);
    ring.unclaim(1, 0, 1);  // the first read fails: free, still known
    EXPECT_FALSE(ring.received(1, 0));
    uint8_t staging[4];
    std::memcpy(staging, &theirs, 4);
    if (third) {
      auto t = ring.claim(1, 0, 4, 3);
      ASSERT_TRUE(t.is_ok());
      EXPECT_EQ(t->duplicate, Duplicate::kNo);
      EXPECT_TRUE(t->staged);
    } else {
      ring.take_over(1, 0, 2, staging);
    }
    auto out = ring.on_received(1, 0, staging);
    ASSERT_TRUE(out.is_ok());
    EXPECT_TRUE(out->empty());
    EXPECT_TRUE(ring.received(1, 0));
    uint64_t n1 = 1;
    auto c = ring.claim(0, 0, 8);
    ASSERT_TRUE(c.is_ok());
    std::memcpy(c->dst, &n1, 8);
    out = ring.on_received(0, 0, nullptr);
    ASSERT_TRUE(out.is_ok()) << out.status().message();
    ASSERT_EQ(out->size(), 1u);  // the own block; rank 1's block goes no further
    EXPECT_TRUE(ring.complete());
    EXPECT_EQ(recv, (std::vector<uint32_t>{mine, theirs}));
  }
}

// Delivers in random order without resends until nothing moves; a rank whose on_received
// fails takes no frame after that. Returns each rank's error.
std::vector<std::optional<Status>> run_with_errors(
    const std::vector<std::unique_ptr<RingAllGatherV>>& rings, uint64_t seed) {
  const auto world = static_cast<uint32_t>(rings.size());
  std::vector<std::optional<Status>> errors(world);
  std::vector<testing::InFlight> flight = testing::initial_flight(rings);
  std::mt19937_64 rng(seed);
  std::vector<uint8_t> staging;
  while (!flight.empty()) {
    size_t pick = std::uniform_int_distribution<size_t>(0, flight.size() - 1)(rng);
    testing::InFlight f = flight[pick];
    flight.erase(flight.begin() + static_cast<std::ptrdiff_t>(pick));
    uint32_t to = (f.from + 1) % world;
    if (errors[to]) continue;
    auto t = rings[to]->claim(f.send.step, f.send.segment, f.send.bytes, 1);
    EXPECT_TRUE(t.is_ok()) << t.status().message();
    if (!t.is_ok()) continue;
    staging.assign(f.send.data, f.send.data + f.send.bytes);
    if (!t->staged) std::memcpy(t->dst, f.send.data, f.send.bytes);
    auto out = rings[to]->on_received(f.send.step, f.send.segment, staging.data());
    if (!out.is_ok()) {
      errors[to] = out.status();
      continue;
    }
    for (const Send& s : *out) flight.push_back({to, s, nullptr});
  }
  return errors;
}

TEST(RingAllGatherV, RecvbufTooSmallOnOnePeer) {
  for (uint32_t world = 2; world <= 5; ++world) {
    for (uint32_t small = 0; small < world; ++small) {
      SCOPED_TRACE("world " + std::to_string(world) + " small " + std::to_string(small));
      std::vector<size_t> counts(world);
      for (uint32_t i = 0; i < world; ++i) counts[i] = (i * 7) % 5;  // 0, 2, 4, 1, 3
      const size_t total = std::accumulate(counts.begin(), counts.end(), size_t{0});
      std::vector<std::vector<uint8_t>> send(world), recv(world);
      std::vector<std::unique_ptr<RingAllGatherV>> rings;
      for (uint32_t i = 0; i < world; ++i) {
        size_t cap = i == small ? total - 1 : total;
        send[i].assign(counts[i] * 2, static_cast<uint8_t>(i));
        recv[i].assign(total * 2, 0xAB);
        rings.push_back(std::make_unique<RingAllGatherV>(send[i].data(), counts[i],
                                                         recv[i].data(), cap, 2, world, i));
      }
      auto errors = run_with_errors(rings, world * 10 + small);
      for (uint32_t i = 0; i < world; ++i) {
        if (i != small) {
          EXPECT_FALSE(errors[i].has_value()) << "rank " << i << ": " << errors[i]->message();
          EXPECT_TRUE(rings[i]->status().is_ok());
          continue;
        }
        ASSERT_TRUE(errors[i].has_value());
        EXPECT_EQ(errors[i]->code(), StatusCode::kInvalidArgument);
        EXPECT_EQ(errors[i]->message(),
                  "qcclAllGatherV: the result has " + std::to_string(total) +
                      " elements and recvbuf holds " + std::to_string(total - 1));
        EXPECT_EQ(rings[i]->status().message(), errors[i]->message());
        EXPECT_TRUE(rings[i]->counts_known());
        EXPECT_EQ(rings[i]->counts(), counts);
        EXPECT_FALSE(rings[i]->complete());
        // Its data frames are refused with the same error from now on.
        auto t = rings[i]->claim(world - 1, 0, 2);
        ASSERT_FALSE(t.is_ok());
        EXPECT_EQ(t.status().message(), errors[i]->message());
        // recvbuf was never written.
        EXPECT_EQ(recv[i], std::vector<uint8_t>(total * 2, 0xAB));
      }
    }
  }
}

TEST(RingAllGatherV, GroupOfOneTooSmallAndOverlapFailAtOnce) {
  std::vector<uint8_t> buf(64);
  RingAllGatherV small(buf.data(), 10, buf.data() + 32, 9, 1, 1, 0);
  EXPECT_EQ(small.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(small.status().message(), "qcclAllGatherV: the result has 10 elements and recvbuf holds 9");
  EXPECT_FALSE(small.complete());
  RingAllGatherV overlap(buf.data() + 4, 10, buf.data(), 20, 1, 1, 0);  // not at its block
  EXPECT_EQ(overlap.status().code(), StatusCode::kInvalidArgument);
  EXPECT_FALSE(overlap.complete());
}

TEST(RingAllGatherV, ClaimRefusesImpossibleFrames) {
  std::vector<uint8_t> send(8), recv(64);
  RingAllGatherV ring(send.data(), 2, recv.data(), 16, 4, 3, 0);  // steps 0..3
  auto lost = [](const Result<RecvTarget>& r) {
    return !r.is_ok() && r.status().code() == StatusCode::kPeerLost;
  };
  EXPECT_TRUE(lost(ring.claim(4, 0, 8)));                            // no step 4 in a ring of 3
  EXPECT_TRUE(lost(ring.claim(0, 0, 4)));                            // a count has 8 bytes
  EXPECT_TRUE(lost(ring.claim(0, 1, 8)));                            // one segment per count
  EXPECT_TRUE(lost(ring.claim(2, 0, wire::kMaxSegmentBytes + 1)));   // oversize early frame
  EXPECT_TRUE(lost(ring.claim(3, 0, 0)));                            // no data frame is empty
  EXPECT_TRUE(ring.claim(2, 0, wire::kMaxSegmentBytes).is_ok());     // legal before the counts
  EXPECT_TRUE(lost(ring.claim(2, 0, 12)));                           // its copy differs in size
}

TEST(RingAllGatherV, EarlyFrameThatDoesNotFitTheCountsFailsTheOp) {
  // Rank 0 of 2 keeps a 12-byte data frame; rank 1's count turns out to be 2 (8 bytes).
  std::vector<uint8_t> send(8, 0x11), recv(64, 0xAB), staging(12, 0x5A);
  RingAllGatherV ring(send.data(), 2, recv.data(), 16, 4, 2, 0);
  ASSERT_TRUE(ring.claim(1, 0, 12).is_ok());
  ASSERT_TRUE(ring.on_received(1, 0, staging.data()).is_ok());
  EXPECT_EQ(ring.early_frames(), 1u);
  uint64_t n1 = 2;
  auto t = ring.claim(0, 0, 8);
  ASSERT_TRUE(t.is_ok());
  std::memcpy(t->dst, &n1, 8);
  auto out = ring.on_received(0, 0, nullptr);
  ASSERT_FALSE(out.is_ok());
  EXPECT_EQ(out.status().code(), StatusCode::kPeerLost);
  EXPECT_FALSE(ring.status().is_ok());
  EXPECT_FALSE(ring.complete());
  // Only the own block (element 0..1) was placed; no frame was written.
  EXPECT_EQ(std::vector<uint8_t>(recv.begin() + 8, recv.end()), std::vector<uint8_t>(56, 0xAB));
}

}  // namespace
}  // namespace qccl::collectives
