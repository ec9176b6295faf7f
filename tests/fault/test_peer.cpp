// qccl_test_peer: a scriptable peer process for the multi-process fault tests
// (tests/support/proc_cluster.hpp starts it; DESIGN.md §8 says what the tests check).
//
//   qccl_test_peer --master HOST:PORT --index I --mode loop|idle|multi|state|topo [options]
//
// Every peer contributes 2^I to every element (uint64, so sums are exact): a result equal to
// S proves that exactly the peers whose bits are set in S took part, and popcount(S) must be
// the world size the library reports.
//
// Common steps: qcclCommCreate + qcclConnect, then (with --world W) gather: every accepted
// peer runs the same lock-step sequence "qcclArePeersPending; if 1, qcclUpdateTopology" until
// the group has W peers. The sequence stays aligned on every peer because each vote gives
// all voters the same answer, a newcomer joins it right after qcclConnect returns (the
// update-topology vote that admitted it is the one its elders just finished), and the group
// size is read only between votes, where it is the same for everyone. So the driver may start
// all peers at once.
//
// Modes:
//   loop   all-reduce after all-reduce (--iters k, 0 = until killed), retrying at once on
//          qcclPeerLost; other failures end the loop (exit code 4). With --admit every op
//          is followed by qcclArePeersPending on all peers and, if 1, qcclUpdateTopology, so
//          newcomers are admitted between ops. --inplace reduces in place. --quant sends
//          float64 2^I as MinMax uint8 codes (constant blocks: still exact sums).
//          --no-retry: a qcclPeerLost ends the iteration instead (the loop goes on to the
//          votes, as the loop of issue 16 does: [qcclArePeersPending, qcclUpdateTopology when
//          pending, all-reduce]); with it every vote prints its result ("pending P"), so that
//          each call's return is seen. A peer that joined later enters the loop at its
//          all-reduce, which is where its elders are after the vote that admitted it.
//          --op KIND picks the collective of each iteration (default allreduce, as above;
//          the others take none of --admit, --quant, --no-retry). Before the loop the peers
//          learn each other's index: one all-gather of {QCCL_ATTR_PEER_ID, index} pairs
//          ("mapped" line), so that the peer ids an op's qcclOpInfo_t reports (its
//          participants in ring order) name indices. The op line's S, per kind:
//            broadcast      root = the first peer of the ring of the last op this peer
//                           completed (its info's peer ids; the mapping all-gather's at
//                           first), which is the same on every peer (all or nothing); after
//                           a failed attempt, the first peer of qcclGetPeers read then.
//                           Reading qcclGetPeers before every call instead races: after a
//                           kill that an op survived (the dead root had finished its part),
//                           one peer may see the new ring and another not yet, and the two
//                           roots differ: qcclMismatch on both (seen with QCCL_FAULT_SEED=21
//                           of collectives_kill_test). The reread after a failure still
//                           races, more rarely: a qcclPeerLost may return while this peer's
//                           view still lists the dead peer (the master aborted the op on a
//                           survivor's I/O error report and bumped the epoch before it had
//                           removed the dead peer), so two survivors may read rings one epoch
//                           apart and pick different roots: qcclMismatch again (seen with
//                           seed 76). A root that died fails the op with qcclPeerLost, or
//                           qcclInvalidArgument if the call ran in an epoch without it. So a
//                           broadcast is retried on qcclPeerLost, and on qcclInvalidArgument
//                           and qcclMismatch at most 8 times per op (every fail line printed).
//                           The root's buffer holds 2^I_root, the others' a sentinel that is
//                           no power of two; every element must be 2^I_root and the root a
//                           participant. S = the sum of 2^I over the participants that info
//                           names ("root I" follows on the line).
//            allgather      every peer sends --count elements of 2^I; block j must be
//                           constant and equal 2^(index of info's j-th peer id): the block
//                           order is the ring order info reports. S = the sum of the blocks'
//                           values (so S comes from the data, and must match the world).
//            allgatherv     peer I sends (I+1)*k elements of 2^I (k = max(1, --count/8));
//                           counts[j] must be (index+1)*k of info's j-th peer and block j
//                           constant 2^index. S = the sum of the blocks' values.
//            reducescatter  --count elements of 2^I summed; this peer's block (its ring rank
//                           = its place in info's peer ids; size --count/W, one more for the
//                           first --count%W ranks) must be all S, and S the participants'
//                           sum from info ("rank R block B" follows). --inplace: in place.
//            barrier        S = the sum of 2^I over the participants info names.
//          So for every kind S names the participants, popcount(S) == W, and S has this
//          peer's bit; for broadcast and barrier that membership is the library's report
//          (info), for the others it is also what the data says. All or nothing: a failed
//          op must leave the send buffer (in-place reduce-scatter: its input; broadcast: the
//          buffer, root or not) as it was, else a corrupt line.
//   idle   reads commands from stdin, one per line (EOF or "quit" ends the process):
//            allreduce [count]  one all-reduce, retried on qcclPeerLost
//            try [count]        one attempt, no retry
//            pending            qcclArePeersPending       update   qcclUpdateTopology
//            optimize           qcclOptimizeTopology      attr     prints the view
//            sync               qcclSyncSharedState of the state mode's tensors (built from
//                               --state-mib/--seed/--stale at the first sync), at --revision
//                               R (default 7, 0 when --stale), then the elected revision + 1;
//                               a failed sync must leave every tensor as it was (each byte is
//                               compared with a copy taken before the call)
//            quit
//          With --announce, "call CMD at T" is printed right before each library call of a
//          command, and "destroyed ms D at T" once qcclCommDestroy returned at the end.
//   multi  qcclAllReduceMultipleWithRetry of --tensors m tensors (tags tag..tag+m-1; tensor t
//          holds (t+1)*2^I; odd tensors in place), --iters k times (0 = until killed).
//   state  shared state: --state-mib M MiB of tensors (several names and dtypes, one empty,
//          one allow_inequality tensor whose content is this peer's own; see make_state)
//          filled from --seed (a --stale peer uses seed+1: every comparable tensor differs),
//          built before connecting. Then --syncs-before b qcclSyncSharedState calls, then
//          (with --grow-to G) the gather again until the group has G peers (newcomers are
//          admitted), then --syncs k calls. --strategy popular|receive|send; the first vote
//          is at --revision R (default 7, 0 when --stale), each later one at the elected
//          revision + 1. A failed sync prints sync-fail and ends the process (exit code 4).
//   topo   bandwidth-aware ring (tests/netns/): prints its ring line, --iters k all-reduces
//          (no retry), qcclOptimizeTopology (optimized line, or vote-fail and exit code 4),
//          the ring line again, then --iters k all-reduces again. Any failed op: exit code 4.
//
// Output (stdout, one line per event, flushed at once; "at" is CLOCK_MONOTONIC in µs, the
// clock of std::chrono::steady_clock, so the driver can compare it with its own times; text
// after "msg" is qcclGetLastError()):
//   connected index I world W rank R epoch E at T
//   ready index I world W rank R epoch E at T          (after the gather)
//   op K world W sum S ms D at T                       (K counts successful ops from 0)
//   op K world W sum S ms D root I at T                (loop --op broadcast)
//   op K world W sum S ms D rank R block B at T        (loop --op reducescatter)
//   mapped world W ids ID:I,... at T                   (loop --op: peer id -> index)
//   fail K CODE D NAME at T msg ...                    (op K failed after D ms)
//   fail K CODE D NAME now-epoch E now-world W [root I] at T msg ...
//                                                      (loop --op: the view right after the
//                                                      failure; root: broadcast)
//   multi K world W sums S0,S1,... ms D at T           (S_t = tensor t's element / (t+1))
//   world W epoch E at T                               (the watcher saw the view change)
//   watch CODE NAME at T msg ...                       (qcclGetAttribute failed; watcher stops)
//   pending P at T | updated world W epoch E at T | view world W epoch E rank R at T
//   vote-fail CODE NAME [ms D] at T msg ...            (a control call failed; ms in topo
//                                                      and for idle's optimize)
//   call CMD at T                                      (idle --announce: CMD starts now)
//   destroyed ms D at T                                (--announce: qcclCommDestroy took D ms)
//   bad K what at T                                   (the result is wrong: a test failure)
//   corrupt K what at T                                (a failed op changed its input, or
//                                                      idle's failed sync K changed a tensor)
//   error WHAT CODE NAME at T msg ...                  (setup failed; exit code 3)
//   state-ready bytes B tensors N hash H at T          (state mode, before connecting; idle
//                                                      mode, at the first sync: B bytes in
//                                                      comparable tensors, H = state_hash)
//   synced K revision R tx T rx X hash H ms D at T     (sync K, counted from 0, succeeded;
//                                                      T, X = qcclSyncInfo_t tx/rx bytes)
//   sync-fail K CODE NAME ms D at T msg ...
//   grown world W epoch E at T                         (--grow-to reached)
//   ring index I rank R epoch E at T                   (topo mode: ring position, data flows
//                                                      rank R -> R+1 mod world)
//   optimized index I rank R epoch E ms D at T         (qcclOptimizeTopology returned after D
//                                                      ms; topo mode and idle's optimize)
//   done at T
// Exit codes: 0 done, 2 bad usage, 3 setup failed, 4 an operation failed for good.
#include <algorithm>
#include <atomic>
#include <bit>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "qccl/qccl.h"
#include "support/peer_args.hpp"
#include "support/peer_text.hpp"

