// Call order through the public C API (docs/call-order.md): peers that make calls that can
// never meet get qcclInvalidUsage at once, nobody is expelled and the run goes on; one loop
// (qcclWaitForWorld, then qcclAdmitPending + all-reduce) is right for the first peers and for
// a peer that joins later.
#include <qccl/qccl.h>

#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <string>
#include <vector>

#include "support/cluster.hpp"
#include "support/watchdog.hpp"

QCCL_TEST_WATCHDOG(170);

namespace qccl::test {
namespace {

enum class Call { kPeersPending, kUpdate, kOptimize, kAllReduce, kSync };

const char* call_name(Call c) {
  switch (c) {
    case Call::kPeersPending: return "qcclArePeersPending";
    case Call::kUpdate: return "qcclUpdateTopology";
    case Call::kOptimize: return "qcclOptimizeTopology";
    case Call::kAllReduce: return "qcclAllReduce";
    case Call::kSync: return "qcclSyncSharedState";
  }
  return "?";
}

// Per-peer state the calls need: the shared-state revision moves on with each successful sync.
struct PeerState {
  float weights[4] = {1, 2, 3, 4};
  uint64_t revision = 0;
};

// Makes `call`; an all-reduce of 1 << i checks the sum over `world` peers.
qcclResult_t make_call(Call call, size_t i, qcclComm_t* comm, PeerState& st, int64_t world) {
  switch (call) {
    case Call::kPeersPending: {
      int pending = -1;
      return qcclArePeersPending(comm, &pending);
    }
    case Call::kUpdate: return qcclUpdateTopology(comm);
    case Call::kOptimize: return qcclOptimizeTopology(comm);
    case Call::kAllReduce: {
      const int64_t mine = int64_t{1} << i;
      int64_t v = mine;
      qcclReduceDesc_t d = {1, qcclInt64, qcclSum, 0, {qcclQuantNone, qcclInt64}};
      qcclReduceInfo_t info{};
      qcclResult_t r = qcclAllReduce(&v, &v, &d, comm, &info);
      if (r == qcclSuccess) {
        EXPECT_EQ(v, (int64_t{1} << world) - 1) << "peer " << i;
        EXPECT_EQ(info.world_size, static_cast<uint32_t>(world)) << "peer " << i;
      } else {
        EXPECT_EQ(v, mine) << "peer " << i << ": a failed in-place all-reduce keeps the input";
      }
      return r;
    }
    case Call::kSync: {
      qcclTensorInfo_t t{"weights", st.weights, 4, qcclFloat32, 0};
      qcclSharedState_t state{st.revision, 1, &t};
      qcclResult_t r = qcclSyncSharedState(comm, &state, qcclSyncEnforcePopular, nullptr);
      if (r == qcclSuccess) st.revision = state.revision + 1;
      return r;
    }
  }
  return qcclInternalError;
}

// Retries the call while it fails with qcclPeerLost: a collective started just after another
// peer's out-of-step collective was aborted runs in the old epoch and is told so.
qcclResult_t call_until_not_lost(Call call, size_t i, qcclComm_t* comm, PeerState& st,
                                 int64_t world) {
  qcclResult_t r = qcclPeerLost;
  for (int attempt = 0; attempt < 5 && r == qcclPeerLost; ++attempt) {
    r = make_call(call, i, comm, st, world);
  }
  return r;
}

class CallPairs : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    cluster_ = new Cluster();
    ASSERT_TRUE(cluster_->ok());
    ASSERT_TRUE(cluster_->grow(4));
  }
  static void TearDownTestSuite() {
    delete cluster_;
    cluster_ = nullptr;
  }
  static Cluster* cluster_;
};
Cluster* CallPairs::cluster_ = nullptr;

// Peers 0 and 1 make call `a`, peers 2 and 3 call `b`, all at once. Whichever call reached
// the master first wins; the other side gets qcclInvalidUsage within a second, naming the
// call the group is in, then makes that call; everyone succeeds and nobody was expelled.
TEST_F(CallPairs, EveryPairOfCallsOutOfStepCostsOneErrorNeverTheRun) {
  const Call calls[] = {Call::kPeersPending, Call::kUpdate, Call::kOptimize, Call::kAllReduce,
                        Call::kSync};
  std::vector<PeerState> states(4);
  for (size_t ai = 0; ai < 5; ++ai) {
    for (size_t bi = ai + 1; bi < 5; ++bi) {
      Call a = calls[ai], b = calls[bi];
      SCOPED_TRACE(std::string(call_name(a)) + " vs " + call_name(b));
      std::atomic<int> rejected{0};
      std::mutex mu;
      std::vector<std::string> messages;
      ASSERT_TRUE(cluster_->run([&](size_t i, qcclComm_t* comm) {
        Call mine = i < 2 ? a : b, theirs = i < 2 ? b : a;
        auto start = Clock::now();
        qcclResult_t r = call_until_not_lost(mine, i, comm, states[i], 4);
        if (r == qcclInvalidUsage) {
          EXPECT_LT(elapsed_ms(start), 1000) << "peer " << i << " waited for its error";
          {
            std::lock_guard<std::mutex> lock(mu);
            messages.push_back(qcclGetLastError());
          }
          ++rejected;
          r = call_until_not_lost(theirs, i, comm, states[i], 4);
        }
        EXPECT_EQ(r, qcclSuccess) << "peer " << i << ": " << describe(r);
      }));
      // One side, both of its peers, was out of step; no peer left the run.
      EXPECT_EQ(rejected.load(), 2);
      for (const std::string& m : messages) {
        EXPECT_NE(m.find(": out of step: peer(s) ["), std::string::npos) << m;
        EXPECT_NE(m.find("docs/call-order.md"), std::string::npos) << m;
        EXPECT_EQ(m.find("qccl", 1), std::string::npos) << "names the call once: " << m;
      }
      for (size_t i : cluster_->peers()) EXPECT_EQ(cluster_->view(i).global_world_size, 4);
    }
  }
}

