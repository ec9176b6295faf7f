// FrameClaims on its own: every transition of frame_claims.hpp's diagram, and the duplicate
// answers of each state.
#include "collectives/frame_claims.hpp"

#include <gtest/gtest.h>

namespace qccl::collectives {
namespace {

TEST(FrameClaims, ClaimUnclaimTakeOverReceive) {
  FrameClaims claims(3);
  EXPECT_EQ(claims.claim(0, 4).duplicate, Duplicate::kNo);
  auto dup = claims.claim(0, 5);
  EXPECT_EQ(dup.duplicate, Duplicate::kPending);
  EXPECT_EQ(dup.claimant, 4u);
  claims.unclaim(0, 5);  // not the holder: no-op
  EXPECT_EQ(claims.claim(0, 6).claimant, 4u);
  claims.take_over(0, 5);
  claims.unclaim(0, 4);  // the stalled read fails after the take-over: no-op
  EXPECT_EQ(claims.claim(0, 6).claimant, 5u);
  claims.unclaim(0, 5);  // the holder's read fails: free again
  EXPECT_EQ(claims.claim(0, 6).duplicate, Duplicate::kNo);
  EXPECT_FALSE(claims.received(0));
  claims.mark_received(0);
  claims.mark_received(0);  // counted once
  EXPECT_TRUE(claims.received(0));
  EXPECT_EQ(claims.received_count(), 1u);
  EXPECT_EQ(claims.claim(0, 7).duplicate, Duplicate::kReceived);
  claims.unclaim(0, 6);  // a received frame stays received
  EXPECT_TRUE(claims.received(0));
  EXPECT_FALSE(claims.received(1));
  RecvTarget t = FrameClaims::duplicate_target({Duplicate::kPending, 9}, 100);
  EXPECT_TRUE(t.staged);
  EXPECT_EQ(t.dst, nullptr);
  EXPECT_EQ(t.bytes, 100u);
  EXPECT_EQ(t.claimant, 9u);
}

}  // namespace
}  // namespace qccl::collectives