namespace {

using qccl::test::emit;
using qccl::test::now_us;
using qccl::test::result_name;
using qccl::test::strf;

// ---------------------------------------------------------------- options

struct Options {
  std::string master;
  std::string mode;
  int index = -1;
  size_t count = 4096;
  int64_t iters = 0;
  uint64_t tag = 0;
  int world = 0;  // gather until the group has this many peers
  std::string op = "allreduce";  // loop: the collective each iteration runs
  bool admit = false;
  bool retry = true;  // loop: retry an all-reduce at once on qcclPeerLost
  bool inplace = false;
  bool quant = false;
  bool announce = false;  // idle: "call" before each call, "destroyed" after qcclCommDestroy
  int tensors = 4;
  int inflight = 2;
  uint32_t connections = 0;
  uint32_t connect_timeout_ms = 30000;
  int watch_ms = 5;  // 0 = no watcher
  int pace_ms = 0;   // pause after each successful op in loop mode
  // state mode
  size_t state_mib = 16;
  bool stale = false;
  std::string strategy = "popular";
  int syncs = 1;
  int syncs_before = 0;
  int grow_to = 0;
  int64_t revision = -1;  // -1: 7, or 0 when stale
  uint64_t seed = 1;
};

[[noreturn]] void usage(const std::string& why) {
  std::fprintf(stderr,
               "qccl_test_peer: %s\n"
               "usage: qccl_test_peer --master HOST:PORT --index I\n"
               "  --mode loop|idle|multi|state|topo\n"
               "  [--world W] [--count N] [--iters K] [--tag T] [--admit] [--no-retry]\n"
               "  [--op allreduce|broadcast|allgather|allgatherv|reducescatter|barrier]\n"
               "  [--inplace] [--quant]\n"
               "  [--announce]\n"
               "  [--tensors M] [--inflight F] [--connections C] [--connect-timeout-ms MS]\n"
               "  [--watch-ms MS] [--pace-ms MS]\n"
               "  [--state-mib M] [--stale] [--strategy popular|receive|send] [--syncs K]\n"
               "  [--syncs-before B] [--grow-to G] [--revision R] [--seed S]\n",
               why.c_str());
  std::exit(2);
}

Options parse(int argc, char** argv) {
  Options o;
  qccl::test::parse_options(argc, argv, usage, [&](const std::string& a, const auto& val) {
    if (a == "--master") o.master = val();
    else if (a == "--mode") o.mode = val();
    else if (a == "--index") o.index = std::stoi(val());
    else if (a == "--count") o.count = std::stoull(val());
    else if (a == "--iters") o.iters = std::stoll(val());
    else if (a == "--tag") o.tag = std::stoull(val());
    else if (a == "--world") o.world = std::stoi(val());
    else if (a == "--op") o.op = val();
    else if (a == "--admit") o.admit = true;
    else if (a == "--no-retry") o.retry = false;
    else if (a == "--inplace") o.inplace = true;
    else if (a == "--quant") o.quant = true;
    else if (a == "--announce") o.announce = true;
    else if (a == "--tensors") o.tensors = std::stoi(val());
    else if (a == "--inflight") o.inflight = std::stoi(val());
    else if (a == "--connections") o.connections = static_cast<uint32_t>(std::stoul(val()));
    else if (a == "--connect-timeout-ms") o.connect_timeout_ms = static_cast<uint32_t>(std::stoul(val()));
    else if (a == "--watch-ms") o.watch_ms = std::stoi(val());
    else if (a == "--pace-ms") o.pace_ms = std::stoi(val());
    else if (a == "--state-mib") o.state_mib = std::stoull(val());
    else if (a == "--stale") o.stale = true;
    else if (a == "--strategy") o.strategy = val();
    else if (a == "--syncs") o.syncs = std::stoi(val());
    else if (a == "--syncs-before") o.syncs_before = std::stoi(val());
    else if (a == "--grow-to") o.grow_to = std::stoi(val());
    else if (a == "--revision") o.revision = std::stoll(val());
    else if (a == "--seed") o.seed = std::stoull(val());
    else return false;
    return true;
  });
  if (o.master.empty()) usage("--master is required");
  if (o.index < 0 || o.index > 62) usage("--index must be in [0, 62]");
  if (o.mode != "loop" && o.mode != "idle" && o.mode != "multi" && o.mode != "state" &&
      o.mode != "topo") {
    usage("unknown --mode " + o.mode);
  }
  if (o.op != "allreduce" && o.op != "broadcast" && o.op != "allgather" &&
      o.op != "allgatherv" && o.op != "reducescatter" && o.op != "barrier") {
    usage("unknown --op " + o.op);
  }
  if (o.op != "allreduce" && (o.admit || o.quant || !o.retry)) {
    usage("--admit, --quant and --no-retry go with --op allreduce only");
  }
  if (o.inplace && o.op != "allreduce" && o.op != "reducescatter") {
    usage("--inplace goes with --op allreduce or reducescatter (a broadcast is always in place)");
  }
  if (o.strategy != "popular" && o.strategy != "receive" && o.strategy != "send") {
    usage("unknown --strategy " + o.strategy);
  }
  if (o.state_mib < 1 || o.state_mib > 4096) usage("--state-mib must be in [1, 4096]");
  if (o.syncs < 0 || o.syncs_before < 0) usage("--syncs and --syncs-before must be >= 0");
  if (o.revision < -1) usage("--revision must be >= 0");
  if (o.count == 0) usage("--count must be positive");
  if (o.tensors < 1 || o.tensors > 64) usage("--tensors must be in [1, 64]");
  return o;
}

// ---------------------------------------------------------------- the peer

class Peer {
 public:
  explicit Peer(Options o) : opt_(std::move(o)), mine_(uint64_t{1} << opt_.index) {}

