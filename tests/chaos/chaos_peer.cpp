// qccl_chaos_peer: one peer of the chaos harness (tests/chaos/chaos_driver.cpp starts, stops,
// kills and cuts it off). It trains the toy model of chaos_model.hpp in lock step with the
// other peers until told to leave:
//
//   qccl_chaos_peer --master HOST:PORT --slot I [--pace-ms P] [--connect-timeout-ms MS]
//
// Each step, on every accepted peer (chaos_model.hpp says what each step computes):
//   1. qcclArePeersPending and, if peers wait, qcclUpdateTopology (admits them), on every
//      step, a newcomer's first one included: the accepted peers admitted it inside their
//      qcclUpdateTopology and went on to the sync, and the master answers a fresh peer's
//      peers-pending vote while its group syncs with "nothing pending" (docs/call-order.md),
//      so it follows them. qcclPeerLost from either vote does not end the step: the vote itself was
//      answered on every voter, only this peer's ring did not come up, and the next
//      collective reports that and moves the group to a new ring. Going back to the vote
//      instead would leave this peer voting while the others sync.
//   2. qcclSyncSharedState of the model at this peer's revision (0 for a fresh process),
//      enforce-popular, except receive-only for the first sync of a rejoined communicator
//      (its model is known to be stale). The elected revision is the step s. Retried on
//      qcclPeerLost. A failed sync must have left the model as it was (checked).
//   3. the plain all-reduce, then 4. the quantized one; each retried at once on
//      qcclPeerLost. qcclTooFewPeers (alone in the group) makes this peer's own input the
//      result: a solo step. 4b. Unless solo: all-gather, all-gather-v, reduce-scatter,
//      broadcast and barrier, each retried on qcclPeerLost and checked locally
//      (chaos_collectives.hpp).
//   5. checks what it can alone (uniform results, popcount(mask) == world size, its own bit
//      in the mask, inputs untouched by failed ops, the model untouched by failed syncs, its
//      allow_inequality tensor untouched),
//      prints the step line, updates the model and sleeps --pace-ms (pacing, not sync).
// qcclKicked or qcclMasterUnreachable (e.g. after SIGCONT or a cut link) end the
// communicator: it is destroyed and a new one connects as a new peer, keeping the model it
// had (stale: the next sync downloads what changed). Between steps the peer reads its stdin:
// "leave" or EOF makes it destroy the communicator (a graceful leave) and exit 0.
//
// Output, one line per event on stdout ("at" = CLOCK_MONOTONIC in µs; text after "msg" is
// qcclGetLastError()):
//   hello slot I pid P at T
//   connected inc K world W epoch E ms D at T            (communicator K, counted from 0)
//   connect-fail inc K CODE NAME ms D at T msg ...       (a new communicator is tried)
//   retry WHAT CODE NAME step S at T msg ...             (WHAT: plain, quant, sync, pending,
//                                                        update; step -1 before the sync)
//   step S inc K world W mask M qworld QW qmask QM plain HP quant HQ state HS solo F
//        t0 T0 sync_at TS sync_ms A ar_ms B q_ms C rx X at T
//                                                       (HP, HQ, HS: hex hashes of the
//                                                        results and of the synced model; T0
//                                                        when the sync began, TS when it
//                                                        returned; X = sync rx bytes)
//   rejoin inc K CODE NAME where WHAT at T msg ...       (communicator K ended)
//   mismatch CODE NAME revision R strategy S at T msg ...(the sync was refused; see below)
//   bad WHAT ... at T                                    (a local check failed)
//   error WHAT CODE NAME at T msg ...                    (unexpected result; exit code 4)
//   left inc K ms D at T                                 (qcclCommDestroy returned)
// qcclMismatch from the sync is only possible after the group emptied (the next sync then
// starts a new revision line): a peer whose revision is above the one the group expects (the
// message says which) votes again as a fresh peer (initial model, revision 0), and a
// receive-only vote that found no candidate votes again enforce-popular. The driver decides
// whether the refusal was legitimate.
// Exit codes: 0 left, 2 bad usage, 4 unexpected result.
#include <poll.h>
#include <unistd.h>

#include <bit>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "chaos_collectives.hpp"
#include "chaos_model.hpp"
#include "qccl/qccl.h"
#include "support/peer_text.hpp"

