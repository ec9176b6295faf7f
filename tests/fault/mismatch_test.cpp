// Fault tests: peers that disagree about an operation, across processes.
//
// Two peers pass count 1000 and one passes 2000 for the same tag: every peer must get
// qcclMismatch (no hang, no partial result, inputs untouched: test_peer prints "corrupt"
// otherwise), and the group must work normally on the next, agreeing call.
#include <gtest/gtest.h>

#include "support/proc_cluster.hpp"
#include "support/test_master.hpp"
#include "support/watchdog.hpp"

QCCL_TEST_WATCHDOG(60);

namespace qccl::test {
namespace {

using namespace std::chrono_literals;

void expect_mismatch_then_recovery(const std::vector<std::string>& mode_args) {
  TestMaster master;
  ASSERT_TRUE(master.ok()) << master.error();
  ProcCluster pc;
  constexpr int n = 3;
  auto peers = start_group(pc, master.address(), n, mode_args, deadline_in(20s));
  ASSERT_EQ(peers.size(), static_cast<size_t>(n));
  ASSERT_TRUE(pc.send_line(peers[0], "try 1000"));
  ASSERT_TRUE(pc.send_line(peers[1], "try 1000"));
  ASSERT_TRUE(pc.send_line(peers[2], "try 2000"));
  for (auto h : peers) {
    auto e = pc.wait_for(h, [](const Event& ev) {
      return ev.is("op") || ev.is("fail") || ev.is("corrupt") || ev.is("bad");
    }, deadline_in(10s));
    ASSERT_TRUE(e) << pc.label(h) << ": the mismatched all-reduce did not return";
    EXPECT_TRUE(e->is("fail") && e->pos(2) == qcclMismatch)
        << pc.label(h) << ": expected qcclMismatch, got: " << e->raw;
  }
  for (auto h : peers) ASSERT_TRUE(pc.send_line(h, "try 1000"));
  for (auto h : peers) {
    auto e = pc.wait_for(h, [](const Event& ev) {
      return ev.is("op") || ev.is("fail") || ev.is("corrupt") || ev.is("bad");
    }, deadline_in(10s));
    ASSERT_TRUE(e) << pc.label(h) << ": the agreeing all-reduce did not return";
    EXPECT_TRUE(e->is("op")) << pc.label(h) << ": " << e->raw;
    EXPECT_EQ(e->unum("sum"), sum_of({0, 1, 2})) << e->raw;
    EXPECT_EQ(e->num("world"), n) << e->raw;
  }
}

TEST(MismatchTest, DifferentCountsForOneTagFailOnEveryPeerThenTheGroupWorks) {
  expect_mismatch_then_recovery({"--mode", "idle"});
}

TEST(MismatchTest, DifferentCountsInPlaceLeaveTheInputsUntouched) {
  expect_mismatch_then_recovery({"--mode", "idle", "--inplace"});
}

}  // namespace
}  // namespace qccl::test