  ~Peer() {
    stop_watcher();
    if (comm_ != nullptr) {
      auto t0 = std::chrono::steady_clock::now();
      qcclCommDestroy(comm_);
      double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
                      .count();
      if (opt_.announce) emit(strf("destroyed ms %.3f", ms));
    }
  }

  int run() {
    if (opt_.mode == "state") make_state();  // before connecting: the gather is not delayed
    if (int rc = setup(); rc != 0) return rc;
    int rc = 0;
    if (opt_.mode == "loop") rc = loop();
    else if (opt_.mode == "multi") rc = multi();
    else if (opt_.mode == "state") rc = state();
    else if (opt_.mode == "topo") rc = topo();
    else rc = idle();
    emit("done");
    return rc;
  }

 private:
  int64_t attr(qcclAttribute_t a) const {
    int64_t v = -1;
    if (qcclGetAttribute(comm_, a, &v) != qcclSuccess) return -1;
    return v;
  }
  int64_t world() const { return attr(QCCL_ATTR_GROUP_WORLD_SIZE); }

  // Idle --announce: "call CMD" right before the library call of the current command.
  void announce() const {
    if (opt_.announce && !announce_cmd_.empty()) emit("call " + announce_cmd_);
  }

  std::string view() const {
    return strf("index %d world %lld rank %lld epoch %lld", opt_.index,
                static_cast<long long>(world()), static_cast<long long>(attr(QCCL_ATTR_RING_RANK)),
                static_cast<long long>(attr(QCCL_ATTR_EPOCH)));
  }

  int error(const char* what, qcclResult_t r) {
    emit(strf("error %s %d %s", what, static_cast<int>(r), result_name(r)), qcclGetLastError());
    return 3;
  }

  int setup() {
    qcclCommConfig_t cc = QCCL_COMM_CONFIG_INIT;
    cc.master_address = opt_.master.c_str();
    cc.connections_per_peer = opt_.connections;
    cc.connect_timeout_ms = opt_.connect_timeout_ms;
    if (qcclResult_t r = qcclCommCreate(&cc, &comm_); r != qcclSuccess) {
      comm_ = nullptr;
      return error("create", r);
    }
    if (qcclResult_t r = qcclConnect(comm_); r != qcclSuccess) return error("connect", r);
    emit("connected " + view());
    if (opt_.watch_ms > 0) {
      // The baseline is read here, not in the thread: a thread that starts late (a loaded
      // machine) would read a view that already changed and never print that change.
      // (KillTest.SigkillWhileIdle's rare "never saw the group shrink": the last joiner was
      // killed-next-to about 1 ms after connecting, before its watcher had read anything.)
      int64_t w0 = world();
      int64_t e0 = attr(QCCL_ATTR_EPOCH);
      watcher_ = std::thread([this, w0, e0] { watch(w0, e0); });
    }
    if (int rc = gather(opt_.world); rc != 0) return rc;
    emit("ready " + view());
    return 0;
  }

  // Gather: see the file comment for why this lock-step sequence stays aligned.
  int gather(int target) {
    while (world() < target) {
      int pending = 0;
      if (qcclResult_t r = qcclArePeersPending(comm_, &pending); r != qcclSuccess) {
        return error("gather-pending", r);
      }
      if (pending != 0) {
        if (qcclResult_t r = qcclUpdateTopology(comm_); r != qcclSuccess) {
          return error("gather-update", r);
        }
      } else {
        std::this_thread::sleep_for(std::chrono::milliseconds(2));  // pacing, not sync
      }
    }
    return 0;
  }

