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
#include <string>
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

// The element value v (small) in `dtype`, as bytes: fp16/bf16 by their bit patterns.
std::vector<uint8_t> encode(qcclDataType_t dtype, int v) {
  auto bytes = [](auto x) {
    std::vector<uint8_t> b(sizeof x);
    std::memcpy(b.data(), &x, sizeof x);
    return b;
  };
  switch (dtype) {
    case qcclUint8: return bytes(static_cast<uint8_t>(v));
    case qcclInt8: return bytes(static_cast<int8_t>(v));
    case qcclUint16: return bytes(static_cast<uint16_t>(v));
    case qcclInt16: return bytes(static_cast<int16_t>(v));
    case qcclUint32: return bytes(static_cast<uint32_t>(v));
    case qcclInt32: return bytes(static_cast<int32_t>(v));
    case qcclUint64: return bytes(static_cast<uint64_t>(v));
    case qcclInt64: return bytes(static_cast<int64_t>(v));
    case qcclFloat16: return bytes(static_cast<uint16_t>(v == 1 ? 0x3C00 : 0x4200));  // 1 or 3
    case qcclBFloat16: return bytes(static_cast<uint16_t>(v == 1 ? 0x3F80 : 0x4040));
    case qcclFloat32: return bytes(static_cast<float>(v));
    case qcclFloat64: return bytes(static_cast<double>(v));
    default: return {};
  }
}

std::vector<uint8_t> repeat(const std::vector<uint8_t>& e, size_t n) {
  std::vector<uint8_t> out;
  for (size_t i = 0; i < n; ++i) out.insert(out.end(), e.begin(), e.end());
  return out;
}

// Every dtype through all-gather, broadcast and reduce-scatter (Sum of 1 on 3 peers = 3).
TEST_F(Collectives, EveryDtype) {
  ASSERT_TRUE(cluster.grow(3));
  for (int t = 0; t < qcclNumDataTypes; ++t) {
    auto dtype = static_cast<qcclDataType_t>(t);
    const auto one = encode(dtype, 1), three = encode(dtype, 3);
    const size_t es = one.size(), count = 7;
    uint64_t tag = cluster.next_tag();
    ASSERT_TRUE(cluster.run([&](size_t, qcclComm_t* c) {
      auto ring = ring_ids(c);
      auto in = repeat(peer_id(c) == ring[0] ? three : one, count);
      std::vector<uint8_t> all(3 * count * es);
      ASSERT_EQ(qcclAllGather(in.data(), all.data(), count, 3 * count, dtype, tag, c, nullptr),
                qcclSuccess)
          << qcclGetLastError();
      auto expect = repeat(three, count), rest = repeat(one, 2 * count);
      expect.insert(expect.end(), rest.begin(), rest.end());  // ring order: ring[0] first
      EXPECT_EQ(all, expect) << "dtype " << t;
      auto bc = repeat(peer_id(c) == ring[2] ? three : one, count);
      ASSERT_EQ(qcclBroadcast(bc.data(), count, dtype, ring[2], tag + 1000, c, nullptr),
                qcclSuccess);
      EXPECT_EQ(bc, repeat(three, count)) << "dtype " << t;
      auto ones = repeat(one, 3 * count);
      std::vector<uint8_t> block(count * es);
      qcclReduceDesc_t d{3 * count, dtype, qcclSum, tag + 2000, {}};
      ASSERT_EQ(qcclReduceScatter(ones.data(), block.data(), count, &d, c, nullptr), qcclSuccess)
          << qcclGetLastError();
      EXPECT_EQ(block, repeat(three, count)) << "dtype " << t;
    }));
  }
}

