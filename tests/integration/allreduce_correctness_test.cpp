// All-reduce results against a reference reduction computed by the test, over the public C
// API: every dtype x every op, N = 2..5 peers (one cluster per N, shared by the tests), in place
// and out of place, counts 0, 1, N-1, odd and one large; bit parity of rounded float results;
// many concurrent tags issued and awaited from several threads per peer. How the inputs keep
// results exact: allreduce_reference.hpp.
#include <qccl/qccl.h>

#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "allreduce_reference.hpp"
#include "support/cluster.hpp"
#include "support/watchdog.hpp"

QCCL_TEST_WATCHDOG(170);

namespace qccl::test {
namespace {

TEST(HalfHelpers, RoundTripAndRounding) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    uint16_t v = static_cast<uint16_t>(h);
    if ((v & 0x7c00) == 0x7c00 && (v & 0x3ff)) continue;  // NaN
    ASSERT_EQ(f32_to_f16(f16_to_f32(v)), v) << std::hex << h;
    if ((v & 0x7f80) == 0x7f80) continue;  // bf16 inf/NaN
    ASSERT_EQ(f32_to_bf16(bf16_to_f32(v)), v) << std::hex << h;
  }
  EXPECT_EQ(f32_to_f16(1.0f + 1.0f / 2048), 0x3c00);  // tie to even (down)
  EXPECT_EQ(f32_to_f16(1.0f + 3.0f / 2048), 0x3c02);  // tie to even (up)
  EXPECT_EQ(f32_to_bf16(1.0f + 1.0f / 256), 0x3f80);
  EXPECT_EQ(f32_to_bf16(1.0f + 3.0f / 256), 0x3f82);
  EXPECT_EQ(f32_to_f16(65520.0f), 0x7c00);
  EXPECT_EQ(f32_to_f16(65519.0f), 0x7bff);
}

// ---- one cluster per N, shared by the tests -------------------------------------------------

class ClusterPool : public ::testing::Environment {
 public:
  static Cluster* get(int n) {
    auto& slot = clusters()[n];
    if (!slot) {
      slot = std::make_unique<Cluster>();
      if (!slot->ok() || !slot->grow(static_cast<size_t>(n))) {
        ADD_FAILURE() << "could not build a cluster of " << n << " peers";
        slot.reset();
        return nullptr;
      }
    }
    return slot.get();
  }
  void TearDown() override { clusters().clear(); }

 private:
  static std::map<int, std::unique_ptr<Cluster>>& clusters() {
    static std::map<int, std::unique_ptr<Cluster>> m;
    return m;
  }
};
[[maybe_unused]] ::testing::Environment* const g_pool =
    ::testing::AddGlobalTestEnvironment(new ClusterPool);

// Position of each peer index in the cluster, 0..N-1 (the "rank" of the reference data).
std::map<size_t, int> positions(const Cluster& c) {
  std::map<size_t, int> pos;
  for (size_t i : c.peers()) pos[i] = static_cast<int>(pos.size());
  return pos;
}

class AllReduceCorrectness : public ::testing::TestWithParam<int> {
 protected:
  void SetUp() override {
    n_ = GetParam();
    cluster_ = ClusterPool::get(n_);
    ASSERT_NE(cluster_, nullptr);
    ASSERT_EQ(cluster_->size(), static_cast<size_t>(n_));
    pos_ = positions(*cluster_);
  }
  int n_ = 0;
  Cluster* cluster_ = nullptr;
  std::map<size_t, int> pos_;
};

TEST_P(AllReduceCorrectness, EveryDtypeOpAndCount) {
  std::set<size_t> counts = {0, 1, static_cast<size_t>(n_ - 1), 1001};
  // Every peer runs the same sequence of cases with the same tags.
  uint64_t base = cluster_->next_tag();
  for (int k = 0; k < 1000; ++k) cluster_->next_tag();
  std::atomic<int> ran{0};
  ASSERT_TRUE(cluster_->run(
      [&](size_t i, qcclComm_t* comm) {
        uint64_t tag = base;
        int failures = 0;
        for (int dt = 0; dt < qcclNumDataTypes; ++dt) {
          for (int op = 0; op < qcclNumRedOps; ++op) {
            for (size_t count : counts) {
              for (bool in_place : {false, true}) {
                std::string e = run_case(comm, n_, pos_.at(i), static_cast<qcclDataType_t>(dt),
                                         static_cast<qcclRedOp_t>(op), count, in_place, tag++);
                ran.fetch_add(1);
                if (!e.empty() && ++failures <= 10) ADD_FAILURE() << "peer " << i << ": " << e;
              }
            }
          }
        }
      },
      std::chrono::seconds(60)));
  EXPECT_EQ(ran.load(), n_ * 12 * 5 * static_cast<int>(counts.size()) * 2);
}