  // Prints every change of the group's view, so the driver learns when the master's
  // membership update reached this peer.
  void watch(int64_t last_world, int64_t last_epoch) {
    while (!stop_.load()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(opt_.watch_ms));
      // Epoch, world, epoch again: a pair read across a membership update is read again.
      int64_t w = -1;
      int64_t e = -1;
      int64_t e2 = -2;
      qcclResult_t r = qcclSuccess;
      while (r == qcclSuccess && e != e2) {
        r = qcclGetAttribute(comm_, QCCL_ATTR_EPOCH, &e);
        if (r == qcclSuccess) r = qcclGetAttribute(comm_, QCCL_ATTR_GROUP_WORLD_SIZE, &w);
        if (r == qcclSuccess) r = qcclGetAttribute(comm_, QCCL_ATTR_EPOCH, &e2);
      }
      if (r != qcclSuccess) {
        emit(strf("watch %d %s", static_cast<int>(r), result_name(r)), qcclGetLastError());
        return;
      }
      if (w != last_world || e != last_epoch) {
        emit(strf("world %lld epoch %lld", static_cast<long long>(w), static_cast<long long>(e)));
        last_world = w;
        last_epoch = e;
      }
    }
  }

  void stop_watcher() {
    stop_.store(true);
    if (watcher_.joinable()) watcher_.join();
  }

  static bool all_equal(const std::vector<uint64_t>& v, uint64_t x) {
    for (uint64_t e : v) {
      if (e != x) return false;
    }
    return true;
  }

  // One all-reduce of `count` elements of 2^index; retried on qcclPeerLost if `retry`.
  // Prints op/fail (and bad/corrupt) lines. Returns the last result. With --quant the
  // elements are float64 2^index sent as MinMax uint8 codes: every block is constant, which
  // MinMax decodes exactly, so the sums stay exact and the same checks apply.
  qcclResult_t one_op(size_t count, bool retry) {
    // The buffers live across calls: a loop spends as little time as possible between ops,
    // so that a fault nearly always lands inside one.
    std::vector<uint64_t>& send = send_;
    std::vector<uint64_t>& recv = recv_;
    const uint64_t mine = opt_.quant ? std::bit_cast<uint64_t>(static_cast<double>(mine_)) : mine_;
    if (send.size() != count) send.assign(count, mine);
    recv.resize(count);
    uint64_t* in = opt_.inplace ? recv.data() : send.data();
    if (opt_.inplace) std::fill(recv.begin(), recv.end(), mine);
    qcclReduceDesc_t desc{};
    desc.count = count;
    desc.dtype = opt_.quant ? qcclFloat64 : qcclUint64;
    desc.op = qcclSum;
    desc.tag = opt_.tag;
    desc.quantization.algorithm = opt_.quant ? qcclQuantMinMax : qcclQuantNone;
    desc.quantization.quantized_dtype = qcclUint8;
    for (;;) {
      qcclReduceInfo_t info{};
      announce();
      auto t0 = std::chrono::steady_clock::now();
      qcclResult_t r = qcclAllReduce(in, recv.data(), &desc, comm_, &info);
      double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
                      .count();
      if (r == qcclSuccess) {
        uint64_t s = opt_.quant ? static_cast<uint64_t>(std::bit_cast<double>(recv[0])) : recv[0];
        emit(strf("op %lld world %u sum %llu ms %.3f", static_cast<long long>(ops_done_),
                  info.world_size, static_cast<unsigned long long>(s), ms));
        if (!all_equal(recv, recv[0])) {
          emit(strf("bad %lld elements differ", static_cast<long long>(ops_done_)));
        }
        if (static_cast<uint32_t>(__builtin_popcountll(s)) != info.world_size || (s & mine_) == 0) {
          emit(strf("bad %lld sum %llu does not match world %u or lacks this peer",
                    static_cast<long long>(ops_done_), static_cast<unsigned long long>(s),
                    info.world_size));
        }
        ++ops_done_;
        return r;
      }
      emit(strf("fail %lld %d %.3f %s", static_cast<long long>(ops_done_), static_cast<int>(r), ms,
                result_name(r)),
           qcclGetLastError());
      // All or nothing: a failed op leaves its input as it was (API.md §2).
      if (!all_equal(opt_.inplace ? recv : send, mine)) {
        emit(strf("corrupt %lld the %s input changed", static_cast<long long>(ops_done_),
                  opt_.inplace ? "in-place" : "send"));
        if (opt_.inplace) std::fill(recv.begin(), recv.end(), mine);
      }
      if (!retry || r != qcclPeerLost) return r;
    }
  }

  // ---------------------------------------------------------------- loop --op (not allreduce)

  static constexpr size_t kMaxPeers = 63;  // indices 0..62

  // Which index each peer id has, so that an op's qcclOpInfo_t peer ids name its
  // participants: one all-gather of {peer id, index} pairs before the loop (retried on
  // qcclPeerLost). Prints "mapped world W ids ID:I,...".
  bool learn_indices() {
    const int64_t id = attr(QCCL_ATTR_PEER_ID);
    if (id < 0) {
      emit("error peer-id");
      return false;
    }
    my_id_ = static_cast<uint64_t>(id);
    const uint64_t pair[2] = {my_id_, static_cast<uint64_t>(opt_.index)};
    std::vector<uint64_t> all(2 * kMaxPeers);
    for (;;) {
      qcclOpInfo_t info{};
      ring_.assign(kMaxPeers, 0);
      info.peer_ids = ring_.data();
      info.peer_ids_capacity = ring_.size();
      qcclResult_t r = qcclAllGather(pair, all.data(), 2, all.size(), qcclUint64, opt_.tag, comm_,
                                     &info);
      if (r == qcclSuccess) {
        ring_.resize(info.world_size);
        std::string m;
        for (uint32_t j = 0; j < info.world_size; ++j) {
          index_of_[all[2 * j]] = static_cast<int>(all[2 * j + 1]);
          if (!m.empty()) m += ',';
          m += strf("%llu:%llu", static_cast<unsigned long long>(all[2 * j]),
                    static_cast<unsigned long long>(all[2 * j + 1]));
        }
        emit(strf("mapped world %u ids %s", info.world_size, m.c_str()));
        return true;
      }
      if (r != qcclPeerLost) {
        error("map", r);
        return false;
      }
    }
  }