namespace {

using qccl::test::emit;
using qccl::test::now_us;
using qccl::test::result_name;
using qccl::test::strf;

using qccl::chaos::Model;

std::string hex(uint64_t x) { return strf("%016llx", static_cast<unsigned long long>(x)); }

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

struct Options {
  std::string master;
  int slot = -1;
  int pace_ms = 10;
  uint32_t connect_timeout_ms = 20000;
};

[[noreturn]] void usage(const std::string& why) {
  std::fprintf(stderr,
               "qccl_chaos_peer: %s\n"
               "usage: qccl_chaos_peer --master HOST:PORT --slot I [--pace-ms P]\n"
               "                       [--connect-timeout-ms MS]\n",
               why.c_str());
  std::exit(2);
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (i + 1 >= argc) usage("missing value for " + a);
    std::string v = argv[++i];
    char* end = nullptr;
    long n = std::strtol(v.c_str(), &end, 10);
    bool num = !v.empty() && *end == '\0' && n >= 0;
    if (a == "--master") o.master = v;
    else if (a == "--slot" && num) o.slot = static_cast<int>(n);
    else if (a == "--pace-ms" && num) o.pace_ms = static_cast<int>(n);
    else if (a == "--connect-timeout-ms" && num) o.connect_timeout_ms = static_cast<uint32_t>(n);
    else usage("bad argument " + a + " " + v);
  }
  if (o.master.empty()) usage("--master is required");
  if (o.slot < 0 || o.slot >= qccl::chaos::kMaxSlots) usage("--slot out of range");
  return o;
}

// Why the current communicator must end (fatal code), or an unexpected result.
struct Fatal {
  qcclResult_t code;
  std::string where;
};

class Peer {
 public:
  explicit Peer(Options o)
      : opt_(std::move(o)), mine_(uint64_t{1} << opt_.slot), model_(Model::initial(mine_)) {
    local_copy_ = model_.local;
  }

  int run() {
    emit(strf("hello slot %d pid %d", opt_.slot, static_cast<int>(::getpid())));
    for (;; ++inc_) {
      if (leave_requested(0)) return 0;
      if (!connect()) continue;
      Fatal f = train();
      if (f.code == qcclSuccess) return leave();  // asked to leave between steps
      emit(strf("rejoin inc %d %d %s where %s", inc_, static_cast<int>(f.code),
                result_name(f.code), f.where.c_str()),
           qcclGetLastError());
      qcclCommDestroy(comm_);
      comm_ = nullptr;
      if (exit_code_ != 0) return exit_code_;
    }
  }

 private:
  // True once stdin said "leave" or reached EOF; waits up to timeout_ms for it.
  bool leave_requested(int timeout_ms) {
    if (leave_) return true;
    pollfd p{0, POLLIN, 0};
    if (::poll(&p, 1, timeout_ms) <= 0) return false;
    char buf[256];
    ssize_t n = ::read(0, buf, sizeof buf);
    if (n <= 0 || std::string(buf, static_cast<size_t>(n)).find("leave") != std::string::npos) {
      leave_ = true;
    }
    return leave_;
  }

  int leave() {
    auto t0 = std::chrono::steady_clock::now();
    if (comm_ != nullptr) qcclCommDestroy(comm_);
    comm_ = nullptr;
    emit(strf("left inc %d ms %.3f", inc_, ms_since(t0)));
    return 0;
  }

  bool connect() {
    qcclCommConfig_t cc = QCCL_COMM_CONFIG_INIT;
    cc.master_address = opt_.master.c_str();
    cc.connect_timeout_ms = opt_.connect_timeout_ms;
    cc.connections_per_peer = 2;
    if (qcclResult_t r = qcclCommCreate(&cc, &comm_); r != qcclSuccess) {
      emit(strf("error create %d %s", static_cast<int>(r), result_name(r)), qcclGetLastError());
      std::exit(4);
    }
    auto t0 = std::chrono::steady_clock::now();
    qcclResult_t r = qcclConnect(comm_);
    if (r != qcclSuccess) {
      emit(strf("connect-fail inc %d %d %s ms %.3f", inc_, static_cast<int>(r), result_name(r),
                ms_since(t0)),
           qcclGetLastError());
      qcclCommDestroy(comm_);
      comm_ = nullptr;
      leave_requested(200);  // back-off before the next attempt (a cut link fails at once)
      return false;
    }
    first_sync_ = true;
    emit(strf("connected inc %d world %lld epoch %lld ms %.3f", inc_,
              static_cast<long long>(attr(QCCL_ATTR_GROUP_WORLD_SIZE)),
              static_cast<long long>(attr(QCCL_ATTR_EPOCH)), ms_since(t0)));
    return true;
  }

