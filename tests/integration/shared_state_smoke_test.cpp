// Shared-state sync smoke test: three peers, identical state moves no bytes; a diverged peer
// gets exactly the differing tensor back.
#include <qccl/qccl.h>

#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "support/cluster.hpp"
#include "support/watchdog.hpp"

QCCL_TEST_WATCHDOG(60);

namespace qccl::test {
namespace {

TEST(SharedStateSmoke, IdenticalThenDiverged) {
  Cluster c;
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(c.grow(3));
  constexpr size_t kA = 3 * 1024 * 1024 + 5, kB = 1000;
  ASSERT_TRUE(c.run([&](size_t i, qcclComm_t* comm) {
    std::vector<float> a(kA, 1.5f);
    std::vector<uint16_t> b(kB, 7);
    qcclTensorInfo_t t[2] = {{"weights", a.data(), kA, qcclFloat32, 0},
                             {"bias", b.data(), kB, qcclBFloat16, 0}};
    qcclSharedState_t st{10, 2, t};
    qcclSyncInfo_t info{};
    qcclResult_t r = qcclSyncSharedState(comm, &st, qcclSyncEnforcePopular, &info);
    ASSERT_EQ(r, qcclSuccess) << describe(r);
    EXPECT_EQ(st.revision, 10u);
    EXPECT_EQ(info.tx_bytes, 0u);
    EXPECT_EQ(info.rx_bytes, 0u);
    // Peer 2 diverges on "weights".
    if (i == 2) a[12345] = -1.0f;
    st.revision = 11;
    r = qcclSyncSharedState(comm, &st, qcclSyncEnforcePopular, &info);
    ASSERT_EQ(r, qcclSuccess) << describe(r);
    EXPECT_EQ(st.revision, 11u);
    EXPECT_EQ(a[12345], 1.5f);
    if (i == 2) {
      EXPECT_EQ(info.rx_bytes, kA * sizeof(float));
      EXPECT_EQ(info.tx_bytes, 0u);
    } else {
      EXPECT_EQ(info.rx_bytes, 0u);
    }
  }));
}

}  // namespace
}  // namespace qccl::test