// The loop every program writes: connect; wait_for_world; loop { admit_pending; all_reduce }.
// Three peers start it; a fourth joins while they run. Nobody gets an error, and once the
// fourth is in, every step sums all four.
TEST(CallOrder, TheSameLoopServesTheFirstPeersAndALateJoiner) {
  Cluster c;
  ASSERT_TRUE(c.ok());
  constexpr int kStepsWithFour = 5;
  std::atomic<int> steps_done{0};
  std::mutex mu;
  std::condition_variable cv;
  auto peer = [&](size_t i) {
    qcclCommConfig_t cc = QCCL_COMM_CONFIG_INIT;
    cc.master_address = c.master_address().c_str();
    cc.connections_per_peer = 2;
    cc.connect_timeout_ms = 20000;
    qcclComm_t* comm = nullptr;
    ASSERT_EQ(qcclCommCreate(&cc, &comm), qcclSuccess);
    qcclResult_t r = qcclConnect(comm);
    ASSERT_EQ(r, qcclSuccess) << "peer " << i << ": " << describe(r);
    r = qcclWaitForWorld(comm, 3, 20000);
    ASSERT_EQ(r, qcclSuccess) << "peer " << i << ": " << describe(r);
    int with_four = 0;
    for (int step = 0; with_four < kStepsWithFour; ++step) {
      ASSERT_LT(step, 2000) << "peer " << i << ": the joiner never arrived";
      r = qcclAdmitPending(comm, nullptr);
      ASSERT_EQ(r, qcclSuccess) << "peer " << i << " step " << step << ": " << describe(r);
      int64_t v = int64_t{1} << i;
      qcclReduceDesc_t d = {1, qcclInt64, qcclSum, 0, {qcclQuantNone, qcclInt64}};
      qcclReduceInfo_t info{};
      r = qcclAllReduce(&v, &v, &d, comm, &info);
      ASSERT_EQ(r, qcclSuccess) << "peer " << i << " step " << step << ": " << describe(r);
      ASSERT_TRUE(info.world_size == 3 || info.world_size == 4) << info.world_size;
      EXPECT_EQ(v, (int64_t{1} << info.world_size) - 1) << "peer " << i << " step " << step;
      if (info.world_size == 4) {
        ++with_four;
      } else {
        EXPECT_EQ(with_four, 0) << "peer " << i << ": the group shrank";
      }
      if (i == 0) {
        steps_done = step + 1;
        cv.notify_all();
      }
    }
    EXPECT_EQ(qcclCommDestroy(comm), qcclSuccess);
  };
  std::vector<std::unique_ptr<Task>> tasks;
  for (size_t i = 0; i < 3; ++i) tasks.push_back(std::make_unique<Task>([&, i] { peer(i); }));
  {
    std::unique_lock<std::mutex> lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(30), [&] { return steps_done >= 3; }))
        << "the first three peers did not get going";
  }
  tasks.push_back(std::make_unique<Task>([&] { peer(3); }));
  for (auto& t : tasks) {
    ASSERT_TRUE(t->wait_until(Clock::now() + std::chrono::seconds(60))) << "a peer hangs";
  }
}

// A joiner that skips the loop head and all-reduces first while the group votes gets
// qcclInvalidUsage saying what to do; it then joins the vote and the run goes on.
TEST(CallOrder, JoinerThatAllReducesWhileTheGroupVotesIsToldToJoinTheVote) {
  Cluster c;
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(c.grow(2));
  size_t joiner = 0;
  ASSERT_TRUE(c.begin_join(0, &joiner));
  ASSERT_TRUE(c.wait_until_pending());
  ASSERT_TRUE(c.update_topology_all());
  ASSERT_TRUE(c.finish_join(joiner));
  std::vector<PeerState> states(3);
  ASSERT_TRUE(c.run([&](size_t i, qcclComm_t* comm) {
    if (i != joiner) {
      int pending = -1;
      qcclResult_t r = qcclArePeersPending(comm, &pending);
      EXPECT_EQ(r, qcclSuccess) << "peer " << i << ": " << describe(r);
      EXPECT_EQ(pending, 0);
      return;
    }
    auto start = Clock::now();
    qcclResult_t r = make_call(Call::kAllReduce, i, comm, states[i], 3);
    ASSERT_EQ(r, qcclInvalidUsage) << describe(r);
    EXPECT_LT(elapsed_ms(start), 1000);
    std::string m = qcclGetLastError();
    EXPECT_NE(m.find("qcclAllReduce: out of step: peer(s) ["), std::string::npos) << m;
    EXPECT_NE(m.find("are in the peers-pending vote; a peer admitted at epoch"),
              std::string::npos)
        << m;
    EXPECT_NE(m.find("must first join it"), std::string::npos) << m;
    int pending = -1;
    r = qcclArePeersPending(comm, &pending);
    EXPECT_EQ(r, qcclSuccess) << describe(r);
  }));
  ASSERT_TRUE(c.run([&](size_t i, qcclComm_t* comm) {
    EXPECT_EQ(call_until_not_lost(Call::kAllReduce, i, comm, states[i], 3), qcclSuccess);
  }));
}

}  // namespace
}  // namespace qccl::test
