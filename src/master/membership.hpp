// Membership: the master's brain, a pure and deterministic state machine.
//
// Events go in (a peer registered, a message arrived, a connection closed, time passed);
// what to do comes out (messages to send, connections to close, log lines). No sockets, no
// timers, no clock reads: the caller passes `now`, and asks next_deadline() when to call
// tick() again. MasterServer (master_server.hpp) is the I/O shell around it; the unit tests
// drive it directly.
//
// Peers and their states:
//   Registered  connected and known, waiting to be admitted; sends heartbeats; may do nothing
//               else. Admitted when every accepted peer (all groups) votes kUpdateTopology,
//               or at once when no peer is accepted (the first peer of a run).
//   Accepted    member of its group's ring; may vote and run collectives.
//   (gone)      left, disconnected or expelled; its id is never reused.
//
// Epochs: `global_epoch` grows at every change anywhere; a group's `epoch` is set to the new
// global epoch whenever that group changes (a member added or removed, or a collective of the
// group aborted, which invalidates its data connections). Collectives carry their group epoch;
// anything about an older epoch is answered as failed, never believed.
//
// Votes (kUpdateTopology, kPeersPending) are global over all accepted peers. A vote that
// some accepted peer has not joined vote_timeout after the first vote expels that peer as a
// straggler and then completes. Collectives are per (group, tag, seq): committed (M2COpResult
// ok) once every group member reported success; aborted for the whole group as soon as one
// member reports failure, a member is lost, or a member has not started it vote_timeout after
// the first one did. Differing descriptors abort it with kMismatch once every member has
// started it (a member that only starts after an abort would run its call as the others'
// retry instead of failing it). A collective whose starters gave an op timeout is aborted with
// kTimeout for the whole group at its first start + the smallest timeout given, whoever has
// or has not started it; a member that starts it afterwards fails it the same way (its peer
// remembers the abort), so nobody is expelled for being late to it.
//
// Out-of-step calls (membership_phases.cpp, docs/call-order.md): after every vote, collective
// start and sync request, calls of a group that can never meet (a vote and a collective, two
// vote kinds, ...) are resolved at once: the phase a settled peer entered first stays, the
// others are answered kInvalidUsage (a fresh peer's peers-pending vote: "nothing pending").
//
// Topology (membership_topology.cpp, docs/topology.md): a completed kOptimizeTopology vote
// starts a probe round: every peer gets an M2CProbePlan naming the links of its group (directed,
// out of it) that have no measurement younger than probe_max_age, scheduled in time slots of
// disjoint pairs; once every prober reported (stragglers expelled at the deadline), each group's
// ring is solved (ring_solver.hpp) and, if it changed, applied with a new group epoch. Peers
// that no ring of reachable links can include are expelled. Voters then get M2CVoteResult.
//
// Shared-state syncs (membership_sync.cpp) are per group: a round collects every member's
// C2MSyncState (stragglers expelled at the vote timeout), elects the content
// (state_election.hpp), sends each member its M2CSyncPlan, waits for every receiver's
// C2MSyncDone and ends with M2CSyncResult. A receiver that fails ends the round with its
// status for everyone; a member lost during the transfer no longer counts. The group's
// expected revision moves on only when a round succeeds, and is forgotten with the group.
//
// Resuming a run (membership_resume.cpp, docs/reliability.md §8): a master that has had no
// peer yet may adopt the run of the first peer that sends C2MResume (its run id, generation +
// 1). For peer_timeout it takes the resumes of that run's peers (phase Resumed: known,
// heartbeating, in no group yet), and closes the window early once every member of every
// reported ring is back. Then, for each group of which more than half the reported ring came
// back (a quorum: two masters cannot both resume one ring), it answers the ops the peers waited
// on (committed if any member committed them, else failed), restores the ring (the reported
// order, without the peers that did not come back) and its expected shared-state revision;
// the members of a group without a quorum are refused. If no group had one, the master is
// fresh again. During its window a master takes every resume of its run (from peers that
// followed any earlier master of it) and keeps its generation above theirs. Outside one it
// refuses resumes of another run or of a generation not below its own (kWrongRun: a stale
// master never takes back a run a newer one leads; the peer tries elsewhere), and those of
// peers the run goes on without (kNotResumed: the peer followed this very master, which
// dropped it; or came from an older generation after the window; or is a duplicate). A
// standby (config.standby) starts no run of its own.
//
// Thread-safety: none; owned by the master's single I/O thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <variant>
#include <vector>

