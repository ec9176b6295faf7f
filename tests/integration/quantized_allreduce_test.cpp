// Quantized all-reduce over real sockets, through the public C API: every peer gets the same
// bytes, the error stays within the bound of docs/quantization.md, info.tx_bytes shows the
// smaller payload, concurrent quantized ops and the retrying batch call work. (Kernel- and
// ring-level coverage of every codec: tests/unit/quant/quantize_test.cpp and
// tests/unit/collectives/ring_allreduce_test.cpp; mismatched settings:
// allreduce_errors_test.cpp.)
#include <qccl/qccl.h>

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "allreduce_reference.hpp"
#include "support/cluster.hpp"
#include "support/watchdog.hpp"

QCCL_TEST_WATCHDOG(170);

namespace qccl::test {
namespace {

constexpr int kPeers = 3;

// Peer `me`'s float input: uniform in [-1, 1], deterministic.
std::vector<float> gradient(int me, size_t count, uint64_t seed) {
  std::mt19937 rng(static_cast<uint32_t>(seed * 131 + static_cast<uint64_t>(me)));
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> v(count);
  for (auto& x : v) x = dist(rng);
  return v;
}

class QuantizedAllReduce : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    cluster_ = new Cluster();
    ASSERT_TRUE(cluster_->ok());
    ASSERT_TRUE(cluster_->grow(kPeers));
    for (size_t i : cluster_->peers()) pos_[i] = static_cast<int>(pos_.size());
  }
  static void TearDownTestSuite() {
    delete cluster_;
    cluster_ = nullptr;
  }
  static Cluster* cluster_;
  static std::map<size_t, int> pos_;
};
Cluster* QuantizedAllReduce::cluster_ = nullptr;
std::map<size_t, int> QuantizedAllReduce::pos_;

struct Outcome {
  std::vector<float> result;
  qcclReduceInfo_t info{};
};

// Runs one float32 all-reduce with `q` on every peer; returns each peer's outcome by position.
std::vector<Outcome> run(Cluster& c, const std::map<size_t, int>& pos, size_t count, qcclRedOp_t op,
                         qcclQuantization_t q, uint64_t tag) {
  std::vector<Outcome> out(pos.size());
  EXPECT_TRUE(c.run([&](size_t i, qcclComm_t* comm) {
    int me = pos.at(i);
    std::vector<float> buf = gradient(me, count, tag);
    qcclReduceDesc_t d = {count, qcclFloat32, op, tag, q};
    qcclReduceInfo_t info{};
    qcclResult_t r = qcclAllReduce(buf.data(), buf.data(), &d, comm, &info);
    ASSERT_EQ(r, qcclSuccess) << "peer " << i << ": " << describe(r);
    out[static_cast<size_t>(me)] = {std::move(buf), info};
  }));
  return out;
}

double max_error(const std::vector<float>& got, size_t count, qcclRedOp_t op, uint64_t tag) {
  std::vector<std::vector<float>> in;
  for (int me = 0; me < kPeers; ++me) in.push_back(gradient(me, count, tag));
  double worst = 0;
  for (size_t k = 0; k < count; ++k) {
    double sum = 0;
    for (const auto& v : in) sum += v[k];
    if (op == qcclAvg) sum /= kPeers;
    worst = std::max(worst, std::fabs(got[k] - sum));
  }
  return worst;
}

TEST_F(QuantizedAllReduce, EveryCodecIsBitIdenticalWithinBoundAndSendsFewerBytes) {
  const size_t count = 1 << 20;
  uint64_t tag = 100;
  auto raw = run(*cluster_, pos_, count, qcclSum, {qcclQuantNone, qcclFloat32}, tag);
  ASSERT_EQ(raw.size(), size_t{kPeers});
  const double raw_tx = static_cast<double>(raw[0].info.tx_bytes);
  ASSERT_GT(raw_tx, 0);

  // Inputs in [-1, 1], N = 3: R = 2, R' = 2, M = 1 (docs/quantization.md, section 4).
  struct Q {
    qcclQuantization_t q;
    qcclRedOp_t op;
    double bound;      // end-to-end bound for N = 3
    double tx_ratio;   // raw tx / quantized tx, about
  };
  const double n = kPeers, tri = n * (n + 1);
  for (const Q& c : std::vector<Q>{
           {{qcclQuantMinMax, qcclUint8}, qcclSum, 2 * tri / (4 * 255), 4.0},
           {{qcclQuantMinMax, qcclInt8}, qcclAvg, 2 * (n + 1) / (4 * 255), 4.0},
           {{qcclQuantZeroPointScale, qcclInt8}, qcclSum, 2 * tri / (4 * 255), 4.0},
           {{qcclQuantMinMax, qcclUint16}, qcclSum, 2 * tri / (4 * 65535), 2.0},
           {{qcclQuantNone, qcclBFloat16}, qcclSum, std::ldexp(1.0, -8) * tri / 2, 2.0},
           {{qcclQuantNone, qcclFloat16}, qcclAvg, std::ldexp(1.0, -11) * (n + 1) / 2, 2.0},
       }) {
    SCOPED_TRACE("algorithm " + std::to_string(c.q.algorithm) + " wire " +
                 std::to_string(c.q.quantized_dtype) + " op " + std::to_string(c.op));
    ++tag;
    auto out = run(*cluster_, pos_, count, c.op, c.q, tag);
    if (HasFailure()) return;
    for (int me = 1; me < kPeers; ++me) {
      ASSERT_EQ(std::memcmp(out[me].result.data(), out[0].result.data(), count * 4), 0)
          << "peer position " << me << " holds other bytes than position 0";
    }
    double err = max_error(out[0].result, count, c.op, tag);
    EXPECT_LE(err, c.bound * 1.02 + 1e-6);
    EXPECT_GT(err, 0.0) << "a lossy codec gave the exact result: was it applied?";
    for (const auto& o : out) {
      EXPECT_EQ(o.info.world_size, static_cast<uint32_t>(kPeers));
      double ratio = raw_tx / static_cast<double>(o.info.tx_bytes);
      EXPECT_GT(ratio, c.tx_ratio * 0.97);
      EXPECT_LT(ratio, c.tx_ratio * 1.01);
    }
  }
}

