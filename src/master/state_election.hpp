// Shared-state election: the master's decision for one sync round of one peer group (pure).
//
// Input: the group's expected revision (none on the first sync of a run) and every member's
// vote (revision, strategy, entries sorted by name). Output: either a rejection that fails the
// round on every voter with nothing changed (qcclMismatch), or the elected content: who holds
// it (donors), what every other voter must download (fetch), and which send-only peers lost
// (kicked). docs/shared-state.md states the rules; in short:
//
//   1. Key sets: every voter must list the same names with the same dtype, count and
//      allow_inequality flag (and names sorted and unique); otherwise kMismatch naming the
//      first difference.
//   2. Revisions: with an expected revision E, a vote above E is kMismatch ("revisions advance
//      by exactly one per sync"); below E means outdated (it may still be elected if nobody
//      is at E). Without E any revision is accepted (resuming from a checkpoint).
//   3. Candidates: the send-only voters if there are any, else the enforce-popular voters;
//      receive-only voters never are. No candidate: kMismatch.
//   4. Candidates are grouped by (revision, hashes of the comparable entries); the winner has
//      the newest revision, then the most voters, then the smallest peer id among its voters.
//   5. Send-only voters whose content differs from the winner's are kicked.
//   6. Every remaining voter whose hash differs from the winner's on a comparable entry
//      fetches those entries; the others are donors. allow_inequality entries are ignored.
//
// Thread-safety: a pure function.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/ids.hpp"
#include "common/status.hpp"
#include "wire/messages.hpp"

namespace qccl::master {

struct SyncVote {
  uint64_t revision = 0;
  wire::SyncStrategy strategy = wire::SyncStrategy::kEnforcePopular;
  std::vector<wire::StateEntry> entries;
};

struct Election {
  StatusCode status = StatusCode::kOk;  // kMismatch: the round fails on every voter
  std::string message;                  // why (names the offending peers and keys)
  uint64_t revision = 0;                // the elected revision
  std::vector<PeerId> donors;           // voters that hold the elected content, ascending
  // Voters that must download, with the entries (index into the sorted entries, elected hash).
  std::map<PeerId, std::vector<wire::FetchEntry>> fetch;
  std::vector<PeerId> kicked;           // send-only voters whose content lost, ascending
  std::string kick_message;
};

Election elect_shared_state(std::optional<uint64_t> expected_revision,
                            const std::map<PeerId, SyncVote>& votes);

}  // namespace qccl::master
