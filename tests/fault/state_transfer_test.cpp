// Fault tests: shared-state transfers (qcclSyncSharedState) between peer processes.
//
// Every peer runs qccl_test_peer --mode state: a few tensors (several dtypes, sizes that are
// not multiples of the 1 MiB piece, an empty one and an allow_inequality one) filled from a
// seed; a --stale peer (the joiner) has other content in every comparable tensor. A peer
// prints "synced K revision R tx T rx X hash H" after each sync, H a hash of all its
// comparable bytes, so the driver can tell that peers hold the same content.
//
//   1. a fifth peer joins a group of four and downloads ~96 MiB it does not have, from
//      several donors at once;
//   2. a donor is frozen (SIGSTOP) right after it served its first piece, so the joiner
//      cannot finish, then killed: the joiner gets the rest from the other donors;
//   3. the joiner is killed in the middle of its download: the donors' sync still succeeds
//      within the peer timeout, and the group can sync again.
//
// The donors of 2 and 3 run with QCCL_LOG_LEVEL=debug: the library logs "served piece P of
// entry E (B bytes) to peer X" on stderr for every piece, which is how the test knows a
// transfer is under way. Nothing waits by sleeping: every wait is for a line, with a deadline.
// QCCL_FAULT_VERBOSE=1 prints the peers' events and stderr even when the test passes.
#include <gtest/gtest.h>

#include <sys/wait.h>

#include <cstdio>
#include <string>
#include <vector>

#include "support/proc_cluster.hpp"
#include "support/test_master.hpp"
#include "support/watchdog.hpp"

QCCL_TEST_WATCHDOG(140);