// qcclRunMultipleWithRetry: one batch of every kind, exact results; a bad entry is refused
// before anything starts, naming it.
TEST_F(Collectives, ABatchMixingKinds) {
  ASSERT_TRUE(cluster.grow(3));
  const size_t n = 3;
  std::vector<qcclResult_t> res(n, qcclInternalError);
  ASSERT_TRUE(cluster.run([&](size_t i, qcclComm_t* c) {
    uint64_t me = peer_id(c);
    auto ring = ring_ids(c);
    std::vector<float> ar(1000, 1.0f), bc(500, me == ring[1] ? 9.0f : 0.0f);
    std::vector<int64_t> g_in(7, static_cast<int64_t>(me)), g_out(21);
    std::vector<int64_t> v_in(ring_rank(c), static_cast<int64_t>(me)), v_out(3);
    std::vector<size_t> counts(3);
    std::vector<float> rs_in(999, 2.0f), rs_out(333);
    std::vector<qcclCollectiveOp_t> ops(6);
    ops[0].kind = qcclOpAllReduce;
    ops[0].sendbuf = ar.data();
    ops[0].recvbuf = ar.data();
    ops[0].desc = {ar.size(), qcclFloat32, qcclSum, 10, {}};
    ops[1].kind = qcclOpBroadcast;
    ops[1].recvbuf = bc.data();
    ops[1].sendcount = bc.size();
    ops[1].desc.dtype = qcclFloat32;
    ops[1].desc.tag = 11;
    ops[1].root_peer_id = ring[1];
    ops[2].kind = qcclOpAllGather;
    ops[2].sendbuf = g_in.data();
    ops[2].sendcount = g_in.size();
    ops[2].recvbuf = g_out.data();
    ops[2].recvcount = g_out.size();
    ops[2].desc.dtype = qcclInt64;
    ops[2].desc.tag = 12;
    ops[3].kind = qcclOpAllGatherV;
    ops[3].sendbuf = v_in.data();
    ops[3].sendcount = v_in.size();
    ops[3].recvbuf = v_out.data();
    ops[3].recvcount = v_out.size();
    ops[3].desc.dtype = qcclInt64;
    ops[3].desc.tag = 13;
    ops[3].counts = counts.data();
    ops[3].counts_capacity = counts.size();
    ops[4].kind = qcclOpReduceScatter;
    ops[4].sendbuf = rs_in.data();
    ops[4].recvbuf = rs_out.data();
    ops[4].recvcount = rs_out.size();
    ops[4].desc = {rs_in.size(), qcclFloat32, qcclSum, 14, {}};
    ops[5].kind = qcclOpBarrier;
    ops[5].desc.tag = 15;
    qcclReduceInfo_t info{};
    res[i] = qcclRunMultipleWithRetry(ops.data(), ops.size(), c, 3, &info);
    ASSERT_EQ(res[i], qcclSuccess) << qcclGetLastError();
    EXPECT_EQ(info.world_size, n);
    EXPECT_EQ(ar, std::vector<float>(1000, 3.0f));
    EXPECT_EQ(bc, std::vector<float>(500, 9.0f));
    for (size_t k = 0; k < 21; ++k) EXPECT_EQ(g_out[k], static_cast<int64_t>(ring[k / 7]));
    EXPECT_EQ(counts, (std::vector<size_t>{0, 1, 2}));
    EXPECT_EQ(v_out, (std::vector<int64_t>{static_cast<int64_t>(ring[1]),
                                           static_cast<int64_t>(ring[2]),
                                           static_cast<int64_t>(ring[2])}));
    EXPECT_EQ(rs_out, std::vector<float>(333, 6.0f));
    // A bad entry: refused before anything runs.
    ops[2].desc.dtype = static_cast<qcclDataType_t>(99);
    EXPECT_EQ(qcclRunMultipleWithRetry(ops.data(), ops.size(), c, 3, nullptr),
              qcclInvalidArgument);
    EXPECT_NE(std::string(qcclGetLastError()).find("ops[2]"), std::string::npos)
        << qcclGetLastError();
  }));
  EXPECT_EQ(res, std::vector<qcclResult_t>(n, qcclSuccess));
}

}  // namespace
}  // namespace qccl
