// All-reduce failures over the public C API: descriptor mismatches, quantization settings
// included (all or nothing, then a retry), groups of one, tags already in flight, control calls with ops in flight, destroying a
// communicator under an async op, and qcclAllReduceMultipleWithRetry.
#include <qccl/qccl.h>

#include <gtest/gtest.h>

#include <cstring>
#include <latch>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "allreduce_reference.hpp"
#include "support/cluster.hpp"
#include "support/watchdog.hpp"

QCCL_TEST_WATCHDOG(110);

namespace qccl::test {
namespace {

bool mentions(const char* message, const char* what) {
  return std::string(message).find(what) != std::string::npos;
}

struct Mismatch {
  const char* name;
  // The descriptor of peer position `me` (the others use the same with position 1).
  qcclReduceDesc_t (*desc)(int me, uint64_t tag);
};

qcclReduceDesc_t plain(size_t count, qcclDataType_t dt, qcclRedOp_t op, uint64_t tag) {
  return {count, dt, op, tag, {qcclQuantNone, dt}};
}

const Mismatch kMismatches[] = {
    {"count",
     [](int me, uint64_t tag) { return plain(me == 0 ? 100 : 101, qcclInt32, qcclSum, tag); }},
    {"dtype",
     [](int me, uint64_t tag) {
       return plain(257, me == 0 ? qcclFloat32 : qcclInt32, qcclSum, tag);
     }},
    {"op",
     [](int me, uint64_t tag) { return plain(1001, qcclInt32, me == 0 ? qcclMax : qcclSum, tag); }},
    // Quantization: position 0 quantizes (or down-casts) where the others send raw float32.
    {"quantization",
     [](int me, uint64_t tag) {
       qcclReduceDesc_t d = plain(5000, qcclFloat32, qcclSum, tag);
       if (me == 0) d.quantization = {qcclQuantMinMax, qcclUint8};
       return d;
     }},
    {"quantized dtype",
     [](int me, uint64_t tag) {
       qcclReduceDesc_t d = plain(5000, qcclFloat32, qcclSum, tag);
       if (me == 0) d.quantization = {qcclQuantNone, qcclBFloat16};
       return d;
     }},
};

// Peer position 0 disagrees with the others. Every peer gets qcclMismatch, in-place buffers
// hold their input again and sendbufs are untouched; the same tag then succeeds with matching
// descriptors.
TEST(AllReduceErrors, MismatchFailsEverywhereThenRetrySucceeds) {
  Cluster c;
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(c.grow(3));
  std::map<size_t, int> pos;
  for (size_t i : c.peers()) pos[i] = static_cast<int>(pos.size());

  uint64_t tag = 40;
  for (const Mismatch& m : kMismatches) {
    for (bool in_place : {true, false}) {
      SCOPED_TRACE(std::string(m.name) + (in_place ? " in place" : " out of place"));
      if (HasFailure()) return;  // one broken case at a time: a hung retry costs seconds
      ++tag;
      ASSERT_TRUE(c.run([&](size_t i, qcclComm_t* comm) {
        int me = pos.at(i);
        qcclReduceDesc_t d = m.desc(me, tag);
        size_t bytes = d.count * elem_size(d.dtype);
        std::vector<uint8_t> input(bytes);
        for (size_t k = 0; k < bytes; ++k) input[k] = static_cast<uint8_t>(rnd(tag, me, k));
        std::vector<uint8_t> send = input, recv(bytes, 0);
        void* out = in_place ? send.data() : recv.data();
        qcclResult_t r = qcclAllReduce(send.data(), out, &d, comm, nullptr);
        EXPECT_EQ(r, qcclMismatch) << "peer " << i << ": " << describe(r);
        EXPECT_TRUE(mentions(qcclGetLastError(), "qcclAllReduce")) << qcclGetLastError();
        EXPECT_EQ(send, input) << "peer " << i << ": the input was not restored/kept";

        // Retry the same tag with matching descriptors.
        qcclReduceDesc_t agreed = m.desc(1, tag);
        CaseData cd = make_case(agreed.dtype, agreed.op, static_cast<int>(pos.size()), me,
                                agreed.count, mix(tag));
        send = cd.input;
        recv.assign(send.size(), 0);
        out = in_place ? send.data() : recv.data();
        qcclReduceInfo_t info{};
        r = qcclAllReduce(send.data(), out, &agreed, comm, &info);
        ASSERT_EQ(r, qcclSuccess) << "peer " << i << " (retry): " << describe(r);
        EXPECT_EQ(info.world_size, 3u);
        EXPECT_EQ(in_place ? send : recv, cd.expected) << "peer " << i << " (retry)";
      }));
    }
  }
}

TEST(AllReduceErrors, GroupOfOneIsTooFewPeers) {
  Cluster c;
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(c.grow(1));
  qcclComm_t* comm = c.comm(0);
  std::vector<float> buf = {1, 2, 3};
  qcclReduceDesc_t d = plain(3, qcclFloat32, qcclSum, 1);

  qcclResult_t r = qcclAllReduce(buf.data(), buf.data(), &d, comm, nullptr);
  EXPECT_EQ(r, qcclTooFewPeers) << describe(r);
  EXPECT_TRUE(mentions(qcclGetLastError(), "qcclAllReduce")) << qcclGetLastError();
  EXPECT_EQ(buf, (std::vector<float>{1, 2, 3}));

  // Async: refused at once, or failed when awaited.
  qcclOp_t* op = nullptr;
  r = qcclAllReduceAsync(buf.data(), buf.data(), &d, comm, &op);
  if (r == qcclSuccess) r = qcclWait(op, nullptr);
  EXPECT_EQ(r, qcclTooFewPeers) << describe(r);

  qcclReduceOp_t ops[2] = {{buf.data(), buf.data(), plain(3, qcclFloat32, qcclSum, 2)},
                           {buf.data(), buf.data(), plain(1, qcclFloat32, qcclMax, 3)}};
  r = qcclAllReduceMultipleWithRetry(ops, 2, comm, 2, nullptr);
  EXPECT_EQ(r, qcclTooFewPeers) << describe(r);
  EXPECT_EQ(buf, (std::vector<float>{1, 2, 3}));
}

// Peer A starts tag T; a second op with tag T (async or blocking) is refused while the first
// is in flight; once B joins, the first op completes correctly.
TEST(AllReduceErrors, TagAlreadyInFlightIsInvalidUsage) {
  Cluster c;
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(c.grow(2));
  const size_t a = c.peers()[0], b = c.peers()[1];
  constexpr uint64_t kTag = 77;
  std::latch a_checked(1);
  ASSERT_TRUE(c.run([&](size_t i, qcclComm_t* comm) {
    int me = i == a ? 0 : 1;
    CaseData cd = make_case(qcclInt64, qcclSum, 2, me, 513, mix(kTag));
    std::vector<uint8_t> recv(cd.expected.size());
    qcclReduceDesc_t d = plain(513, qcclInt64, qcclSum, kTag);
    if (i == b) {
      a_checked.wait();
      qcclResult_t r = qcclAllReduce(cd.input.data(), recv.data(), &d, comm, nullptr);
      ASSERT_EQ(r, qcclSuccess) << describe(r);
      EXPECT_EQ(recv, cd.expected);
      return;
    }
    qcclOp_t* op = nullptr;
    qcclResult_t r = qcclAllReduceAsync(cd.input.data(), recv.data(), &d, comm, &op);
    ASSERT_EQ(r, qcclSuccess) << describe(r);

    std::vector<uint8_t> other_send(cd.input.size(), 1), other_recv(cd.input.size(), 2);
    qcclOp_t* op2 = nullptr;
    r = qcclAllReduceAsync(other_send.data(), other_recv.data(), &d, comm, &op2);
    EXPECT_EQ(r, qcclInvalidUsage) << describe(r);
    EXPECT_TRUE(mentions(qcclGetLastError(), "qcclAllReduceAsync")) << qcclGetLastError();
    EXPECT_EQ(op2, nullptr);
    r = qcclAllReduce(other_send.data(), other_recv.data(), &d, comm, nullptr);
    EXPECT_EQ(r, qcclInvalidUsage) << describe(r);
    EXPECT_EQ(other_recv, std::vector<uint8_t>(cd.input.size(), 2)) << "refused op wrote recvbuf";
    a_checked.count_down();

    qcclReduceInfo_t info{};
    r = qcclWait(op, &info);
    ASSERT_EQ(r, qcclSuccess) << describe(r);
    EXPECT_EQ(info.world_size, 2u);
    EXPECT_EQ(recv, cd.expected);
  }));
}

// Control calls are refused while an async op is in flight, without disturbing the op or the
// next vote.
TEST(AllReduceErrors, ControlCallsWithAnOpInFlightAreInvalidUsage) {
  Cluster c;
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(c.grow(2));
  const size_t a = c.peers()[0], b = c.peers()[1];
  constexpr uint64_t kTag = 5;
  std::latch a_checked(1);
  ASSERT_TRUE(c.run([&](size_t i, qcclComm_t* comm) {
    int me = i == a ? 0 : 1;
    CaseData cd = make_case(qcclFloat32, qcclSum, 2, me, 4099, mix(kTag));
    qcclReduceDesc_t d = plain(4099, qcclFloat32, qcclSum, kTag);
    if (i == b) a_checked.wait();
    qcclOp_t* op = nullptr;
    qcclResult_t r = qcclAllReduceAsync(cd.input.data(), cd.input.data(), &d, comm, &op);
    ASSERT_EQ(r, qcclSuccess) << describe(r);
    if (i == a) {
      r = qcclUpdateTopology(comm);
      EXPECT_EQ(r, qcclInvalidUsage) << describe(r);
      EXPECT_TRUE(mentions(qcclGetLastError(), "qcclUpdateTopology")) << qcclGetLastError();
      int pending = -1;
      r = qcclArePeersPending(comm, &pending);
      EXPECT_EQ(r, qcclInvalidUsage) << describe(r);
      EXPECT_TRUE(mentions(qcclGetLastError(), "qcclArePeersPending")) << qcclGetLastError();
      a_checked.count_down();
    }
    qcclReduceInfo_t info{};
    r = qcclWait(op, &info);
    ASSERT_EQ(r, qcclSuccess) << describe(r);
    EXPECT_EQ(cd.input, cd.expected);
  }));
  // No stray ballot was left behind: a vote of both peers works.
  ASSERT_TRUE(c.update_topology_all());
  ASSERT_TRUE(c.run([&](size_t, qcclComm_t* comm) {
    int pending = -1;
    ASSERT_EQ(qcclArePeersPending(comm, &pending), qcclSuccess) << qcclGetLastError();
    EXPECT_EQ(pending, 0);
  }));
}

// qcclCommDestroy with two async ops in flight that the other peer never joins: one is being
// awaited on another thread while the communicator goes away, the other is tested and awaited
// after it is gone. Both end with qcclAborted; in-place input restored, sendbuf untouched.
TEST(AllReduceErrors, DestroyWithOpsInFlightAbortsThem) {
  Cluster c;
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(c.grow(2));
  const size_t a = c.peers()[0], b = c.peers()[1];
  qcclComm_t* comm = c.comm(a);

  std::vector<int32_t> in_place(1000), in_place_orig;
  for (int k = 0; k < 1000; ++k) in_place[k] = k * 3 - 7;
  in_place_orig = in_place;
  std::vector<double> send(333, 2.5), recv(333, 0.0);
  qcclReduceDesc_t d1 = plain(in_place.size(), qcclInt32, qcclSum, 1);
  qcclReduceDesc_t d2 = plain(send.size(), qcclFloat64, qcclMax, 2);
  qcclOp_t* op1 = nullptr;
  qcclOp_t* op2 = nullptr;
  ASSERT_EQ(qcclAllReduceAsync(in_place.data(), in_place.data(), &d1, comm, &op1), qcclSuccess)
      << qcclGetLastError();
  ASSERT_EQ(qcclAllReduceAsync(send.data(), recv.data(), &d2, comm, &op2), qcclSuccess)
      << qcclGetLastError();

  qcclResult_t r1 = qcclInternalError;
  std::string r1_error;
  Task waiter([&] {
    r1 = qcclWait(op1, nullptr);
    r1_error = qcclGetLastError();
  });
  EXPECT_EQ(c.destroy(a), qcclSuccess);
  ASSERT_TRUE(waiter.wait_until(Clock::now() + std::chrono::seconds(10)))
      << "qcclWait did not return after qcclCommDestroy";
  waiter.join();
  EXPECT_EQ(r1, qcclAborted) << qcclGetErrorString(r1) << " (" << r1_error << ")";
  EXPECT_EQ(in_place, in_place_orig) << "aborted in-place op did not restore its input";

  int done = 0;
  EXPECT_EQ(qcclTest(op2, &done), qcclSuccess) << qcclGetLastError();
  EXPECT_EQ(done, 1) << "an op of a destroyed communicator is not finished";
  qcclResult_t r2 = qcclWait(op2, nullptr);
  EXPECT_EQ(r2, qcclAborted) << describe(r2);
  EXPECT_TRUE(mentions(qcclGetLastError(), "qcclWait")) << qcclGetLastError();
  EXPECT_EQ(send, std::vector<double>(333, 2.5));

  // The other peer is alone now.
  ASSERT_TRUE(c.update_topology_all());
  int64_t ws = 0;
  ASSERT_EQ(qcclGetAttribute(c.comm(b), QCCL_ATTR_GROUP_WORLD_SIZE, &ws), qcclSuccess);
  EXPECT_EQ(ws, 1);
  float x = 1;
  qcclReduceDesc_t d = plain(1, qcclFloat32, qcclSum, 1);
  qcclResult_t r = qcclAllReduce(&x, &x, &d, c.comm(b), nullptr);
  EXPECT_EQ(r, qcclTooFewPeers) << describe(r);
}

TEST(AllReduceErrors, MultipleWithRetryEightOpsThreeInFlight) {
  Cluster c;
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(c.grow(3));
  std::map<size_t, int> pos;
  for (size_t i : c.peers()) pos[i] = static_cast<int>(pos.size());
  struct Spec {
    qcclDataType_t dt;
    qcclRedOp_t op;
    size_t count;
    bool in_place;
  };
  const Spec kSpecs[8] = {
      {qcclFloat32, qcclSum, 10007, true}, {qcclInt64, qcclMax, 1, false},
      {qcclBFloat16, qcclAvg, 999, false}, {qcclUint8, qcclProd, 2, true},
      {qcclFloat16, qcclMin, 4096, true},  {qcclInt32, qcclAvg, 65537, false},
      {qcclFloat64, qcclProd, 3, false},   {qcclUint16, qcclSum, 0, true},
  };
  ASSERT_TRUE(c.run([&](size_t i, qcclComm_t* comm) {
    int me = pos.at(i);
    std::vector<CaseData> data;
    std::vector<std::vector<uint8_t>> recv(8);
    std::vector<qcclReduceOp_t> ops(8);
    for (int k = 0; k < 8; ++k) {
      const Spec& s = kSpecs[k];
      uint64_t tag = 900 + static_cast<uint64_t>(k);
      data.push_back(make_case(s.dt, s.op, 3, me, s.count, mix(tag)));
    }
    for (int k = 0; k < 8; ++k) {
      const Spec& s = kSpecs[k];
      recv[k].assign(data[k].expected.size() + 1, 0);  // +1: never empty
      data[k].input.push_back(0);
      ops[k].sendbuf = data[k].input.data();
      ops[k].recvbuf = s.in_place ? data[k].input.data() : recv[k].data();
      ops[k].desc = plain(s.count, s.dt, s.op, 900 + static_cast<uint64_t>(k));
    }
    qcclReduceInfo_t info{};
    qcclResult_t r = qcclAllReduceMultipleWithRetry(ops.data(), ops.size(), comm, 3, &info);
    ASSERT_EQ(r, qcclSuccess) << "peer " << i << ": " << describe(r);
    EXPECT_EQ(info.world_size, 3u);
    for (int k = 0; k < 8; ++k) {
      const auto& out = kSpecs[k].in_place ? data[k].input : recv[k];
      std::vector<uint8_t> got(out.begin(), out.begin() + data[k].expected.size());
      EXPECT_EQ(got, data[k].expected)
          << "peer " << i << " op " << k << " (" << dtype_name(kSpecs[k].dt) << " "
          << op_name(kSpecs[k].op) << ")";
    }
  }));
}

}  // namespace
}  // namespace qccl::test
