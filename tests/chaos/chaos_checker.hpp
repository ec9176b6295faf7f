// The invariants of the chaos harness and the checks of the peers' step lines.
//
// Invariants (the report lists each with the number of times it was checked):
//   progress       a step completes within the peer timeout plus a margin (the bound) of
//                  the last step or of the last fault injected since; faults restart that
//                  clock only within one bound of the first fault since the last step, so a
//                  hang is reported within two bounds even while faults keep coming
//   allreduce      every successful plain and quantized all-reduce equals, byte for byte, the
//                  exact reduction over the contributions of the participants its result
//                  names (mask), popcount(mask) is the reported world size and the reporting
//                  peer is in it
//   agreement      every peer that completed step s reports the same masks and result hashes
//   participants   every participant named by a result was a live peer process at that time
//   state          after every sync the model hash equals expected(step), so it is equal on
//                  every peer
//   revisions      a peer's steps within one communicator are consecutive; the run's revision
//                  never goes back (unless the master reported the group empty: documented
//                  shared-state behaviour, counted as a reset)
//   local          no peer saw a local check fail ("bad" lines: non-uniform results, inputs
//                  changed by a failed op, the allow_content_inequality tensor changed)
//   peers          no peer got an unexpected result or exited unasked; graceful leaves finish
//   master         the master never exits
//   memory         the master's VmRSS stays under its bound
//
// StepChecker is pure: it gets the step lines and the slot history and reports violations
// through a callback. Thread-safety: none.
#pragma once

#include <bit>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "chaos_model.hpp"
#include "support/peer_events.hpp"

namespace qccl::chaos {

using test::Event;

enum class Inv { kProgress, kAllReduce, kAgreement, kParticipants, kState, kRevisions, kLocal,
                 kPeers, kMaster, kMemory, kCount };

inline const char* inv_name(Inv i) {
  static const char* const kNames[] = {"progress", "allreduce", "agreement", "participants",
                                       "state",    "revisions", "local",     "peers",
                                       "master",   "memory"};
  return kNames[static_cast<int>(i)];
}

class Invariants {
 public:
  using Sink = std::function<void(Inv, const std::string&)>;
  explicit Invariants(Sink sink) : sink_(std::move(sink)) {}

  void check(Inv i, uint64_t n = 1) { checks_[static_cast<int>(i)] += n; }
  void violate(Inv i, const std::string& what) {
    ++violations_[static_cast<int>(i)];
    if (messages_.size() < 50) messages_.push_back(std::string(inv_name(i)) + ": " + what);
    sink_(i, what);
  }
  uint64_t checks(Inv i) const { return checks_[static_cast<int>(i)]; }
  uint64_t violations(Inv i) const { return violations_[static_cast<int>(i)]; }
  uint64_t total_violations() const {
    uint64_t n = 0;
    for (uint64_t v : violations_) n += v;
    return n;
  }
  const std::vector<std::string>& messages() const { return messages_; }

 private:
  Sink sink_;
  uint64_t checks_[static_cast<int>(Inv::kCount)] = {};
  uint64_t violations_[static_cast<int>(Inv::kCount)] = {};
  std::vector<std::string> messages_;
};

// When each slot had a live peer process: [spawned, reaped) in CLOCK_MONOTONIC µs.
class SlotHistory {
 public:
  static constexpr int64_t kOpen = INT64_MAX;
  void begin(int slot, int64_t at) { lives_[slot].push_back({at, kOpen}); }
  void end(int slot, int64_t at) {
    if (!lives_[slot].empty() && lives_[slot].back().second == kOpen) lives_[slot].back().second = at;
  }
  // True if slot had a live process at some time in [from, to].
  bool alive_within(int slot, int64_t from, int64_t to) const {
    if (slot < 0 || slot >= kMaxSlots) return false;
    for (const auto& [a, b] : lives_[slot]) {
      if (a <= to && b >= from) return true;
    }
    return false;
  }

