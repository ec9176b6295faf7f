// RingAllReduce driven without any network: N instances exchange frames through in-memory
// links, delivered in a random order (any interleaving TCP lanes could produce). Checks exact
// results unquantized, and for every wire codec: bit parity across peers, independence from
// the delivery order, and the end-to-end error bound of docs/quantization.md.
#include "collectives/ring_allreduce.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "quant/half.hpp"
#include "ring_harness.hpp"

namespace qccl::collectives {
namespace {

using quant::WireCodec;

struct RunResult {
  std::vector<std::vector<uint8_t>> out;  // recvbuf of every rank
  std::vector<size_t> tx_bytes;           // frame payload bytes each rank sent
};

// Runs one all-reduce over `inputs` (one byte buffer per rank) and returns every rank's
// result; `resends` as in ring_harness.hpp.
RunResult run_ring(const ReduceDesc& desc, const std::vector<std::vector<uint8_t>>& inputs,
                   uint64_t order_seed, bool in_place = false, bool resends = false) {
  const auto world = static_cast<uint32_t>(inputs.size());
  RunResult r;
  r.out.resize(world);
  std::vector<std::vector<uint8_t>> send = inputs;
  std::vector<std::unique_ptr<RingAllReduce>> rings;
  for (uint32_t i = 0; i < world; ++i) {
    r.out[i].assign(inputs[i].size(), 0xAB);
    if (in_place) r.out[i] = inputs[i];
    void* recv = r.out[i].data();
    const void* src = in_place ? recv : send[i].data();
    rings.push_back(std::make_unique<RingAllReduce>(desc, src, recv, world, i));
  }
  r.tx_bytes = testing::deliver(rings, order_seed, resends);
  return r;
}

// ---- element conversion for the test data ---------------------------------------------------

double load(DataType t, const uint8_t* p) {
  switch (t) {
    case DataType::kFloat32: { float v; std::memcpy(&v, p, 4); return v; }
    case DataType::kFloat64: { double v; std::memcpy(&v, p, 8); return v; }
    case DataType::kFloat16: { uint16_t v; std::memcpy(&v, p, 2); return quant::fp16_to_float(v); }
    case DataType::kBFloat16: { uint16_t v; std::memcpy(&v, p, 2); return quant::bf16_to_float(v); }
    default: { int64_t v; std::memcpy(&v, p, 8); return static_cast<double>(v); }
  }
}

void store(DataType t, uint8_t* p, double x) {
  switch (t) {
    case DataType::kFloat32: { float v = static_cast<float>(x); std::memcpy(p, &v, 4); break; }
    case DataType::kFloat64: std::memcpy(p, &x, 8); break;
    case DataType::kFloat16: {
      uint16_t v = quant::float_to_fp16(static_cast<float>(x)); std::memcpy(p, &v, 2); break;
    }
    case DataType::kBFloat16: {
      uint16_t v = quant::float_to_bf16(static_cast<float>(x)); std::memcpy(p, &v, 2); break;
    }
    default: { auto v = static_cast<int64_t>(x); std::memcpy(p, &v, 8); break; }
  }
}

// Rank i's input: uniform in [lo, hi], stored in `t` (so the exact sum uses the stored values).
std::vector<std::vector<uint8_t>> make_inputs(DataType t, uint32_t world, size_t count, double lo,
                                              double hi, uint64_t seed) {
  std::vector<std::vector<uint8_t>> in(world, std::vector<uint8_t>(count * dtype_size(t)));
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> dist(lo, hi);
  for (auto& buf : in) {
    for (size_t k = 0; k < count; ++k) store(t, buf.data() + k * dtype_size(t), dist(rng));
  }
  return in;
}

double exact(DataType t, ReduceOp op, const std::vector<std::vector<uint8_t>>& in, size_t k) {
  double acc = load(t, in[0].data() + k * dtype_size(t));
  for (size_t i = 1; i < in.size(); ++i) {
    double v = load(t, in[i].data() + k * dtype_size(t));
    acc = op == ReduceOp::kMax ? std::max(acc, v) : op == ReduceOp::kMin ? std::min(acc, v) : acc + v;
  }
  return op == ReduceOp::kAvg ? acc / static_cast<double>(in.size()) : acc;
}

// Unit roundoff of a floating type.
double unit_roundoff(DataType t) {
  switch (t) {
    case DataType::kFloat16: return std::ldexp(1.0, -11);
    case DataType::kBFloat16: return std::ldexp(1.0, -8);
    case DataType::kFloat32: return std::ldexp(1.0, -24);
    default: return std::ldexp(1.0, -53);
  }
}

double levels(DataType wire) {
  return wire == DataType::kUint8 || wire == DataType::kInt8 ? 255.0 : 65535.0;
}

// The bound of docs/quantization.md for inputs in [lo, hi] (M = max |x|, N peers):
//   MinMax Sum          R N(N+1) / (4L),   R = hi - lo
//   ZeroPointScale Sum  R' N(N+1) / (4L),  R' = max(hi, 0) - min(lo, 0)
//   Min / Max           N R / (2L)  (N R' / (2L) for ZeroPointScale)
//   down-cast Sum       u_wire M N(N+1) / 2
// plus the source type's own rounding of each stored partial result, u_src M (N(N+1) + N);
// Avg is the Sum bound divided by N.
double error_bound(const WireCodec& c, ReduceOp op, uint32_t n, double lo, double hi) {
  double m = std::max(std::fabs(lo), std::fabs(hi));
  double tri = n * (n + 1.0);
  bool extreme = op == ReduceOp::kMin || op == ReduceOp::kMax;
  double b = 0;
  if (c.algorithm == QuantAlgorithm::kMinMax) {
    double r = hi - lo;
    b = extreme ? n * r / (2 * levels(c.wire)) : r * tri / (4 * levels(c.wire));
  } else if (c.algorithm == QuantAlgorithm::kZeroPointScale) {
    double r = std::max(hi, 0.0) - std::min(lo, 0.0);
    b = extreme ? n * r / (2 * levels(c.wire)) : r * tri / (4 * levels(c.wire));
  } else {
    b = unit_roundoff(c.wire) * m * (extreme ? n : tri / 2);
  }
  b += unit_roundoff(c.source) * m * (tri + n);
  if (op == ReduceOp::kAvg) b /= n;
  return b * 1.02 + 1e-12;
}

struct Case {
  DataType source;
  QuantAlgorithm algorithm;
  DataType wire;
};

std::string name(const Case& c) {
  return std::string(dtype_name(c.source)) + "->" + std::string(quant_algorithm_name(c.algorithm)) +
         ":" + std::string(dtype_name(c.wire));
}

std::vector<Case> all_codecs() {
  std::vector<Case> cases;
  for (DataType s : {DataType::kFloat32, DataType::kFloat64, DataType::kFloat16, DataType::kBFloat16}) {
    for (QuantAlgorithm a : {QuantAlgorithm::kMinMax, QuantAlgorithm::kZeroPointScale}) {
      for (DataType w : {DataType::kUint8, DataType::kInt8, DataType::kUint16, DataType::kInt16}) {
        cases.push_back({s, a, w});
      }
    }
  }
  cases.push_back({DataType::kFloat32, QuantAlgorithm::kNone, DataType::kBFloat16});
  cases.push_back({DataType::kFloat32, QuantAlgorithm::kNone, DataType::kFloat16});
  cases.push_back({DataType::kFloat64, QuantAlgorithm::kNone, DataType::kFloat32});
  cases.push_back({DataType::kFloat64, QuantAlgorithm::kNone, DataType::kBFloat16});
  return cases;
}

ReduceDesc desc_for(const Case& c, ReduceOp op, size_t count) {
  ReduceDesc d;
  d.count = count;
  d.dtype = c.source;
  d.op = op;
  d.quant_algorithm = c.algorithm;
  d.quant_dtype = c.wire;
  return d;
}

void expect_parity(const RunResult& r) {
  for (size_t i = 1; i < r.out.size(); ++i) {
    ASSERT_EQ(r.out[i], r.out[0]) << "rank " << i << " differs from rank 0";
  }
}

// ---- tests ---------------------------------------------------------------------------------

TEST(RingAllReduce, UnquantizedIntegerSumIsExactForManyShapes) {
  for (uint32_t world : {2u, 3u, 4u, 5u}) {
    for (size_t count : {size_t{0}, size_t{1}, size_t{3}, size_t{1000}, size_t{200003}}) {
      SCOPED_TRACE("world " + std::to_string(world) + " count " + std::to_string(count));
      ReduceDesc d;
      d.count = count;
      d.dtype = DataType::kInt64;
      std::vector<std::vector<uint8_t>> in(world, std::vector<uint8_t>(count * 8));
      for (uint32_t i = 0; i < world; ++i) {
        for (size_t k = 0; k < count; ++k) {
          int64_t v = static_cast<int64_t>(k) * 7 + (int64_t{1} << i);
          std::memcpy(in[i].data() + k * 8, &v, 8);
        }
      }
      for (bool in_place : {false, true}) {
        RunResult r = run_ring(d, in, 11 + world, in_place);
        expect_parity(r);
        for (size_t k = 0; k < count; ++k) {
          int64_t got;
          std::memcpy(&got, r.out[0].data() + k * 8, 8);
          ASSERT_EQ(got, static_cast<int64_t>(k) * 7 * world + ((int64_t{1} << world) - 1)) << k;
        }
      }
    }
  }
}

TEST(RingAllReduce, QuantizedSumIsWithinBoundAndBitIdenticalOnEveryPeer) {
  const size_t count = 3 * quant::kQuantBlockElems * 4 + 77;  // several blocks, a short one
  for (const Case& c : all_codecs()) {
    for (uint32_t world : {2u, 3u, 4u}) {
      for (ReduceOp op : {ReduceOp::kSum, ReduceOp::kAvg}) {
        SCOPED_TRACE(name(c) + " world " + std::to_string(world) + " op " +
                     std::string(reduce_op_name(op)));
        ReduceDesc d = desc_for(c, op, count);
        ASSERT_TRUE(validate(d).is_ok()) << validate(d).message();
        auto in = make_inputs(c.source, world, count, -1.0, 3.0, world * 31 + 7);
        RunResult r = run_ring(d, in, 5);
        expect_parity(r);
        double bound = error_bound(wire_codec(d), op, world, -1.0, 3.0);
        double worst = 0;
        for (size_t k = 0; k < count; ++k) {
          double got = load(c.source, r.out[0].data() + k * dtype_size(c.source));
          worst = std::max(worst, std::fabs(got - exact(c.source, op, in, k)));
        }
        EXPECT_LE(worst, bound);
        // Quantized frames are smaller than raw ones when the wire type is narrower.
        size_t raw = 2 * (world - 1) * count * dtype_size(c.source) / world;
        if (dtype_size(c.wire) < dtype_size(c.source)) {
          EXPECT_LT(r.tx_bytes[0], raw);
        }
      }
    }
  }
}

TEST(RingAllReduce, QuantizedResultDoesNotDependOnDeliveryOrder) {
  for (const Case& c : {Case{DataType::kFloat32, QuantAlgorithm::kMinMax, DataType::kUint8},
                        Case{DataType::kBFloat16, QuantAlgorithm::kZeroPointScale, DataType::kInt8},
                        Case{DataType::kFloat32, QuantAlgorithm::kNone, DataType::kBFloat16}}) {
    SCOPED_TRACE(name(c));
    ReduceDesc d = desc_for(c, ReduceOp::kSum, 100000);
    auto in = make_inputs(c.source, 4, d.count, -2.0, 2.0, 99);
    RunResult a = run_ring(d, in, 1);
    RunResult b = run_ring(d, in, 2);
    RunResult in_place = run_ring(d, in, 3, true);
    expect_parity(a);
    EXPECT_EQ(a.out, b.out);
    EXPECT_EQ(a.out, in_place.out);
  }
}

TEST(RingAllReduce, QuantizedMinAndMaxAreWithinBound) {
  for (Case c : {Case{DataType::kFloat32, QuantAlgorithm::kMinMax, DataType::kUint8},
                 Case{DataType::kFloat64, QuantAlgorithm::kZeroPointScale, DataType::kInt16},
                 Case{DataType::kFloat32, QuantAlgorithm::kNone, DataType::kFloat16}}) {
    for (ReduceOp op : {ReduceOp::kMin, ReduceOp::kMax}) {
      SCOPED_TRACE(name(c) + " " + std::string(reduce_op_name(op)));
      ReduceDesc d = desc_for(c, op, 20000);
      auto in = make_inputs(c.source, 3, d.count, -5.0, 1.0, 3);
      RunResult r = run_ring(d, in, 4);
      expect_parity(r);
      double bound = error_bound(wire_codec(d), op, 3, -5.0, 1.0);
      for (size_t k = 0; k < d.count; ++k) {
        double got = load(c.source, r.out[0].data() + k * dtype_size(c.source));
        ASSERT_LE(std::fabs(got - exact(c.source, op, in, k)), bound) << k;
      }
    }
  }
}

TEST(RingAllReduce, OneOutlierOnlyCoarsensItsOwnBlock) {
  // Inputs in [0, 1] except one element of 1e4 on rank 0: the other blocks keep the error of a
  // [0, 1] range.
  const uint32_t world = 3;
  Case c{DataType::kFloat32, QuantAlgorithm::kMinMax, DataType::kUint8};
  ReduceDesc d = desc_for(c, ReduceOp::kSum, 8 * quant::kQuantBlockElems);
  auto in = make_inputs(c.source, world, d.count, 0.0, 1.0, 17);
  store(c.source, in[0].data() + 5 * 4, 1e4);
  RunResult r = run_ring(d, in, 8);
  expect_parity(r);
  double bound = error_bound(wire_codec(d), ReduceOp::kSum, world, 0.0, 1.0);
  size_t outside = 0;
  for (size_t k = 0; k < d.count; ++k) {
    double err = std::fabs(load(c.source, r.out[0].data() + k * 4) - exact(c.source, ReduceOp::kSum, in, k));
    if (err > bound) ++outside;
  }
  // Every hop cuts the chunk into the same segments and blocks, so the outlier shares one block.
  EXPECT_LE(outside, quant::kQuantBlockElems);
  // And it does coarsen that block (or the bound would say nothing).
  EXPECT_GT(outside, 0u);
}

TEST(RingAllReduce, NonFiniteInputMakesItsBlockNaNOnEveryPeer) {
  Case c{DataType::kFloat32, QuantAlgorithm::kMinMax, DataType::kUint8};
  ReduceDesc d = desc_for(c, ReduceOp::kSum, 4 * quant::kQuantBlockElems);
  auto in = make_inputs(c.source, 3, d.count, -1.0, 1.0, 21);
  store(c.source, in[1].data() + 10 * 4, INFINITY);
  RunResult r = run_ring(d, in, 9);
  expect_parity(r);
  EXPECT_TRUE(std::isnan(load(c.source, r.out[0].data() + 10 * 4)));
  // The last element is in another block on every hop (blocks never exceed kQuantBlockElems).
  EXPECT_FALSE(std::isnan(load(c.source, r.out[0].data() + (d.count - 1) * 4)));
}

TEST(RingAllReduce, ResentFramesAreTakenInOnceWhateverTheirTiming) {
  ReduceDesc d;
  d.count = 300007;
  d.dtype = DataType::kInt64;
  for (uint32_t world : {2u, 3u, 4u}) {
    std::vector<std::vector<uint8_t>> in(world, std::vector<uint8_t>(d.count * 8));
    for (uint32_t i = 0; i < world; ++i) {
      for (size_t k = 0; k < d.count; ++k) {
        int64_t v = static_cast<int64_t>(k) * 3 + (int64_t{1} << i);
        std::memcpy(in[i].data() + k * 8, &v, 8);
      }
    }
    for (bool in_place : {false, true}) {
      SCOPED_TRACE("world " + std::to_string(world) + (in_place ? " in place" : ""));
      RunResult r = run_ring(d, in, 5 + world, in_place, /*resends=*/true);
      expect_parity(r);
      for (size_t k = 0; k < d.count; ++k) {
        int64_t got;
        std::memcpy(&got, r.out[0].data() + k * 8, 8);
        ASSERT_EQ(got, static_cast<int64_t>(k) * 3 * world + ((int64_t{1} << world) - 1)) << k;
      }
    }
  }
  // Quantized: still bit-identical everywhere, and equal to the run without resends.
  Case c{DataType::kFloat32, QuantAlgorithm::kMinMax, DataType::kUint8};
  ReduceDesc q = desc_for(c, ReduceOp::kSum, 100003);
  auto in = make_inputs(DataType::kFloat32, 3, q.count, -1, 1, 17);
  RunResult plain = run_ring(q, in, 1);
  RunResult resent = run_ring(q, in, 2, false, /*resends=*/true);
  expect_parity(resent);
  EXPECT_EQ(resent.out[0], plain.out[0]);
}

TEST(RingAllReduce, ClaimRejectsAQuantizedFrameOfTheWrongSize) {
  Case c{DataType::kFloat32, QuantAlgorithm::kMinMax, DataType::kUint8};
  ReduceDesc d = desc_for(c, ReduceOp::kSum, 10000);
  std::vector<float> buf(d.count, 1.0f);
  RingAllReduce ring(d, buf.data(), buf.data(), 2, 0);
  size_t elems = d.count / 2;
  size_t good = quant::encoded_bytes(wire_codec(d), elems);
  EXPECT_EQ(ring.claim(0, 0, elems * 4).status().code(), StatusCode::kPeerLost);
  EXPECT_EQ(ring.claim(0, 0, good + 1).status().code(), StatusCode::kPeerLost);
  auto ok = ring.claim(0, 0, good);
  ASSERT_TRUE(ok.is_ok());
  EXPECT_TRUE(ok->staged);
  EXPECT_GE(ring.max_segment_bytes(), good);
}

TEST(ReduceDesc, WireCodecAndValidation) {
  ReduceDesc d;
  d.dtype = DataType::kFloat32;
  d.quant_dtype = DataType::kUint8;  // ignored with kNone: a zeroed struct means raw
  EXPECT_TRUE(wire_codec(d).identity());
  EXPECT_TRUE(validate(d).is_ok());
  d.quant_dtype = DataType::kBFloat16;
  EXPECT_EQ(wire_codec(d).wire, DataType::kBFloat16);
  EXPECT_TRUE(validate(d).is_ok());
  d.quant_dtype = DataType::kFloat64;  // wider: refused
  EXPECT_EQ(validate(d).code(), StatusCode::kInvalidArgument);
  d.quant_algorithm = QuantAlgorithm::kMinMax;
  d.quant_dtype = DataType::kUint8;
  EXPECT_TRUE(validate(d).is_ok());
  d.op = ReduceOp::kProd;
  EXPECT_EQ(validate(d).code(), StatusCode::kInvalidArgument);
  EXPECT_NE(validate(d).message().find("Prod"), std::string::npos);
  d.op = ReduceOp::kSum;
  d.dtype = DataType::kInt32;
  EXPECT_EQ(validate(d).code(), StatusCode::kInvalidArgument);
  // The fingerprint separates every quantization setting.
  ReduceDesc a, b;
  b.quant_algorithm = QuantAlgorithm::kMinMax;
  b.quant_dtype = DataType::kUint8;
  EXPECT_NE(desc_hash(a), desc_hash(b));
  ReduceDesc e = b;
  e.quant_dtype = DataType::kInt8;
  EXPECT_NE(desc_hash(b), desc_hash(e));
  ReduceDesc f = a;
  f.quant_dtype = DataType::kBFloat16;
  EXPECT_NE(desc_hash(a), desc_hash(f));
  ReduceDesc g = a;
  g.quant_dtype = DataType::kInt16;  // ignored: same as raw
  EXPECT_EQ(desc_hash(a), desc_hash(g));
  ReduceDesc ints;  // an integer source ignores a float quant_dtype with kNone
  ints.dtype = DataType::kInt64;
  ints.quant_dtype = DataType::kFloat32;
  EXPECT_TRUE(wire_codec(ints).identity());
  EXPECT_TRUE(validate(ints).is_ok());
}

}  // namespace
}  // namespace qccl::collectives