  int64_t attr(qcclAttribute_t a) const {
    int64_t v = -1;
    return qcclGetAttribute(comm_, a, &v) == qcclSuccess ? v : -1;
  }

  static bool fatal(qcclResult_t r) { return r == qcclKicked || r == qcclMasterUnreachable; }

  // Anything but success, the retryable codes and the fatal ones is a finding: exit 4.
  Fatal unexpected(const char* where, qcclResult_t r) {
    emit(strf("error %s %d %s", where, static_cast<int>(r), result_name(r)), qcclGetLastError());
    exit_code_ = 4;
    return Fatal{r, where};
  }

  // Steps until a fatal result (returned) or a leave request (qcclSuccess).
  Fatal train() {
    bool first = true;
    for (;;) {
      if (leave_requested(first ? 0 : opt_.pace_ms)) return Fatal{qcclSuccess, ""};
      first = false;
      if (auto f = admit(); f.code != qcclSuccess) return f;
      if (auto f = step(); f.code != qcclSuccess) return f;
    }
  }

  Fatal admit() {
    int pending = 0;
    qcclResult_t r = qcclArePeersPending(comm_, &pending);
    if (r == qcclPeerLost) {
      emit(strf("retry pending %d %s step -1", static_cast<int>(r), result_name(r)),
           qcclGetLastError());
      return Fatal{qcclSuccess, ""};
    }
    if (fatal(r)) return Fatal{r, "pending"};
    if (r != qcclSuccess) return unexpected("pending", r);
    if (pending == 0) return Fatal{qcclSuccess, ""};
    r = qcclUpdateTopology(comm_);
    if (r == qcclPeerLost) {
      emit(strf("retry update %d %s step -1", static_cast<int>(r), result_name(r)),
           qcclGetLastError());
      return Fatal{qcclSuccess, ""};
    }
    if (fatal(r)) return Fatal{r, "update"};
    if (r != qcclSuccess) return unexpected("update", r);
    return Fatal{qcclSuccess, ""};
  }

  std::vector<qcclTensorInfo_t> tensors() {
    return {
        {"model.b", model_.b.data(), model_.b.size(), qcclFloat64, 0},
        {"model.w", model_.w.data(), model_.w.size(), qcclFloat32, 0},
        {"train.step", &model_.step, 1, qcclInt64, 0},
        {"z.local", model_.local.data(), model_.local.size(), qcclUint32, 1},
    };
  }

  // Part 2 of a step: the sync. On success revision_ is the elected revision.
  Fatal sync(uint64_t& rx) {
    // The first sync of a later communicator knows its model is stale: receive-only.
    qcclSyncStrategy_t strategy = first_sync_ && inc_ > 0 ? qcclSyncReceiveOnly
                                                          : qcclSyncEnforcePopular;
    first_sync_ = false;
    int mismatches = 0;
    for (;;) {
      std::vector<qcclTensorInfo_t> t = tensors();
      qcclSharedState_t st{revision_, t.size(), t.data()};
      qcclSyncInfo_t info{};
      backup_w_ = model_.w;
      backup_b_ = model_.b;
      const int64_t backup_step = model_.step;
      qcclResult_t r = qcclSyncSharedState(comm_, &st, strategy, &info);
      if (std::memcmp(local_copy_.data(), model_.local.data(), local_copy_.size() * 4) != 0) {
        emit("bad sync changed the allow_content_inequality tensor");
        model_.local = local_copy_;
      }
      if (r == qcclSuccess) {
        if (st.revision < revision_) {
          emit(strf("bad sync elected revision %llu below the vote %llu",
                    static_cast<unsigned long long>(st.revision),
                    static_cast<unsigned long long>(revision_)));
        }
        revision_ = st.revision;
        rx = info.rx_bytes;
        return Fatal{qcclSuccess, ""};
      }
      // All or nothing: a failed sync, whatever the code, changed nothing (shared-state.md
      // §5). Restored if it did, so that the model matches the revision it votes again with.
      if (model_.w != backup_w_ || model_.b != backup_b_ || model_.step != backup_step) {
        emit(strf("bad sync failed with %s but changed the model", result_name(r)));
        model_.w = backup_w_;
        model_.b = backup_b_;
        model_.step = backup_step;
      }
      if (fatal(r)) return Fatal{r, "sync"};
      if (r == qcclMismatch) {
        const std::string why = qcclGetLastError();
        emit(strf("mismatch %d %s revision %llu strategy %d", static_cast<int>(r), result_name(r),
                  static_cast<unsigned long long>(revision_), static_cast<int>(strategy)),
             why.c_str());
        if (++mismatches > 3) return unexpected("sync", r);
        // "... but the group expects at most E ...": a revision above E votes again fresh.
        const size_t at = why.find("expects at most ");
        if (at != std::string::npos &&
            revision_ > std::strtoull(why.c_str() + at + 16, nullptr, 10)) {
          model_ = Model::initial(mine_);
          revision_ = 0;
        }
        strategy = qcclSyncEnforcePopular;  // a receive-only vote found no candidate
        continue;
      }
      if (r != qcclPeerLost) return unexpected("sync", r);
      emit(strf("retry sync %d %s step -1", static_cast<int>(r), result_name(r)),
           qcclGetLastError());
    }
  }