 private:
  std::vector<std::pair<int64_t, int64_t>> lives_[kMaxSlots];
};

class StepChecker {
 public:
  explicit StepChecker(Invariants& inv) : inv_(inv) {}

  struct Outcome {
    bool new_step = false;  // the first report of this step (progress)
    bool solo = false;
    bool reset = false;     // a legitimate revision reset (the group had emptied)
  };

  // The master reported the group empty at `at_us`.
  void on_group_emptied(int64_t at_us) { last_empty_us_ = at_us; ++empties_; }

  // One step line of peer `serial` (slot `slot`, label `who`).
  Outcome on_step(const Event& e, int64_t serial, int slot, const std::string& who,
                  const SlotHistory& slots) {
    Outcome out;
    const uint64_t s = e.unum("step");
    const int inc = static_cast<int>(e.num("inc"));
    const uint64_t mask = e.unum("mask"), qmask = e.unum("qmask");
    const int64_t world = e.num("world"), qworld = e.num("qworld");
    const int64_t t0 = e.num("t0"), at = e.num("at"), sync_at = e.num("sync_at");
    const std::string ctx = who + " step " + std::to_string(s) + ": ";
    out.solo = e.num("solo") == 1;
    ++lines_;

    // revisions: consecutive within a communicator, never behind the run.
    inv_.check(Inv::kRevisions);
    auto& last = last_[serial];
    if (last.inc == inc && last.step >= 0 && s != static_cast<uint64_t>(last.step) + 1) {
      inv_.violate(Inv::kRevisions, ctx + "communicator " + std::to_string(inc) +
                                        " went from step " + std::to_string(last.step));
    }
    for (uint64_t later = s + 2; later <= max_step_; ++later) {
      auto it = first_sync_.find(later);
      if (it == first_sync_.end() || it->second >= sync_at) continue;
      if (last_empty_us_ > it->second) {  // the group emptied since: a new revision line
        out.reset = true;
        ++generation_;
        ++resets_;
        first_sync_.clear();
        records_.clear();
        last_.clear();
        max_step_ = 0;
      } else {
        inv_.violate(Inv::kRevisions, ctx + "synced after revision " + std::to_string(later) +
                                          " was (the run's revision went back)\n  " + e.raw);
      }
      break;
    }
    last_[serial] = {inc, static_cast<int64_t>(s)};
    if (s > max_step_) max_step_ = s;
    if (!first_sync_.count(s) || first_sync_[s] > sync_at) first_sync_[s] = sync_at;

    // allreduce: the exact results for the named participants.
    inv_.check(Inv::kAllReduce, 2);
    const uint64_t own = uint64_t{1} << slot;
    if (std::popcount(mask) != world || (mask & own) == 0 || mask >> kMaxSlots != 0) {
      inv_.violate(Inv::kAllReduce, ctx + "plain mask " + std::to_string(mask) + " vs world " +
                                        std::to_string(world) + " / own slot " +
                                        std::to_string(slot) + "\n  " + e.raw);
    }
    if (std::popcount(qmask) != qworld || (qmask & own) == 0 || qmask >> kMaxSlots != 0) {
      inv_.violate(Inv::kAllReduce, ctx + "quant mask " + std::to_string(qmask) + " vs world " +
                                        std::to_string(qworld) + " / own slot " +
                                        std::to_string(slot) + "\n  " + e.raw);
    }
    if (e.hexnum("plain") != plain_hash(s, mask)) {
      inv_.violate(Inv::kAllReduce, ctx + "plain result differs from the exact sum over mask " +
                                        std::to_string(mask) + "\n  " + e.raw);
    }
    if (e.hexnum("quant") != quant_hash(s, qmask)) {
      inv_.violate(Inv::kAllReduce, ctx + "quantized result differs from the exact sum over "
                                          "mask " + std::to_string(qmask) + "\n  " + e.raw);
    }

    // participants: every named peer existed while the step ran.
    inv_.check(Inv::kParticipants);
    for (int b = 0; b < kMaxSlots; ++b) {
      if (((mask | qmask) >> b & 1) != 0 && !slots.alive_within(b, t0, at)) {
        inv_.violate(Inv::kParticipants, ctx + "slot " + std::to_string(b) +
                                             " had no live peer while the step ran\n  " + e.raw);
      }
    }

    // state: expected(s), hence the same everywhere.
    inv_.check(Inv::kState);
    if (e.hexnum("state") != expected_.hash_at(s)) {
      inv_.violate(Inv::kState, ctx + "model hash is not expected(" + std::to_string(s) + ")\n  " +
                                    e.raw);
    }

    // agreement: the first report of the step defines it.
    inv_.check(Inv::kAgreement);
    auto [it, inserted] = records_.try_emplace(
        s, Record{mask, qmask, e.field("plain").value_or(""), e.field("quant").value_or(""),
                  e.field("state").value_or(""), who});
    if (inserted) {
      out.new_step = true;
      ++steps_;
      if (out.solo) ++solo_steps_;
      while (records_.size() > 4096) records_.erase(records_.begin());
      while (first_sync_.size() > 4096) first_sync_.erase(first_sync_.begin());
    } else {
      const Record& r = it->second;
      if (r.mask != mask || r.qmask != qmask || r.plain != e.field("plain") ||
          r.quant != e.field("quant") || r.state != e.field("state")) {
        inv_.violate(Inv::kAgreement, ctx + "differs from " + r.who + "'s report of the step "
                                            "(masks " + std::to_string(r.mask) + "/" +
                                            std::to_string(r.qmask) + ")\n  " + e.raw);
      }
    }
    return out;
  }

