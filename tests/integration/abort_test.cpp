// qcclCommAbort (issue 19): a thread blocked in a call on a communicator (an all-reduce whose
// partner never calls, each other kind of collective, a barrier, a vote, qcclWait of an async all-reduce, a shared-state sync,
// qcclWaitForWorld, qcclConnect to a master that never admits or cannot be reached) returns
// qcclAborted once another thread aborts the communicator; every later call returns
// qcclAborted at once; the peer leaves the run gracefully (the others see it go long before
// the peer timeout); destroy is then clean. The latency from the abort to the blocked call's
// return is printed ("abort latency").
#include <qccl/qccl.h>

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "capi/handles.hpp"
#include "core/communicator.hpp"
#include "support/cluster.hpp"
#include "support/watchdog.hpp"

QCCL_TEST_WATCHDOG(110);

namespace qccl {
namespace {

using test::Clock;
using test::describe;
using namespace std::chrono_literals;

// Generous: the machine is shared and loaded; the design target is milliseconds.
constexpr auto kAbortBound = 2000ms;

// One blocking call on its own thread: its result code (a qcclResult_t, or the C++ facade's
// StatusCode mapped by the caller), its message and when it returned.
class BlockedCall {
 public:
  explicit BlockedCall(std::function<std::pair<int, std::string>()> fn) {
    task_ = std::make_unique<test::Task>([this, fn = std::move(fn)] {
      auto [code, message] = fn();
      code_ = code;
      message_ = std::move(message);
      returned_ = Clock::now();
    });
  }
  static std::unique_ptr<BlockedCall> c(std::function<qcclResult_t()> fn) {
    return std::make_unique<BlockedCall>([fn = std::move(fn)]() -> std::pair<int, std::string> {
      qcclResult_t r = fn();
      return {static_cast<int>(r), r == qcclSuccess ? "" : describe(r)};
    });
  }
  static std::unique_ptr<BlockedCall> cpp(std::function<Status()> fn) {
    return std::make_unique<BlockedCall>([fn = std::move(fn)]() -> std::pair<int, std::string> {
      Status st = fn();
      return {static_cast<int>(st.code()), st.to_string()};
    });
  }

  void expect_still_blocked(const char* what) {
    EXPECT_FALSE(task_->wait_until(Clock::now() + 300ms))
        << what << " returned before the abort: " << message_;
  }
  // Waits for the call (it must end after an abort at t0) and returns how long after t0 it
  // returned, in ms.
  int64_t returned_after(Clock::time_point t0, const char* what) {
    if (!task_->wait_until(t0 + 10s)) {
      ADD_FAILURE() << what << " still blocked 10 s after qcclCommAbort";
      std::fflush(stdout);
      std::_Exit(1);  // a blocked thread cannot be cancelled: end the test binary
    }
    task_->join();
    auto us = std::chrono::duration_cast<std::chrono::microseconds>(returned_ - t0).count();
    auto ms = us / 1000;
    std::printf("[ abort latency ] %s: %.3f ms\n", what, static_cast<double>(us) / 1000.0);
    EXPECT_LT(ms, kAbortBound.count()) << what;
    return ms;
  }
  // Checks that the call is still blocked, aborts `comm` and measures the call's return.
  int64_t abort_and_measure(qcclComm_t* comm, const char* what) {
    expect_still_blocked(what);
    auto t0 = Clock::now();
    EXPECT_EQ(qcclCommAbort(comm), qcclSuccess);
    return returned_after(t0, what);
  }

  int code() const { return code_; }
  const std::string& message() const { return message_; }

