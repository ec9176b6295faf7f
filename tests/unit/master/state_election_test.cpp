// Shared-state election: key-set and revision checks, candidates, the winner's tie-breaks,
// kicked send-only losers, donors and fetch lists (rules 1-6 of master/state_election.hpp).
#include "master/state_election.hpp"

#include <initializer_list>
#include <string>

#include <gtest/gtest.h>

#include "support/watchdog.hpp"

QCCL_TEST_WATCHDOG(60);

namespace qccl::master {
namespace {

using wire::FetchEntry;
using wire::StateEntry;
using wire::SyncStrategy;

using Ids = std::vector<PeerId>;
using Fetch = std::vector<FetchEntry>;
using Fetches = std::map<PeerId, Fetch>;
using Votes = std::map<PeerId, SyncVote>;

constexpr uint8_t kDtype = 10;
constexpr uint64_t kCount = 4;
// A hash that marks an allow_inequality entry in the compact notation below.
constexpr uint64_t kLoose = ~uint64_t{0};

// A comparable entry (dtype 10, count 4).
StateEntry key(std::string name, uint64_t hash) {
  return StateEntry{std::move(name), kDtype, kCount, hash, false};
}
// An allow_inequality entry; its hash is whatever the peer computed (never compared).
StateEntry loose(std::string name, uint64_t hash = 0) {
  return StateEntry{std::move(name), kDtype, kCount, hash, true};
}

// Entries named "a", "b", ... with the given hashes; kLoose makes an allow_inequality entry.
std::vector<StateEntry> keys(std::initializer_list<uint64_t> hashes) {
  std::vector<StateEntry> entries;
  char name = 'a';
  for (uint64_t h : hashes) {
    entries.push_back(h == kLoose ? loose(std::string(1, name)) : key(std::string(1, name), h));
    ++name;
  }
  return entries;
}

SyncVote vote(SyncStrategy s, uint64_t revision, std::vector<StateEntry> entries) {
  return SyncVote{revision, s, std::move(entries)};
}
SyncVote popular(uint64_t revision, std::initializer_list<uint64_t> hashes) {
  return vote(SyncStrategy::kEnforcePopular, revision, keys(hashes));
}
SyncVote receive(uint64_t revision, std::initializer_list<uint64_t> hashes) {
  return vote(SyncStrategy::kReceiveOnly, revision, keys(hashes));
}
SyncVote send(uint64_t revision, std::initializer_list<uint64_t> hashes) {
  return vote(SyncStrategy::kSendOnly, revision, keys(hashes));
}

// Asserts a rejection: nothing decided.
void expect_mismatch(const Election& e, const std::string& message) {
  EXPECT_EQ(e.status, StatusCode::kMismatch);
  EXPECT_EQ(e.message, message);
  EXPECT_EQ(e.revision, 0u);
  EXPECT_TRUE(e.donors.empty());
  EXPECT_TRUE(e.fetch.empty());
  EXPECT_TRUE(e.kicked.empty());
  EXPECT_EQ(e.kick_message, "");
}

// ---------------------------------------------------------------- content, popularity

TEST(StateElection, IdenticalVotersAreAllDonors) {
  Election e = elect_shared_state(
      3, {{1, popular(3, {7, 8, 9})}, {2, popular(3, {7, 8, 9})}, {3, popular(3, {7, 8, 9})}});
  EXPECT_EQ(e.status, StatusCode::kOk);
  EXPECT_EQ(e.message, "");
  EXPECT_EQ(e.revision, 3u);
  EXPECT_EQ(e.donors, (Ids{1, 2, 3}));
  EXPECT_EQ(e.fetch, Fetches{});
  EXPECT_EQ(e.kicked, Ids{});
  EXPECT_EQ(e.kick_message, "");
}

TEST(StateElection, NoEntriesAtAllIsAgreement) {
  Election e = elect_shared_state(std::nullopt, {{4, popular(2, {})}, {9, popular(2, {})}});
  EXPECT_EQ(e.status, StatusCode::kOk);
  EXPECT_EQ(e.revision, 2u);
  EXPECT_EQ(e.donors, (Ids{4, 9}));
  EXPECT_EQ(e.fetch, Fetches{});
}

TEST(StateElection, OneDirtyKeyFetchesOnlyThatIndex) {
  Election e = elect_shared_state(5, {{1, popular(5, {10, 20, 30})},
                                      {2, popular(5, {10, 20, 30})},
                                      {3, popular(5, {10, 99, 30})}});
  EXPECT_EQ(e.status, StatusCode::kOk);
  EXPECT_EQ(e.revision, 5u);
  EXPECT_EQ(e.donors, (Ids{1, 2}));
  EXPECT_EQ(e.fetch, (Fetches{{3, {{1, 20}}}}));
  EXPECT_EQ(e.kicked, Ids{});
}

TEST(StateElection, PopularContentWinsAndOnlyDifferingKeysAreFetched) {
  // Peer 1 (smallest id) is alone with its content: the pair 2, 3 wins.
  Election e = elect_shared_state(1, {{1, popular(1, {1, 2, 3, 4})},
                                      {2, popular(1, {1, 5, 3, 6})},
                                      {3, popular(1, {1, 5, 3, 6})}});
  EXPECT_EQ(e.status, StatusCode::kOk);
  EXPECT_EQ(e.revision, 1u);
  EXPECT_EQ(e.donors, (Ids{2, 3}));
  EXPECT_EQ(e.fetch, (Fetches{{1, {{1, 5}, {3, 6}}}}));
  EXPECT_EQ(e.kicked, Ids{});
}

TEST(StateElection, TieBrokenBySmallestPeerIdDeterministically) {
  // Two groups of two; the group holding peer 2 wins over the one holding 3 and 4.
  Votes votes{{3, popular(0, {1, 1})},
              {4, popular(0, {1, 1})},
              {2, popular(0, {2, 2})},
              {5, popular(0, {2, 2})}};
  Election e = elect_shared_state(0, votes);
  EXPECT_EQ(e.status, StatusCode::kOk);
  EXPECT_EQ(e.revision, 0u);
  EXPECT_EQ(e.donors, (Ids{2, 5}));
  EXPECT_EQ(e.fetch, (Fetches{{3, {{0, 2}, {1, 2}}}, {4, {{0, 2}, {1, 2}}}}));
  for (int i = 0; i < 5; ++i) {
    Election again = elect_shared_state(0, votes);
    EXPECT_EQ(again.status, e.status);
    EXPECT_EQ(again.revision, e.revision);
    EXPECT_EQ(again.donors, e.donors);
    EXPECT_EQ(again.fetch, e.fetch);
    EXPECT_EQ(again.kicked, e.kicked);
  }
  // Each peer alone with its content: peer 1 wins.
  Election singles = elect_shared_state(
      std::nullopt, {{7, popular(0, {7})}, {1, popular(0, {1})}, {4, popular(0, {4})}});
  EXPECT_EQ(singles.donors, (Ids{1}));
  EXPECT_EQ(singles.fetch, (Fetches{{4, {{0, 1}}}, {7, {{0, 1}}}}));
}

// ---------------------------------------------------------------- revisions

TEST(StateElection, NewestRevisionBeatsPopularityOnFirstSync) {
  Election e = elect_shared_state(
      std::nullopt, {{1, popular(3, {1, 2})}, {2, popular(3, {1, 2})}, {3, popular(5, {8, 2})}});
  EXPECT_EQ(e.status, StatusCode::kOk);
  EXPECT_EQ(e.revision, 5u);
  EXPECT_EQ(e.donors, (Ids{3}));
  EXPECT_EQ(e.fetch, (Fetches{{1, {{0, 8}}}, {2, {{0, 8}}}}));
  EXPECT_EQ(e.kicked, Ids{});
}

TEST(StateElection, OutdatedVotersFetchAndLoseToTheVoterAtTheExpectedRevision) {
  // Peers 1 and 2 are one sync behind, in the majority, with the smallest ids: peer 3 wins.
  Election e = elect_shared_state(
      7, {{1, popular(6, {1, 2, 3})}, {2, popular(6, {1, 2, 3})}, {3, popular(7, {1, 4, 5})}});
  EXPECT_EQ(e.status, StatusCode::kOk);
  EXPECT_EQ(e.revision, 7u);
  EXPECT_EQ(e.donors, (Ids{3}));
  EXPECT_EQ(e.fetch, (Fetches{{1, {{1, 4}, {2, 5}}}, {2, {{1, 4}, {2, 5}}}}));
}

TEST(StateElection, OutdatedVoterWithTheElectedContentIsADonor) {
  // Revision is not content: an outdated peer holding the same bytes needs nothing.
  Election e = elect_shared_state(7, {{1, popular(6, {1, 2})}, {2, popular(7, {1, 2})}});
  EXPECT_EQ(e.status, StatusCode::kOk);
  EXPECT_EQ(e.revision, 7u);
  EXPECT_EQ(e.donors, (Ids{1, 2}));
  EXPECT_EQ(e.fetch, Fetches{});
}

TEST(StateElection, AllVotersOutdatedTheNewestAmongThemWins) {
  Election e = elect_shared_state(
      10, {{1, popular(8, {1})}, {2, popular(8, {1})}, {3, popular(8, {1})}, {4, popular(9, {2})}});
  EXPECT_EQ(e.status, StatusCode::kOk);
  EXPECT_EQ(e.revision, 9u);
  EXPECT_EQ(e.donors, (Ids{4}));
  EXPECT_EQ(e.fetch, (Fetches{{1, {{0, 2}}}, {2, {{0, 2}}}, {3, {{0, 2}}}}));
}

TEST(StateElection, RevisionAboveTheExpectedOneIsAMismatchNamingThePeer) {
  Election e =
      elect_shared_state(7, {{1, popular(7, {1})}, {2, receive(6, {1})}, {4, popular(9, {1})}});
  expect_mismatch(e,
                  "peer 4 passed revision 9 but the group expects at most 7 (revisions advance "
                  "by exactly one per sync)");
  // Receive-only voters are checked too.
  Election r = elect_shared_state(0, {{1, popular(0, {1})}, {3, receive(1, {1})}});
  expect_mismatch(r,
                  "peer 3 passed revision 1 but the group expects at most 0 (revisions advance "
                  "by exactly one per sync)");
}

TEST(StateElection, FirstSyncAcceptsAnyRevision) {
  Election e = elect_shared_state(
      std::nullopt, {{1, popular(1000, {1})}, {2, popular(1000, {1})}, {3, receive(999999, {1})}});
  EXPECT_EQ(e.status, StatusCode::kOk);
  EXPECT_EQ(e.revision, 1000u);
  EXPECT_EQ(e.donors, (Ids{1, 2, 3}));
  EXPECT_EQ(e.fetch, Fetches{});
}

TEST(StateElection, DragAlongPeerFetchesExactlyWhatTheOthersChanged) {
  // Keys a, b (allow_inequality), c, d. Peers 1 and 2 train; peer 3 never changes its state
  // itself: after each round it holds what it fetched, one revision behind the others.
  const SyncStrategy kRecv = SyncStrategy::kReceiveOnly;
  auto state = [](uint64_t a, uint64_t c, uint64_t d) {
    return std::vector<StateEntry>{key("a", a), loose("b"), key("c", c), key("d", d)};
  };

  // Round 1 (first sync): everyone at revision 0 with the same content.
  Election r1 =
      elect_shared_state(std::nullopt, {{1, vote(SyncStrategy::kEnforcePopular, 0, state(1, 3, 4))},
                                        {2, vote(SyncStrategy::kEnforcePopular, 0, state(1, 3, 4))},
                                        {3, vote(kRecv, 0, state(1, 3, 4))}});
  EXPECT_EQ(r1.status, StatusCode::kOk);
  EXPECT_EQ(r1.revision, 0u);
  EXPECT_EQ(r1.donors, (Ids{1, 2, 3}));
  EXPECT_EQ(r1.fetch, Fetches{});

  // Round 2: peers 1 and 2 updated a and c; peer 3 still at revision 0.
  Election r2 =
      elect_shared_state(1, {{1, vote(SyncStrategy::kEnforcePopular, 1, state(11, 13, 4))},
                             {2, vote(SyncStrategy::kEnforcePopular, 1, state(11, 13, 4))},
                             {3, vote(kRecv, 0, state(1, 3, 4))}});
  EXPECT_EQ(r2.status, StatusCode::kOk);
  EXPECT_EQ(r2.revision, 1u);
  EXPECT_EQ(r2.donors, (Ids{1, 2}));
  EXPECT_EQ(r2.fetch, (Fetches{{3, {{0, 11}, {2, 13}}}}));

  // Round 3: peers 1 and 2 updated c and d; peer 3 holds round 2's content at revision 1.
  Election r3 =
      elect_shared_state(2, {{1, vote(SyncStrategy::kEnforcePopular, 2, state(11, 23, 24))},
                             {2, vote(SyncStrategy::kEnforcePopular, 2, state(11, 23, 24))},
                             {3, vote(kRecv, 1, state(11, 13, 4))}});
  EXPECT_EQ(r3.status, StatusCode::kOk);
  EXPECT_EQ(r3.revision, 2u);
  EXPECT_EQ(r3.donors, (Ids{1, 2}));
  EXPECT_EQ(r3.fetch, (Fetches{{3, {{2, 23}, {3, 24}}}}));

  // Round 4: nothing changed anywhere but the revisions: peer 3 is a donor again.
  Election r4 =
      elect_shared_state(3, {{1, vote(SyncStrategy::kEnforcePopular, 3, state(11, 23, 24))},
                             {2, vote(SyncStrategy::kEnforcePopular, 3, state(11, 23, 24))},
                             {3, vote(kRecv, 2, state(11, 23, 24))}});
  EXPECT_EQ(r4.revision, 3u);
  EXPECT_EQ(r4.donors, (Ids{1, 2, 3}));
  EXPECT_EQ(r4.fetch, Fetches{});
}

// ---------------------------------------------------------------- key sets

TEST(StateElection, MissingKeyIsAMismatchNamingTheKey) {
  Votes votes{{1, vote(SyncStrategy::kEnforcePopular, 0, {key("a", 1), key("b", 2), key("c", 3)})},
              {2, vote(SyncStrategy::kEnforcePopular, 0, {key("a", 1), key("c", 3)})}};
  expect_mismatch(elect_shared_state(0, votes),
                  "shared-state keys differ: key 'b' is missing on peer 2 (peer 1 has it)");
  // Missing at the end of the list.
  votes[2].entries = {key("a", 1), key("b", 2)};
  expect_mismatch(elect_shared_state(0, votes),
                  "shared-state keys differ: key 'c' is missing on peer 2 (peer 1 has it)");
}

TEST(StateElection, ExtraKeyIsAMismatchNamingTheKey) {
  Votes votes{{1, vote(SyncStrategy::kEnforcePopular, 0, {key("a", 1), key("b", 2)})},
              {2, vote(SyncStrategy::kEnforcePopular, 0, {key("a", 1), key("b", 2)})},
              {3, vote(SyncStrategy::kEnforcePopular, 0, {key("a", 1), key("b", 2), key("c", 3)})}};
  expect_mismatch(elect_shared_state(0, votes),
                  "shared-state keys differ: peer 3 has 'c' which peer 1 lacks");
  // Extra in the middle.
  votes[3].entries = {key("a", 1), key("aa", 1), key("b", 2)};
  expect_mismatch(elect_shared_state(0, votes),
                  "shared-state keys differ: peer 3 has 'aa' which peer 1 lacks");
}

TEST(StateElection, DtypeCountOrFlagDifferenceIsAMismatchNamingTheKey) {
  const SyncStrategy kPop = SyncStrategy::kEnforcePopular;
  StateEntry w{"w", 10, 10, 5, false};
  StateEntry w_count = w;
  w_count.count = 12;
  StateEntry w_dtype = w;
  w_dtype.dtype = 7;
  StateEntry w_flag = w;
  w_flag.allow_inequality = true;
  w_flag.hash = 0;

  expect_mismatch(elect_shared_state(0, {{1, vote(kPop, 0, {w})}, {3, vote(kPop, 0, {w_count})}}),
                  "shared-state keys differ: peer 3 has 'w' as dtype 10 count 12, peer 1 as "
                  "dtype 10 count 10");
  expect_mismatch(elect_shared_state(0, {{1, vote(kPop, 0, {w})}, {2, vote(kPop, 0, {w_dtype})}}),
                  "shared-state keys differ: peer 2 has 'w' as dtype 7 count 10, peer 1 as "
                  "dtype 10 count 10");
  expect_mismatch(elect_shared_state(0, {{1, vote(kPop, 0, {w})}, {2, vote(kPop, 0, {w_flag})}}),
                  "shared-state keys differ: peer 2 has 'w' as dtype 10 count 10 "
                  "allow_inequality, peer 1 as dtype 10 count 10");
  // Only hashes differ: not a key-set difference.
  StateEntry w_hash = w;
  w_hash.hash = 6;
  Election e = elect_shared_state(0, {{1, vote(kPop, 0, {w})}, {2, vote(kPop, 0, {w_hash})}});
  EXPECT_EQ(e.status, StatusCode::kOk);
}

TEST(StateElection, EveryVoterIsComparedToTheSmallestPeerId) {
  // Peers 2 and 3 agree with each other, not with peer 1: the message names peer 2 vs 1.
  Votes votes{{1, popular(0, {1, 2})},
              {2, vote(SyncStrategy::kEnforcePopular, 0, {key("a", 1)})},
              {3, vote(SyncStrategy::kEnforcePopular, 0, {key("a", 1)})}};
  expect_mismatch(elect_shared_state(std::nullopt, votes),
                  "shared-state keys differ: key 'b' is missing on peer 2 (peer 1 has it)");
}

TEST(StateElection, UnsortedOrDuplicateNamesAreAMismatchNamingThePeer) {
  const SyncStrategy kPop = SyncStrategy::kEnforcePopular;
  expect_mismatch(elect_shared_state(0, {{1, vote(kPop, 0, {key("a", 1), key("b", 2)})},
                                         {2, vote(kPop, 0, {key("b", 2), key("a", 1)})}}),
                  "peer 2 lists shared-state keys out of order ('a' after 'b')");
  expect_mismatch(elect_shared_state(0, {{1, vote(kPop, 0, {key("a", 1), key("a", 1)})},
                                         {2, vote(kPop, 0, {key("a", 1), key("a", 1)})}}),
                  "peer 1 lists shared-state key 'a' twice");
  // Checked before key sets are compared, whatever the strategy.
  expect_mismatch(
      elect_shared_state(0, {{1, vote(kPop, 0, {key("a", 1)})},
                             {5, vote(SyncStrategy::kReceiveOnly, 0, {key("a", 1), loose("a")})}}),
      "peer 5 lists shared-state key 'a' twice");
}

TEST(StateElection, KeySetsAreCheckedBeforeRevisions) {
  expect_mismatch(elect_shared_state(0, {{1, popular(0, {1, 2})}, {2, popular(9, {1})}}),
                  "shared-state keys differ: key 'b' is missing on peer 2 (peer 1 has it)");
}

TEST(StateElection, NoVotesIsAMismatch) {
  expect_mismatch(elect_shared_state(std::nullopt, {}), "no peer voted in the shared-state sync");
}

// ---------------------------------------------------------------- allow_inequality

TEST(StateElection, AllowInequalityEntriesAreNeverFetchedNorCounted) {
  // Entry b is allow_inequality with a different hash on every peer. On the comparable
  // entries, peers 2 and 3 agree (2 votes) against peer 1.
  const SyncStrategy kPop = SyncStrategy::kEnforcePopular;
  Election e =
      elect_shared_state(4, {{1, vote(kPop, 4, {key("a", 1), loose("b", 100), key("c", 3)})},
                             {2, vote(kPop, 4, {key("a", 1), loose("b", 200), key("c", 9)})},
                             {3, vote(kPop, 4, {key("a", 1), loose("b", 300), key("c", 9)})}});
  EXPECT_EQ(e.status, StatusCode::kOk);
  EXPECT_EQ(e.revision, 4u);
  EXPECT_EQ(e.donors, (Ids{2, 3}));
  EXPECT_EQ(e.fetch, (Fetches{{1, {{2, 9}}}}));

  // Comparable entries equal, only allow_inequality hashes differ: everyone is a donor.
  Election same = elect_shared_state(4, {{1, vote(kPop, 4, {loose("x", 1), key("y", 2)})},
                                         {2, vote(kPop, 4, {loose("x", 5), key("y", 2)})}});
  EXPECT_EQ(same.status, StatusCode::kOk);
  EXPECT_EQ(same.donors, (Ids{1, 2}));
  EXPECT_EQ(same.fetch, Fetches{});

  // Only allow_inequality entries: nothing to compare, all donors.
  Election none = elect_shared_state(
      std::nullopt, {{1, popular(2, {kLoose, kLoose})}, {2, receive(1, {kLoose, kLoose})}});
  EXPECT_EQ(none.status, StatusCode::kOk);
  EXPECT_EQ(none.revision, 2u);
  EXPECT_EQ(none.donors, (Ids{1, 2}));
  EXPECT_EQ(none.fetch, Fetches{});
}

// ---------------------------------------------------------------- strategies

TEST(StateElection, ReceiveOnlyIsNeverACandidateEvenAsTheMajority) {
  Election e = elect_shared_state(2, {{1, receive(2, {5, 6})},
                                      {2, receive(2, {5, 6})},
                                      {3, receive(2, {5, 6})},
                                      {4, popular(2, {5, 7})}});
  EXPECT_EQ(e.status, StatusCode::kOk);
  EXPECT_EQ(e.revision, 2u);
  EXPECT_EQ(e.donors, (Ids{4}));
  EXPECT_EQ(e.fetch, (Fetches{{1, {{1, 7}}}, {2, {{1, 7}}}, {3, {{1, 7}}}}));
  EXPECT_EQ(e.kicked, Ids{});

  // Nor when it holds a newer revision than every candidate.
  Election newer = elect_shared_state(std::nullopt, {{1, receive(9, {1})}, {2, popular(3, {2})}});
  EXPECT_EQ(newer.revision, 3u);
  EXPECT_EQ(newer.donors, (Ids{2}));
  EXPECT_EQ(newer.fetch, (Fetches{{1, {{0, 2}}}}));
}

TEST(StateElection, ReceiveOnlyWithTheElectedContentIsADonor) {
  Election e = elect_shared_state(1, {{1, receive(1, {5})}, {2, popular(1, {5})}});
  EXPECT_EQ(e.status, StatusCode::kOk);
  EXPECT_EQ(e.donors, (Ids{1, 2}));
  EXPECT_EQ(e.fetch, Fetches{});
}

TEST(StateElection, AllReceiveOnlyIsAMismatch) {
  expect_mismatch(elect_shared_state(0, {{1, receive(0, {1})}, {2, receive(0, {1})}}),
                  "no peer offers content: every peer used receive-only");
}

TEST(StateElection, SendOnlyWinsOverAPopularMajority) {
  Election e = elect_shared_state(3, {{1, popular(3, {1, 2, 3})},
                                      {2, popular(3, {1, 2, 3})},
                                      {3, popular(3, {1, 2, 3})},
                                      {4, send(3, {1, 8, 3})}});
  EXPECT_EQ(e.status, StatusCode::kOk);
  EXPECT_EQ(e.revision, 3u);
  EXPECT_EQ(e.donors, (Ids{4}));
  EXPECT_EQ(e.fetch, (Fetches{{1, {{1, 8}}}, {2, {{1, 8}}}, {3, {{1, 8}}}}));
  EXPECT_EQ(e.kicked, Ids{});
  EXPECT_EQ(e.kick_message, "");

  // Even when the popular peers are at a newer revision.
  Election older = elect_shared_state(3, {{1, popular(3, {1})}, {2, send(2, {7})}});
  EXPECT_EQ(older.revision, 2u);
  EXPECT_EQ(older.donors, (Ids{2}));
  EXPECT_EQ(older.fetch, (Fetches{{1, {{0, 7}}}}));
}

TEST(StateElection, TwoDisagreeingSendOnlyPeersTheSmallestIdWinsTheOtherIsKicked) {
  Election e = elect_shared_state(7, {{2, send(7, {1, 2})}, {5, send(7, {1, 3})}});
  EXPECT_EQ(e.status, StatusCode::kOk);
  EXPECT_EQ(e.message, "");
  EXPECT_EQ(e.revision, 7u);
  EXPECT_EQ(e.donors, (Ids{2}));
  EXPECT_EQ(e.fetch, Fetches{});
  EXPECT_EQ(e.kicked, (Ids{5}));
  EXPECT_EQ(e.kick_message,
            "send-only peer 5 lost the shared-state election (its content differs from the "
            "elected revision 7 content held by peer 2)");
}

TEST(StateElection, SendOnlyNewestRevisionWinsAndSameContentIsNotKicked) {
  // Peer 1 is outdated with other content: kicked. Peer 3 is outdated with the elected
  // content: a donor (kicking looks at content, not revision).
  Election e = elect_shared_state(7, {{1, send(6, {4})},
                                      {2, send(7, {5})},
                                      {3, send(6, {5})},
                                      {4, send(7, {5})},
                                      {6, send(7, {9})}});
  EXPECT_EQ(e.status, StatusCode::kOk);
  EXPECT_EQ(e.revision, 7u);
  EXPECT_EQ(e.donors, (Ids{2, 3, 4}));
  EXPECT_EQ(e.fetch, Fetches{});
  EXPECT_EQ(e.kicked, (Ids{1, 6}));
  EXPECT_EQ(e.kick_message,
            "send-only peers 1, 6 lost the shared-state election (their content differs from "
            "the elected revision 7 content held by peers 2, 4)");
}

TEST(StateElection, SendOnlyLoserWithAReceiveOnlyPeerPresent) {
  Election e = elect_shared_state(
      std::nullopt, {{1, receive(0, {1, 1})}, {3, send(4, {1, 2})}, {6, send(4, {3, 3})}});
  EXPECT_EQ(e.status, StatusCode::kOk);
  EXPECT_EQ(e.revision, 4u);
  EXPECT_EQ(e.donors, (Ids{3}));
  EXPECT_EQ(e.fetch, (Fetches{{1, {{1, 2}}}}));
  EXPECT_EQ(e.kicked, (Ids{6}));
  EXPECT_EQ(e.kick_message,
            "send-only peer 6 lost the shared-state election (its content differs from the "
            "elected revision 4 content held by peer 3)");
}

TEST(StateElection, MixedStrategiesFollowTheDocumentedRules) {
  // Candidates are the send-only peers 2, 5, 6: groups (7,B)={2}, (6,B)={5}, (7,D)={6}; the
  // newest revision ties between {2} and {6}, one voter each, so peer 2's content wins.
  // Enforce-popular peers 1 (A) and 4 (B) are not candidates: 4 holds B and is a donor, 1
  // fetches. Receive-only 3 (outdated, C) fetches. Send-only 5 holds B at an older revision:
  // donor. Send-only 6 holds D: kicked, neither donor nor fetcher.
  Election e = elect_shared_state(7, {{1, popular(7, {1, 1, 1})},
                                      {2, send(7, {2, 2, 1})},
                                      {3, receive(6, {3, 2, 3})},
                                      {4, popular(7, {2, 2, 1})},
                                      {5, send(6, {2, 2, 1})},
                                      {6, send(7, {4, 4, 4})}});
  EXPECT_EQ(e.status, StatusCode::kOk);
  EXPECT_EQ(e.revision, 7u);
  EXPECT_EQ(e.donors, (Ids{2, 4, 5}));
  EXPECT_EQ(e.fetch, (Fetches{{1, {{0, 2}, {1, 2}}}, {3, {{0, 2}, {2, 1}}}}));
  EXPECT_EQ(e.kicked, (Ids{6}));
  EXPECT_EQ(e.kick_message,
            "send-only peer 6 lost the shared-state election (its content differs from the "
            "elected revision 7 content held by peer 2)");
}

TEST(StateElection, EnforcePopularPeersAreNeverKicked) {
  Election e =
      elect_shared_state(1, {{1, popular(1, {1})}, {2, popular(1, {2})}, {3, popular(1, {2})}});
  EXPECT_EQ(e.donors, (Ids{2, 3}));
  EXPECT_EQ(e.fetch, (Fetches{{1, {{0, 2}}}}));
  EXPECT_EQ(e.kicked, Ids{});
  EXPECT_EQ(e.kick_message, "");
}

}  // namespace
}  // namespace qccl::master