#include "common/ids.hpp"
#include "master/state_election.hpp"
#include "wire/messages.hpp"

namespace qccl::master {

using Clock = std::chrono::steady_clock;

inline constexpr wire::VoteKind kVoteKinds[] = {wire::VoteKind::kUpdateTopology,
                                                wire::VoteKind::kPeersPending,
                                                wire::VoteKind::kOptimizeTopology};
std::string_view vote_name(wire::VoteKind k);  // "peers-pending", for messages and logs
using TimePoint = Clock::time_point;

struct MembershipConfig {
  std::chrono::milliseconds peer_timeout{10000};
  std::chrono::milliseconds vote_timeout{60000};
  uint32_t heartbeat_interval_ms = 1000;  // told to peers in M2CWelcome
  std::chrono::milliseconds probe_window{250};      // measured transfer per probed link
  std::chrono::milliseconds probe_max_age{600000};  // older measurements are probed again
  uint64_t run_id = 1;  // of the run this master starts (random, from the shell), unless it resumes one
  uint64_t master_id = 1;  // this master process (random, from the shell): in every welcome
  // A standby never starts a run: registrations are refused (kNotLeading, the peer tries
  // again) until it has adopted one by resumes.
  bool standby = false;
  // For this long after start() no run is started either, so that the peers of a run whose
  // master this one replaces can resume it first (their ids are the run's: a newcomer
  // registered before them could take one).
  std::chrono::milliseconds resume_grace{0};
};

// What an event asks the shell to do, in order.
struct Outbox {
  struct Send {
    PeerId to;
    wire::ControlMessage message;
    Epoch epoch;  // for the frame header
  };
  std::vector<Send> sends;
  std::vector<PeerId> disconnects;  // close after flushing what was queued before
  std::vector<std::string> log;     // one line per join, leave, expulsion, ring change...
  std::vector<std::string> debug;   // details (e.g. every measured link), logged at debug level
};

class Membership {
 public:
  explicit Membership(MembershipConfig config);
  // The master began listening (the resume grace counts from here).
  void start(TimePoint now, Outbox& out);

  // Whether a C2MRegister may be taken now: not while this master leads no run and may not
  // start one (a standby, or within the resume grace); the shell answers M2CKicked
  // kNotLeading instead, and the peer tries again.
  bool accepts_registrations(TimePoint now) const { return leads_run_ || may_start_run(now); }
  // A new control connection sent C2MRegister (REQUIRES: accepts_registrations). Returns the
  // new peer's id (the shell maps its
  // connection to it); the Outbox holds the M2CWelcome and, if admitted at once, membership.
  PeerId on_register(const wire::C2MRegister& msg, const std::string& observed_host, TimePoint now,
                     Outbox& out);
  // A new control connection sent C2MResume. Returns the resumed peer's id (the shell maps the
  // connection to it; the Outbox holds the M2CWelcome), or why this master cannot take it (the
  // shell answers M2CKicked with that reason and message, and closes).
  struct Refusal {
    wire::KickReason reason;  // kWrongRun: try another master; kNotResumed: join again
    std::string why;
  };
  std::variant<PeerId, Refusal> on_resume(const wire::C2MResume& msg,
                                          const std::string& observed_host, TimePoint now,
                                          Outbox& out);
  // Any later message from a registered or accepted peer.
  void on_message(PeerId peer, const wire::ControlMessage& msg, TimePoint now, Outbox& out);
  // The connection closed or was found broken (`why` goes to the log). Unknown ids are ignored.
  void on_disconnect(PeerId peer, const std::string& why, TimePoint now, Outbox& out);
  // The peer is known to be alive (e.g. unread bytes from it are waiting): as a heartbeat.
  void on_alive(PeerId peer, TimePoint now);
  // Expels peers that timed out and votes or collectives past their deadline.
  void on_tick(TimePoint now, Outbox& out);
  // When on_tick should run next (earliest heartbeat or vote deadline), if any.
  std::optional<TimePoint> next_deadline() const;

  // Introspection (tests, logs).
  Epoch global_epoch() const { return global_epoch_; }
  size_t num_accepted() const;
  size_t num_registered() const;
  std::optional<Epoch> group_epoch(GroupId g) const;
  std::vector<PeerId> ring(GroupId g) const;
  bool is_known(PeerId p) const { return peers_.count(p) != 0; }
  uint64_t run_id() const { return run_id_; }
  uint64_t generation() const { return generation_; }
  bool resuming() const { return resume_.has_value(); }

