// Fault tests: the run survives losing its master (issue 22; docs/reliability.md "Losing the
// master"). Peers are qccl_test_peer processes in idle mode with QCCL_MASTER_RECONNECT_MS set;
// the master is the qccl-master binary in a process of its own (master_process.hpp).
//
//   - Killed while the peers are idle, a new qccl-master started on the same address: every
//     peer's next all-reduce and sync succeed with exact results, in the same ring order, a
//     higher epoch and the next shared-state revision (no peer was admitted again).
//   - Killed during an all-reduce: the call in flight fails with qcclPeerLost (retryable) once
//     the new master is up, leaving its input intact; the retry succeeds.
//   - Stopped (SIGSTOP, longer than the peer timeout) with a standby listed ("A,B"): the peers
//     move to the standby and go on (the call that ran while the master was silent fails with
//     qcclPeerLost on every peer: nobody committed it). The stopped master, resumed, cannot take the run back:
//     once the standby is killed too, the peers find only the old master, which refuses
//     them, and their calls fail with qcclMasterUnreachable at the reconnect deadline.
//   - Killed while a vote is pending (peers 0 and 1 called qcclArePeersPending,
//     qcclUpdateTopology or qcclOptimizeTopology, and the master logged both votes; peer 2 has
//     not voted): the vote goes on at the new master (its voters count as voted), and once
//     peer 2 calls it, it completes for all three.
//   - Killed during a shared-state download (a --stale peer fetching 64 MiB from two donors,
//     one of which logged a served piece): every peer's sync fails with qcclPeerLost and no
//     tensor byte changed (the receiver's failed sync restores what the download overwrote);
//     the retried sync succeeds on every peer, elects revision 7 and leaves equal states.
//   - Killed during the bandwidth probes of qcclOptimizeTopology (inside the first slot of the
//     master's second probe round): every call returns qcclPeerLost, and the retried
//     qcclOptimizeTopology succeeds after a probe round of the new master that measured every
//     link.
//   - Killed while a newcomer waits in qcclConnect for admission: it registers again with the
//     new master (an id no resumed peer holds), and the next qcclUpdateTopology admits it.
//   After each, the next all-reduce succeeds on every peer with exact results.
// Measured ("[ measure  ]"): master kill -> the first successful all-reduce after the restart.
#include <gtest/gtest.h>

#include <csignal>
#include <cstdio>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "master_process.hpp"
#include "qccl/qccl.h"
#include "support/watchdog.hpp"

QCCL_TEST_WATCHDOG(110);

