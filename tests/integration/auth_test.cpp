// Authentication with a shared secret, through the public C API (net/auth.hpp), and the
// encryption that comes with it (docs/security.md): a run whose master and peers share the
// secret works over every kind of connection (control, ring lanes, shared-state transfer,
// bandwidth probes), encrypted (the default) or with encryption turned off everywhere; a peer
// with another secret, or none, a peer whose master has none, and a peer whose encryption
// setting differs from the master's (a downgrade attempt, either way) are refused with
// qcclAuthFailed at once, and the run goes on.
#include <qccl/qccl.h>

#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <vector>

#include "support/cluster.hpp"
#include "support/watchdog.hpp"

QCCL_TEST_WATCHDOG(110);

namespace qccl::test {
namespace {

constexpr char kSecret[] = "correct horse battery staple";

// A lone communicator's qcclConnect against `address` with `token` (NULL = none): its result,
// its message and how long it took.
struct Attempt {
  qcclResult_t result = qcclInternalError;
  std::string error;
  int64_t ms = 0;
};
Attempt try_connect(const std::string& address, const char* token,
                    uint32_t encryption = QCCL_ENCRYPTION_DEFAULT) {
  qcclCommConfig_t cc = QCCL_COMM_CONFIG_INIT;
  cc.master_address = address.c_str();
  cc.auth_token = token;
  cc.encryption = encryption;
  cc.connect_timeout_ms = 20000;
  qcclComm_t* comm = nullptr;
  Attempt a;
  a.result = qcclCommCreate(&cc, &comm);
  if (a.result != qcclSuccess) {
    a.error = qcclGetLastError();
    return a;
  }
  auto start = Clock::now();
  a.result = qcclConnect(comm);
  a.ms = elapsed_ms(start);
  a.error = qcclGetLastError();
  EXPECT_EQ(qcclCommDestroy(comm), qcclSuccess);
  return a;
}

class AuthEncryption : public ::testing::TestWithParam<uint32_t> {};

TEST_P(AuthEncryption, ASharedSecretRunUsesEveryKindOfConnection) {
  ClusterOptions o;
  o.auth_token = kSecret;
  o.encryption = GetParam();
  Cluster c(o);
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(c.grow(3));
  // Ring lanes.
  ASSERT_TRUE(c.run([&](size_t i, qcclComm_t* comm) {
    std::vector<uint64_t> v(4096, uint64_t{1} << i);
    qcclReduceDesc_t d = {v.size(), qcclUint64, qcclSum, 1, {qcclQuantNone, qcclUint64}};
    qcclResult_t r = qcclAllReduce(v.data(), v.data(), &d, comm, nullptr);
    ASSERT_EQ(r, qcclSuccess) << "peer " << i << ": " << describe(r);
    for (uint64_t x : v) ASSERT_EQ(x, 7u);
  }));
  // Shared-state transfer: peer 0 holds the truth, the others download it.
  ASSERT_TRUE(c.run([&](size_t i, qcclComm_t* comm) {
    std::vector<float> w(100000, i == 0 ? 3.0f : -1.0f);
    qcclTensorInfo_t t{"w", w.data(), w.size(), qcclFloat32, 0};
    qcclSharedState_t st{5, 1, &t};
    qcclSyncInfo_t info{};
    qcclResult_t r = qcclSyncSharedState(comm, &st, i == 0 ? qcclSyncSendOnly : qcclSyncReceiveOnly,
                                         &info);
    ASSERT_EQ(r, qcclSuccess) << "peer " << i << ": " << describe(r);
    for (float x : w) ASSERT_EQ(x, 3.0f) << "peer " << i;
    if (i != 0) {
      EXPECT_EQ(info.rx_bytes, w.size() * sizeof(float));
    }
  }));
  // Bandwidth probes.
  ASSERT_TRUE(c.run_checked(c.peers(), [](size_t, qcclComm_t* comm) -> std::string {
    qcclResult_t r = qcclOptimizeTopology(comm);
    return r == qcclSuccess ? "" : "qcclOptimizeTopology: " + describe(r);
  }));
}

INSTANTIATE_TEST_SUITE_P(Settings, AuthEncryption,
                         ::testing::Values(QCCL_ENCRYPTION_DEFAULT, QCCL_ENCRYPTION_OFF),
                         [](const auto& param_info) {
                           return param_info.param == QCCL_ENCRYPTION_OFF ? "Off" : "Encrypted";
                         });

TEST(Auth, StrangersAreRefusedAtOnceAndTheRunGoesOn) {
  ClusterOptions o;
  o.auth_token = kSecret;
  Cluster c(o);
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(c.grow(2));
  for (const char* token : {static_cast<const char*>(nullptr), "wrong secret",
                            "correct horse battery staplE"}) {
    SCOPED_TRACE(token ? token : "(no token)");
    Attempt a = try_connect(c.master_address(), token);
    EXPECT_EQ(a.result, qcclAuthFailed) << a.error;
    EXPECT_NE(a.error.find("authentic"), std::string::npos) << a.error;
    EXPECT_EQ(a.error.find(kSecret), std::string::npos) << "the secret leaked: " << a.error;
    EXPECT_LT(a.ms, 5000) << "a refusal must not wait for a timeout";
  }
  // Nobody was admitted or left pending: the members still reduce among themselves.
  EXPECT_EQ(c.view(0).global_world_size, 2);
  ASSERT_TRUE(c.run([&](size_t i, qcclComm_t* comm) {
    uint64_t v = uint64_t{1} << i;
    qcclReduceDesc_t d = {1, qcclUint64, qcclSum, 2, {qcclQuantNone, qcclUint64}};
    ASSERT_EQ(qcclAllReduce(&v, &v, &d, comm, nullptr), qcclSuccess);
    EXPECT_EQ(v, 3u);
  }));
  // And none of the strangers is waiting for admission.
  ASSERT_TRUE(c.run([&](size_t i, qcclComm_t* comm) {
    int pending = -1;
    ASSERT_EQ(qcclArePeersPending(comm, &pending), qcclSuccess) << "peer " << i;
    EXPECT_EQ(pending, 0) << "peer " << i;
  }));
}

// No silent downgrade: the side that encrypts refuses the side that does not, either way.
TEST(Auth, APeerWhoseEncryptionSettingDiffersIsRefusedAtOnce) {
  for (uint32_t master : {QCCL_ENCRYPTION_DEFAULT, QCCL_ENCRYPTION_OFF}) {
    ClusterOptions o;
    o.auth_token = kSecret;
    o.encryption = master;
    Cluster c(o);
    ASSERT_TRUE(c.ok());
    ASSERT_TRUE(c.grow(1));
    const bool master_encrypts = master != QCCL_ENCRYPTION_OFF;
    SCOPED_TRACE(master_encrypts ? "master encrypts" : "master does not encrypt");
    Attempt a = try_connect(c.master_address(), kSecret,
                            master_encrypts ? QCCL_ENCRYPTION_OFF : QCCL_ENCRYPTION_ON);
    EXPECT_EQ(a.result, qcclAuthFailed) << a.error;
    EXPECT_NE(a.error.find("encrypt"), std::string::npos) << a.error;
    EXPECT_LT(a.ms, 5000) << "a refusal must not wait for a timeout";
    int pending = -1;
    ASSERT_TRUE(c.run([&](size_t, qcclComm_t* comm) {
      ASSERT_EQ(qcclArePeersPending(comm, &pending), qcclSuccess);
    }));
    EXPECT_EQ(pending, 0);
  }
}

TEST(Auth, ABadEncryptionSettingIsAnInvalidArgument) {
  qcclCommConfig_t cc = QCCL_COMM_CONFIG_INIT;
  cc.encryption = 3;
  qcclComm_t* comm = nullptr;
  EXPECT_EQ(qcclCommCreate(&cc, &comm), qcclInvalidArgument);
  EXPECT_NE(std::string(qcclGetLastError()).find("encryption"), std::string::npos);
  qcclMasterConfig_t mc = QCCL_MASTER_CONFIG_INIT;
  mc.listen_address = "127.0.0.1:0";
  mc.encryption = 7;
  qcclMaster_t* m = nullptr;
  EXPECT_EQ(qcclMasterCreate(&mc, &m), qcclInvalidArgument);
  EXPECT_NE(std::string(qcclGetLastError()).find("encryption"), std::string::npos);
}

TEST(Auth, APeerWithASecretRefusesAMasterWithout) {
  Cluster c;  // no secret
  ASSERT_TRUE(c.ok());
  Attempt a = try_connect(c.master_address(), kSecret);
  EXPECT_EQ(a.result, qcclAuthFailed) << a.error;
  EXPECT_LT(a.ms, 5000);
}

TEST(Auth, AnEmptySecretIsAnInvalidArgument) {
  qcclCommConfig_t cc = QCCL_COMM_CONFIG_INIT;
  cc.auth_token = "";
  qcclComm_t* comm = nullptr;
  EXPECT_EQ(qcclCommCreate(&cc, &comm), qcclInvalidArgument);
  EXPECT_NE(std::string(qcclGetLastError()).find("auth_token"), std::string::npos);
  qcclMasterConfig_t mc = QCCL_MASTER_CONFIG_INIT;
  mc.listen_address = "127.0.0.1:0";
  mc.auth_token = "";
  qcclMaster_t* m = nullptr;
  EXPECT_EQ(qcclMasterCreate(&mc, &m), qcclInvalidArgument);
  EXPECT_NE(std::string(qcclGetLastError()).find("auth_token"), std::string::npos);
}

}  // namespace
}  // namespace qccl::test