// qcclGetStats accounts for every operation that ended: its count, the bytes its infos report,
// and spans that are positive where work happened and fit in the wall time of the calls (the
// ops run one after another, so their spans cannot overlap).
TEST_P(AllReduceCorrectness, StatsAccountForEveryOperation) {
  constexpr int kOps = 3;
  constexpr size_t kCount = 1 << 18;
  uint64_t base = cluster_->next_tag();
  for (int k = 1; k < kOps; ++k) cluster_->next_tag();
  ASSERT_TRUE(cluster_->run(
      [&](size_t i, qcclComm_t* comm) {
        std::vector<float> in(kCount, 1.0f), out(kCount);
        qcclStats_t before{}, after{};
        ASSERT_EQ(qcclGetStats(comm, &before), qcclSuccess);
        uint64_t tx = 0, rx = 0;
        auto t0 = Clock::now();
        for (int k = 0; k < kOps; ++k) {
          qcclReduceDesc_t d = {kCount, qcclFloat32, qcclSum, base + k, {qcclQuantNone, qcclFloat32}};
          qcclReduceInfo_t info{};
          ASSERT_EQ(qcclAllReduce(in.data(), out.data(), &d, comm, &info), qcclSuccess)
              << "peer " << i << ": " << qcclGetLastError();
          EXPECT_EQ(out[kCount - 1], float(n_));
          tx += info.tx_bytes;
          rx += info.rx_bytes;
        }
        ASSERT_EQ(qcclGetStats(comm, &after), qcclSuccess);  // the last op's end is before it
        auto wall = uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t0).count());
        EXPECT_EQ(after.ops - before.ops, uint64_t(kOps)) << "peer " << i;
        EXPECT_EQ(after.tx_bytes - before.tx_bytes, tx) << "peer " << i;
        EXPECT_EQ(after.rx_bytes - before.rx_bytes, rx) << "peer " << i;
        const uint64_t data = after.data_ns - before.data_ns;
        const uint64_t frames = after.frame_work_ns - before.frame_work_ns;
        const uint64_t spans = (after.wait_ring_ns - before.wait_ring_ns) + data +
                               (after.commit_ns - before.commit_ns);
        EXPECT_GT(data, 0u) << "peer " << i;
        EXPECT_GT(after.commit_ns, before.commit_ns) << "peer " << i;
        EXPECT_GT(frames, 0u) << "peer " << i;
        EXPECT_LE(frames, data) << "peer " << i;
        EXPECT_LE(spans, wall) << "peer " << i;
        EXPECT_GT(after.thread_cpu_ns, before.thread_cpu_ns) << "peer " << i;
      },
      std::chrono::seconds(60)));
}

TEST_P(AllReduceCorrectness, LargeFloatSum) {
  constexpr size_t kCount = 3000017;
  bool in_place = n_ % 2 == 1;
  uint64_t tag = cluster_->next_tag();
  ASSERT_TRUE(cluster_->run(
      [&](size_t i, qcclComm_t* comm) {
        std::string e = run_case(comm, n_, pos_.at(i), qcclFloat32, qcclSum, kCount, in_place, tag);
        EXPECT_TRUE(e.empty()) << "peer " << i << ": " << e;
      },
      std::chrono::seconds(60)));
}

// Random fp32 and bf16 data whose sums round: every peer must still hold the same bytes.
TEST_P(AllReduceCorrectness, BitParityOfRoundedFloatResults) {
  constexpr size_t kCount = 100003;
  uint64_t base = cluster_->next_tag();
  for (int k = 0; k < 8; ++k) cluster_->next_tag();
  std::mutex mu;
  std::map<std::string, std::map<size_t, uint64_t>> hashes;  // case -> peer -> hash
  ASSERT_TRUE(cluster_->run([&](size_t i, qcclComm_t* comm) {
    uint64_t tag = base;
    int me = pos_.at(i);
    for (qcclDataType_t dt : {qcclFloat32, qcclBFloat16}) {
      for (qcclRedOp_t op : {qcclSum, qcclAvg, qcclProd}) {
        size_t es = elem_size(dt);
        std::vector<uint8_t> buf(kCount * es);
        std::vector<double> ref(kCount, op == qcclProd ? 1.0 : 0.0);
        std::vector<double> scale(kCount, op == qcclProd ? 1.0 : 0.0);  // for the tolerance
        for (size_t k = 0; k < kCount; ++k) {
          for (int p = 0; p < n_; ++p) {
            uint64_t r = rnd(tag, p, k);
            // Uniform in (-2, 2) with a random sign and 24 random bits: sums round.
            float v = std::ldexp(static_cast<float>(r & 0xffffff), -23) - 1.0f;
            if (r & (1ull << 40)) v = -v;
            if (dt == qcclBFloat16) v = bf16_to_f32(f32_to_bf16(v));
            if (p == me) {
              if (dt == qcclFloat32) {
                std::memcpy(&buf[k * es], &v, es);
              } else {
                uint16_t b = f32_to_bf16(v);
                std::memcpy(&buf[k * es], &b, es);
              }
            }
            ref[k] = op == qcclProd ? ref[k] * v : ref[k] + v;
            scale[k] = op == qcclProd ? scale[k] * std::fabs(v) : scale[k] + std::fabs(v);
          }
          if (op == qcclAvg) ref[k] /= n_;
        }
        qcclReduceDesc_t d = {kCount, dt, op, tag++, {qcclQuantNone, dt}};
        qcclResult_t r = qcclAllReduce(buf.data(), buf.data(), &d, comm, nullptr);
        ASSERT_EQ(r, qcclSuccess) << "peer " << i << ": " << describe(r);
        // Sanity against a double reference, loosely: each hop rounds once.
        double eps = dt == qcclFloat32 ? std::ldexp(1.0, -23) : std::ldexp(1.0, -8);
        for (size_t k = 0; k < kCount; k += 997) {
          float got;
          if (dt == qcclFloat32) {
            std::memcpy(&got, &buf[k * es], 4);
          } else {
            uint16_t b;
            std::memcpy(&b, &buf[k * es], 2);
            got = bf16_to_f32(b);
          }
          ASSERT_NEAR(got, ref[k], 2 * n_ * eps * scale[k] + 1e-30)
              << dtype_name(dt) << " " << op_name(op) << " element " << k << " peer " << i;
        }
        std::lock_guard<std::mutex> lock(mu);
        hashes[std::string(dtype_name(dt)) + " " + op_name(op)][i] = fnv1a(buf.data(), buf.size());
      }
    }
  }));
  ASSERT_EQ(hashes.size(), 6u);
  for (const auto& [what, per_peer] : hashes) {
    ASSERT_EQ(per_peer.size(), static_cast<size_t>(n_)) << what;
    std::set<uint64_t> distinct;
    for (const auto& [peer, h] : per_peer) distinct.insert(h);
    EXPECT_EQ(distinct.size(), 1u) << what << ": peers hold different bytes";
  }
}

