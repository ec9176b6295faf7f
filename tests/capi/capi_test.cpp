// The C API's argument and state checking: exact result codes, and a qcclGetLastError()
// message that names the function, for NULL pointers, bad struct sizes, malformed addresses,
// bad enums, foreign handles, calls in the wrong state, ports in use and overlapping buffers.
// Plus qcclGetErrorString for every code.
#include <qccl/qccl.h>

#include <gtest/gtest.h>

#include <cctype>
#include <cstdlib>
#include <cstring>
#include <latch>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "support/cluster.hpp"
#include "support/watchdog.hpp"

QCCL_TEST_WATCHDOG(50);

namespace {

// True if `message` contains `fn` as a whole identifier (so "qcclAllReduceAsync" does not
// count as naming qcclAllReduce).
bool names(const std::string& message, const std::string& fn) {
  for (size_t at = message.find(fn); at != std::string::npos; at = message.find(fn, at + 1)) {
    size_t end = at + fn.size();
    bool left_ok = at == 0 || !(std::isalnum(static_cast<unsigned char>(message[at - 1])) ||
                                message[at - 1] == '_');
    bool right_ok =
        end == message.size() ||
        !(std::isalnum(static_cast<unsigned char>(message[end])) || message[end] == '_');
    if (left_ok && right_ok) return true;
  }
  return false;
}

// The call returned `expected` and left a message naming `fn`.
#define EXPECT_RESULT(call, expected, fn)                                                        \
  do {                                                                                           \
    qcclResult_t r_ = (call);                                                                    \
    std::string msg_ = qcclGetLastError();                                                       \
    EXPECT_EQ(r_, expected) << #call << " -> " << qcclGetErrorString(r_) << " (" << msg_ << ")"; \
    EXPECT_TRUE(names(msg_, fn)) << #call << ": message does not name " << fn << ": '" << msg_   \
                                 << "'";                                                         \
  } while (0)

qcclReduceDesc_t desc(size_t count, qcclDataType_t dt = qcclFloat32, qcclRedOp_t op = qcclSum,
                      uint64_t tag = 1) {
  return {count, dt, op, tag, {qcclQuantNone, dt}};
}

// A started master on an ephemeral loopback port.
struct Master {
  qcclMaster_t* m = nullptr;
  uint16_t port = 0;
  Master() {
    qcclMasterConfig_t mc = QCCL_MASTER_CONFIG_INIT;
    mc.listen_address = "127.0.0.1:0";
    mc.heartbeat_interval_ms = 100;
    mc.peer_timeout_ms = 3000;
    mc.vote_timeout_ms = 3000;
    EXPECT_EQ(qcclMasterCreate(&mc, &m), qcclSuccess) << qcclGetLastError();
    if (m) {
      EXPECT_EQ(qcclMasterStart(m), qcclSuccess) << qcclGetLastError();
    }
    if (m) {
      EXPECT_EQ(qcclMasterGetPort(m, &port), qcclSuccess) << qcclGetLastError();
    }
  }
  ~Master() {
    if (m) {
      EXPECT_EQ(qcclMasterDestroy(m), qcclSuccess) << qcclGetLastError();
    }
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(port); }
};

// A communicator, optionally connected (as the first, hence at once admitted, peer).
struct Comm {
  qcclComm_t* c = nullptr;
  explicit Comm(const std::string& master, bool connect) {
    qcclCommConfig_t cc = QCCL_COMM_CONFIG_INIT;
    cc.master_address = master.c_str();
    cc.connect_timeout_ms = 10000;
    EXPECT_EQ(qcclCommCreate(&cc, &c), qcclSuccess) << qcclGetLastError();
    if (c && connect) {
      EXPECT_EQ(qcclConnect(c), qcclSuccess) << qcclGetLastError();
    }
  }
  ~Comm() {
    if (c) {
      EXPECT_EQ(qcclCommDestroy(c), qcclSuccess) << qcclGetLastError();
    }
  }
};

// ---- error strings ------------------------------------------------------------------------

TEST(CApi, ErrorStringForEveryCode) {
  std::set<std::string> seen;
  for (int r = 0; r < qcclNumResults; ++r) {
    const char* s = qcclGetErrorString(static_cast<qcclResult_t>(r));
    ASSERT_NE(s, nullptr) << r;
    EXPECT_GT(std::strlen(s), 0u) << r;
    EXPECT_NE(std::string(s), "unknown result") << r;
    EXPECT_TRUE(seen.insert(s).second) << "two codes share the text '" << s << "'";
  }
  for (int r : {static_cast<int>(qcclNumResults), qcclNumResults + 1, 999, -1}) {
    const char* s = qcclGetErrorString(static_cast<qcclResult_t>(r));
    ASSERT_NE(s, nullptr) << r;
    EXPECT_EQ(std::string(s), "unknown result") << r;
  }
}

TEST(CApi, LastErrorIsEmptyOnAFreshThread) {
  std::string seen = "unset";
  std::thread t([&] { seen = qcclGetLastError(); });
  t.join();
  EXPECT_EQ(seen, "");
}

TEST(CApi, LastErrorIsPerThread) {
  EXPECT_EQ(qcclGetVersion(nullptr), qcclInvalidArgument);
  std::string mine = qcclGetLastError();
  std::thread t([] { EXPECT_EQ(qcclMasterStart(nullptr), qcclInvalidArgument); });
  t.join();
  EXPECT_EQ(std::string(qcclGetLastError()), mine);
}

// ---- NULL pointers ------------------------------------------------------------------------

TEST(CApi, NullPointersWithoutHandles) {
  EXPECT_RESULT(qcclGetVersion(nullptr), qcclInvalidArgument, "qcclGetVersion");

  qcclMasterConfig_t mc = QCCL_MASTER_CONFIG_INIT;
  qcclMaster_t* m = nullptr;
  EXPECT_RESULT(qcclMasterCreate(nullptr, &m), qcclInvalidArgument, "qcclMasterCreate");
  EXPECT_RESULT(qcclMasterCreate(&mc, nullptr), qcclInvalidArgument, "qcclMasterCreate");
  mc.listen_address = nullptr;
  EXPECT_RESULT(qcclMasterCreate(&mc, &m), qcclInvalidArgument, "qcclMasterCreate");
  EXPECT_EQ(m, nullptr);
  uint16_t port = 0;
  EXPECT_RESULT(qcclMasterStart(nullptr), qcclInvalidArgument, "qcclMasterStart");
  EXPECT_RESULT(qcclMasterGetPort(nullptr, &port), qcclInvalidArgument, "qcclMasterGetPort");
  EXPECT_RESULT(qcclMasterStop(nullptr), qcclInvalidArgument, "qcclMasterStop");
  EXPECT_RESULT(qcclMasterWait(nullptr), qcclInvalidArgument, "qcclMasterWait");
  EXPECT_RESULT(qcclMasterDestroy(nullptr), qcclInvalidArgument, "qcclMasterDestroy");

  qcclCommConfig_t cc = QCCL_COMM_CONFIG_INIT;
  qcclComm_t* c = nullptr;
  EXPECT_RESULT(qcclCommCreate(nullptr, &c), qcclInvalidArgument, "qcclCommCreate");
  EXPECT_RESULT(qcclCommCreate(&cc, nullptr), qcclInvalidArgument, "qcclCommCreate");
  cc.master_address = nullptr;
  EXPECT_RESULT(qcclCommCreate(&cc, &c), qcclInvalidArgument, "qcclCommCreate");
  EXPECT_EQ(c, nullptr);

  int flag = 0;
  int64_t value = 0;
  float buf[4] = {};
  qcclReduceDesc_t d = desc(4);
  qcclOp_t* op = nullptr;
  qcclReduceOp_t rop = {buf, buf, d};
  EXPECT_RESULT(qcclConnect(nullptr), qcclInvalidArgument, "qcclConnect");
  EXPECT_RESULT(qcclCommDestroy(nullptr), qcclInvalidArgument, "qcclCommDestroy");
  EXPECT_RESULT(qcclUpdateTopology(nullptr), qcclInvalidArgument, "qcclUpdateTopology");
  EXPECT_RESULT(qcclArePeersPending(nullptr, &flag), qcclInvalidArgument, "qcclArePeersPending");
  EXPECT_RESULT(qcclGetAttribute(nullptr, QCCL_ATTR_EPOCH, &value), qcclInvalidArgument,
                "qcclGetAttribute");
  qcclStats_t stats{};
  EXPECT_RESULT(qcclGetStats(nullptr, &stats), qcclInvalidArgument, "qcclGetStats");
  EXPECT_RESULT(qcclAllReduce(buf, buf, &d, nullptr, nullptr), qcclInvalidArgument,
                "qcclAllReduce");
  EXPECT_RESULT(qcclAllReduceAsync(buf, buf, &d, nullptr, &op), qcclInvalidArgument,
                "qcclAllReduceAsync");
  EXPECT_EQ(op, nullptr);
  EXPECT_RESULT(qcclTest(nullptr, &flag), qcclInvalidArgument, "qcclTest");
  EXPECT_RESULT(qcclWait(nullptr, nullptr), qcclInvalidArgument, "qcclWait");
  EXPECT_RESULT(qcclAllReduceMultipleWithRetry(&rop, 1, nullptr, 1, nullptr), qcclInvalidArgument,
                "qcclAllReduceMultipleWithRetry");
}

TEST(CApi, NullPointersWithValidHandles) {
  Master master;
  ASSERT_NE(master.m, nullptr);
  EXPECT_RESULT(qcclMasterGetPort(master.m, nullptr), qcclInvalidArgument, "qcclMasterGetPort");

  Comm comm(master.address(), /*connect=*/true);
  ASSERT_NE(comm.c, nullptr);
  EXPECT_RESULT(qcclArePeersPending(comm.c, nullptr), qcclInvalidArgument, "qcclArePeersPending");
  EXPECT_RESULT(qcclGetAttribute(comm.c, QCCL_ATTR_EPOCH, nullptr), qcclInvalidArgument,
                "qcclGetAttribute");
  EXPECT_RESULT(qcclGetStats(comm.c, nullptr), qcclInvalidArgument, "qcclGetStats");
  // Any state: before qcclConnect nothing has run yet.
  qcclStats_t fresh;
  std::memset(&fresh, 0xff, sizeof fresh);
  ASSERT_EQ(qcclGetStats(comm.c, &fresh), qcclSuccess);
  EXPECT_EQ(fresh.ops, 0u);
  EXPECT_EQ(fresh.data_ns, 0u);
  EXPECT_EQ(fresh.tx_bytes, 0u);

  float buf[4] = {1, 2, 3, 4};
  qcclReduceDesc_t d = desc(4);
  qcclOp_t* op = nullptr;
  EXPECT_RESULT(qcclAllReduce(buf, buf, nullptr, comm.c, nullptr), qcclInvalidArgument,
                "qcclAllReduce");
  EXPECT_RESULT(qcclAllReduce(nullptr, buf, &d, comm.c, nullptr), qcclInvalidArgument,
                "qcclAllReduce");
  EXPECT_RESULT(qcclAllReduce(buf, nullptr, &d, comm.c, nullptr), qcclInvalidArgument,
                "qcclAllReduce");
  EXPECT_RESULT(qcclAllReduceAsync(buf, buf, nullptr, comm.c, &op), qcclInvalidArgument,
                "qcclAllReduceAsync");
  EXPECT_RESULT(qcclAllReduceAsync(nullptr, buf, &d, comm.c, &op), qcclInvalidArgument,
                "qcclAllReduceAsync");
  EXPECT_RESULT(qcclAllReduceAsync(buf, nullptr, &d, comm.c, &op), qcclInvalidArgument,
                "qcclAllReduceAsync");
  EXPECT_RESULT(qcclAllReduceAsync(buf, buf, &d, comm.c, nullptr), qcclInvalidArgument,
                "qcclAllReduceAsync");
  EXPECT_EQ(op, nullptr);
  EXPECT_RESULT(qcclAllReduceMultipleWithRetry(nullptr, 1, comm.c, 1, nullptr), qcclInvalidArgument,
                "qcclAllReduceMultipleWithRetry");
  qcclReduceOp_t rop = {nullptr, buf, d};
  EXPECT_RESULT(qcclAllReduceMultipleWithRetry(&rop, 1, comm.c, 1, nullptr), qcclInvalidArgument,
                "qcclAllReduceMultipleWithRetry");
  EXPECT_EQ(buf[0], 1.0f);
}

// qcclTest needs a live operation handle: two peers, the second joins once checked.
TEST(CApi, NullDoneOutWithALiveOperation) {
  qccl::test::Cluster c;
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(c.grow(2));
  const size_t a = c.peers()[0];
  std::latch checked(1);
  ASSERT_TRUE(c.run([&](size_t i, qcclComm_t* comm) {
    float x = 1.0f;
    qcclReduceDesc_t d = desc(1, qcclFloat32, qcclSum, 9);
    if (i != a) checked.wait();
    qcclOp_t* op = nullptr;
    ASSERT_EQ(qcclAllReduceAsync(&x, &x, &d, comm, &op), qcclSuccess) << qcclGetLastError();
    if (i == a) {
      EXPECT_RESULT(qcclTest(op, nullptr), qcclInvalidArgument, "qcclTest");
      checked.count_down();
    }
    EXPECT_EQ(qcclWait(op, nullptr), qcclSuccess) << qcclGetLastError();
    EXPECT_EQ(x, 2.0f);
  }));
}

// ---- foreign handles ----------------------------------------------------------------------

TEST(CApi, ForeignHandlesAreRefused) {
  alignas(64) unsigned char zeros[512] = {};
  auto* m = reinterpret_cast<qcclMaster_t*>(zeros);
  auto* c = reinterpret_cast<qcclComm_t*>(zeros);
  auto* op = reinterpret_cast<qcclOp_t*>(zeros);
  uint16_t port = 0;
  int flag = 0;
  int64_t value = 0;
  float buf[2] = {};
  qcclReduceDesc_t d = desc(2);
  EXPECT_RESULT(qcclMasterStart(m), qcclInvalidArgument, "qcclMasterStart");
  EXPECT_RESULT(qcclMasterGetPort(m, &port), qcclInvalidArgument, "qcclMasterGetPort");
  EXPECT_RESULT(qcclMasterDestroy(m), qcclInvalidArgument, "qcclMasterDestroy");
  EXPECT_RESULT(qcclConnect(c), qcclInvalidArgument, "qcclConnect");
  EXPECT_RESULT(qcclGetAttribute(c, QCCL_ATTR_EPOCH, &value), qcclInvalidArgument,
                "qcclGetAttribute");
  EXPECT_RESULT(qcclAllReduce(buf, buf, &d, c, nullptr), qcclInvalidArgument, "qcclAllReduce");
  EXPECT_RESULT(qcclCommDestroy(c), qcclInvalidArgument, "qcclCommDestroy");
  EXPECT_RESULT(qcclTest(op, &flag), qcclInvalidArgument, "qcclTest");
  EXPECT_RESULT(qcclWait(op, nullptr), qcclInvalidArgument, "qcclWait");
  for (unsigned char z : zeros) ASSERT_EQ(z, 0) << "a refused call wrote to the handle";
}

// ---- struct sizes -------------------------------------------------------------------------

TEST(CApi, BadStructSize) {
  qcclMaster_t* m = nullptr;
  for (size_t size : {size_t{0}, size_t{1}, sizeof(qcclMasterConfig_t) + 8, size_t{1} << 20}) {
    qcclMasterConfig_t mc = QCCL_MASTER_CONFIG_INIT;
    mc.listen_address = "127.0.0.1:0";
    mc.struct_size = size;
    EXPECT_RESULT(qcclMasterCreate(&mc, &m), qcclInvalidArgument, "qcclMasterCreate");
    EXPECT_EQ(m, nullptr) << size;
  }
  qcclComm_t* c = nullptr;
  // The first published layout ended with auth_token: anything shorter is refused.
  const size_t first_comm_size = offsetof(qcclCommConfig_t, auth_token) + sizeof(const char*);
  for (size_t size :
       {size_t{0}, size_t{1}, first_comm_size - 1, sizeof(qcclCommConfig_t) + 8}) {
    qcclCommConfig_t cc = QCCL_COMM_CONFIG_INIT;
    cc.struct_size = size;
    EXPECT_RESULT(qcclCommCreate(&cc, &c), qcclInvalidArgument, "qcclCommCreate");
    EXPECT_EQ(c, nullptr) << size;
  }
}

TEST(CApi, MasterConfigOfAnEarlierLayoutAndProbeBounds) {
  qcclMaster_t* m = nullptr;
  // The layout before the probe fields (it ended with vote_timeout_ms) is still accepted, and
  // whatever lies past it is not read.
  qcclMasterConfig_t mc = QCCL_MASTER_CONFIG_INIT;
  mc.listen_address = "127.0.0.1:0";
  mc.struct_size = offsetof(qcclMasterConfig_t, vote_timeout_ms) + sizeof(uint32_t);
  mc.probe_ms = 999999;  // out of bounds, but not part of that layout
  ASSERT_EQ(qcclMasterCreate(&mc, &m), qcclSuccess) << qcclGetLastError();
  EXPECT_EQ(qcclMasterDestroy(m), qcclSuccess);
  m = nullptr;
  mc = QCCL_MASTER_CONFIG_INIT;
  mc.listen_address = "127.0.0.1:0";
  mc.probe_ms = 60001;
  EXPECT_RESULT(qcclMasterCreate(&mc, &m), qcclInvalidArgument, "probe_ms");
  EXPECT_EQ(m, nullptr);
  mc.probe_ms = 60000;
  mc.probe_max_age_ms = 1;
  ASSERT_EQ(qcclMasterCreate(&mc, &m), qcclSuccess) << qcclGetLastError();
  EXPECT_EQ(qcclMasterDestroy(m), qcclSuccess);
}

// ---- addresses ----------------------------------------------------------------------------

TEST(CApi, MalformedAddresses) {
  for (const char* addr : {"nohost", "1.2.3.4:99999", "[::1", "", ":", "127.0.0.1:", ":80",
                           "127.0.0.1:80x", "::1:80", "[::1]80", "[]:80", "127.0.0.1:-1"}) {
    SCOPED_TRACE(std::string("address '") + addr + "'");
    qcclMasterConfig_t mc = QCCL_MASTER_CONFIG_INIT;
    mc.listen_address = addr;
    qcclMaster_t* m = nullptr;
    EXPECT_RESULT(qcclMasterCreate(&mc, &m), qcclInvalidArgument, "qcclMasterCreate");
    EXPECT_EQ(m, nullptr);

    qcclCommConfig_t cc = QCCL_COMM_CONFIG_INIT;
    cc.master_address = addr;
    qcclComm_t* c = nullptr;
    EXPECT_RESULT(qcclCommCreate(&cc, &c), qcclInvalidArgument, "qcclCommCreate");
    EXPECT_EQ(c, nullptr);
  }
}

TEST(CApi, WellFormedAddressesAreAccepted) {
  for (const char* addr : {"127.0.0.1:0", "0.0.0.0:0", "[::1]:0", "localhost:1"}) {
    SCOPED_TRACE(addr);
    qcclCommConfig_t cc = QCCL_COMM_CONFIG_INIT;
    cc.master_address = addr;
    qcclComm_t* c = nullptr;
    ASSERT_EQ(qcclCommCreate(&cc, &c), qcclSuccess) << qcclGetLastError();
    EXPECT_EQ(qcclCommDestroy(c), qcclSuccess) << qcclGetLastError();
  }
}

TEST(CApi, MasterListenAddressThatCannotBeBound) {
  // Well-formed but not an address of this host (or not an IP address at all).
  qcclMasterConfig_t mc = QCCL_MASTER_CONFIG_INIT;
  mc.listen_address = "nohost:0";
  qcclMaster_t* m = nullptr;
  qcclResult_t r = qcclMasterCreate(&mc, &m);
  if (r == qcclSuccess) {
    EXPECT_RESULT(qcclMasterStart(m), qcclInvalidArgument, "qcclMasterStart");
    EXPECT_EQ(qcclMasterDestroy(m), qcclSuccess);
  } else {
    EXPECT_EQ(r, qcclInvalidArgument);
  }
}

TEST(CApi, MasterOnAPortInUse) {
  Master first;
  ASSERT_NE(first.m, nullptr);
  std::string addr = first.address();
  qcclMasterConfig_t mc = QCCL_MASTER_CONFIG_INIT;
  mc.listen_address = addr.c_str();
  qcclMaster_t* m = nullptr;
  ASSERT_EQ(qcclMasterCreate(&mc, &m), qcclSuccess) << qcclGetLastError();
  EXPECT_RESULT(qcclMasterStart(m), qcclInvalidArgument, "qcclMasterStart");
  EXPECT_NE(std::string(qcclGetLastError()).find("in use"), std::string::npos)
      << qcclGetLastError();
  uint16_t port = 0;
  EXPECT_RESULT(qcclMasterGetPort(m, &port), qcclInvalidUsage, "qcclMasterGetPort");
  EXPECT_EQ(qcclMasterDestroy(m), qcclSuccess) << qcclGetLastError();
}

// ---- master state -------------------------------------------------------------------------

TEST(CApi, MasterStates) {
  qcclMasterConfig_t mc = QCCL_MASTER_CONFIG_INIT;
  mc.listen_address = "127.0.0.1:0";
  qcclMaster_t* m = nullptr;
  ASSERT_EQ(qcclMasterCreate(&mc, &m), qcclSuccess) << qcclGetLastError();
  uint16_t port = 12345;
  EXPECT_RESULT(qcclMasterGetPort(m, &port), qcclInvalidUsage, "qcclMasterGetPort");
  EXPECT_EQ(port, 12345) << "a refused call wrote its output";
  ASSERT_EQ(qcclMasterStart(m), qcclSuccess) << qcclGetLastError();
  EXPECT_RESULT(qcclMasterStart(m), qcclInvalidUsage, "qcclMasterStart");
  ASSERT_EQ(qcclMasterGetPort(m, &port), qcclSuccess) << qcclGetLastError();
  EXPECT_NE(port, 0);
  EXPECT_EQ(qcclMasterStop(m), qcclSuccess) << qcclGetLastError();
  EXPECT_EQ(qcclMasterStop(m), qcclSuccess) << "stop twice";
  EXPECT_EQ(qcclMasterWait(m), qcclSuccess) << qcclGetLastError();
  EXPECT_EQ(qcclMasterDestroy(m), qcclSuccess) << qcclGetLastError();

  // Destroying a master that was never started.
  ASSERT_EQ(qcclMasterCreate(&mc, &m), qcclSuccess) << qcclGetLastError();
  EXPECT_EQ(qcclMasterDestroy(m), qcclSuccess) << qcclGetLastError();
}

// ---- communicator state -------------------------------------------------------------------

TEST(CApi, CallsBeforeConnectAreInvalidUsage) {
  Master master;
  ASSERT_NE(master.m, nullptr);
  Comm comm(master.address(), /*connect=*/false);
  ASSERT_NE(comm.c, nullptr);
  int64_t value = 42;
  int flag = 7;
  float buf[3] = {1, 2, 3};
  qcclReduceDesc_t d = desc(3);
  qcclOp_t* op = nullptr;
  for (int a = QCCL_ATTR_GLOBAL_WORLD_SIZE; a <= QCCL_ATTR_EPOCH; ++a) {
    EXPECT_RESULT(qcclGetAttribute(comm.c, static_cast<qcclAttribute_t>(a), &value),
                  qcclInvalidUsage, "qcclGetAttribute");
  }
  EXPECT_EQ(value, 42);
  EXPECT_RESULT(qcclUpdateTopology(comm.c), qcclInvalidUsage, "qcclUpdateTopology");
  EXPECT_RESULT(qcclArePeersPending(comm.c, &flag), qcclInvalidUsage, "qcclArePeersPending");
  EXPECT_EQ(flag, 7);
  EXPECT_RESULT(qcclAllReduce(buf, buf, &d, comm.c, nullptr), qcclInvalidUsage, "qcclAllReduce");
  EXPECT_RESULT(qcclAllReduceAsync(buf, buf, &d, comm.c, &op), qcclInvalidUsage,
                "qcclAllReduceAsync");
  EXPECT_EQ(op, nullptr);
  qcclReduceOp_t rop = {buf, buf, d};
  EXPECT_RESULT(qcclAllReduceMultipleWithRetry(&rop, 1, comm.c, 1, nullptr), qcclInvalidUsage,
                "qcclAllReduceMultipleWithRetry");
  EXPECT_EQ(buf[0], 1.0f);
  EXPECT_EQ(buf[2], 3.0f);
}

TEST(CApi, ConnectTwiceIsInvalidUsage) {
  Master master;
  ASSERT_NE(master.m, nullptr);
  Comm comm(master.address(), /*connect=*/true);
  ASSERT_NE(comm.c, nullptr);
  EXPECT_RESULT(qcclConnect(comm.c), qcclInvalidUsage, "qcclConnect");
  int64_t ws = 0;
  EXPECT_EQ(qcclGetAttribute(comm.c, QCCL_ATTR_GLOBAL_WORLD_SIZE, &ws), qcclSuccess);
  EXPECT_EQ(ws, 1) << "the refused second connect changed the membership";
}

// qcclCommAbort and the op timeout (issue 19); the blocked calls are in abort_test.
TEST(CApi, AbortAndOpTimeoutArguments) {
  uint32_t ms = 7;
  EXPECT_RESULT(qcclCommAbort(nullptr), qcclInvalidArgument, "qcclCommAbort");
  EXPECT_RESULT(qcclCommSetOpTimeout(nullptr, 5), qcclInvalidArgument, "qcclCommSetOpTimeout");
  EXPECT_RESULT(qcclCommGetOpTimeout(nullptr, &ms), qcclInvalidArgument, "qcclCommGetOpTimeout");
  Master master;
  ASSERT_NE(master.m, nullptr);
  Comm comm(master.address(), /*connect=*/false);
  ASSERT_NE(comm.c, nullptr);
  EXPECT_RESULT(qcclCommGetOpTimeout(comm.c, nullptr), qcclInvalidArgument,
                "qcclCommGetOpTimeout");
  EXPECT_EQ(qcclCommGetOpTimeout(comm.c, &ms), qcclSuccess);
  EXPECT_EQ(ms, 0u);  // QCCL_COMM_CONFIG_INIT: none
  EXPECT_EQ(qcclCommSetOpTimeout(comm.c, 1500), qcclSuccess);
  EXPECT_EQ(qcclCommGetOpTimeout(comm.c, &ms), qcclSuccess);
  EXPECT_EQ(ms, 1500u);
  // Aborted before connecting: the connect fails at once, as every later call.
  EXPECT_EQ(qcclCommAbort(comm.c), qcclSuccess);
  EXPECT_EQ(qcclCommAbort(comm.c), qcclSuccess);
  EXPECT_RESULT(qcclConnect(comm.c), qcclAborted, "the communicator was aborted");
  EXPECT_RESULT(qcclCommSetOpTimeout(comm.c, 5), qcclAborted, "qcclCommSetOpTimeout");
}

TEST(CApi, OpTimeoutFromTheEnvironmentUnlessSetInTheConfig) {
  Master master;
  ASSERT_NE(master.m, nullptr);
  std::string address = master.address();
  qcclCommConfig_t cc = QCCL_COMM_CONFIG_INIT;
  cc.master_address = address.c_str();
  auto op_timeout_of = [&](const qcclCommConfig_t& config) -> int64_t {
    qcclComm_t* c = nullptr;
    qcclResult_t r = qcclCommCreate(&config, &c);
    if (r != qcclSuccess) return -static_cast<int64_t>(r);
    uint32_t ms = 0;
    EXPECT_EQ(qcclCommGetOpTimeout(c, &ms), qcclSuccess);
    EXPECT_EQ(qcclCommDestroy(c), qcclSuccess);
    return ms;
  };
  ASSERT_EQ(setenv("QCCL_OP_TIMEOUT_MS", "2500", 1), 0);
  EXPECT_EQ(op_timeout_of(cc), 2500);
  cc.op_timeout_ms = 300;  // an explicit setting wins
  EXPECT_EQ(op_timeout_of(cc), 300);
  cc.op_timeout_ms = 0;
  ASSERT_EQ(setenv("QCCL_OP_TIMEOUT_MS", "12s", 1), 0);
  EXPECT_EQ(op_timeout_of(cc), -static_cast<int64_t>(qcclInvalidArgument));
  EXPECT_NE(std::string(qcclGetLastError()).find("QCCL_OP_TIMEOUT_MS"), std::string::npos)
      << qcclGetLastError();
  ASSERT_EQ(unsetenv("QCCL_OP_TIMEOUT_MS"), 0);
  EXPECT_EQ(op_timeout_of(cc), 0);
}

TEST(CApi, UnknownAttribute) {
  Master master;
  ASSERT_NE(master.m, nullptr);
  for (bool connect : {false, true}) {
    SCOPED_TRACE(connect ? "connected" : "not connected");
    Comm comm(master.address(), connect);
    ASSERT_NE(comm.c, nullptr);
    for (int a : {0, -1, static_cast<int>(QCCL_ATTR_PEER_ID) + 1, 99}) {
      int64_t value = 42;
      EXPECT_RESULT(qcclGetAttribute(comm.c, static_cast<qcclAttribute_t>(a), &value),
                    qcclInvalidArgument, "qcclGetAttribute");
      EXPECT_EQ(value, 42);
    }
  }
}

// ---- descriptors and buffers (on a connected lone peer, so that only the argument is wrong)

class CApiDesc : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_NE(master_.m, nullptr);
    comm_ = std::make_unique<Comm>(master_.address(), /*connect=*/true);
    ASSERT_NE(comm_->c, nullptr);
  }
  // Both entry points, plus the batch one, refuse `d` as an invalid argument.
  void expect_refused(const qcclReduceDesc_t& d, const std::string& why) {
    SCOPED_TRACE(why);
    std::vector<double> buf(16, 1.0);
    qcclOp_t* op = nullptr;
    EXPECT_RESULT(qcclAllReduce(buf.data(), buf.data(), &d, comm_->c, nullptr), qcclInvalidArgument,
                  "qcclAllReduce");
    EXPECT_RESULT(qcclAllReduceAsync(buf.data(), buf.data(), &d, comm_->c, &op),
                  qcclInvalidArgument, "qcclAllReduceAsync");
    EXPECT_EQ(op, nullptr);
    qcclReduceOp_t rop = {buf.data(), buf.data(), d};
    EXPECT_RESULT(qcclAllReduceMultipleWithRetry(&rop, 1, comm_->c, 1, nullptr),
                  qcclInvalidArgument, "qcclAllReduceMultipleWithRetry");
    EXPECT_EQ(buf, std::vector<double>(16, 1.0));
  }
  Master master_;
  std::unique_ptr<Comm> comm_;
};