namespace qccl::test {
namespace {

constexpr uint32_t kHeartbeatMs = 200;
constexpr uint32_t kPeerTimeoutMs = 2000;
const ExternalMaster::Timing kTiming{kHeartbeatMs, kPeerTimeoutMs, 60000};
// A master restarted on its old address starts no new run while the old one's peers resume.
const std::vector<std::string> kRestartArgs{"--resume-grace-ms", "1000"};
constexpr size_t kBigCount = size_t{4} << 20;  // 32 MiB of uint64 per peer

std::vector<std::string> reconnect_env(uint32_t ms) {
  return {"QCCL_MASTER_RECONNECT_MS=" + std::to_string(ms)};
}

// Every peer runs `script` then "attr" (sent to all first: the calls are collective); returns
// each peer's view line ("view world W epoch E rank R"), or nothing after a gtest failure.
std::optional<std::vector<Event>> run_all(ProcCluster& pc,
                                          const std::vector<ProcCluster::Handle>& peers,
                                          std::vector<Transcript>& ts,
                                          std::vector<std::string> script, Deadline d) {
  script.push_back("attr");
  for (auto h : peers) {
    if (!send_all(pc, h, script)) return std::nullopt;
  }
  std::vector<Event> views;
  for (size_t i = 0; i < peers.size(); ++i) {
    std::optional<Event> view;
    bool ok = follow(pc, peers[i], ts[i], [&](const Event& e) {
      if (e.is("view")) view = e;
      return e.is("view");
    }, d);
    if (!ok || !view) {
      ADD_FAILURE() << pc.label(peers[i]) << ": the script did not finish in time";
      return std::nullopt;
    }
    views.push_back(*view);
  }
  return views;
}

int64_t field_int(const Event& e, const std::string& name) {
  return std::strtoll(e.field(name).value_or("-1").c_str(), nullptr, 10);
}

// n idle peers of `master` that resume for 20 s after losing it; the first `inplace` of them
// reduce in place (a failed op must restore the buffer), the others out of place.
std::vector<ProcCluster::Handle> resumable_peers(ProcCluster& pc, const std::string& master,
                                                 int n, int inplace) {
  return start_peers(pc, master, n, [inplace](int i) {
    return i < inplace ? std::vector<std::string>{"--inplace"} : std::vector<std::string>{};
  }, deadline_in(30s), [](int) { return reconnect_env(20000); });
}

// SIGKILLs the master and starts a new one on its address (with `extra` arguments);
// `killed_at` (if given) gets the CLOCK_MONOTONIC µs of the kill.
void restart(std::unique_ptr<ExternalMaster>& master, const std::string& address,
             const std::vector<std::string>& extra = {}, int64_t* killed_at = nullptr) {
  const int64_t t = master->signal(SIGKILL);
  if (killed_at != nullptr) *killed_at = t;
  ASSERT_TRUE(master->reaped(deadline_in(5s)));
  std::vector<std::string> args = kRestartArgs;
  args.insert(args.end(), extra.begin(), extra.end());
  master = std::make_unique<ExternalMaster>(kTiming, address, args);
  ASSERT_TRUE(master->ok()) << master->error();
}

TEST(MasterResume, KilledWhileIdleANewMasterOnTheSameAddressResumesTheRun) {
  auto master = std::make_unique<ExternalMaster>(kTiming);
  ASSERT_TRUE(master->ok()) << master->error();
  const std::string address = master->address();
  ProcCluster pc;
  constexpr int n = 3;
  auto peers = resumable_peers(pc, address, n, 1);
  ASSERT_EQ(peers.size(), static_cast<size_t>(n));
  std::vector<Transcript> ts(n);
  auto before = run_all(pc, peers, ts, {"try", "sync"}, deadline_in(30s));
  ASSERT_TRUE(before.has_value());

  int64_t t_kill = 0;
  restart(master, address, {}, &t_kill);
  if (HasFatalFailure()) return;

  std::vector<size_t> first(n);
  for (int i = 0; i < n; ++i) first[i] = ts[i].calls.size();
  auto after = run_all(pc, peers, ts, {"try", "sync", "try"}, deadline_in(40s));
  ASSERT_TRUE(after.has_value());
  for (int i = 0; i < n; ++i) {
    SCOPED_TRACE(pc.label(peers[i]));
    const Event& v = (*after)[i];
    for (const auto& p : ts[i].problems) ADD_FAILURE() << p;
    ASSERT_EQ(ts[i].calls.size() - first[i], 3u);
    for (size_t k = first[i]; k < ts[i].calls.size(); ++k) {
      EXPECT_EQ(ts[i].calls[k].code, 0) << ts[i].calls[k].raw;
    }
    // The same ring, a higher epoch, and the shared-state revision after the one before.
    EXPECT_EQ(field_int(v, "world"), n);
    EXPECT_EQ(field_int(v, "rank"), field_int((*before)[i], "rank"));
    EXPECT_GT(field_int(v, "epoch"), field_int((*before)[i], "epoch"));
    EXPECT_NE(ts[i].calls[first[i] + 1].raw.find("revision 8 "), std::string::npos)
        << ts[i].calls[first[i] + 1].raw;
    std::printf("[ measure  ] %s: master kill -> first all-reduce after the restart returned: "
                "%.1f ms\n", pc.label(peers[i]).c_str(),
                (*ts[i].calls[first[i]].end_us - t_kill) / 1000.0);
  }
}

TEST(MasterResume, KilledDuringAnAllReduceTheCallFailsRetryablyAndTheRetrySucceeds) {
  auto master = std::make_unique<ExternalMaster>(kTiming);
  ASSERT_TRUE(master->ok()) << master->error();
  const std::string address = master->address();
  ProcCluster pc;
  constexpr int n = 3;
  auto peers = resumable_peers(pc, address, n, 2);
  ASSERT_EQ(peers.size(), static_cast<size_t>(n));
  std::vector<Transcript> ts(n);
  const std::string big = "try " + std::to_string(kBigCount);
  for (int i = 0; i < n; ++i) ASSERT_TRUE(send_all(pc, peers[i], {big, "attr"}));
  for (int i = 0; i < n; ++i) {
    ASSERT_TRUE(follow(pc, peers[i], ts[i], is_view, deadline_in(30s)));
    ASSERT_EQ(ts[i].calls.back().code, 0) << ts[i].calls.back().raw;
  }
  double op_ms = 1e9;
  for (auto& t : ts) op_ms = std::min(op_ms, t.op_ms.value_or(0));

  std::vector<size_t> first(n);
  for (int i = 0; i < n; ++i) {
    first[i] = ts[i].calls.size();
    ASSERT_TRUE(send_all(pc, peers[i], {big}));
  }
  for (int i = 0; i < n; ++i) ASSERT_TRUE(follow(pc, peers[i], ts[i], is_call, deadline_in(10s)));
  // Inside the transfer (every peer is in qcclAllReduce; this only places the fault).
  std::mt19937_64 rng(20261207);
  std::this_thread::sleep_for(std::chrono::microseconds(static_cast<int64_t>(
      std::uniform_real_distribution<double>(0, 0.33)(rng) * op_ms * 1000)));
  restart(master, address);
  if (HasFatalFailure()) return;

  for (int i = 0; i < n; ++i) {
    ASSERT_TRUE(follow(pc, peers[i], ts[i], is_result, deadline_in(30s)))
        << pc.label(peers[i]) << ": the all-reduce in flight did not return";
    const Call& c = ts[i].calls[first[i]];
    // Failed and retryable; (success is allowed only if every peer's data had arrived and the
    // old master had committed: then all peers succeed, checked below).
    EXPECT_TRUE(c.code == qcclPeerLost || c.code == 0) << pc.label(peers[i]) << ": " << c.raw;
  }
  const int in_flight = ts[0].calls[first[0]].code;
  for (int i = 0; i < n; ++i) {
    EXPECT_EQ(ts[i].calls[first[i]].code, in_flight) << "all or nothing: " << pc.label(peers[i]);
  }
  ASSERT_TRUE(run_all(pc, peers, ts, {big}, deadline_in(30s)));
  for (int i = 0; i < n; ++i) {
    for (const auto& p : ts[i].problems) ADD_FAILURE() << pc.label(peers[i]) << ": " << p;
    EXPECT_EQ(ts[i].calls.back().code, 0) << pc.label(peers[i]) << ": " << ts[i].calls.back().raw;
  }
}

TEST(MasterResume, AStoppedMasterLosesTheRunToTheStandbyAndCannotTakeItBack) {
  ExternalMaster active(kTiming);
  ASSERT_TRUE(active.ok()) << active.error();
  auto standby = std::make_unique<ExternalMaster>(kTiming, "127.0.0.1:0",
                                                  std::vector<std::string>{"--standby"});
  ASSERT_TRUE(standby->ok()) << standby->error();
  const std::string list = active.address() + "," + standby->address();
  constexpr uint32_t kReconnectMs = 8000;
  ProcCluster pc;
  constexpr int n = 2;
  auto peers = start_peers(pc, list, n, [](int) { return std::vector<std::string>{}; },
                           deadline_in(30s), [](int) { return reconnect_env(kReconnectMs); });
  ASSERT_EQ(peers.size(), static_cast<size_t>(n));
  std::vector<Transcript> ts(n);
  ASSERT_TRUE(run_all(pc, peers, ts, {"try"}, deadline_in(30s)));

  // Stopped: the peers notice the silence after the peer timeout, find the active address
  // answering nothing, and resume with the standby.
  active.signal(SIGSTOP);
  std::vector<size_t> first(n);
  for (int i = 0; i < n; ++i) first[i] = ts[i].calls.size();
  ASSERT_TRUE(run_all(pc, peers, ts, {"try", "try"}, deadline_in(40s)));
  // The first call ran while the master was silent: its data moved, but no master could
  // commit it, so the standby fails it on every peer alike (retry); the second succeeds.
  for (int i = 0; i < n; ++i) {
    ASSERT_EQ(ts[i].calls.size() - first[i], 2u);
    const Call& c = ts[i].calls[first[i]];
    EXPECT_TRUE(c.code == qcclPeerLost || c.code == 0) << pc.label(peers[i]) << ": " << c.raw;
    EXPECT_EQ(c.code, ts[0].calls[first[0]].code) << "all or nothing";
    EXPECT_EQ(ts[i].calls.back().code, 0) << pc.label(peers[i]) << ": " << ts[i].calls.back().raw;
  }
  // The old master comes back, and the standby dies: the old one must not take the run back.
  active.signal(SIGCONT);
  for (auto h : peers) pc.skip_stderr(h);
  standby->signal(SIGKILL);
  ASSERT_TRUE(standby->reaped(deadline_in(5s)));
  // The next call is issued once each peer is resuming (it waits for a master, and fails at the
  // reconnect deadline). A call sent before a peer noticed the loss would be a call in flight
  // instead: it fails with qcclPeerLost (at the deadline too, as its op cannot end before a
  // new epoch or the end of the communicator).
  for (int i = 0; i < n; ++i) {
    ASSERT_TRUE(pc.wait_stderr(peers[i], "lost the connection to the master", deadline_in(10s)))
        << pc.label(peers[i]) << " did not notice the standby's death";
  }
  for (int i = 0; i < n; ++i) first[i] = ts[i].calls.size();
  ASSERT_TRUE(run_all(pc, peers, ts, {"try"}, deadline_in(40s)));
  for (int i = 0; i < n; ++i) {
    ASSERT_EQ(ts[i].calls.size() - first[i], 1u);
    const Call& c = ts[i].calls[first[i]];
    EXPECT_EQ(c.code, qcclMasterUnreachable) << pc.label(peers[i]) << ": " << c.raw;
    // It waited for a master until the reconnect deadline (minus the time the loss took to
    // notice, plus slack), not less: nobody took the resume.
    EXPECT_GE(c.ms(), kReconnectMs - kPeerTimeoutMs - 1500.0) << c.raw;
  }
}

// ---------------------------------------------------------------- moments of the kill


// The call of peer i that was in flight at the kill (index first[i]) returns qcclPeerLost.
void expect_in_flight_lost(ProcCluster& pc, const std::vector<ProcCluster::Handle>& peers,
                           std::vector<Transcript>& ts, const std::vector<size_t>& first,
                           const std::vector<int>& which) {
  for (int i : which) {
    ASSERT_TRUE(follow(pc, peers[i], ts[i], is_result, deadline_in(30s)))
        << pc.label(peers[i]) << ": the call in flight did not return";
    ASSERT_EQ(ts[i].calls.size(), first[i] + 1) << pc.label(peers[i]);
    const Call& c = ts[i].calls[first[i]];
    EXPECT_EQ(c.code, qcclPeerLost) << pc.label(peers[i]) << ": '" << c.cmd << "': " << c.raw;
  }
}

// Every peer runs `script`: every call succeeds, and no peer reported a problem (bad result,
// corrupt input or state) at any time. Returns the index of the script's first call per peer.
std::vector<size_t> expect_script_succeeds(ProcCluster& pc,
                                           const std::vector<ProcCluster::Handle>& peers,
                                           std::vector<Transcript>& ts,
                                           const std::vector<std::string>& script) {
  std::vector<size_t> from(peers.size());
  for (size_t i = 0; i < peers.size(); ++i) from[i] = ts[i].calls.size();
  if (!run_all(pc, peers, ts, script, deadline_in(40s))) return from;
  for (size_t i = 0; i < peers.size(); ++i) {
    SCOPED_TRACE(pc.label(peers[i]));
    for (const auto& p : ts[i].problems) ADD_FAILURE() << p;
    EXPECT_EQ(ts[i].calls.size() - from[i], script.size());
    for (size_t k = from[i]; k < ts[i].calls.size(); ++k) {
      EXPECT_EQ(ts[i].calls[k].code, 0) << "'" << ts[i].calls[k].cmd << "': " << ts[i].calls[k].raw;
    }
  }
  return from;
}

// The master's name of a vote (its "peer N joined the KIND vote" debug line).
std::string master_vote_name(const std::string& cmd) {
  if (cmd == "pending") return "peers-pending";
  if (cmd == "update") return "update-topology";
  return "optimize-topology";
}

class MasterResumeVote : public ::testing::TestWithParam<std::string> {};

// Peers 0 and 1 vote, peer 2 does not: the vote pends at the master (its debug log names both
// votes) when it is killed. Nobody saw it complete, so it goes on at the new master: the
// voters' calls stay blocked until peer 2 calls the vote too, and then all three succeed
// with the same answer.
TEST_P(MasterResumeVote, KilledWhileAVotePendsItGoesOnAtTheNewMaster) {
  const std::string kind = GetParam();
  const std::vector<std::string> debug{"--log-level", "debug"};
  auto master = std::make_unique<ExternalMaster>(kTiming, "127.0.0.1:0", debug);
  ASSERT_TRUE(master->ok()) << master->error();
  const std::string address = master->address();
  ProcCluster pc;
  constexpr int n = 3;
  auto peers = resumable_peers(pc, address, n, 1);
  ASSERT_EQ(peers.size(), static_cast<size_t>(n));
  std::vector<Transcript> ts(n);
  expect_script_succeeds(pc, peers, ts, {"try"});
  if (HasFailure()) return;

  master->skip_log();  // the votes of the peers' start
  std::vector<size_t> first(n);
  for (int i = 0; i < n; ++i) first[i] = ts[i].calls.size();
  for (int i : {0, 1}) ASSERT_TRUE(send_all(pc, peers[i], {kind}));
  for (int i : {0, 1}) {
    ASSERT_TRUE(follow(pc, peers[i], ts[i], is_call, deadline_in(10s)))
        << pc.label(peers[i]) << " did not start " << kind;
  }
  const std::string joined = "joined the " + master_vote_name(kind) + " vote";
  for (int k = 0; k < 2; ++k) {
    ASSERT_TRUE(master->wait_log(joined, deadline_in(10s)))
        << "the master did not log vote " << k + 1 << " of 2 ('" << joined << "')";
  }
  restart(master, address);
  if (HasFatalFailure()) return;
  first[2] = ts[2].calls.size();
  ASSERT_TRUE(send_all(pc, peers[2], {kind}));
  for (int i = 0; i < n; ++i) {
    ASSERT_TRUE(follow(pc, peers[i], ts[i], is_result, deadline_in(30s)))
        << pc.label(peers[i]) << ": " << kind << " did not return";
    const Call& vote = ts[i].calls[first[i]];
    EXPECT_EQ(vote.code, 0) << pc.label(peers[i]) << ": " << vote.raw;
    if (kind == "pending") {
      EXPECT_NE(vote.raw.find("pending 0 "), std::string::npos) << vote.raw;
    } else if (kind == "update") {
      EXPECT_NE(vote.raw.find("world 3 "), std::string::npos) << vote.raw;
    }
  }
  expect_script_succeeds(pc, peers, ts, {"try"});
}

INSTANTIATE_TEST_SUITE_P(Votes, MasterResumeVote,
                         ::testing::Values("pending", "update", "optimize"),
                         [](const ::testing::TestParamInfo<std::string>& p) { return p.param; });

// Peer 2 (--stale) downloads 64 MiB of shared state from peers 0 and 1; the master is killed
// once donor 0 logged a served piece. Every sync fails with qcclPeerLost and no peer's tensors
// changed (test_peer compares every byte: a "corrupt" line otherwise); the retried sync elects
// revision 7 (the donors') and leaves every peer with the same state.
TEST(MasterResume, KilledDuringAStateDownloadEverySyncFailsRetryablyAndTheRetrySucceeds) {
  auto master = std::make_unique<ExternalMaster>(kTiming);
  ASSERT_TRUE(master->ok()) << master->error();
  const std::string address = master->address();
  ProcCluster pc;
  constexpr int n = 3;
  constexpr int receiver = 2;
  auto peers = start_peers(pc, address, n, [](int i) {
    std::vector<std::string> a{"--state-mib", "64"};
    if (i == receiver) a.push_back("--stale");
    return a;
  }, deadline_in(30s), [](int i) {
    auto env = reconnect_env(20000);
    if (i == 0) env.push_back("QCCL_LOG_LEVEL=debug");
    return env;
  });
  ASSERT_EQ(peers.size(), static_cast<size_t>(n));
  std::vector<Transcript> ts(n);
  expect_script_succeeds(pc, peers, ts, {"try"});
  if (HasFailure()) return;

  std::vector<size_t> first(n);
  for (int i = 0; i < n; ++i) {
    first[i] = ts[i].calls.size();
    ASSERT_TRUE(send_all(pc, peers[i], {"sync"}));
  }
  for (int i = 0; i < n; ++i) {
    ASSERT_TRUE(follow(pc, peers[i], ts[i], is_call, deadline_in(20s)))
        << pc.label(peers[i]) << " did not start the sync";
  }
  ASSERT_TRUE(pc.wait_stderr(peers[0], "served piece", deadline_in(20s)))
      << "donor 0 never served a piece";
  restart(master, address);
  if (HasFatalFailure()) return;
  expect_in_flight_lost(pc, peers, ts, first, {0, 1, 2});
  if (HasFatalFailure()) return;

  // A "corrupt" line follows a failed sync's result: expect_script_succeeds reports it.
  auto from = expect_script_succeeds(pc, peers, ts, {"sync", "try"});
  if (HasFailure()) return;
  std::optional<std::string> hash;
  for (int i = 0; i < n; ++i) {
    SCOPED_TRACE(pc.label(peers[i]));
    // "synced K revision R tx T rx X hash H ms D at T"
    const Event synced(ts[i].calls[from[i]].raw);
    EXPECT_EQ(field_int(synced, "revision"), 7) << synced.raw;
    if (i == receiver) {
      EXPECT_GT(field_int(synced, "rx"), int64_t{64} << 20) << synced.raw;
    }
    auto h = synced.field("hash");
    ASSERT_TRUE(h.has_value()) << synced.raw;
    if (!hash) hash = h;
    EXPECT_EQ(*h, *hash) << "the states differ after the sync";
  }
}

// Every peer calls qcclOptimizeTopology twice: the first round (round 1) completes; the
// second, once the measurements are older than --probe-max-age-s 1 (so every link is probed
// again: round 2), is killed 300 ms after the master logged its start, i.e. while the first
// slot's links are measured (--probe-ms 400: slots of 700 ms). Nobody saw that vote complete,
// so it goes on at the new master, which probes again: every call succeeds, and the new
// master's probe round measured every link (3 peers: 6 directed links): the peers' probers
// took its round as a new one, not as an old round of the lost master (whose measurements
// they still held).
TEST(MasterResume, KilledDuringTheBandwidthProbesOptimizeGoesOnAtTheNewMaster) {
  const std::vector<std::string> probe{"--probe-ms", "400", "--probe-max-age-s", "1"};
  auto master = std::make_unique<ExternalMaster>(kTiming, "127.0.0.1:0", probe);
  ASSERT_TRUE(master->ok()) << master->error();
  const std::string address = master->address();
  ProcCluster pc;
  constexpr int n = 3;
  auto peers = resumable_peers(pc, address, n, 1);
  ASSERT_EQ(peers.size(), static_cast<size_t>(n));
  std::vector<Transcript> ts(n);
  expect_script_succeeds(pc, peers, ts, {"try", "optimize"});
  if (HasFailure()) return;
  ASSERT_TRUE(master->wait_log("topology: probe round 1 done: 6 links measured", deadline_in(5s)));

  // Not a synchronisation: the measurements (taken before the calls returned) must be older
  // than --probe-max-age-s for the next optimize to probe again (checked: round 2 starts).
  std::this_thread::sleep_for(1100ms);
  std::vector<size_t> first(n);
  for (int i = 0; i < n; ++i) {
    first[i] = ts[i].calls.size();
    ASSERT_TRUE(send_all(pc, peers[i], {"optimize"}));
  }
  auto round = master->wait_log("topology: probe round 2:", deadline_in(20s));
  ASSERT_TRUE(round) << "the master did not start a second probe round";
  ASSERT_NE(round->find(": 6 links in 2 slots of 700 ms"), std::string::npos) << *round;
  // Inside the first slot (the round verifiably started; this only places the fault).
  std::this_thread::sleep_for(300ms);
  restart(master, address, probe);
  if (HasFatalFailure()) return;
  for (int i = 0; i < n; ++i) {
    ASSERT_TRUE(follow(pc, peers[i], ts[i], is_result, deadline_in(30s)))
        << pc.label(peers[i]) << ": the optimize in flight did not return";
    EXPECT_EQ(ts[i].calls[first[i]].code, 0) << pc.label(peers[i]) << ": "
                                             << ts[i].calls[first[i]].raw;
  }
  auto done = master->wait_log("links measured in", deadline_in(5s));
  ASSERT_TRUE(done) << "the new master did not finish a probe round";
  EXPECT_NE(done->find(" done: 6 links measured"), std::string::npos) << *done;
  expect_script_succeeds(pc, peers, ts, {"try"});
}

// The id in a master's "peer N registered (group ...), waiting for admission" line; -1 if none.
int64_t registered_id(const std::optional<std::string>& line) {
  if (!line) return -1;
  auto at = line->find(" registered (group");
  auto peer = line->rfind("peer ", at);
  if (at == std::string::npos || peer == std::string::npos) return -1;
  return std::strtoll(line->c_str() + peer + 5, nullptr, 10);
}

// A newcomer waits in qcclConnect for admission when the master is killed: it registers again
// with the new master (a fresh id, none of the resumed peers'), the resumed peers' next
// qcclUpdateTopology admits it, and the four all-reduce exactly.
TEST(MasterResume, KilledWhileAJoinerAwaitsAdmissionItRegistersAgainAndIsAdmitted) {
  auto master = std::make_unique<ExternalMaster>(kTiming);
  ASSERT_TRUE(master->ok()) << master->error();
  const std::string address = master->address();
  ProcCluster pc;
  constexpr int n = 3;
  auto peers = resumable_peers(pc, address, n, 1);
  ASSERT_EQ(peers.size(), static_cast<size_t>(n));
  std::vector<int64_t> ids;
  for (int i = 0; i < n; ++i) ids.push_back(registered_id(master->wait_log(" registered (group", deadline_in(5s))));
  std::vector<Transcript> ts(n);
  expect_script_succeeds(pc, peers, ts, {"try"});
  if (HasFailure()) return;

  auto joiner = pc.spawn("peer 3 (joiner)",
                         {"--master", address, "--index", "3", "--world", "4", "--mode", "idle",
                          "--announce", "--state-mib", "1"},
                         {"QCCL_MASTER_RECONNECT_MS=20000", "QCCL_LOG_LEVEL=info"});
  ASSERT_TRUE(joiner) << pc.error();
  pc.capture_stderr_lines(*joiner);
  // Registered on both ends: the joiner has the master's welcome (killed before it, it would
  // just dial again, a registration not yet made).
  ASSERT_TRUE(pc.wait_stderr(*joiner, "registered with the master at", deadline_in(10s)))
      << "the joiner did not register";
  ASSERT_GT(registered_id(master->wait_log(" registered (group", deadline_in(10s))), 0);
  restart(master, address);
  if (HasFatalFailure()) return;
  ASSERT_TRUE(pc.wait_stderr(*joiner, "registering again", deadline_in(10s)))
      << "the joiner did not notice the loss of the master";
  const int64_t again_id = registered_id(master->wait_log(" registered (group", deadline_in(15s)));
  ASSERT_GT(again_id, 0) << "the joiner did not register with the new master";
  for (int64_t id : ids) EXPECT_NE(again_id, id) << "a resumed peer's id was given again";

  auto from = expect_script_succeeds(pc, peers, ts, {"update"});
  for (int i = 0; i < n; ++i) {
    EXPECT_NE(ts[i].calls[from[i]].raw.find("updated world 4 "), std::string::npos)
        << pc.label(peers[i]) << ": " << ts[i].calls[from[i]].raw;
  }
  auto ready = pc.wait_for(*joiner, [](const Event& e) { return e.is("ready") || e.is("error"); },
                           deadline_in(15s));
  ASSERT_TRUE(ready && ready->is("ready")) << (ready ? ready->raw : "the joiner never got in");
  EXPECT_EQ(ready->num("world"), 4) << ready->raw;
  peers.push_back(*joiner);
  ts.emplace_back();
  expect_script_succeeds(pc, peers, ts, {"try", "sync", "try"});
}

}  // namespace
}  // namespace qccl::test
