#include "master/state_election.hpp"

#include <iterator>
#include <utility>

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace qccl::master {
namespace {

using wire::StateEntry;
using wire::SyncStrategy;

Election reject(std::string message) {
  Election e;
  e.status = StatusCode::kMismatch;
  e.message = std::move(message);
  return e;
}

// "dtype 10 count 12" (+ " allow_inequality" when set): what a key-set comparison looks at.
std::string describe(const StateEntry& e) {
  return fmt::format("dtype {} count {}{}", e.dtype, e.count,
                     e.allow_inequality ? " allow_inequality" : "");
}

// "peer 3" or "peers 1, 2".
std::string peer_list(const std::vector<PeerId>& ids) {
  return fmt::format("{} {}", ids.size() == 1 ? "peer" : "peers", fmt::join(ids, ", "));
}

// Rule 1, per voter: names strictly increasing. Returns "" when the list is well formed.
std::string check_sorted(PeerId peer, const std::vector<StateEntry>& entries) {
  for (size_t i = 1; i < entries.size(); ++i) {
    const std::string& prev = entries[i - 1].name;
    const std::string& cur = entries[i].name;
    if (cur == prev) {
      return fmt::format("peer {} lists shared-state key '{}' twice", peer, cur);
    }
    if (cur < prev) {
      return fmt::format("peer {} lists shared-state keys out of order ('{}' after '{}')", peer,
                         cur, prev);
    }
  }
  return {};
}

// Rule 1, between two sorted lists: the first difference of `peer`'s keys from the reference
// voter's, or "" when the key sets agree.
std::string diff_keys(PeerId ref, const std::vector<StateEntry>& ref_entries, PeerId peer,
                      const std::vector<StateEntry>& entries) {
  size_t i = 0;
  size_t j = 0;
  while (i < ref_entries.size() || j < entries.size()) {
    if (j == entries.size() || (i < ref_entries.size() && ref_entries[i].name < entries[j].name)) {
      return fmt::format(
          "shared-state keys differ: key '{}' is missing on peer {} (peer {} has it)",
          ref_entries[i].name, peer, ref);
    }
    if (i == ref_entries.size() || entries[j].name < ref_entries[i].name) {
      return fmt::format("shared-state keys differ: peer {} has '{}' which peer {} lacks", peer,
                         entries[j].name, ref);
    }
    const StateEntry& a = ref_entries[i];
    const StateEntry& b = entries[j];
    if (a.dtype != b.dtype || a.count != b.count || a.allow_inequality != b.allow_inequality) {
      return fmt::format("shared-state keys differ: peer {} has '{}' as {}, peer {} as {}", peer,
                         b.name, describe(b), ref, describe(a));
    }
    ++i;
    ++j;
  }
  return {};
}

// Rule 4: the hashes of the comparable (allow_inequality == false) entries, in entry order.
std::vector<uint64_t> content_of(const std::vector<StateEntry>& entries) {
  std::vector<uint64_t> content;
  content.reserve(entries.size());
  for (const StateEntry& e : entries) {
    if (!e.allow_inequality) content.push_back(e.hash);
  }
  return content;
}

}  // namespace

Election elect_shared_state(std::optional<uint64_t> expected_revision,
                            const std::map<PeerId, SyncVote>& votes) {
  if (votes.empty()) return reject("no peer voted in the shared-state sync");

  // 1. Key sets: each list well formed, then each equal to the smallest id's list.
  for (const auto& [peer, vote] : votes) {
    std::string why = check_sorted(peer, vote.entries);
    if (!why.empty()) return reject(std::move(why));
  }
  const auto& [ref_peer, ref_vote] = *votes.begin();
  for (const auto& [peer, vote] : votes) {
    if (peer == ref_peer) continue;
    std::string why = diff_keys(ref_peer, ref_vote.entries, peer, vote.entries);
    if (!why.empty()) return reject(std::move(why));
  }

  // 2. Revisions: never ahead of the group.
  if (expected_revision) {
    for (const auto& [peer, vote] : votes) {
      if (vote.revision > *expected_revision) {
        return reject(fmt::format(
            "peer {} passed revision {} but the group expects at most {} (revisions advance by "
            "exactly one per sync)",
            peer, vote.revision, *expected_revision));
      }
    }
  }

  // 3. Candidates: send-only voters if any, else enforce-popular voters.
  bool any_send_only = false;
  for (const auto& [peer, vote] : votes) {
    any_send_only = any_send_only || vote.strategy == SyncStrategy::kSendOnly;
  }
  const SyncStrategy candidate_strategy =
      any_send_only ? SyncStrategy::kSendOnly : SyncStrategy::kEnforcePopular;

  // 4. Group the candidates by (revision, content); voters within a group stay ascending.
  std::map<PeerId, std::vector<uint64_t>> content;
  for (const auto& [peer, vote] : votes) content.emplace(peer, content_of(vote.entries));
  std::map<std::pair<uint64_t, std::vector<uint64_t>>, std::vector<PeerId>> groups;
  for (const auto& [peer, vote] : votes) {
    if (vote.strategy != candidate_strategy) continue;
    groups[{vote.revision, content.at(peer)}].push_back(peer);
  }
  if (groups.empty()) return reject("no peer offers content: every peer used receive-only");

  // Newest revision, then most voters, then the smallest peer id (a group's first voter).
  auto better = [](const auto& a, const auto& b) {
    if (a.first.first != b.first.first) return a.first.first > b.first.first;
    if (a.second.size() != b.second.size()) return a.second.size() > b.second.size();
    return a.second.front() < b.second.front();
  };
  auto winner = groups.begin();
  for (auto it = std::next(groups.begin()); it != groups.end(); ++it) {
    if (better(*it, *winner)) winner = it;
  }
  const uint64_t elected_revision = winner->first.first;
  const std::vector<uint64_t>& elected = winner->first.second;
  const std::vector<PeerId>& holders = winner->second;

  Election e;
  e.revision = elected_revision;

  // 5. Send-only voters with other content lost.
  for (const auto& [peer, vote] : votes) {
    if (vote.strategy == SyncStrategy::kSendOnly && content.at(peer) != elected) {
      e.kicked.push_back(peer);
    }
  }
  if (!e.kicked.empty()) {
    const bool one = e.kicked.size() == 1;
    e.kick_message = fmt::format(
        "send-only {} lost the shared-state election ({} content differs from the elected "
        "revision {} content held by {})",
        peer_list(e.kicked), one ? "its" : "their", elected_revision, peer_list(holders));
  }

  // 6. Everyone else either holds the elected content or fetches the entries that differ.
  const std::vector<StateEntry>& layout = ref_vote.entries;
  for (const auto& [peer, vote] : votes) {
    if (vote.strategy == SyncStrategy::kSendOnly && content.at(peer) != elected) continue;
    std::vector<wire::FetchEntry> fetch;
    size_t k = 0;  // index into the comparable hashes
    for (size_t i = 0; i < layout.size(); ++i) {
      if (layout[i].allow_inequality) continue;
      if (vote.entries[i].hash != elected[k]) {
        fetch.push_back(wire::FetchEntry{static_cast<uint32_t>(i), elected[k]});
      }
      ++k;
    }
    if (fetch.empty()) {
      e.donors.push_back(peer);
    } else {
      e.fetch.emplace(peer, std::move(fetch));
    }
  }
  return e;
}

}  // namespace qccl::master