  // One all-reduce retried on qcclPeerLost; TooFewPeers: this peer's input is the result
  // (world 1). `inplace`: recv holds the input and must hold it again after a failure.
  template <typename T>
  Fatal all_reduce(const char* what, const std::vector<T>& input, std::vector<T>& recv,
                   bool inplace, qcclDataType_t dtype, bool quant, uint64_t step,
                   uint32_t& world, bool& solo) {
    qcclReduceDesc_t desc{};
    desc.count = input.size();
    desc.dtype = dtype;
    desc.op = qcclSum;
    desc.tag = quant ? 2 : 1;
    desc.quantization.algorithm = quant ? qcclQuantMinMax : qcclQuantNone;
    desc.quantization.quantized_dtype = qcclUint8;
    recv.resize(input.size());
    for (;;) {
      if (inplace) recv = input;
      const void* send = inplace ? static_cast<const void*>(recv.data()) : input.data();
      qcclReduceInfo_t info{};
      qcclResult_t r = qcclAllReduce(send, recv.data(), &desc, comm_, &info);
      if (r == qcclSuccess) {
        world = info.world_size;
        return Fatal{qcclSuccess, ""};
      }
      if (inplace && recv != input) emit(strf("bad %s failed op did not restore its input", what));
      if (r == qcclTooFewPeers) {
        recv = input;
        world = 1;
        solo = true;
        return Fatal{qcclSuccess, ""};
      }
      if (fatal(r)) return Fatal{r, what};
      if (r != qcclPeerLost) return unexpected(what, r);
      emit(strf("retry %s %d %s step %llu", what, static_cast<int>(r), result_name(r),
                static_cast<unsigned long long>(step)),
           qcclGetLastError());
    }
  }