  // The participants an op's info names, as indices in ring order; empty after a bad line if
  // an id is unknown or repeated, or this peer is not among them.
  std::vector<int> participants(const qcclOpInfo_t& info) {
    const long long k = ops_done_;
    std::vector<int> who;
    if (info.world_size > info.peer_ids_capacity || info.world_size < 2) {
      emit(strf("bad %lld info world %u", k, info.world_size));
      return {};
    }
    uint64_t seen = 0;
    for (uint32_t j = 0; j < info.world_size; ++j) {
      auto it = index_of_.find(info.peer_ids[j]);
      if (it == index_of_.end() || (seen & (uint64_t{1} << it->second)) != 0) {
        emit(strf("bad %lld info peer id %llu unknown or repeated", k,
                  static_cast<unsigned long long>(info.peer_ids[j])));
        return {};
      }
      seen |= uint64_t{1} << it->second;
      who.push_back(it->second);
    }
    if ((seen & mine_) == 0) {
      emit(strf("bad %lld info lacks this peer", k));
      return {};
    }
    return who;
  }

  static bool range_equal(const std::vector<uint64_t>& v, size_t from, size_t n, uint64_t x) {
    if (from + n > v.size()) return false;
    for (size_t i = from; i < from + n; ++i) {
      if (v[i] != x) return false;
    }
    return true;
  }

  // The first peer of the ring as this peer sees it now (the broadcast's root).
  uint64_t first_peer() {
    std::vector<qcclPeerInfo_t> peers(kMaxPeers);
    size_t n = 0;
    if (qcclGetPeers(comm_, peers.data(), peers.size(), &n) != qcclSuccess || n == 0) {
      return my_id_;  // the op will tell
    }
    return peers[0].peer_id;
  }

  // One op of --op kind (not allreduce), retried at once on qcclPeerLost (a broadcast also on
  // qcclInvalidArgument and qcclMismatch, a few times: see the file comment). Prints op/fail (and bad/corrupt).
  qcclResult_t one_collective() {
    const std::string& op = opt_.op;
    const size_t n = opt_.count;
    const size_t vk = std::max<size_t>(1, n / 8);  // allgatherv: peer I sends (I+1)*vk
    constexpr uint64_t kSentinel = 0x5E5E5E5E5E5E5E5Eull;  // not a power of two
    constexpr int kMaxRootRaces = 8;
    std::vector<uint64_t>& send = send_;
    std::vector<uint64_t>& recv = recv_;
    int races = 0;
    bool failed = false;  // an attempt of this op failed: the broadcast rereads the ring
    for (;;) {
      std::vector<uint64_t> ids(kMaxPeers);
      std::vector<size_t> counts(kMaxPeers);
      qcclOpInfo_t info{};
      info.peer_ids = ids.data();
      info.peer_ids_capacity = ids.size();
      uint64_t root = 0;
      uint64_t before = 0;  // broadcast: what the buffer held before the call
      qcclReduceDesc_t desc{};
      desc.count = n;
      desc.dtype = qcclUint64;
      desc.op = qcclSum;
      desc.tag = opt_.tag;
      desc.quantization.algorithm = qcclQuantNone;
      if (op == "allgather") {
        send.assign(n, mine_);
        recv.assign(n * index_of_.size(), 0);
      } else if (op == "allgatherv") {
        size_t room = 0;
        for (const auto& [pid, i] : index_of_) room += static_cast<size_t>(i + 1) * vk;
        send.assign(static_cast<size_t>(opt_.index + 1) * vk, mine_);
        recv.assign(room, 0);
      } else if (op == "reducescatter") {
        send.assign(n, mine_);
        recv.assign(n, opt_.inplace ? mine_ : 0);
      } else if (op == "broadcast") {
        root = failed || ring_.empty() ? first_peer() : ring_[0];
        before = root == my_id_ ? mine_ : kSentinel;
        recv.assign(n, before);
      }
      announce();
      auto t0 = std::chrono::steady_clock::now();
      qcclResult_t r = qcclSuccess;
      if (op == "allgather") {
        r = qcclAllGather(send.data(), recv.data(), n, recv.size(), qcclUint64, opt_.tag, comm_,
                          &info);
      } else if (op == "allgatherv") {
        r = qcclAllGatherV(send.data(), send.size(), recv.data(), recv.size(), qcclUint64,
                           counts.data(), counts.size(), opt_.tag, comm_, &info);
      } else if (op == "reducescatter") {
        r = qcclReduceScatter(opt_.inplace ? recv.data() : send.data(), recv.data(), n, &desc,
                              comm_, &info);
      } else if (op == "broadcast") {
        r = qcclBroadcast(recv.data(), n, qcclUint64, root, opt_.tag, comm_, &info);
      } else {
        r = qcclBarrier(opt_.tag, comm_, &info);
      }
      double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
                      .count();
      if (r == qcclSuccess) {
        check_collective(info, n, vk, root, counts, ms);
        ring_.assign(ids.begin(), ids.begin() + std::min<size_t>(info.world_size, ids.size()));
        ++ops_done_;
        return r;
      }
      const long long k = ops_done_;
      // The view right after the failure (the retry's ring), and the broadcast's root.
      std::string root_note = strf(" now-epoch %lld now-world %lld",
                                   static_cast<long long>(attr(QCCL_ATTR_EPOCH)),
                                   static_cast<long long>(world()));
      if (op == "broadcast") {
        auto it = index_of_.find(root);
        root_note += strf(" root %d", it == index_of_.end() ? -1 : it->second);
      }
      emit(strf("fail %lld %d %.3f %s%s", k, static_cast<int>(r), ms, result_name(r),
                root_note.c_str()),
           qcclGetLastError());
      // All or nothing: a failed op leaves its inputs (and a broadcast's buffer) as they were.
      bool intact = true;
      const char* what = "send";
      if (op == "broadcast") {
        intact = all_equal(recv, before);
        what = "broadcast";
      } else if (op == "reducescatter" && opt_.inplace) {
        intact = all_equal(recv, mine_);
        what = "in-place";
      } else if (op != "barrier") {
        intact = all_equal(send, mine_);
      }
      if (!intact) emit(strf("corrupt %lld the %s buffer changed", k, what));
      failed = true;
      if (r == qcclPeerLost) continue;
      if (op == "broadcast" && (r == qcclInvalidArgument || r == qcclMismatch) &&
          ++races <= kMaxRootRaces) {
        continue;
      }
      return r;
    }
  }

