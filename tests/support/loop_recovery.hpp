// How a group of "--mode loop" peers (tests/fault/test_peer.cpp and the peers of the netns and
// netsim tests, which print the same lines) came through a membership change: peer i adds 2^i,
// so a sum names the peers it contains; follow_recovery() reads one survivor's lines and checks
// them, expect_same_sums() checks that the survivors agree op by op (all or nothing).
#pragma once

#include <algorithm>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "support/peer_events.hpp"
#include "support/proc_cluster.hpp"

namespace qccl::test {

// What one "--mode loop" peer printed around a membership change at `fault_us` (a peer
// killed or stopped: the sum goes from `full` to `survivors`; or a peer joining: from the
// old group's sum to the new one's).
struct Recovery {
  std::vector<Event> events;                // every line read
  std::map<int64_t, uint64_t> sums;         // successful op K -> its sum
  int failures = 0;                         // fail lines after the fault
  std::optional<int64_t> first_failure_us;  // "at" of the first of them
  std::optional<int64_t> world_drop_us;     // when the watcher saw the group shrink
  std::optional<int64_t> first_success_us;  // first op with the survivors' sum
};

// Follows a looping survivor until it completed `ops_after` ops with the survivors' sum, and
// checks what it printed: no bad/corrupt/error line; every op sums to `full` (before) or
// `survivors` (after; never before the fault, and never back to `full`); every failure comes
// after the fault with a code in `codes`. Failures go to gtest, prefixed with the label.
inline Recovery follow_recovery(ProcCluster& pc, ProcCluster::Handle h, int64_t fault_us,
                                uint64_t full, uint64_t survivors, int ops_after,
                                Deadline deadline, const std::vector<int>& codes) {
  Recovery r;
  const std::string who = pc.label(h) + ": ";
  int after = 0;
  const int64_t full_world = __builtin_popcountll(full);
  while (after < ops_after) {
    auto e = pc.next(h, deadline);
    if (!e) {
      ADD_FAILURE() << who << "only " << after << " of " << ops_after
                    << " ops with the survivors' sum " << survivors << " before the deadline";
      break;
    }
    r.events.push_back(*e);
    if (e->is("bad") || e->is("corrupt") || e->is("error") || e->is("done")) {
      ADD_FAILURE() << who << e->raw;
    } else if (e->is("op")) {
      uint64_t s = e->unum("sum");
      r.sums[e->pos(1)] = s;
      if (s == survivors) {
        if (e->at_us() < fault_us) ADD_FAILURE() << who << "survivors' sum before the fault: " << e->raw;
        if (!r.first_success_us) r.first_success_us = e->at_us();
        ++after;
      } else if (s == full) {
        if (r.first_success_us) ADD_FAILURE() << who << "the lost peer is back in: " << e->raw;
      } else {
        ADD_FAILURE() << who << "sum is neither " << full << " nor " << survivors << ": " << e->raw;
      }
    } else if (e->is("fail")) {
      if (e->at_us() < fault_us) ADD_FAILURE() << who << "failure before the fault: " << e->raw;
      if (std::find(codes.begin(), codes.end(), e->pos(2)) == codes.end()) {
        ADD_FAILURE() << who << "unexpected failure code: " << e->raw;
      }
      ++r.failures;
      if (!r.first_failure_us) r.first_failure_us = e->at_us();
    } else if (e->is("world")) {
      if (e->num("world") < full_world && !r.world_drop_us) r.world_drop_us = e->at_us();
    }
  }
  return r;
}

// All or nothing: the K-th successful op of every survivor is the same collective, so it
// has the same sum everywhere.
inline void expect_same_sums(const std::vector<Recovery>& rs, const std::string& what) {
  for (size_t a = 1; a < rs.size(); ++a) {
    for (const auto& [k, s] : rs[a].sums) {
      auto it = rs[0].sums.find(k);
      if (it != rs[0].sums.end()) {
        EXPECT_EQ(s, it->second) << what << ": survivors disagree on op " << k;
      }
    }
  }
}

}  // namespace qccl::test