TEST_F(QuantizedAllReduce, ConcurrentOpsWithDifferentCodecs) {
  const size_t count = 300000;
  const uint64_t base = 200;
  std::vector<std::vector<float>> results(kPeers * 3);
  ASSERT_TRUE(cluster_->run([&](size_t i, qcclComm_t* comm) {
    int me = pos_.at(i);
    const qcclQuantization_t qs[3] = {
        {qcclQuantMinMax, qcclUint8}, {qcclQuantNone, qcclBFloat16}, {qcclQuantNone, qcclFloat32}};
    std::vector<std::vector<float>> bufs;
    std::vector<qcclOp_t*> ops(3, nullptr);
    for (int t = 0; t < 3; ++t) bufs.push_back(gradient(me, count, base + t));
    for (int t = 0; t < 3; ++t) {
      qcclReduceDesc_t d = {count, qcclFloat32, qcclSum, base + static_cast<uint64_t>(t), qs[t]};
      ASSERT_EQ(qcclAllReduceAsync(bufs[t].data(), bufs[t].data(), &d, comm, &ops[t]), qcclSuccess)
          << qcclGetLastError();
    }
    for (int t = 2; t >= 0; --t) {
      ASSERT_EQ(qcclWait(ops[t], nullptr), qcclSuccess) << "tag " << base + t << ": "
                                                        << qcclGetLastError();
      results[static_cast<size_t>(me * 3 + t)] = std::move(bufs[t]);
    }
  }));
  for (int t = 0; t < 3; ++t) {
    for (int me = 1; me < kPeers; ++me) EXPECT_EQ(results[me * 3 + t], results[t]) << "tag " << t;
    double err = max_error(results[t], count, qcclSum, base + t);
    if (t == 2) {
      EXPECT_LT(err, 1e-6);  // unquantized float32: only the summation order's rounding
    } else {
      EXPECT_GT(err, 0.0);
      EXPECT_LT(err, 0.05);
    }
  }
}

TEST_F(QuantizedAllReduce, MultipleWithRetryCarriesQuantization) {
  const size_t count = 50000;
  std::vector<std::vector<float>> results(kPeers * 2);
  ASSERT_TRUE(cluster_->run([&](size_t i, qcclComm_t* comm) {
    int me = pos_.at(i);
    std::vector<float> a = gradient(me, count, 300), b = gradient(me, count, 301);
    qcclReduceOp_t ops[2] = {
        {a.data(), a.data(), {count, qcclFloat32, qcclAvg, 300, {qcclQuantZeroPointScale, qcclUint8}}},
        {b.data(), b.data(), {count, qcclFloat32, qcclMax, 301, {qcclQuantMinMax, qcclInt16}}}};
    qcclReduceInfo_t info{};
    ASSERT_EQ(qcclAllReduceMultipleWithRetry(ops, 2, comm, 2, &info), qcclSuccess)
        << qcclGetLastError();
    EXPECT_EQ(info.world_size, static_cast<uint32_t>(kPeers));
    results[static_cast<size_t>(me * 2)] = std::move(a);
    results[static_cast<size_t>(me * 2 + 1)] = std::move(b);
  }));
  for (int me = 1; me < kPeers; ++me) {
    EXPECT_EQ(results[me * 2], results[0]);
    EXPECT_EQ(results[me * 2 + 1], results[1]);
  }
  // ZeroPointScale Avg of 3 inputs in [-1, 1]: R' (N+1) / (4L) = 2 * 4 / 1020.
  EXPECT_LE(max_error(results[0], count, qcclAvg, 300), 2.0 * 4 / 1020 * 1.02);
  // MinMax int16 Max: N R / (2L) = 3 * 2 / 131070.
  std::vector<std::vector<float>> in;
  for (int me = 0; me < kPeers; ++me) in.push_back(gradient(me, count, 301));
  double worst = 0;
  for (size_t k = 0; k < count; ++k) {
    float m = std::max({in[0][k], in[1][k], in[2][k]});
    worst = std::max(worst, std::fabs(static_cast<double>(results[1][k]) - m));
  }
  EXPECT_LE(worst, 3.0 * 2 / 131070 * 1.02 + 1e-7);
}

}  // namespace
}  // namespace qccl::test