TEST_F(CApiDesc, BadEnums) {
  qcclReduceDesc_t d = desc(4);
  d.dtype = static_cast<qcclDataType_t>(99);
  expect_refused(d, "dtype 99");
  d = desc(4);
  d.dtype = qcclNumDataTypes;
  expect_refused(d, "dtype qcclNumDataTypes");
  d = desc(4);
  d.op = static_cast<qcclRedOp_t>(99);
  expect_refused(d, "op 99");
  d = desc(4);
  d.op = qcclNumRedOps;
  expect_refused(d, "op qcclNumRedOps");
  d = desc(4);
  d.quantization.algorithm = static_cast<qcclQuantAlgorithm_t>(99);
  expect_refused(d, "quantization algorithm 99");
  d = desc(4);
  d.quantization = {qcclQuantMinMax, static_cast<qcclDataType_t>(99)};
  expect_refused(d, "quantized dtype 99");
}

// Unsupported quantization settings are refused with a message that says what is supported.
TEST_F(CApiDesc, UnsupportedQuantizationIsRefused) {
  struct Bad {
    qcclDataType_t dtype;
    qcclRedOp_t op;
    qcclQuantization_t q;
    const char* says;
  };
  for (const Bad& b : std::vector<Bad>{
           {qcclInt32, qcclSum, {qcclQuantMinMax, qcclUint8}, "int32"},
           {qcclFloat32, qcclSum, {qcclQuantMinMax, qcclFloat16}, "float16"},
           {qcclFloat32, qcclSum, {qcclQuantZeroPointScale, qcclInt32}, "int32"},
           {qcclFloat32, qcclProd, {qcclQuantMinMax, qcclUint8}, "Prod"},
           {qcclFloat32, qcclSum, {qcclQuantNone, qcclFloat64}, "float64"},
           {qcclFloat16, qcclSum, {qcclQuantNone, qcclBFloat16}, "bfloat16"},
       }) {
    qcclReduceDesc_t d = desc(4);
    d.dtype = b.dtype;
    d.op = b.op;
    d.quantization = b.q;
    std::vector<uint8_t> buf(64, 7);
    EXPECT_RESULT(qcclAllReduce(buf.data(), buf.data(), &d, comm_->c, nullptr),
                  qcclInvalidArgument, b.says);
    EXPECT_EQ(buf, std::vector<uint8_t>(64, 7));
  }
}