  // Checks a successful op of --op kind and prints its op line (see the file comment for S).
  void check_collective(const qcclOpInfo_t& info, size_t n, size_t vk, uint64_t root,
                        const std::vector<size_t>& counts, double ms) {
    const long long k = ops_done_;
    const std::string& op = opt_.op;
    const uint32_t w = info.world_size;
    const std::vector<int> who = participants(info);
    uint64_t members = 0;
    for (int i : who) members |= uint64_t{1} << i;
    uint64_t s = members;
    std::string extra;
    if (!who.empty() && (op == "allgather" || op == "allgatherv")) {
      // Block j: constant 2^(index of peer_ids[j]); S = the sum of the blocks' values.
      s = 0;
      size_t off = 0;
      for (uint32_t j = 0; j < w; ++j) {
        const uint64_t v = uint64_t{1} << who[j];
        const size_t c = op == "allgather" ? n : counts[j];
        if (op == "allgatherv" && c != static_cast<size_t>(who[j] + 1) * vk) {
          emit(strf("bad %lld block %u count %zu, expected %zu", k, j, c,
                    static_cast<size_t>(who[j] + 1) * vk));
        }
        if (off + c > recv_.size()) {
          emit(strf("bad %lld block %u overruns the buffer", k, j));
          break;
        }
        if (!range_equal(recv_, off, c, recv_[off])) {
          emit(strf("bad %lld block %u is not constant", k, j));
        } else if (recv_[off] != v) {
          emit(strf("bad %lld block %u holds %llu, expected %llu (info's ring order)", k, j,
                    static_cast<unsigned long long>(recv_[off]),
                    static_cast<unsigned long long>(v)));
        }
        s += recv_[off];
        off += c;
      }
    } else if (!who.empty() && op == "reducescatter") {
      // This peer's block (ring rank = its place in peer_ids): every element is the sum.
      uint32_t rank = 0;
      while (rank < w && info.peer_ids[rank] != my_id_) ++rank;
      const size_t b = n / w + (rank < n % w ? 1 : 0);
      s = recv_[0];
      if (!range_equal(recv_, 0, b, s)) {
        emit(strf("bad %lld block of rank %u (%zu elements) is not constant", k, rank, b));
      } else if (s != members) {
        emit(strf("bad %lld block holds %llu, the participants' sum is %llu", k,
                  static_cast<unsigned long long>(s), static_cast<unsigned long long>(members)));
      }
      extra = strf(" rank %u block %zu", rank, b);
    } else if (!who.empty() && op == "broadcast") {
      // Every element is the root's 2^I; the root took part. S = the participants' sum.
      auto it = index_of_.find(root);
      const uint64_t v = it == index_of_.end() ? 0 : uint64_t{1} << it->second;
      if (it == index_of_.end() || (members & v) == 0) {
        emit(strf("bad %lld root %llu is not a participant", k,
                  static_cast<unsigned long long>(root)));
      } else if (!all_equal(recv_, v)) {
        emit(strf("bad %lld the buffer is not the root's 2^%d everywhere", k, it->second));
      }
      extra = strf(" root %d", it == index_of_.end() ? -1 : it->second);
    }
    emit(strf("op %lld world %u sum %llu ms %.3f%s", k, w, static_cast<unsigned long long>(s), ms,
              extra.c_str()));
    if (static_cast<uint32_t>(__builtin_popcountll(s)) != w || (s & mine_) == 0) {
      emit(strf("bad %lld sum %llu does not match world %u or lacks this peer", k,
                static_cast<unsigned long long>(s), w));
    }
  }

  bool admit_round() {
    int pending = 0;
    qcclResult_t r = qcclArePeersPending(comm_, &pending);
    if (r != qcclSuccess) {
      emit(strf("vote-fail %d %s", static_cast<int>(r), result_name(r)), qcclGetLastError());
      return r == qcclPeerLost;  // the others saw the same change; carry on
    }
    if (!opt_.retry) emit(strf("pending %d", pending));
    if (pending == 0) return true;
    r = qcclUpdateTopology(comm_);
    if (r != qcclSuccess) {
      emit(strf("vote-fail %d %s", static_cast<int>(r), result_name(r)), qcclGetLastError());
      return r == qcclPeerLost;
    }
    emit(strf("updated world %lld epoch %lld", static_cast<long long>(world()),
              static_cast<long long>(attr(QCCL_ATTR_EPOCH))));
    return true;
  }

  int loop() {
    const bool allreduce = opt_.op == "allreduce";
    if (!allreduce && !learn_indices()) return 4;
    while (opt_.iters == 0 || ops_done_ < opt_.iters) {
      qcclResult_t r = allreduce ? one_op(opt_.count, opt_.retry) : one_collective();
      if (r != qcclSuccess && (opt_.retry || r != qcclPeerLost)) return 4;
      if (opt_.admit && !admit_round()) return 4;
      if (opt_.pace_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(opt_.pace_ms));
    }
    return 0;
  }

