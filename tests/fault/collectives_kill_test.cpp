// Fault tests of the collectives beyond the all-reduce (broadcast, all-gather, all-gather-v,
// reduce-scatter, barrier): kill -9 of one of 3 looping peers at a random moment, and SIGSTOP
// of one mid all-gather and mid reduce-scatter.
//
// The peers run qccl_test_peer --mode loop --op KIND, whose op line's sum names the
// participants for every kind (tests/fault/test_peer.cpp's header: from the data for the
// all-gathers and the reduce-scatter, from qcclOpInfo_t's peer ids for broadcast and barrier)
// and whose content checks (blocks in info's ring order, counts, this peer's reduce-scatter
// block, the root's value everywhere) print a "bad" line on any wrong element. The guarantees
// are the all-reduce's (kill_test.cpp, stop_test.cpp): every survivor's failure comes soon
// after the kill and is qcclPeerLost, its next attempt succeeds on the survivors with exactly
// their sum, all survivors agree op by op, and a failed op leaves its input (in-place
// reduce-scatter: the buffer; broadcast: the buffer) as it was. kill->failure and
// kill->first success medians are printed per kind.
//
// QCCL_FAULT_SEED=<n> replays a run (the seed is printed); QCCL_FAULT_VERBOSE=1 prints the
// peers' events and stderr even when the test passes.
#include <gtest/gtest.h>

#include <cstdio>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "fault/fault_group.hpp"
#include "support/proc_cluster.hpp"
#include "support/stats.hpp"
#include "support/watchdog.hpp"

QCCL_TEST_WATCHDOG(110);

namespace qccl::test {
namespace {

constexpr size_t kCount = 65536;  // 512 KiB per op (allgather: per block)
constexpr int kRoundsPerKind = 6;

std::vector<std::string> loop_args(const std::string& op, bool inplace) {
  std::vector<std::string> a{"--mode", "loop", "--op", op, "--count", std::to_string(kCount)};
  if (inplace) a.push_back("--inplace");
  return a;
}

TEST(CollectivesKillTest, SigkillMidOpSurvivorsRetryOnceWithExactlyTheSurvivors) {
  const uint64_t s = fault_seed(20261207);
  std::printf("[ seed     ] QCCL_FAULT_SEED=%llu\n", static_cast<unsigned long long>(s));
  std::mt19937_64 rng(s);
  const std::vector<std::string> kinds{"broadcast", "allgather", "allgatherv", "reducescatter",
                                       "barrier"};
  std::map<std::string, KillFigures> figs;
  auto t0 = SteadyClock::now();
  for (const std::string& kind : kinds) {
    for (int round = 0; round < kRoundsPerKind; ++round) {
      // The reduce-scatter's second round runs in place: a failed op must give the input back.
      const bool inplace = kind == "reducescatter" && round % 2 == 1;
      SCOPED_TRACE(kind + " round " + std::to_string(round));
      FaultGroup g;
      ASSERT_NO_FATAL_FAILURE(start_peers(g, 3, loop_args(kind, inplace)));
      ASSERT_NO_FATAL_FAILURE(wait_two_loop_ops(g));  // warm up
      // A broadcast whose root (the first peer of the last op's ring) was the victim may run
      // in an epoch without it and fail there with qcclInvalidArgument; survivors that read
      // rings one epoch apart pick different roots: qcclMismatch. The peer retries both a few
      // times with a reread root (test_peer.cpp's header says when each happens).
      std::vector<int> codes{qcclPeerLost};
      if (kind == "broadcast") {
        codes.push_back(qcclInvalidArgument);
        codes.push_back(qcclMismatch);
      }
      kill_mid_loop(g, rng, 40000, "op=" + kind + " N=3", inplace ? " (in place)" : "",
                    figs[kind], codes);
    }
  }
  double total_s = std::chrono::duration<double>(SteadyClock::now() - t0).count();
  for (const std::string& kind : kinds) {
    const KillFigures& f = figs[kind];
    std::printf("[ measure  ] kill -9 mid %s, %d rounds, %zu survivor samples: median "
                "kill->failure %.1f ms (max %.1f), median kill->first success %.1f ms (max %.1f); "
                "survivors without a failure: %d, failing more than once: %d\n",
                kind.c_str(), kRoundsPerKind, f.to_success_ms.size(), median(f.to_failure_ms),
                max_of(f.to_failure_ms), median(f.to_success_ms), max_of(f.to_success_ms),
                f.survivors_without_failure, f.survivors_failing_twice);
    RecordProperty("median_kill_to_failure_ms_" + kind, std::to_string(median(f.to_failure_ms)));
    RecordProperty("median_kill_to_success_ms_" + kind, std::to_string(median(f.to_success_ms)));
  }
  std::printf("[ measure  ] %zu kinds x %d rounds in %.1f s\n", kinds.size(), kRoundsPerKind,
              total_s);
}

// SIGSTOP mid all-gather and mid reduce-scatter: the master expels the stopped peer after the
// peer timeout, the survivors' ops in flight fail with qcclPeerLost and their retry succeeds
// with exactly their own contributions; the resumed peer's op ends with qcclKicked.
TEST(CollectivesKillTest, SigstopMidAllGatherAndReduceScatterExpelsAfterThePeerTimeout) {
  constexpr MasterTimes kTimes{100, 1000, 5000};
  constexpr double kSlackMs = 200;  // the master's timer, the watcher's polling, a loaded machine
  std::mt19937_64 rng(fault_seed(20261207) + 1);
  for (const char* kind : {"allgather", "reducescatter"}) {
    SCOPED_TRACE(kind);
    FaultGroup g(kTimes);
    ASSERT_NO_FATAL_FAILURE(start_peers(g, 3, loop_args(kind, false)));
    ASSERT_NO_FATAL_FAILURE(wait_two_loop_ops(g));
    const int victim = static_cast<int>(rng() % 3);
    stop_mid_loop(g, rng, 20000, victim, kSlackMs,
                  std::string("SIGSTOP mid ") + kind + " victim=" + std::to_string(victim));
  }
}

}  // namespace
}  // namespace qccl::test