TEST_F(CApiDesc, PartiallyOverlappingBuffers) {
  std::vector<float> buf(64, 1.0f);
  qcclReduceDesc_t d = desc(32);
  qcclOp_t* op = nullptr;
  for (size_t shift : {size_t{1}, size_t{16}, size_t{31}}) {
    SCOPED_TRACE("shift " + std::to_string(shift));
    // recvbuf after sendbuf, and before it.
    EXPECT_RESULT(qcclAllReduce(buf.data(), buf.data() + shift, &d, comm_->c, nullptr),
                  qcclInvalidArgument, "qcclAllReduce");
    EXPECT_RESULT(qcclAllReduce(buf.data() + shift, buf.data(), &d, comm_->c, nullptr),
                  qcclInvalidArgument, "qcclAllReduce");
    EXPECT_RESULT(qcclAllReduceAsync(buf.data(), buf.data() + shift, &d, comm_->c, &op),
                  qcclInvalidArgument, "qcclAllReduceAsync");
    EXPECT_EQ(op, nullptr);
    qcclReduceOp_t rop = {buf.data() + shift, buf.data(), d};
    EXPECT_RESULT(qcclAllReduceMultipleWithRetry(&rop, 1, comm_->c, 1, nullptr),
                  qcclInvalidArgument, "qcclAllReduceMultipleWithRetry");
  }
  // Misaligned by one byte: still a partial overlap.
  auto* bytes = reinterpret_cast<unsigned char*>(buf.data());
  EXPECT_RESULT(qcclAllReduce(bytes, bytes + 1, &d, comm_->c, nullptr), qcclInvalidArgument,
                "qcclAllReduce");
  EXPECT_EQ(buf, std::vector<float>(64, 1.0f));
  // Adjacent (no overlap) and identical (in place) are fine: the lone peer gets TooFewPeers.
  EXPECT_RESULT(qcclAllReduce(buf.data(), buf.data() + 32, &d, comm_->c, nullptr), qcclTooFewPeers,
                "qcclAllReduce");
  EXPECT_RESULT(qcclAllReduce(buf.data(), buf.data(), &d, comm_->c, nullptr), qcclTooFewPeers,
                "qcclAllReduce");
}

TEST_F(CApiDesc, MultipleWithRetryArguments) {
  float a[2] = {1, 2}, b[2] = {3, 4};
  qcclReduceOp_t ops[2] = {{a, a, desc(2, qcclFloat32, qcclSum, 5)},
                           {b, b, desc(2, qcclFloat32, qcclSum, 5)}};
  EXPECT_RESULT(qcclAllReduceMultipleWithRetry(ops, 2, comm_->c, 2, nullptr), qcclInvalidArgument,
                "qcclAllReduceMultipleWithRetry");  // duplicate tags
  ops[1].desc.tag = 6;
  for (int max_in_flight : {0, -1}) {
    EXPECT_RESULT(qcclAllReduceMultipleWithRetry(ops, 2, comm_->c, max_in_flight, nullptr),
                  qcclInvalidArgument, "qcclAllReduceMultipleWithRetry");
  }
  EXPECT_EQ(a[0], 1.0f);
  EXPECT_EQ(b[1], 4.0f);
}

}  // namespace