namespace qccl::test {
namespace {

using namespace std::chrono_literals;
using Handle = ProcCluster::Handle;

// Heartbeat and peer timeout as small as the other fault tests use; the vote timeout leaves
// room for a peer that hashes 256 MiB on a loaded machine before it votes.
MasterTimes state_times() {
  MasterTimes t;
  t.heartbeat_ms = 100;
  t.peer_timeout_ms = 2000;
  t.vote_timeout_ms = 10000;
  return t;
}

constexpr uint64_t kSeed = 42;
constexpr uint64_t kDonorRevision = 7;  // test_peer's default first vote (0 when --stale)

std::vector<std::string> state_args(const std::string& master, int index, int world, int mib) {
  return {"--master", master, "--index", std::to_string(index), "--world", std::to_string(world),
          "--mode", "state", "--state-mib", std::to_string(mib), "--seed", std::to_string(kSeed)};
}

std::vector<std::string> operator+(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// What a peer printed before connecting: its comparable bytes and the hash of its content.
struct Initial {
  uint64_t bytes = 0;
  std::string hash;
};

Initial wait_state_ready(ProcCluster& pc, Handle h, Deadline d) {
  auto e = pc.wait_for(h, [](const Event& ev) { return ev.is("state-ready") || ev.is("error"); }, d);
  if (!e || !e->is("state-ready")) {
    ADD_FAILURE() << pc.label(h) << " did not build its state: " << (e ? e->raw : "no line");
    return {};
  }
  return {e->unum("bytes"), e->field("hash").value_or("")};
}

bool wait_ready(ProcCluster& pc, Handle h, int64_t world, Deadline d) {
  auto e = pc.wait_for(h, [](const Event& ev) { return ev.is("ready") || ev.is("error"); }, d);
  if (!e || !e->is("ready") || e->num("world") != world) {
    ADD_FAILURE() << pc.label(h) << " did not get ready with world " << world << ": "
                  << (e ? e->raw : "no line before the deadline");
    return false;
  }
  return true;
}

// Peer h's result of sync k ("synced k" or "sync-fail k"), or a line that ends the peer
// (error, done). A "bad" line on the way is a test failure. nullopt at the deadline/EOF.
std::optional<Event> wait_sync(ProcCluster& pc, Handle h, int64_t k, Deadline d) {
  return pc.wait_for(
      h,
      [k](const Event& e) {
        return ((e.is("synced") || e.is("sync-fail")) && e.pos(1) == k) || e.is("error") ||
               e.is("done");
      },
      d, [&](const Event& e) {
        if (e.is("bad") || e.is("sync-fail")) ADD_FAILURE() << pc.label(h) << ": " << e.raw;
      });
}

// wait_sync that must succeed: returns the "synced" line (or nullopt after a gtest failure).
std::optional<Event> expect_synced(ProcCluster& pc, Handle h, int64_t k, Deadline d) {
  auto e = wait_sync(pc, h, k, d);
  if (!e || !e->is("synced")) {
    ADD_FAILURE() << pc.label(h) << ": sync " << k << " did not succeed: "
                  << (e ? e->raw : "no result before the deadline");
    return std::nullopt;
  }
  return e;
}

// The peer has nothing left to do: it prints "done" (no bad line before it) and exits 0.
void expect_clean_end(ProcCluster& pc, Handle h, Deadline d) {
  auto e = pc.wait_for(h, [](const Event& ev) { return ev.is("done"); }, d, [&](const Event& ev) {
    if (ev.is("bad") || ev.is("error") || ev.is("sync-fail")) {
      ADD_FAILURE() << pc.label(h) << ": " << ev.raw;
    }
  });
  EXPECT_TRUE(e) << pc.label(h) << " did not finish";
  auto st = pc.wait_exit(h, d);
  ASSERT_TRUE(st) << pc.label(h) << " did not exit";
  EXPECT_TRUE(WIFEXITED(*st) && WEXITSTATUS(*st) == 0) << pc.label(h) << " wait status " << *st;
}

double ms_between(int64_t from_us, int64_t to_us) { return (to_us - from_us) / 1000.0; }

// The donors a test starts with: `n` peers (indices 0..n-1, world n) with `mib` MiB of state,
// `extra` arguments and `env` (the stderr lines of donor `capture` are queued, -1: none's).
struct Donors {
  std::vector<Handle> handles;
  std::vector<Initial> init;  // what each printed before connecting
};

// Starts them and waits until each built its state and got ready with world n (fatal gtest
// failures: call inside ASSERT_NO_FATAL_FAILURE).
void start_donors(ProcCluster& pc, const std::string& master, int n, int mib,
                  const std::vector<std::string>& extra, const std::vector<std::string>& env,
                  int capture, Deadline setup, Donors& out) {
  for (int i = 0; i < n; ++i) {
    auto h = pc.spawn("donor " + std::to_string(i), state_args(master, i, n, mib) + extra, env);
    ASSERT_TRUE(h) << pc.error();
    if (i == capture) pc.capture_stderr_lines(*h);
    out.handles.push_back(*h);
  }
  for (auto h : out.handles) out.init.push_back(wait_state_ready(pc, h, setup));
  ASSERT_FALSE(::testing::Test::HasFailure());
  for (auto h : out.handles) ASSERT_TRUE(wait_ready(pc, h, n, setup));
}

// ------------------------------------------------------------------------------------------

// Four peers (one sync among themselves first, so the group has a revision), then a fifth
// joins with other content at revision 0 and syncs: it downloads every comparable byte,
// striped over more than one donor, and ends with the donors' content and revision. One more
// sync afterwards moves nothing.
TEST(StateTransferTest, JoinerDownloadsTheStateItLacksFromSeveralDonors) {
  TestMaster master(state_times());
  ASSERT_TRUE(master.ok()) << master.error();
  ProcCluster pc;
  constexpr int kDonors = 4;
  constexpr int kMib = 96;
  const Deadline setup = deadline_in(30s);
  Donors d;
  ASSERT_NO_FATAL_FAILURE(start_donors(pc, master.address(), kDonors, kMib,
                                       {"--syncs-before", "1", "--grow-to", "5", "--syncs", "2"},
                                       {}, -1, setup, d));
  const std::vector<Handle>& donors = d.handles;
  const uint64_t bytes = d.init[0].bytes;
  const std::string donor_hash = d.init[0].hash;
  ASSERT_GE(bytes, uint64_t{kMib} << 20);
  // The four agree already: nothing moves.
  for (auto h : donors) {
    auto e = expect_synced(pc, h, 0, setup);
    ASSERT_TRUE(e);
    EXPECT_EQ(e->unum("revision"), kDonorRevision) << e->raw;
    EXPECT_EQ(e->unum("tx"), 0u) << e->raw;
    EXPECT_EQ(e->unum("rx"), 0u) << e->raw;
    EXPECT_EQ(e->field("hash").value_or(""), donor_hash) << e->raw;
  }

  const int64_t t_spawn = monotonic_us();
  auto joiner = pc.spawn("joiner 4", state_args(master.address(), 4, 5, kMib) +
                                         std::vector<std::string>{"--stale", "--syncs", "2"});
  ASSERT_TRUE(joiner) << pc.error();
  const Deadline run = deadline_in(40s);
  Initial mine = wait_state_ready(pc, *joiner, run);
  EXPECT_EQ(mine.bytes, bytes);
  EXPECT_NE(mine.hash, donor_hash) << "the joiner's content must differ";
  ASSERT_TRUE(wait_ready(pc, *joiner, 5, run));

  auto got = expect_synced(pc, *joiner, 0, run);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->field("hash").value_or(""), donor_hash) << "joiner: " << got->raw;
  EXPECT_EQ(got->unum("rx"), bytes) << "the joiner must download every comparable byte: "
                                    << got->raw;
  EXPECT_EQ(got->unum("tx"), 0u) << got->raw;
  EXPECT_EQ(got->unum("revision"), kDonorRevision + 1) << "the group's revision: " << got->raw;

  uint64_t tx_sum = 0;
  int serving = 0;
  std::string per_donor;
  for (auto h : donors) {
    auto g = pc.wait_for(h, [](const Event& ev) { return ev.is("grown") || ev.is("error"); }, run);
    ASSERT_TRUE(g && g->is("grown")) << pc.label(h) << ": " << (g ? g->raw : "never grew");
    EXPECT_EQ(g->num("world"), 5) << g->raw;
    auto e = expect_synced(pc, h, 1, run);
    ASSERT_TRUE(e);
    EXPECT_EQ(e->unum("rx"), 0u) << pc.label(h) << ": " << e->raw;
    EXPECT_EQ(e->unum("revision"), kDonorRevision + 1) << e->raw;
    EXPECT_EQ(e->field("hash").value_or(""), donor_hash) << e->raw;
    tx_sum += e->unum("tx");
    if (e->unum("tx") > 0) ++serving;
    per_donor += " " + std::to_string(e->unum("tx") >> 20);
  }
  EXPECT_EQ(tx_sum, got->unum("rx")) << "what the donors sent is what the joiner received";
  EXPECT_GT(serving, 1) << "the download was not striped over several donors (MiB sent:"
                        << per_donor << ")";
  std::printf("[ measure  ] join + sync of %.1f MiB: spawn -> synced %.1f ms (sync call %s ms), "
              "MiB per donor:%s\n",
              bytes / 1048576.0, ms_between(t_spawn, got->at_us()),
              got->field("ms").value_or("?").c_str(), per_donor.c_str());

  // One more sync: everyone agrees, nothing moves.
  std::vector<Handle> all = donors;
  all.push_back(*joiner);
  for (auto h : all) {
    auto e = expect_synced(pc, h, h == *joiner ? 1 : 2, run);
    ASSERT_TRUE(e);
    EXPECT_EQ(e->unum("tx"), 0u) << pc.label(h) << ": " << e->raw;
    EXPECT_EQ(e->unum("rx"), 0u) << pc.label(h) << ": " << e->raw;
    EXPECT_EQ(e->unum("revision"), kDonorRevision + 2) << e->raw;
    EXPECT_EQ(e->field("hash").value_or(""), donor_hash) << e->raw;
  }
  for (auto h : all) expect_clean_end(pc, h, run);
}

// Three donors and a joiner with ~256 MiB. The chosen donor is frozen (SIGSTOP) as soon as its
// stderr shows its first served piece, while the joiner still has requests outstanding to
// it, so the joiner cannot finish; then it is killed. The joiner must get the missing pieces
// from the two others and succeed after the kill; so must the surviving donors.
TEST(StateTransferTest, DonorKilledMidTransferTheJoinerFinishesFromTheOtherDonors) {
  const MasterTimes times = state_times();
  TestMaster master(times);
  ASSERT_TRUE(master.ok()) << master.error();
  ProcCluster pc;
  constexpr int kDonors = 3;
  constexpr int kMib = 256;
  constexpr int kVictim = 1;
  const Deadline setup = deadline_in(30s);
  Donors d;
  ASSERT_NO_FATAL_FAILURE(start_donors(pc, master.address(), kDonors, kMib,
                                       {"--grow-to", "4", "--syncs", "1"},
                                       {"QCCL_LOG_LEVEL=debug"}, kVictim, setup, d));
  const std::vector<Handle>& donors = d.handles;
  const uint64_t bytes = d.init[0].bytes;
  const std::string donor_hash = d.init[0].hash;

  auto joiner = pc.spawn("joiner 3", state_args(master.address(), 3, 4, kMib) +
                                         std::vector<std::string>{"--stale", "--strategy",
                                                                  "receive", "--syncs", "1"});
  ASSERT_TRUE(joiner) << pc.error();
  auto served = pc.wait_stderr(donors[kVictim], "served piece", deadline_in(40s));
  ASSERT_TRUE(served) << "the chosen donor never served a piece";
  const int64_t t_stop = pc.signal(donors[kVictim], SIGSTOP);

  // Frozen: it holds requests of the joiner that it will not answer, so the joiner cannot
  // complete. Watch it for a while (far below the 2 s the library takes to give up on a
  // silent donor): no sync result may appear.
  std::vector<Event> before_kill;
  collect_until(pc, *joiner, [](const Event& ev) {
    return ev.is("synced") || ev.is("sync-fail");
  }, deadline_in(300ms), before_kill);
  for (const auto& ev : before_kill) {
    ASSERT_FALSE(ev.is("synced") || ev.is("sync-fail"))
        << "the joiner finished while a donor was frozen; it was not mid-transfer: " << ev.raw;
  }
  const int64_t t_kill = pc.signal(donors[kVictim], SIGKILL);
  const Deadline after = deadline_in(std::chrono::milliseconds(times.peer_timeout_ms) + 10s);

  auto got = expect_synced(pc, *joiner, 0, after);
  ASSERT_TRUE(got);
  EXPECT_GT(got->at_us(), t_kill) << "the joiner finished before the kill: " << got->raw;
  EXPECT_EQ(got->field("hash").value_or(""), donor_hash) << "joiner: " << got->raw;
  EXPECT_EQ(got->unum("rx"), bytes) << got->raw;
  EXPECT_EQ(got->unum("revision"), kDonorRevision) << got->raw;

  uint64_t survivors_tx = 0;
  for (int i = 0; i < kDonors; ++i) {
    if (i == kVictim) continue;
    auto e = expect_synced(pc, donors[i], 0, after);
    ASSERT_TRUE(e);
    EXPECT_EQ(e->unum("rx"), 0u) << pc.label(donors[i]) << ": " << e->raw;
    EXPECT_EQ(e->field("hash").value_or(""), donor_hash) << e->raw;
    EXPECT_EQ(e->unum("revision"), kDonorRevision) << e->raw;
    survivors_tx += e->unum("tx");
  }
  EXPECT_GT(survivors_tx, 0u);
  EXPECT_LE(survivors_tx, got->unum("rx"));
  std::printf("[ measure  ] donor frozen after its first piece, killed %.1f ms later: joiner "
              "synced %.1f ms after the kill (%.1f MiB, %.1f MiB of it from the survivors)\n",
              ms_between(t_stop, t_kill), ms_between(t_kill, got->at_us()), bytes / 1048576.0,
              survivors_tx / 1048576.0);
  const Deadline end = deadline_in(10s);
  for (int i = 0; i < kDonors; ++i) {
    if (i != kVictim) expect_clean_end(pc, donors[i], end);
  }
  expect_clean_end(pc, *joiner, end);
  auto st = pc.wait_exit(donors[kVictim], end);
  ASSERT_TRUE(st);
  EXPECT_TRUE(WIFSIGNALED(*st) && WTERMSIG(*st) == SIGKILL) << "wait status " << *st;
}

// Three send-only donors and a joiner; the joiner is killed (SIGKILL) as soon as a donor's
// stderr shows a served piece. The master drops it, and every donor's sync succeeds within
// the peer timeout (plus slack) of the kill; a second sync then runs at once and moves
// nothing: the group was not left stalled.
TEST(StateTransferTest, DownloaderKilledMidTransferTheDonorsSyncSucceedsAndTheGroupGoesOn) {
  const MasterTimes times = state_times();
  TestMaster master(times);
  ASSERT_TRUE(master.ok()) << master.error();
  ProcCluster pc;
  constexpr int kDonors = 3;
  constexpr int kMib = 128;
  const Deadline setup = deadline_in(30s);
  Donors d;
  ASSERT_NO_FATAL_FAILURE(start_donors(pc, master.address(), kDonors, kMib,
                                       {"--grow-to", "4", "--syncs", "2", "--strategy", "send"},
                                       {"QCCL_LOG_LEVEL=debug"}, 0, setup, d));
  const std::vector<Handle>& donors = d.handles;
  const std::string donor_hash = d.init[0].hash;

  auto joiner = pc.spawn("joiner 3", state_args(master.address(), 3, 4, kMib) +
                                         std::vector<std::string>{"--stale", "--syncs", "1"});
  ASSERT_TRUE(joiner) << pc.error();
  auto served = pc.wait_stderr(donors[0], "served piece", deadline_in(40s));
  ASSERT_TRUE(served) << "donor 0 never served a piece";
  const int64_t t_kill = pc.signal(*joiner, SIGKILL);
  const auto bound = std::chrono::milliseconds(times.peer_timeout_ms) + 5s;
  const double bound_ms = static_cast<double>(bound.count());
  const Deadline after = deadline_in(bound + 5s);  // the bound is checked on the "at" times

  // The joiner died mid-download: it never printed a sync result.
  std::vector<Event> last_words;
  collect_until(pc, *joiner, [](const Event&) { return false; }, after, last_words);
  for (const auto& ev : last_words) {
    ASSERT_FALSE(ev.is("synced") || ev.is("sync-fail"))
        << "the joiner finished its sync before the kill; it was not mid-transfer: " << ev.raw;
  }
  auto st = pc.wait_exit(*joiner, after);
  ASSERT_TRUE(st);
  EXPECT_TRUE(WIFSIGNALED(*st) && WTERMSIG(*st) == SIGKILL) << "wait status " << *st;

  uint64_t tx_sum = 0;
  std::string latencies;
  for (auto h : donors) {
    auto e = expect_synced(pc, h, 0, after);
    ASSERT_TRUE(e);
    const double ms = ms_between(t_kill, e->at_us());
    EXPECT_LT(ms, bound_ms)
        << pc.label(h) << "'s sync returned too long after the kill: " << e->raw;
    EXPECT_EQ(e->unum("rx"), 0u) << e->raw;
    EXPECT_EQ(e->unum("revision"), kDonorRevision) << e->raw;
    EXPECT_EQ(e->field("hash").value_or(""), donor_hash) << e->raw;
    tx_sum += e->unum("tx");
    latencies += " " + std::to_string(static_cast<int>(ms));
  }
  EXPECT_GT(tx_sum, 0u) << "donor 0 logged a served piece";
  std::printf("[ measure  ] downloader killed mid-transfer: donors' sync returned%s ms after the "
              "kill (%.1f MiB had been served)\n",
              latencies.c_str(), tx_sum / 1048576.0);

  // The group goes on: the next sync completes and moves nothing.
  const Deadline next = deadline_in(15s);
  for (auto h : donors) {
    auto e = expect_synced(pc, h, 1, next);
    ASSERT_TRUE(e);
    EXPECT_EQ(e->unum("tx"), 0u) << pc.label(h) << ": " << e->raw;
    EXPECT_EQ(e->unum("rx"), 0u) << pc.label(h) << ": " << e->raw;
    EXPECT_EQ(e->unum("revision"), kDonorRevision + 1) << e->raw;
    EXPECT_EQ(e->field("hash").value_or(""), donor_hash) << e->raw;
  }
  for (auto h : donors) expect_clean_end(pc, h, next);
}

}  // namespace
}  // namespace qccl::test