  Fatal step() {
    const int64_t t0 = now_us();
    auto ts = std::chrono::steady_clock::now();
    uint64_t rx = 0;
    if (auto f = sync(rx); f.code != qcclSuccess) return f;
    const double sync_ms = ms_since(ts);
    const int64_t sync_at = now_us();
    const uint64_t s = revision_;
    const uint64_t state_hash = model_.hash();
    if (model_.step != static_cast<int64_t>(s)) {
      emit(strf("bad model step %lld after the sync of revision %llu",
                static_cast<long long>(model_.step), static_cast<unsigned long long>(s)));
    }
    bool solo = false;
    uint32_t world = 0, qworld = 0;
    qccl::chaos::plain_input(opt_.slot, s, plain_in_);
    auto ta = std::chrono::steady_clock::now();
    if (auto f = all_reduce("plain", plain_in_, plain_out_, false, qcclUint64, false, s, world,
                            solo);
        f.code != qcclSuccess) {
      return f;
    }
    std::vector<uint64_t> in_copy;
    qccl::chaos::plain_input(opt_.slot, s, in_copy);
    if (in_copy != plain_in_) emit("bad plain the all-reduce changed its sendbuf");
    const double ar_ms = ms_since(ta);
    qccl::chaos::quant_input(opt_.slot, s, quant_in_);
    auto tq = std::chrono::steady_clock::now();
    if (auto f = all_reduce("quant", quant_in_, quant_out_, true, qcclFloat64, true, s, qworld,
                            solo);
        f.code != qcclSuccess) {
      return f;
    }
    const double q_ms = ms_since(tq);
    // 4b. The other collectives, once each (chaos_collectives.hpp), unless alone.
    if (!solo) {
      auto c = qccl::chaos::CollectiveRound(comm_, mine_, s).run();
      if (c.code == qcclTooFewPeers) {
        // Alone now: the step's all-reduces already ran; the next step notices.
      } else if (fatal(c.code)) {
        return Fatal{c.code, c.where};
      } else if (c.code != qcclSuccess) {
        return unexpected(c.where, c.code);
      }
    }

    // Local checks; the driver checks the hashes against the exact results.
    const uint64_t first = plain_out_[0];
    uint64_t mask = first / (s + 1);
    for (size_t j = 0; j < qccl::chaos::kMaskWords; ++j) {
      if (plain_out_[j] != first) {
        emit(strf("bad plain step %llu word %zu differs", static_cast<unsigned long long>(s), j));
        break;
      }
    }
    if (first % (s + 1) != 0 || std::popcount(mask) != static_cast<int>(world) ||
        (mask & mine_) == 0) {
      emit(strf("bad plain step %llu sum %llu world %u", static_cast<unsigned long long>(s),
                static_cast<unsigned long long>(first), world));
    }
    const double qfirst = quant_out_[0];
    uint64_t qmask = static_cast<uint64_t>(qfirst) / (s + 1);
    for (double x : quant_out_) {
      if (x != qfirst) {
        emit(strf("bad quant step %llu elements differ", static_cast<unsigned long long>(s)));
        break;
      }
    }
    if (static_cast<double>(qmask * (s + 1)) != qfirst ||
        std::popcount(qmask) != static_cast<int>(qworld) || (qmask & mine_) == 0) {
      emit(strf("bad quant step %llu sum %.17g world %u", static_cast<unsigned long long>(s),
                qfirst, qworld));
    }
    emit(strf("step %llu inc %d world %u mask %llu qworld %u qmask %llu plain %s quant %s state %s "
              "solo %d t0 %lld sync_at %lld sync_ms %.3f ar_ms %.3f q_ms %.3f rx %llu",
              static_cast<unsigned long long>(s), inc_, world, static_cast<unsigned long long>(mask),
              qworld, static_cast<unsigned long long>(qmask),
              hex(qccl::chaos::bytes_hash(plain_out_.data(), plain_out_.size() * 8, 0)).c_str(),
              hex(qccl::chaos::bytes_hash(quant_out_.data(), quant_out_.size() * 8, 0)).c_str(),
              hex(state_hash).c_str(), solo ? 1 : 0, static_cast<long long>(t0),
              static_cast<long long>(sync_at), sync_ms, ar_ms,
              q_ms, static_cast<unsigned long long>(rx)));

    // The update, from the results: grad_avg = second section / world, scale = s+1.
    std::vector<uint64_t>& g = grad_avg_;
    g.resize(qccl::chaos::kGradWords);
    const uint64_t w = world == 0 ? 1 : world;
    for (size_t j = 0; j < g.size(); ++j) g[j] = plain_out_[qccl::chaos::kMaskWords + j] / w;
    const double scale = qmask == 0 ? 0.0 : qfirst / static_cast<double>(qmask);
    model_.update(s, g.data(), scale);
    revision_ = s + 1;
    return Fatal{qcclSuccess, ""};
  }

  Options opt_;
  uint64_t mine_;
  Model model_;
  std::vector<uint32_t> local_copy_;
  std::vector<float> backup_w_;
  std::vector<double> backup_b_;
  uint64_t revision_ = 0;
  qcclComm_t* comm_ = nullptr;
  int inc_ = 0;
  bool first_sync_ = true;  // of the current communicator
  bool leave_ = false;
  int exit_code_ = 0;
  std::vector<uint64_t> plain_in_, plain_out_, grad_avg_;
  std::vector<double> quant_in_, quant_out_;
};

}  // namespace

int main(int argc, char** argv) {
  Options opt = parse(argc, argv);
  Peer peer(std::move(opt));
  return peer.run();
}
