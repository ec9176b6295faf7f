// Broadcast, all-gather (equal and variable), reduce-scatter and barrier through the public C
// API, end to end: a master and N = 2..5 communicators in one process (support/cluster.hpp).
// Exact results on every peer for several dtypes and counts (0, 1, odd, multi-segment), in and
// out of place; what each result reports (epoch, participants in ring order); the room checks
// that depend on the group's size, failing on every peer alike; descriptor mismatches; the
// async forms. The fault suites cover peers lost mid-operation (tests/fault/).
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <numeric>
#include <vector>

#include "qccl/qccl.h"
#include "support/cluster.hpp"
#include "support/watchdog.hpp"

QCCL_TEST_WATCHDOG(280);

namespace qccl {
namespace {

uint64_t peer_id(qcclComm_t* c) {
  int64_t id = -1;
  EXPECT_EQ(qcclGetAttribute(c, QCCL_ATTR_PEER_ID, &id), qcclSuccess);
  return static_cast<uint64_t>(id);
}

uint32_t ring_rank(qcclComm_t* c) {
  int64_t r = -1;
  EXPECT_EQ(qcclGetAttribute(c, QCCL_ATTR_RING_RANK, &r), qcclSuccess);
  return static_cast<uint32_t>(r);
}

// The group's peer ids in ring order, as peer `c` sees them.
std::vector<uint64_t> ring_ids(qcclComm_t* c) {
  std::vector<qcclPeerInfo_t> infos(16);
  size_t n = 0;
  EXPECT_EQ(qcclGetPeers(c, infos.data(), infos.size(), &n), qcclSuccess);
  std::vector<uint64_t> ids;
  for (size_t i = 0; i < n; ++i) ids.push_back(infos[i].peer_id);
  return ids;
}

// A value that depends on the contributing peer and the element, exact in every dtype used.
int64_t value(uint64_t peer, size_t i) { return static_cast<int64_t>((peer * 7 + i * 3) % 101); }

struct Fixture : ::testing::Test {
  test::Cluster cluster;
  void SetUp() override { ASSERT_TRUE(cluster.ok()); }
};

using Collectives = Fixture;

TEST_F(Collectives, BroadcastFromEveryRootForGroupsOfTwoToFive) {
  const size_t counts[] = {0, 1, 300007};  // 300007 floats: several segments per hop
  for (size_t n = 2; n <= 5; ++n) {
    ASSERT_TRUE(cluster.grow(n == 2 ? 2 : 1));
    ASSERT_EQ(cluster.size(), n);
    auto ids = ring_ids(cluster.comm(0));
    for (uint64_t root : ids) {
      for (size_t count : counts) {
        uint64_t tag = cluster.next_tag();
        std::vector<std::vector<float>> bufs(n);
        ASSERT_TRUE(cluster.run([&](size_t i, qcclComm_t* c) {
          uint64_t me = peer_id(c);
          bufs[i].assign(count, -1.0f);
          if (me == root) {
            for (size_t k = 0; k < count; ++k) bufs[i][k] = static_cast<float>(value(me, k));
          }
          std::vector<uint64_t> peers(8);
          qcclOpInfo_t info{};
          info.peer_ids = peers.data();
          info.peer_ids_capacity = peers.size();
          ASSERT_EQ(qcclBroadcast(bufs[i].data(), count, qcclFloat32, root, tag, c, &info),
                    qcclSuccess)
              << qcclGetLastError();
          EXPECT_EQ(info.world_size, n);
          peers.resize(n);
          EXPECT_EQ(peers, ring_ids(c));
        }));
        for (size_t i = 0; i < n; ++i) {
          for (size_t k = 0; k < count; ++k) {
            ASSERT_EQ(bufs[i][k], static_cast<float>(value(root, k)))
                << "n " << n << " root " << root << " peer " << i << " element " << k;
          }
        }
      }
    }
  }
}

TEST_F(Collectives, AllGatherInRingOrderInAndOutOfPlace) {
  ASSERT_TRUE(cluster.grow(3));
  const size_t n = 3;
  for (size_t count : {size_t{0}, size_t{1}, size_t{100003}}) {
    for (bool in_place : {false, true}) {
      uint64_t tag = cluster.next_tag();
      std::vector<std::vector<int32_t>> out(n);
      std::vector<std::vector<uint64_t>> order(n, std::vector<uint64_t>(n));
      ASSERT_TRUE(cluster.run([&](size_t i, qcclComm_t* c) {
        uint64_t me = peer_id(c);
        std::vector<int32_t> mine(count);
        for (size_t k = 0; k < count; ++k) mine[k] = static_cast<int32_t>(value(me, k));
        out[i].assign(n * count + 5, -7);  // room to spare
        const void* send = mine.data();
        if (in_place && count > 0) {
          size_t at = ring_rank(c) * count;
          std::copy(mine.begin(), mine.end(), out[i].begin() + at);
          send = out[i].data() + at;
        }
        qcclOpInfo_t info{};
        info.peer_ids = order[i].data();
        info.peer_ids_capacity = n;
        ASSERT_EQ(qcclAllGather(send, out[i].data(), count, out[i].size(), qcclInt32, tag, c,
                                &info),
                  qcclSuccess)
            << qcclGetLastError();
        EXPECT_EQ(info.world_size, n);
      }));
      for (size_t i = 0; i < n; ++i) {
        EXPECT_EQ(order[i], order[0]);
        for (size_t b = 0; b < n; ++b) {
          for (size_t k = 0; k < count; ++k) {
            ASSERT_EQ(out[i][b * count + k], value(order[i][b], k))
                << "peer " << i << " block " << b << " element " << k;
          }
        }
        for (size_t k = n * count; k < out[i].size(); ++k) ASSERT_EQ(out[i][k], -7);
      }
    }
  }
}

TEST_F(Collectives, AllGatherVWithZeroLengthContributionsAndTheCounts) {
  ASSERT_TRUE(cluster.grow(4));
  const size_t n = 4;
  uint64_t tag = cluster.next_tag();
  // Contribution sizes by peer id, zero for some.
  auto size_of = [](uint64_t id) -> size_t { return id % 2 == 0 ? 0 : 70001 + id; };
  std::vector<std::vector<double>> out(n);
  std::vector<std::vector<size_t>> counts(n, std::vector<size_t>(n, 99));
  std::vector<std::vector<uint64_t>> order(n, std::vector<uint64_t>(n));
  ASSERT_TRUE(cluster.run([&](size_t i, qcclComm_t* c) {
    uint64_t me = peer_id(c);
    std::vector<double> mine(size_of(me));
    for (size_t k = 0; k < mine.size(); ++k) mine[k] = static_cast<double>(value(me, k));
    out[i].assign(4 * 80000, -1.0);
    qcclOpInfo_t info{};
    info.peer_ids = order[i].data();
    info.peer_ids_capacity = n;
    ASSERT_EQ(qcclAllGatherV(mine.data(), mine.size(), out[i].data(), out[i].size(), qcclFloat64,
                             counts[i].data(), counts[i].size(), tag, c, &info),
              qcclSuccess)
        << qcclGetLastError();
  }));
  for (size_t i = 0; i < n; ++i) {
    EXPECT_EQ(order[i], order[0]);
    size_t at = 0;
    for (size_t b = 0; b < n; ++b) {
      ASSERT_EQ(counts[i][b], size_of(order[i][b])) << "peer " << i << " block " << b;
      for (size_t k = 0; k < counts[i][b]; ++k) {
        ASSERT_EQ(out[i][at + k], static_cast<double>(value(order[i][b], k)));
      }
      at += counts[i][b];
    }
  }
}

TEST_F(Collectives, TooLittleRoomFailsOnEveryPeerAndTheGroupGoesOn) {
  ASSERT_TRUE(cluster.grow(3));
  std::vector<qcclResult_t> res(3);
  // One peer's recvbuf holds two blocks of three: all fail with qcclInvalidArgument.
  uint64_t tag = cluster.next_tag();
  ASSERT_TRUE(cluster.run([&](size_t i, qcclComm_t* c) {
    std::vector<float> mine(10, 1.0f), out(i == 1 ? 20 : 30);
    res[i] = qcclAllGather(mine.data(), out.data(), 10, out.size(), qcclFloat32, tag, c, nullptr);
  }));
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(res[i], qcclInvalidArgument) << "peer " << i;
  // All-gather-v: the total is known only after the counts travelled.
  tag = cluster.next_tag();
  ASSERT_TRUE(cluster.run([&](size_t i, qcclComm_t* c) {
    std::vector<float> mine(10 + i, 1.0f), out(i == 2 ? 31 : 40);
    res[i] = qcclAllGatherV(mine.data(), mine.size(), out.data(), out.size(), qcclFloat32,
                            nullptr, 0, tag, c, nullptr);
  }));
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(res[i], qcclInvalidArgument) << "peer " << i;
  // A broadcast root that is not in the group.
  tag = cluster.next_tag();
  ASSERT_TRUE(cluster.run([&](size_t i, qcclComm_t* c) {
    std::vector<float> buf(10, 1.0f);
    res[i] = qcclBroadcast(buf.data(), buf.size(), qcclFloat32, 999999, tag, c, nullptr);
    EXPECT_EQ(buf, std::vector<float>(10, 1.0f));
  }));
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(res[i], qcclInvalidArgument) << "peer " << i;
  // The group goes on.
  tag = cluster.next_tag();
  ASSERT_TRUE(cluster.run([&](size_t i, qcclComm_t* c) {
    res[i] = qcclBarrier(tag, c, nullptr);
  }));
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(res[i], qcclSuccess) << "peer " << i;
}

TEST_F(Collectives, DifferentRootsOrKindsUnderOneTagAreAMismatchEverywhere) {
  ASSERT_TRUE(cluster.grow(3));
  std::vector<qcclResult_t> res(3);
  uint64_t tag = cluster.next_tag();
  ASSERT_TRUE(cluster.run([&](size_t i, qcclComm_t* c) {
    std::vector<float> buf(1000, static_cast<float>(i));
    std::vector<float> before = buf;
    res[i] = qcclBroadcast(buf.data(), buf.size(), qcclFloat32, peer_id(c), tag, c, nullptr);
    EXPECT_EQ(buf, before) << "all or nothing: the buffer is given back";
  }));
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(res[i], qcclMismatch) << "peer " << i;
  tag = cluster.next_tag();
  ASSERT_TRUE(cluster.run([&](size_t i, qcclComm_t* c) {
    std::vector<float> in(300, 1.0f), out(300);
    if (i == 0) {
      res[i] = qcclAllGather(in.data(), out.data(), 100, out.size(), qcclFloat32, tag, c,
                             nullptr);
    } else {
      qcclReduceDesc_t d{};
      d.count = in.size();
      d.dtype = qcclFloat32;
      d.op = qcclSum;
      d.tag = tag;
      res[i] = qcclReduceScatter(in.data(), out.data(), out.size(), &d, c, nullptr);
    }
  }));
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(res[i], qcclMismatch) << "peer " << i;
}

// Reduce-scatter's block r equals block r of an all-reduce of the same inputs, bit for bit,
// for every op (float32 and int32), a count not divisible by N, and quantized.
TEST_F(Collectives, ReduceScatterBlocksAreTheAllReduceBlocks) {
  ASSERT_TRUE(cluster.grow(3));
  const size_t n = 3, count = 100001;  // 33334 + 33334 + 33333
  struct Case {
    qcclDataType_t dtype;
    qcclRedOp_t op;
    qcclQuantization_t q;
    bool in_place;
  };
  std::vector<Case> cases;
  for (qcclRedOp_t op : {qcclSum, qcclAvg, qcclProd, qcclMax, qcclMin}) {
    cases.push_back({qcclFloat32, op, {qcclQuantNone, qcclFloat32}, false});
  }
  cases.push_back({qcclInt32, qcclSum, {qcclQuantNone, qcclInt32}, true});
  cases.push_back({qcclFloat32, qcclSum, {qcclQuantMinMax, qcclUint8}, false});
  cases.push_back({qcclFloat32, qcclAvg, {qcclQuantMinMax, qcclUint8}, true});
  for (const Case& cs : cases) {
    uint64_t tag_rs = cluster.next_tag(), tag_ar = cluster.next_tag();
    std::vector<std::vector<uint8_t>> block(n), full(n);
    std::vector<uint32_t> rank(n);
    ASSERT_TRUE(cluster.run([&](size_t i, qcclComm_t* c) {
      const size_t es = 4;  // int32 or float32
      std::vector<uint8_t> in(count * es);
      uint64_t me = peer_id(c);
      for (size_t k = 0; k < count; ++k) {
        if (cs.dtype == qcclInt32) {
          int32_t v = static_cast<int32_t>(value(me, k)) - 50;
          std::memcpy(&in[k * es], &v, es);
        } else {
          float v = static_cast<float>(value(me, k)) / 8.0f + 0.5f;
          std::memcpy(&in[k * es], &v, es);
        }
      }
      qcclReduceDesc_t d{count, cs.dtype, cs.op, tag_rs, cs.q};
      rank[i] = ring_rank(c);
      size_t b = count / n + (rank[i] < count % n ? 1 : 0);
      std::vector<uint8_t> work = in;
      void* recv = nullptr;
      if (cs.in_place) {
        recv = work.data();
      } else {
        block[i].assign(b * es, 0xEE);
        recv = block[i].data();
      }
      qcclOpInfo_t info{};
      ASSERT_EQ(qcclReduceScatter(work.data(), recv, cs.in_place ? count : b, &d, c, &info),
                qcclSuccess)
          << qcclGetLastError();
      if (cs.in_place) block[i].assign(work.begin(), work.begin() + b * es);
      full[i].resize(count * es);
      d.tag = tag_ar;
      ASSERT_EQ(qcclAllReduce(in.data(), full[i].data(), &d, c, nullptr), qcclSuccess)
          << qcclGetLastError();
    }));
    for (size_t i = 0; i < n; ++i) {
      size_t es = 4;
      size_t r = rank[i];
      size_t offset = r * (count / n) + std::min<size_t>(r, count % n);
      std::vector<uint8_t> expect(full[i].begin() + offset * es,
                                  full[i].begin() + offset * es + block[i].size());
      EXPECT_EQ(block[i], expect) << "peer " << i << " (rank " << r << ") dtype " << cs.dtype
                                  << " op " << cs.op << " quantized " << cs.q.algorithm;
    }
  }
}

TEST_F(Collectives, AsyncFormsRunConcurrentlyUnderDifferentTags) {
  ASSERT_TRUE(cluster.grow(2));
  std::vector<qcclResult_t> res(2, qcclInternalError);
  ASSERT_TRUE(cluster.run([&](size_t i, qcclComm_t* c) {
    uint64_t root = ring_ids(c)[0];
    std::vector<float> b(1000, peer_id(c) == root ? 3.0f : 0.0f);
    std::vector<int64_t> g_in(10, static_cast<int64_t>(i)), g_out(20);
    std::vector<float> rs_in(1000, 1.0f), rs_out(500);
    qcclReduceDesc_t d{rs_in.size(), qcclFloat32, qcclSum, 3, {}};
    qcclOp_t* ops[4] = {};
    ASSERT_EQ(qcclBroadcastAsync(b.data(), b.size(), qcclFloat32, root, 1, c, &ops[0]),
              qcclSuccess);
    ASSERT_EQ(qcclAllGatherAsync(g_in.data(), g_out.data(), 10, 20, qcclInt64, 2, c, &ops[1]),
              qcclSuccess);
    ASSERT_EQ(qcclReduceScatterAsync(rs_in.data(), rs_out.data(), rs_out.size(), &d, c, &ops[2]),
              qcclSuccess);
    ASSERT_EQ(qcclBarrierAsync(4, c, &ops[3]), qcclSuccess);
    qcclResult_t all = qcclSuccess;
    for (qcclOp_t* op : ops) {
      qcclOpInfo_t info{};
      qcclResult_t r = qcclWaitInfo(op, &info);
      if (r != qcclSuccess) all = r;
      EXPECT_EQ(info.world_size, 2u);
    }
    res[i] = all;
    EXPECT_EQ(b, std::vector<float>(1000, 3.0f));
    EXPECT_EQ(rs_out, std::vector<float>(500, 2.0f));
    std::vector<int64_t> expect_g(20);
    for (size_t k = 0; k < 20; ++k) expect_g[k] = ring_ids(c)[k / 10] == peer_id(c)
                                                     ? static_cast<int64_t>(i)
                                                     : static_cast<int64_t>(1 - i);
    EXPECT_EQ(g_out, expect_g);
  }));
  EXPECT_EQ(res, std::vector<qcclResult_t>(2, qcclSuccess));
}

}  // namespace
}  // namespace qccl