  uint64_t steps() const { return steps_; }
  uint64_t solo_steps() const { return solo_steps_; }
  uint64_t lines() const { return lines_; }
  uint64_t max_step() const { return max_step_; }
  uint64_t resets() const { return resets_; }
  uint64_t empties() const { return empties_; }

 private:
  struct Record {
    uint64_t mask, qmask;
    std::string plain, quant, state, who;
  };
  struct Last {
    int inc = -1;
    int64_t step = -1;
  };

  uint64_t plain_hash(uint64_t s, uint64_t mask) {
    auto key = std::make_pair(s, mask);
    if (auto it = plain_cache_.find(key); it != plain_cache_.end()) return it->second;
    plain_expected(mask, s, plain_buf_);
    uint64_t h = bytes_hash(plain_buf_.data(), plain_buf_.size() * 8, 0);
    if (plain_cache_.size() > 4096) plain_cache_.erase(plain_cache_.begin());
    return plain_cache_[key] = h;
  }
  uint64_t quant_hash(uint64_t s, uint64_t mask) {
    auto key = std::make_pair(s, mask);
    if (auto it = quant_cache_.find(key); it != quant_cache_.end()) return it->second;
    quant_expected(mask, s, quant_buf_);
    uint64_t h = bytes_hash(quant_buf_.data(), quant_buf_.size() * 8, 0);
    if (quant_cache_.size() > 4096) quant_cache_.erase(quant_cache_.begin());
    return quant_cache_[key] = h;
  }

  Invariants& inv_;
  ExpectedModel expected_;
  std::map<uint64_t, Record> records_;
  std::map<uint64_t, int64_t> first_sync_;  // step -> earliest sync_at reported
  std::map<int64_t, Last> last_;            // peer serial -> its last step line
  std::map<std::pair<uint64_t, uint64_t>, uint64_t> plain_cache_, quant_cache_;
  std::vector<uint64_t> plain_buf_;
  std::vector<double> quant_buf_;
  uint64_t max_step_ = 0;
  int64_t last_empty_us_ = -1;
  uint64_t steps_ = 0, solo_steps_ = 0, lines_ = 0, resets_ = 0, empties_ = 0;
  int generation_ = 0;
};

}  // namespace qccl::chaos