 private:
  enum class Phase { kRegistered, kResumed, kAccepted };
  struct Peer {
    PeerId id = kNoPeer;
    GroupId group = 0;
    std::string host;
    uint16_t port = 0;
    Phase phase = Phase::kRegistered;
    TimePoint last_seen;
    std::optional<wire::VoteKind> vote;
    // Accepted, and no call of it has completed since: it joins the group wherever the group
    // is (membership_phases.cpp).
    bool fresh = false;
    Epoch admitted_epoch = 0;
  };
  struct OpKey {
    OpTag tag;
    uint64_t seq;
    auto operator<=>(const OpKey&) const = default;
  };
  struct OpState {
    uint64_t desc_hash = 0;
    uint64_t order = 0;  // arrival order of its first start (next_order_)
    std::set<PeerId> started;
    std::set<PeerId> done;
    TimePoint first_start;
    // A mismatch is only declared once every member has started the op, so that each of them
    // (not just the early ones) gets kMismatch for this very call.
    std::optional<std::string> mismatch;
    // The smallest op timeout a starter gave (C2MOpStart::timeout_ms; none = no deadline): the
    // op is aborted with kTimeout at first_start + timeout (op_deadlines()).
    std::optional<std::chrono::milliseconds> timeout;
  };
  struct SyncRound {
    uint64_t id = 0;
    TimePoint first_vote;
    uint64_t order = 0;  // arrival order of its first vote (next_order_)
    std::map<PeerId, SyncVote> votes;
    bool decided = false;            // plans sent; transferring
    uint64_t revision = 0;           // decided: the elected revision
    std::set<PeerId> participants;   // decided: who gets the result
    std::set<PeerId> pending;        // decided: receivers that have not reported yet
  };
  struct Group {
    Epoch epoch = 0;
    std::vector<PeerId> ring;  // accepted members in ring order
    std::map<OpKey, OpState> ops;
    std::optional<SyncRound> sync;
    std::optional<uint64_t> next_revision;  // none until a sync of this group succeeded
    uint64_t sync_rounds = 0;
  };
  struct VoteRound {
    TimePoint started;
    uint64_t order = 0;  // arrival order of its first vote (next_order_)
  };
  // A measured directed link.
  struct LinkSample {
    uint64_t bytes_per_s = 0;  // 0 = unreachable
    TimePoint measured;
  };
  // The bandwidth probes of one kOptimizeTopology vote.
  struct ProbeRound {
    uint64_t id = 0;
    TimePoint started;
    TimePoint deadline;                                // stragglers are expelled then
    struct Part {
      std::vector<PeerId> targets;  // it sends to these
      std::vector<PeerId> sources;  // it measures what these send
    };
    std::map<PeerId, Part> pending;                    // until the peer reports
    size_t links_probed = 0;
  };