  int multi() {
    size_t m = static_cast<size_t>(opt_.tensors);
    std::vector<std::vector<uint64_t>> send(m), recv(m);
    std::vector<qcclReduceOp_t> ops(m);
    for (int64_t k = 0; opt_.iters == 0 || k < opt_.iters; ++k) {
      for (size_t t = 0; t < m; ++t) {
        uint64_t v = (t + 1) * mine_;
        bool inplace = t % 2 == 1;
        send[t].assign(opt_.count, v);
        recv[t].assign(opt_.count, inplace ? v : 0);
        ops[t] = qcclReduceOp_t{};
        ops[t].sendbuf = inplace ? recv[t].data() : send[t].data();
        ops[t].recvbuf = recv[t].data();
        ops[t].desc.count = opt_.count;
        ops[t].desc.dtype = qcclUint64;
        ops[t].desc.op = qcclSum;
        ops[t].desc.tag = opt_.tag + t;
        ops[t].desc.quantization.algorithm = qcclQuantNone;
      }
      qcclReduceInfo_t info{};
      auto t0 = std::chrono::steady_clock::now();
      qcclResult_t r = qcclAllReduceMultipleWithRetry(ops.data(), m, comm_, opt_.inflight, &info);
      double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
                      .count();
      if (r != qcclSuccess) {
        emit(strf("fail %lld %d %.3f %s", static_cast<long long>(k), static_cast<int>(r), ms,
                  result_name(r)),
             qcclGetLastError());
        return 4;
      }
      std::string sums;
      for (size_t t = 0; t < m; ++t) {
        uint64_t x = recv[t][0];
        if (!all_equal(recv[t], x) || x % (t + 1) != 0) {
          emit(strf("bad %lld tensor %zu is not uniform or not a multiple of %zu",
                    static_cast<long long>(k), t, t + 1));
        }
        // Two appends: "a" + std::to_string(...) trips GCC 12's -Wrestrict false positive.
        if (t > 0) sums += ',';
        sums += std::to_string(x / (t + 1));
      }
      emit(strf("multi %lld world %u sums %s ms %.3f", static_cast<long long>(k), info.world_size,
                sums.c_str(), ms));
    }
    return 0;
  }

  int idle() {
    std::string line;
    while (std::getline(std::cin, line)) {
      std::istringstream in(line);
      std::string cmd;
      in >> cmd;
      size_t count = opt_.count;
      if (size_t n = 0; in >> n && n > 0) count = n;
      if (cmd == "quit") break;
      announce_cmd_ = cmd;
      if (cmd == "allreduce" || cmd == "try") {
        one_op(count, cmd == "allreduce");
      } else if (cmd == "sync") {
        idle_sync();
      } else if (cmd == "optimize") {
        announce();
        auto t0 = std::chrono::steady_clock::now();
        qcclResult_t r = qcclOptimizeTopology(comm_);
        double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
                        .count();
        if (r == qcclSuccess) emit(strf("optimized %s ms %.3f", ring_view().c_str(), ms));
        else emit(strf("vote-fail %d %s ms %.3f", static_cast<int>(r), result_name(r), ms),
                  qcclGetLastError());
      } else if (cmd == "pending") {
        int pending = 0;
        announce();
        qcclResult_t r = qcclArePeersPending(comm_, &pending);
        if (r == qcclSuccess) emit(strf("pending %d", pending));
        else emit(strf("vote-fail %d %s", static_cast<int>(r), result_name(r)), qcclGetLastError());
      } else if (cmd == "update") {
        announce();
        qcclResult_t r = qcclUpdateTopology(comm_);
        if (r == qcclSuccess) {
          emit(strf("updated world %lld epoch %lld", static_cast<long long>(world()),
                    static_cast<long long>(attr(QCCL_ATTR_EPOCH))));
        } else {
          emit(strf("vote-fail %d %s", static_cast<int>(r), result_name(r)), qcclGetLastError());
        }
      } else if (cmd == "attr") {
        emit("view " + view());
      } else if (!cmd.empty()) {
        emit("unknown-command " + cmd);
      }
    }
    return 0;
  }

  // ---------------------------------------------------------------- state mode