 private:
  std::unique_ptr<test::Task> task_;
  int code_ = -1;
  std::string message_;
  Clock::time_point returned_;
};

// Every later call fails with qcclAborted at once, naming the abort; aborting again is fine.
void expect_aborted_from_now_on(qcclComm_t* comm) {
  auto t0 = Clock::now();
  float x = 1.0f;
  qcclReduceDesc_t d{};
  d.count = 1;
  d.dtype = qcclFloat32;
  d.op = qcclSum;
  EXPECT_EQ(qcclAllReduce(&x, &x, &d, comm, nullptr), qcclAborted);
  EXPECT_NE(std::string(qcclGetLastError()).find("the communicator was aborted"),
            std::string::npos)
      << qcclGetLastError();
  int pending = -1;
  EXPECT_EQ(qcclArePeersPending(comm, &pending), qcclAborted);
  EXPECT_EQ(qcclUpdateTopology(comm), qcclAborted);
  EXPECT_EQ(qcclConnect(comm), qcclAborted);
  EXPECT_EQ(qcclCommSetOpTimeout(comm, 100), qcclAborted);
  EXPECT_EQ(qcclCommAbort(comm), qcclSuccess);  // idempotent
  EXPECT_LT(test::elapsed_ms(t0), kAbortBound.count());
}

// Polls `comm`'s group size until it is `n` (deadline `bound`).
bool group_shrinks_to(qcclComm_t* comm, int64_t n, std::chrono::milliseconds bound) {
  auto deadline = Clock::now() + bound;
  for (;;) {
    int64_t size = -1;
    if (qcclGetAttribute(comm, QCCL_ATTR_GROUP_WORLD_SIZE, &size) == qcclSuccess && size == n) {
      return true;
    }
    if (Clock::now() > deadline) return false;
    std::this_thread::sleep_for(5ms);  // pacing of the poll
  }
}

// A peer timeout far above every bound below: a peer seen gone sooner left gracefully.
test::ClusterOptions slow_failure_detection() {
  test::ClusterOptions o;
  o.peer_timeout_ms = 30000;
  o.vote_timeout_ms = 30000;
  return o;
}

TEST(CommAbort, EndsAnAllReduceWhosePartnerNeverCallsAndThePeerLeavesGracefully) {
  test::Cluster cluster(slow_failure_detection());
  ASSERT_TRUE(cluster.ok());
  ASSERT_TRUE(cluster.grow(2));
  qcclComm_t* c0 = cluster.comm(0);
  std::vector<float> buf(4096);
  for (size_t i = 0; i < buf.size(); ++i) buf[i] = static_cast<float>(i);
  const std::vector<float> input = buf;
  qcclReduceDesc_t d{};
  d.count = buf.size();
  d.dtype = qcclFloat32;
  d.op = qcclSum;
  d.tag = 1;
  auto call =
      BlockedCall::c([&] { return qcclAllReduce(buf.data(), buf.data(), &d, c0, nullptr); });
  call->abort_and_measure(c0, "qcclAllReduce");
  EXPECT_EQ(call->code(), qcclAborted) << call->message();
  EXPECT_NE(call->message().find("the communicator was aborted"), std::string::npos)
      << call->message();
  EXPECT_EQ(buf, input);  // in place: the input again
  expect_aborted_from_now_on(c0);
  // The master saw the peer leave (not a crash: far sooner than the 30 s peer timeout).
  EXPECT_TRUE(group_shrinks_to(cluster.comm(1), 1, 10s));
  EXPECT_EQ(cluster.destroy(0), qcclSuccess);
}

TEST(CommAbort, EndsABarrierAndAnAsyncAllReducesWait) {
  test::Cluster cluster(slow_failure_detection());
  ASSERT_TRUE(cluster.ok());
  ASSERT_TRUE(cluster.grow(2));
  qcclComm_t* c0 = cluster.comm(0);
  std::vector<int32_t> buf(1000, 7);
  qcclReduceDesc_t d{};
  d.count = buf.size();
  d.dtype = qcclInt32;
  d.op = qcclSum;
  d.tag = 2;
  qcclOp_t* op = nullptr;
  ASSERT_EQ(qcclAllReduceAsync(buf.data(), buf.data(), &d, c0, &op), qcclSuccess);
  auto wait = BlockedCall::c([&] { return qcclWait(op, nullptr); });
  auto barrier = BlockedCall::cpp([&] { return c0->rep->barrier(3); });
  wait->expect_still_blocked("qcclWait");
  barrier->expect_still_blocked("barrier");
  auto t0 = Clock::now();
  ASSERT_EQ(qcclCommAbort(c0), qcclSuccess);
  barrier->returned_after(t0, "Communicator::barrier");
  wait->returned_after(t0, "qcclWait (async all-reduce)");
  EXPECT_EQ(barrier->code(), static_cast<int>(StatusCode::kAborted)) << barrier->message();
  EXPECT_EQ(wait->code(), qcclAborted) << wait->message();
  EXPECT_EQ(buf, std::vector<int32_t>(1000, 7));
  expect_aborted_from_now_on(c0);
  EXPECT_EQ(cluster.destroy(0), qcclSuccess);
}

// Each kind of collective, blocked on its own thread (the partner never calls), ends with
// qcclAborted; the in-out buffers hold their inputs again.
TEST(CommAbort, EndsEveryKindOfCollective) {
  test::Cluster cluster(slow_failure_detection());
  ASSERT_TRUE(cluster.ok());
  ASSERT_TRUE(cluster.grow(2));
  qcclComm_t* c0 = cluster.comm(0);
  int64_t me = 0;
  ASSERT_EQ(qcclGetAttribute(c0, QCCL_ATTR_PEER_ID, &me), qcclSuccess);
  std::vector<float> bc(5000, 1.0f), in(5000, 2.0f), out(10000, 0.0f), v_out(10000);
  std::vector<float> rs_io(5000, 3.0f);
  size_t counts[2] = {};
  qcclReduceDesc_t d{};
  d.count = rs_io.size();
  d.dtype = qcclFloat32;
  d.op = qcclSum;
  d.tag = 14;
  std::vector<std::pair<const char*, std::unique_ptr<BlockedCall>>> calls;
  // The root is the other peer: this one waits for its data.
  uint64_t root = 0;
  qcclPeerInfo_t peers[2];
  size_t n = 0;
  ASSERT_EQ(qcclGetPeers(c0, peers, 2, &n), qcclSuccess);
  for (size_t i = 0; i < n; ++i) {
    if (peers[i].peer_id != static_cast<uint64_t>(me)) root = peers[i].peer_id;
  }
  calls.emplace_back("qcclBroadcast", BlockedCall::c([&] {
    return qcclBroadcast(bc.data(), bc.size(), qcclFloat32, root, 11, c0, nullptr);
  }));
  calls.emplace_back("qcclAllGather", BlockedCall::c([&] {
    return qcclAllGather(in.data(), out.data(), in.size(), out.size(), qcclFloat32, 12, c0,
                         nullptr);
  }));
  calls.emplace_back("qcclAllGatherV", BlockedCall::c([&] {
    return qcclAllGatherV(in.data(), in.size(), v_out.data(), v_out.size(), qcclFloat32, counts,
                          2, 13, c0, nullptr);
  }));
  calls.emplace_back("qcclReduceScatter", BlockedCall::c([&] {
    return qcclReduceScatter(rs_io.data(), rs_io.data(), rs_io.size(), &d, c0, nullptr);
  }));
  calls.emplace_back("qcclBarrier", BlockedCall::c([&] { return qcclBarrier(15, c0, nullptr); }));
  for (auto& [what, call] : calls) call->expect_still_blocked(what);
  auto t0 = Clock::now();
  ASSERT_EQ(qcclCommAbort(c0), qcclSuccess);
  for (auto& [what, call] : calls) {
    call->returned_after(t0, what);
    EXPECT_EQ(call->code(), qcclAborted) << what << ": " << call->message();
  }
  EXPECT_EQ(bc, std::vector<float>(5000, 1.0f));
  EXPECT_EQ(rs_io, std::vector<float>(5000, 3.0f));
  expect_aborted_from_now_on(c0);
  EXPECT_EQ(cluster.destroy(0), qcclSuccess);
}

TEST(CommAbort, EndsAVoteAndTheOthersGoOnWithoutThePeer) {
  test::Cluster cluster(slow_failure_detection());
  ASSERT_TRUE(cluster.ok());
  ASSERT_TRUE(cluster.grow(2));
  qcclComm_t* c0 = cluster.comm(0);
  int pending = -1;
  auto vote = BlockedCall::c([&] { return qcclArePeersPending(c0, &pending); });
  vote->abort_and_measure(c0, "qcclArePeersPending");
  EXPECT_EQ(vote->code(), qcclAborted) << vote->message();
  expect_aborted_from_now_on(c0);
  // The round the aborted peer opened is void: peer 1, now alone, votes without waiting.
  qcclComm_t* c1 = cluster.comm(1);
  ASSERT_TRUE(group_shrinks_to(c1, 1, 10s));
  auto t0 = Clock::now();
  qcclResult_t r = qcclUpdateTopology(c1);
  EXPECT_EQ(r, qcclSuccess) << describe(r);
  EXPECT_LT(test::elapsed_ms(t0), 5000);
  EXPECT_EQ(cluster.destroy(0), qcclSuccess);
}

TEST(CommAbort, EndsASharedStateSyncAndAWaitForWorld) {
  test::Cluster cluster(slow_failure_detection());
  ASSERT_TRUE(cluster.ok());
  ASSERT_TRUE(cluster.grow(2));
  qcclComm_t* c0 = cluster.comm(0);
  float weights[256] = {0};
  qcclTensorInfo_t tensor{};
  tensor.name = "weights";
  tensor.data = weights;
  tensor.count = 256;
  tensor.dtype = qcclFloat32;
  qcclSharedState_t state{};
  state.num_tensors = 1;
  state.tensors = &tensor;
  // Peer 1 never syncs: the master's round waits for it (30 s straggler deadline).
  auto sync = BlockedCall::c([&] {
    return qcclSyncSharedState(c0, &state, qcclSyncEnforcePopular, nullptr);
  });
  sync->abort_and_measure(c0, "qcclSyncSharedState");
  EXPECT_EQ(sync->code(), qcclAborted) << sync->message();
  expect_aborted_from_now_on(c0);
  EXPECT_EQ(cluster.destroy(0), qcclSuccess);
  // Peer 1, alone now, waits for a world of 2 that never comes (asking every 50 ms).
  qcclComm_t* c1 = cluster.comm(1);
  ASSERT_TRUE(group_shrinks_to(c1, 1, 10s));
  auto wait = BlockedCall::c([&] { return qcclWaitForWorld(c1, 2, 0); });
  wait->abort_and_measure(c1, "qcclWaitForWorld");
  EXPECT_EQ(wait->code(), qcclAborted) << wait->message();
  EXPECT_EQ(cluster.destroy(1), qcclSuccess);
}

qcclComm_t* make_comm(const std::string& master) {
  qcclCommConfig_t cc = QCCL_COMM_CONFIG_INIT;
  cc.master_address = master.c_str();
  cc.connections_per_peer = 2;
  cc.connect_timeout_ms = 0;  // wait forever: only the abort ends it
  qcclComm_t* comm = nullptr;
  EXPECT_EQ(qcclCommCreate(&cc, &comm), qcclSuccess);
  return comm;
}

TEST(CommAbort, EndsAConnectThatIsNeverAdmitted) {
  test::Cluster cluster(slow_failure_detection());
  ASSERT_TRUE(cluster.ok());
  ASSERT_TRUE(cluster.grow(1));  // accepted, and never votes: the newcomer waits forever
  qcclComm_t* comm = make_comm(cluster.master_address());
  ASSERT_NE(comm, nullptr);
  auto connect = BlockedCall::c([&] { return qcclConnect(comm); });
  connect->abort_and_measure(comm, "qcclConnect (never admitted)");
  EXPECT_EQ(connect->code(), qcclAborted) << connect->message();
  expect_aborted_from_now_on(comm);
  EXPECT_EQ(qcclCommDestroy(comm), qcclSuccess);
}

// A socket bound to an ephemeral port of 127.0.0.1, listening (a master that accepts and
// never answers) or not (connections are refused: an unreachable master). Closed with it.
class DeadMaster {
 public:
  explicit DeadMaster(bool listening) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    socklen_t len = sizeof a;
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    EXPECT_EQ(::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len), 0);
    if (listening) {
      EXPECT_EQ(::listen(fd_, 4), 0);
    }
    address_ = "127.0.0.1:" + std::to_string(ntohs(a.sin_port));
  }
  ~DeadMaster() { ::close(fd_); }
  const std::string& address() const { return address_; }

 private:
  int fd_ = -1;
  std::string address_;
};

TEST(CommAbort, EndsAConnectToAnUnreachableOrSilentMaster) {
  for (bool listening : {false, true}) {
    DeadMaster dead(listening);
    qcclComm_t* comm = make_comm(dead.address());
    ASSERT_NE(comm, nullptr);
    auto connect = BlockedCall::c([&] { return qcclConnect(comm); });
    connect->abort_and_measure(comm, listening ? "qcclConnect (silent master)"
                                               : "qcclConnect (unreachable master)");
    EXPECT_EQ(connect->code(), qcclAborted) << connect->message();
    expect_aborted_from_now_on(comm);
    EXPECT_EQ(qcclCommDestroy(comm), qcclSuccess);
  }
}

}  // namespace
}  // namespace qccl
