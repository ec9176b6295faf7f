// RingAllReduce in Mode::kReduceScatter, driven without any network (ring_harness.hpp): for
// every reduce op on float32 and int64, with counts not divisible by N, quantized (MinMax
// uint8) too, each peer's owned chunk must be bit-identical to the same chunk of the
// all-reduce of the same inputs (and, for integers, exact). With the op layer's rotation
// (rank (r + N - 1) mod N), ring rank r owns chunk r. Also the frames claim() refuses.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "collectives/ring_allreduce.hpp"
#include "ring_harness.hpp"

namespace qccl::collectives {
namespace {

using Mode = RingAllReduce::Mode;

struct Outcome {
  std::vector<std::vector<uint8_t>> out;  // recvbuf of every ring rank
  std::vector<Range> owned;               // owned_chunk() of every ring rank
  std::vector<size_t> tx_bytes;
};

// One operation over `inputs` (one buffer per ring rank). `rotate`: the peer of ring rank r
// is constructed with rank (r + N - 1) mod N, as the op layer does for a reduce-scatter.
Outcome run_op(const ReduceDesc& desc, const std::vector<std::vector<uint8_t>>& inputs, Mode mode,
        bool rotate, uint64_t seed, bool in_place = false, bool resends = false) {
  const auto world = static_cast<uint32_t>(inputs.size());
  Outcome r;
  r.out.resize(world);
  std::vector<std::unique_ptr<RingAllReduce>> rings;
  for (uint32_t i = 0; i < world; ++i) {
    r.out[i] = in_place ? inputs[i] : std::vector<uint8_t>(inputs[i].size(), 0xAB);
    const void* src = in_place ? r.out[i].data() : inputs[i].data();
    uint32_t rank = rotate ? (i + world - 1) % world : i;
    rings.push_back(std::make_unique<RingAllReduce>(desc, src, r.out[i].data(), world, rank, mode));
    r.owned.push_back(rings.back()->owned_chunk());
  }
  r.tx_bytes = testing::deliver(rings, seed, resends);
  return r;
}

// Inputs chosen so that every op stays finite and integer products do not wrap: 1..3 for
// integers, [0.5, 1.5] for floats.
std::vector<std::vector<uint8_t>> make_inputs(DataType t, uint32_t world, size_t count,
                                              uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::vector<uint8_t>> in(world, std::vector<uint8_t>(count * dtype_size(t)));
  for (auto& buf : in) {
    for (size_t k = 0; k < count; ++k) {
      if (t == DataType::kInt64) {
        auto v = static_cast<int64_t>(1 + rng() % 3) * (rng() % 2 ? 1 : -1);
        std::memcpy(buf.data() + k * 8, &v, 8);
      } else {
        float v = 0.5f + std::uniform_real_distribution<float>(0.0f, 1.0f)(rng);
        std::memcpy(buf.data() + k * 4, &v, 4);
      }
    }
  }
  return in;
}

int64_t exact_int(ReduceOp op, const std::vector<std::vector<uint8_t>>& in, size_t k) {
  int64_t acc = 0;
  for (size_t i = 0; i < in.size(); ++i) {
    int64_t v;
    std::memcpy(&v, in[i].data() + k * 8, 8);
    if (i == 0) acc = v;
    else if (op == ReduceOp::kProd) acc *= v;
    else if (op == ReduceOp::kMax) acc = std::max(acc, v);
    else if (op == ReduceOp::kMin) acc = std::min(acc, v);
    else acc += v;
  }
  return op == ReduceOp::kAvg ? acc / static_cast<int64_t>(in.size()) : acc;
}

// Checks rs (a reduce-scatter) against ar (the all-reduce of the same inputs, same ranks).
void expect_owned_blocks_match(const Outcome& rs, const Outcome& ar, size_t elem, bool rotate) {
  const auto world = static_cast<uint32_t>(rs.out.size());
  for (uint32_t i = 0; i < world; ++i) {
    Range c = rs.owned[i];
    uint32_t chunk = rotate ? i : (i + 1) % world;
    EXPECT_EQ(c, chunk_range(ar.out[i].size() / elem, world, chunk));
    const uint8_t* got = rs.out[i].data() + c.offset * elem;
    const uint8_t* want = ar.out[i].data() + c.offset * elem;
    ASSERT_EQ(std::memcmp(got, want, c.count * elem), 0) << "ring rank " << i;
  }
}

std::string trace(DataType t, ReduceOp op, uint32_t world, size_t count) {
  return std::string(dtype_name(t)) + " " + std::string(reduce_op_name(op)) + " world " +
         std::to_string(world) + " count " + std::to_string(count);
}

TEST(RingReduceScatter, EveryOpMatchesTheAllReduceBlock) {
  for (DataType t : {DataType::kFloat32, DataType::kInt64}) {
    for (ReduceOp op : {ReduceOp::kSum, ReduceOp::kAvg, ReduceOp::kProd, ReduceOp::kMax,
                        ReduceOp::kMin}) {
      for (uint32_t world = 2; world <= 5; ++world) {
        for (size_t count : {size_t{1}, size_t{7}, size_t{1003}}) {  // not divisible by world
          SCOPED_TRACE(trace(t, op, world, count));
          ReduceDesc d;
          d.count = count;
          d.dtype = t;
          d.op = op;
          auto in = make_inputs(t, world, count, world * 1000 + count);
          bool rotate = (count + world) % 2 == 0;
          Outcome ar = run_op(d, in, Mode::kAllReduce, rotate, 1);
          Outcome rs = run_op(d, in, Mode::kReduceScatter, rotate, 2, /*in_place=*/count == 7);
          expect_owned_blocks_match(rs, ar, dtype_size(t), rotate);
          if (t != DataType::kInt64) continue;
          for (uint32_t i = 0; i < world; ++i) {
            for (size_t k = rs.owned[i].offset; k < rs.owned[i].offset + rs.owned[i].count; ++k) {
              int64_t got;
              std::memcpy(&got, rs.out[i].data() + k * 8, 8);
              ASSERT_EQ(got, exact_int(op, in, k)) << "ring rank " << i << " element " << k;
            }
          }
        }
      }
    }
  }
}

TEST(RingReduceScatter, MultiSegmentChunksWithResendsAndRotation) {
  // 5 chunks of 20001 or 20002 elements: two segments each (at most 16384 four-byte elements).
  ReduceDesc d;
  d.count = 100007;
  d.dtype = DataType::kFloat32;
  d.op = ReduceOp::kAvg;
  auto in = make_inputs(d.dtype, 5, d.count, 3);
  for (bool rotate : {false, true}) {
    SCOPED_TRACE(rotate ? "rotated" : "not rotated");
    Outcome ar = run_op(d, in, Mode::kAllReduce, rotate, 4);
    Outcome rs = run_op(d, in, Mode::kReduceScatter, rotate, 5, false, /*resends=*/true);
    expect_owned_blocks_match(rs, ar, 4, rotate);
    // Chunk sizes: the first count % N chunks have one element more.
    for (uint32_t i = 0; i < 5; ++i) {
      EXPECT_EQ(rs.owned[rotate ? i : (i + 4) % 5].count, i < d.count % 5 ? 20002u : 20001u);
    }
    Outcome plain = run_op(d, in, Mode::kReduceScatter, rotate, 6);
    // Half the traffic of the all-reduce: every chunk travels N-1 hops, once.
    size_t rs_bytes = std::accumulate(plain.tx_bytes.begin(), plain.tx_bytes.end(), size_t{0});
    size_t ar_bytes = std::accumulate(ar.tx_bytes.begin(), ar.tx_bytes.end(), size_t{0});
    EXPECT_EQ(rs_bytes, 4 * d.count * 4);
    EXPECT_EQ(2 * rs_bytes, ar_bytes);
  }
}

TEST(RingReduceScatter, QuantizedBlockIsBitIdenticalToTheAllReduce) {
  const size_t count = 3 * quant::kQuantBlockElems * 4 + 77;
  for (ReduceOp op : {ReduceOp::kSum, ReduceOp::kAvg, ReduceOp::kMax}) {
    for (uint32_t world = 2; world <= 5; ++world) {
      SCOPED_TRACE(trace(DataType::kFloat32, op, world, count));
      ReduceDesc d;
      d.count = count;
      d.dtype = DataType::kFloat32;
      d.op = op;
      d.quant_algorithm = QuantAlgorithm::kMinMax;
      d.quant_dtype = DataType::kUint8;
      ASSERT_TRUE(validate(d).is_ok());
      auto in = make_inputs(d.dtype, world, count, world);
      bool rotate = world % 2 == 1;
      Outcome ar = run_op(d, in, Mode::kAllReduce, rotate, 7);
      Outcome rs = run_op(d, in, Mode::kReduceScatter, rotate, 8, /*in_place=*/world == 3,
                   /*resends=*/world == 4);
      expect_owned_blocks_match(rs, ar, 4, rotate);
    }
  }
}

TEST(RingReduceScatter, ClaimRefusesImpossibleFrames) {
  ReduceDesc d;
  d.count = 10;  // world 3: chunks of 4, 3, 3
  d.dtype = DataType::kFloat32;
  std::vector<float> send(d.count, 1.0f), recv(d.count);
  RingAllReduce ring(d, send.data(), recv.data(), 3, 0, Mode::kReduceScatter);
  EXPECT_EQ(ring.num_steps(), 2u);
  EXPECT_EQ(ring.expected_frames(), 2u);
  EXPECT_EQ(ring.owned_chunk(), (Range{4, 3}));
  auto lost = [](const Result<RecvTarget>& r) {
    return !r.is_ok() && r.status().code() == StatusCode::kPeerLost;
  };
  EXPECT_TRUE(lost(ring.claim(2, 0, 3 * 4)));  // an all-gather step: not in a reduce-scatter
  EXPECT_TRUE(lost(ring.claim(0, 1, 3 * 4)));  // one segment per chunk
  EXPECT_TRUE(lost(ring.claim(0, 0, 4 * 4)));  // step 0 brings chunk 2: 3 elements
  auto ok = ring.claim(1, 0, 3 * 4);           // step 1 brings chunk 1, this peer's own
  ASSERT_TRUE(ok.is_ok()) << ok.status().message();
  // Out of place: straight into its place in recvbuf, reduced there.
  EXPECT_FALSE(ok->staged);
  EXPECT_EQ(ok->dst, reinterpret_cast<uint8_t*>(recv.data() + 4));
  float partial[3] = {2, 2, 2};
  std::memcpy(ok->dst, partial, sizeof partial);
  auto fwd = ring.on_received(1, 0, nullptr);
  EXPECT_FALSE(fwd.has_value());  // the last step: nothing to forward
  EXPECT_EQ(recv[4], 3.0f);
  EXPECT_EQ(recv[6], 3.0f);
}

TEST(RingReduceScatter, InPlaceFramesAreStaged) {
  ReduceDesc d;
  d.count = 10;
  d.dtype = DataType::kFloat32;
  std::vector<float> buf(d.count, 1.0f);
  RingAllReduce ring(d, buf.data(), buf.data(), 3, 0, Mode::kReduceScatter);
  auto ok = ring.claim(1, 0, 3 * 4);
  ASSERT_TRUE(ok.is_ok()) << ok.status().message();
  EXPECT_TRUE(ok->staged);  // the partial sum would overwrite the input it is added to
  float partial[3] = {2, 2, 2};
  EXPECT_FALSE(ring.on_received(1, 0, reinterpret_cast<const uint8_t*>(partial)).has_value());
  EXPECT_EQ(buf[4], 3.0f);
  EXPECT_EQ(buf[6], 3.0f);
}

}  // namespace
}  // namespace qccl::collectives