  // Resuming (membership_resume.cpp).
  struct ResumeWindow {
    TimePoint deadline;
    struct GroupReport {
      Epoch epoch = 0;               // the newest group epoch a member reported
      std::vector<PeerId> ring;      // the ring at that epoch
      std::optional<uint64_t> last_revision;
    };
    std::map<GroupId, GroupReport> groups;
    std::set<PeerId> gone;  // resumed, then left or expelled within the window
    std::map<PeerId, wire::C2MResume> resumes;  // what each resumed peer reported
  };
  std::optional<Refusal> resume_refusal(const wire::C2MResume& msg) const;
  bool everyone_back() const;
  void close_resume(TimePoint now, Outbox& out);
  // The votes and syncs that resumed peers waited on: completed if a peer reports it saw them
  // complete; else a vote goes on, a sync fails (retry).
  void answer_waiting_votes(const ResumeWindow& window, TimePoint now, Outbox& out);
  void answer_waiting_syncs(const ResumeWindow& window, GroupId gid,
                            const std::vector<PeerId>& ring, Outbox& out);
  wire::M2CWelcome welcome(PeerId id) const;
  void handle_vote(Peer& p, wire::VoteKind kind, TimePoint now, Outbox& out);
  // Out-of-step calls (membership_phases.cpp, docs/call-order.md): after a call arrived,
  // answers the calls that can never meet the group's (a vote where the others run a
  // collective, two vote kinds, ...) with kInvalidUsage, keeping the phase that came first.
  void resolve_phases(TimePoint now, Outbox& out);
  struct Claim;
  Claim vote_claim(wire::VoteKind kind, std::optional<GroupId> gid) const;
  std::vector<Claim> claims_of(GroupId gid) const;
  void drop_claim(const Claim& loser, const Claim& winner, TimePoint now, Outbox& out);
  std::string describe(const Claim& c) const;
  void settle(PeerId id);  // a call of the peer completed: it is no longer fresh
  void handle_op_start(Peer& p, const wire::C2MOpStart& m, TimePoint now, Outbox& out);
  void handle_op_done(Peer& p, const wire::C2MOpDone& m, Outbox& out);
  // Aborts with kTimeout every collective past its op deadline (before any straggler is
  // expelled: a member late to an op with a deadline costs one error, not its membership).
  void op_deadlines(TimePoint now, Outbox& out);
  // Shared state (membership_sync.cpp).
  void handle_sync_state(Peer& p, const wire::C2MSyncState& m, TimePoint now, Outbox& out);
  void handle_sync_done(Peer& p, const wire::C2MSyncDone& m, Outbox& out);
  void try_elect(GroupId gid, TimePoint now, Outbox& out);
  void finish_sync(GroupId gid, StatusCode status, const std::string& why, Outbox& out);
  void sync_peer_removed(GroupId gid, PeerId id, TimePoint now, Outbox& out);
  void sync_stragglers(TimePoint now, Outbox& out);
  // Answers kPeerLost to a message about an op of an older group epoch; true if it was one.
  bool reject_stale(const Peer& p, const OpKey& key, Epoch op_epoch, Outbox& out);
  // Aborts the op with kMismatch if one was found and every member has started it.
  void maybe_declare_mismatch(GroupId gid, const OpKey& key, Outbox& out);
  void kick(PeerId id, wire::KickReason reason, const std::string& why, TimePoint now, Outbox& out);
  // Removes a peer from every table, aborts its group's collectives and re-checks votes.
  void remove_peer(PeerId id, TimePoint now, Outbox& out);
  void admit_registered(TimePoint now, Outbox& out);
  // Fails every collective of the group, bumps its epoch and sends the new membership.
  // `culprit` (may be empty) gets `status`/`why`; the others get kPeerLost.
  void abort_group(GroupId g, std::optional<OpKey> culprit, StatusCode status,
                   const std::string& why, Outbox& out);
  void try_complete_votes(TimePoint now, Outbox& out);
  // Topology (membership_topology.cpp).
  void start_optimize(TimePoint now, Outbox& out);
  void handle_probe_results(Peer& p, const wire::C2MProbeResults& m, TimePoint now, Outbox& out);
  void probe_peer_removed(PeerId id, TimePoint now, Outbox& out);
  void probe_stragglers(TimePoint now, Outbox& out);
  void finish_optimize(TimePoint now, Outbox& out);
  // Solves group `gid`'s ring from links_, expelling peers no ring can include; true if the
  // ring changed.
  bool optimize_group(GroupId gid, TimePoint now, Outbox& out);
  void bump_group(Group& g);
  void send_membership_to_all(Outbox& out);
  wire::M2CMembership membership_view(GroupId g) const;
  void reply_op(const std::vector<PeerId>& to, GroupId g, const OpKey& key, Epoch epoch,
                StatusCode status, const std::string& why, Outbox& out);
  std::vector<PeerId> accepted_ids() const;

  MembershipConfig config_;
  PeerId next_id_ = 1;
  Epoch global_epoch_ = 0;
  uint64_t run_id_ = 1;
  uint64_t generation_ = 1;
  bool leads_run_ = false;  // a run began here (a registration, not on a standby) or was adopted
  std::optional<TimePoint> grace_end_;  // registrations start no run before (resume_grace)
  // A registration may start a run now (not a standby, not within the resume grace).
  bool may_start_run(TimePoint now) const;
  std::optional<ResumeWindow> resume_;
  std::map<PeerId, Peer> peers_;
  std::map<GroupId, Group> groups_;
  std::map<wire::VoteKind, VoteRound> votes_;
  std::map<std::pair<PeerId, PeerId>, LinkSample> links_;  // (from, to) -> last measurement
  std::optional<ProbeRound> probe_;
  uint64_t probe_rounds_ = 0;
  uint64_t vote_rounds_ = 0;  // completed votes (M2CVoteResult.round)
  uint64_t next_order_ = 0;  // counts calls that open a vote, collective or sync: which came first
};

}  // namespace qccl::master