// 4 threads per peer, 5 async ops each: 20 tags in flight at once, awaited with qcclTest
// polling or qcclWait, from the thread that issued them.
TEST_P(AllReduceCorrectness, ConcurrentTagsFromSeveralThreads) {
  constexpr int kThreads = 4;
  constexpr int kOpsPerThread = 5;
  uint64_t base = cluster_->next_tag();
  for (int k = 0; k < kThreads * kOpsPerThread; ++k) cluster_->next_tag();
  ASSERT_TRUE(cluster_->run([&](size_t i, qcclComm_t* comm) {
    int me = pos_.at(i);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        struct Pending {
          CaseData data;
          std::vector<uint8_t> recv;
          qcclOp_t* op = nullptr;
          uint64_t tag = 0;
        };
        std::vector<Pending> ops(kOpsPerThread);
        for (int j = 0; j < kOpsPerThread; ++j) {
          Pending& p = ops[j];
          p.tag = base + static_cast<uint64_t>(t * kOpsPerThread + j);
          size_t count = 1000 + 37 * static_cast<size_t>(t * kOpsPerThread + j);
          qcclDataType_t dt = (j % 2) ? qcclInt32 : qcclFloat32;
          p.data = make_case(dt, qcclSum, n_, me, count, mix(p.tag));
          p.recv.resize(p.data.expected.size());
          qcclReduceDesc_t d = {count, dt, qcclSum, p.tag, {qcclQuantNone, dt}};
          qcclResult_t r = qcclAllReduceAsync(p.data.input.data(), p.recv.data(), &d, comm, &p.op);
          ASSERT_EQ(r, qcclSuccess) << "peer " << i << " tag " << p.tag << ": " << describe(r);
        }
        auto deadline = Clock::now() + std::chrono::seconds(30);
        for (int j = 0; j < kOpsPerThread; ++j) {
          Pending& p = ops[j];
          if (j % 2 == 0) {  // poll, then collect
            int done = 0;
            while (!done && Clock::now() < deadline) {
              ASSERT_EQ(qcclTest(p.op, &done), qcclSuccess) << qcclGetLastError();
              if (!done) std::this_thread::yield();
            }
            EXPECT_EQ(done, 1) << "peer " << i << " tag " << p.tag << " not done in time";
          }
          qcclReduceInfo_t info{};
          qcclResult_t r = qcclWait(p.op, &info);
          ASSERT_EQ(r, qcclSuccess) << "peer " << i << " tag " << p.tag << ": " << describe(r);
          EXPECT_EQ(info.world_size, static_cast<uint32_t>(n_));
          EXPECT_EQ(p.recv, p.data.expected) << "peer " << i << " tag " << p.tag;
        }
      });
    }
    for (auto& th : threads) th.join();
  }));
}

INSTANTIATE_TEST_SUITE_P(Peers, AllReduceCorrectness, ::testing::Values(2, 3, 4, 5),
                         [](const ::testing::TestParamInfo<int>& p) {
                           std::string name = "N";  // not "N" + ...: GCC 12 -O3 -Wrestrict
                           name += std::to_string(p.param);
                           return name;
                         });

}  // namespace
}  // namespace qccl::test