  static uint64_t splitmix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
  }

  // FNV-1a over 64-bit words (then the tail bytes) of every comparable tensor, in table
  // order, each preceded by its length: equal hashes <=> equal shared content (for the test).
  uint64_t state_hash() const {
    constexpr uint64_t kPrime = 0x100000001B3ull;
    uint64_t h = 0xCBF29CE484222325ull;
    for (const auto& t : tensors_) {
      if (t.allow_content_inequality != 0) continue;
      size_t bytes = state_bytes_[&t - tensors_.data()];
      h = (h ^ bytes) * kPrime;
      const auto* p = static_cast<const uint8_t*>(t.data);
      size_t words = bytes / 8;
      for (size_t i = 0; i < words; ++i) {
        uint64_t w;
        std::memcpy(&w, p + 8 * i, 8);
        h = (h ^ w) * kPrime;
      }
      for (size_t i = 8 * words; i < bytes; ++i) h = (h ^ p[i]) * kPrime;
    }
    return h;
  }

  // Idle mode's sync: builds the state at the first call; a failed sync must not have changed
  // any byte of any tensor (all of them, allow_inequality included).
  void idle_sync() {
    if (tensors_.empty()) make_state();
    std::vector<std::vector<uint8_t>> before;
    for (size_t i = 0; i < tensors_.size(); ++i) {
      const auto* p = static_cast<const uint8_t*>(tensors_[i].data);
      before.emplace_back(p, p + state_bytes_[i]);
    }
    const long long k = syncs_done_;
    if (one_sync()) return;
    std::string changed;
    for (size_t i = 0; i < tensors_.size(); ++i) {
      if (state_bytes_[i] != 0 && std::memcmp(before[i].data(), tensors_[i].data, state_bytes_[i]) != 0) {
        if (!changed.empty()) changed += ',';
        changed += tensors_[i].name;
      }
    }
    if (!changed.empty()) {
      emit(strf("corrupt %lld the failed sync changed tensors %s; state hash now %s", k,
                changed.c_str(), hex(state_hash()).c_str()));
    }
  }

  static std::string hex(uint64_t x) { return strf("%016llx", static_cast<unsigned long long>(x)); }

  // The tensors (listed out of name order; the library sorts them). With Mi = M MiB, the
  // comparable ones hold Mi + 1 bytes: a bf16, a float32 and a uint8 tensor whose sizes are
  // not multiples of the 1 MiB piece, one int64 scalar and one empty tensor (data NULL).
  // "local.rng" (allow_inequality) holds this peer's own bytes and must never change.
  void make_state() {
    const size_t mi = opt_.state_mib << 20;
    struct Spec {
      const char* name;
      qcclDataType_t dtype;
      size_t elem;
      size_t count;
      int allow_inequality;
    };
    const Spec specs[] = {
        {"layer1.weight", qcclBFloat16, 2, mi / 8 - 6, 0},
        {"layer0.weight", qcclFloat32, 4, mi / 8 + 3, 0},
        {"optimizer.step", qcclInt64, 8, 1, 0},
        {"local.rng", qcclUint32, 4, 1024, 1},
        {"embedding.table", qcclUint8, 1, mi / 4 - 7, 0},
        {"empty", qcclUint8, 1, 0, 0},
    };
    const uint64_t seed = opt_.seed + (opt_.stale ? 1 : 0);
    size_t comparable = 0;
    for (const Spec& sp : specs) {
      size_t bytes = sp.elem * sp.count;
      size_t words = (bytes + 7) / 8;
      storage_.emplace_back(words == 0 ? nullptr : new uint64_t[words]);
      uint64_t* w = storage_.back().get();
      // The allow_inequality tensor differs on every peer; the others depend on the seed only.
      uint64_t base = splitmix64(sp.allow_inequality != 0 ? 0xA11CE000ull + mine_ : seed) ^
                      splitmix64(tensors_.size() + 1000);
      for (size_t i = 0; i < words; ++i) w[i] = splitmix64(base + i);
      qcclTensorInfo_t t{};
      t.name = sp.name;
      t.data = sp.count == 0 ? nullptr : w;
      t.count = sp.count;
      t.dtype = sp.dtype;
      t.allow_content_inequality = sp.allow_inequality;
      tensors_.push_back(t);
      state_bytes_.push_back(bytes);
      if (sp.allow_inequality == 0) comparable += bytes;
    }
    const qcclTensorInfo_t& local = tensors_[3];
    local_copy_.assign(static_cast<const uint8_t*>(local.data),
                       static_cast<const uint8_t*>(local.data) + state_bytes_[3]);
    revision_ = opt_.revision >= 0 ? static_cast<uint64_t>(opt_.revision) : (opt_.stale ? 0 : 7);
    emit(strf("state-ready bytes %zu tensors %zu hash %s", comparable, tensors_.size(),
              hex(state_hash()).c_str()));
  }

  qcclSyncStrategy_t strategy() const {
    if (opt_.strategy == "receive") return qcclSyncReceiveOnly;
    if (opt_.strategy == "send") return qcclSyncSendOnly;
    return qcclSyncEnforcePopular;
  }

  // One qcclSyncSharedState; prints synced or sync-fail. True on success.
  bool one_sync() {
    qcclSharedState_t st{};
    st.revision = revision_;
    st.num_tensors = tensors_.size();
    st.tensors = tensors_.data();
    qcclSyncInfo_t info{};
    announce();
    auto t0 = std::chrono::steady_clock::now();
    qcclResult_t r = qcclSyncSharedState(comm_, &st, strategy(), &info);
    double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
                    .count();
    const long long k = syncs_done_++;
    if (r != qcclSuccess) {
      emit(strf("sync-fail %lld %d %s ms %.3f", k, static_cast<int>(r), result_name(r), ms),
           qcclGetLastError());
      return false;
    }
    emit(strf("synced %lld revision %llu tx %llu rx %llu hash %s ms %.3f", k,
              static_cast<unsigned long long>(st.revision),
              static_cast<unsigned long long>(info.tx_bytes),
              static_cast<unsigned long long>(info.rx_bytes), hex(state_hash()).c_str(), ms));
    if (std::memcmp(local_copy_.data(), tensors_[3].data, local_copy_.size()) != 0) {
      emit(strf("bad %lld the allow_inequality tensor changed", k));
    }
    revision_ = st.revision + 1;  // revisions advance by one per sync
    return true;
  }

  int state() {
    for (int i = 0; i < opt_.syncs_before; ++i) {
      if (!one_sync()) return 4;
    }
    if (opt_.grow_to > 0) {
      if (int rc = gather(opt_.grow_to); rc != 0) return rc;
      emit(strf("grown world %lld epoch %lld", static_cast<long long>(world()),
                static_cast<long long>(attr(QCCL_ATTR_EPOCH))));
    }
    for (int i = 0; i < opt_.syncs; ++i) {
      if (!one_sync()) return 4;
    }
    return 0;
  }

  // ---------------------------------------------------------------- topo mode

  std::string ring_view() const {
    return strf("index %d rank %lld epoch %lld", opt_.index,
                static_cast<long long>(attr(QCCL_ATTR_RING_RANK)),
                static_cast<long long>(attr(QCCL_ATTR_EPOCH)));
  }

  int topo() {
    emit("ring " + ring_view());
    for (int64_t k = 0; k < opt_.iters; ++k) {
      if (one_op(opt_.count, false) != qcclSuccess) return 4;
    }
    auto t0 = std::chrono::steady_clock::now();
    qcclResult_t r = qcclOptimizeTopology(comm_);
    double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
                    .count();
    if (r != qcclSuccess) {
      emit(strf("vote-fail %d %s ms %.3f", static_cast<int>(r), result_name(r), ms),
           qcclGetLastError());
      return 4;
    }
    emit(strf("optimized %s ms %.3f", ring_view().c_str(), ms));
    emit("ring " + ring_view());
    for (int64_t k = 0; k < opt_.iters; ++k) {
      if (one_op(opt_.count, false) != qcclSuccess) return 4;
    }
    return 0;
  }

  Options opt_;
  uint64_t mine_;
  qcclComm_t* comm_ = nullptr;
  int64_t ops_done_ = 0;
  std::vector<uint64_t> send_, recv_;
  uint64_t my_id_ = 0;               // loop --op: QCCL_ATTR_PEER_ID
  std::map<uint64_t, int> index_of_;  // loop --op: peer id -> index (learn_indices)
  std::vector<uint64_t> ring_;        // loop --op: peer ids of the last completed op's ring
  std::thread watcher_;
  std::atomic<bool> stop_{false};
  // state mode
  std::vector<std::unique_ptr<uint64_t[]>> storage_;
  std::vector<qcclTensorInfo_t> tensors_;
  std::vector<size_t> state_bytes_;
  std::vector<uint8_t> local_copy_;
  uint64_t revision_ = 0;
  int64_t syncs_done_ = 0;
  std::string announce_cmd_;  // idle: the command being run (for announce())
};

}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  Options opt = parse(argc, argv);
  Peer peer(std::move(opt));
  return peer.run();
}
