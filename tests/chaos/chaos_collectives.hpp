// The chaos peer's round of the collectives beside all-reduce (tests/chaos/chaos_peer.cpp,
// step 4b): all-gather, all-gather-v, reduce-scatter, broadcast and barrier, once each per
// step, each retried on qcclPeerLost like the all-reduces, so that kills, stops, cuts and
// joins land in the middle of every kind. What a peer can check alone, for each result of
// world W (a group of W peers, this one included, each peer contributing a multiple of its
// own bit `mine` by `scale` = step + 1):
//   all-gather      W blocks, each (bit of a distinct peer) x scale, this peer's among them
//   all-gather-v    peer i contributes (bit-index + 1) words: counts match the values
//   reduce-scatter  this peer's block is all (sum of the W bits) x scale, W bits set, its own
//   broadcast       from the first peer of the all-gather's ring: one bit x scale, everywhere
//   barrier         world W
// and for every failure: the inputs untouched, a failed broadcast's buffer given back. A
// violation prints "bad coll ..." (an invariant violation for the driver).
#pragma once

#include <algorithm>
#include <bit>
#include <cstdint>
#include <string>
#include <vector>

#include "qccl/qccl.h"
#include "support/peer_text.hpp"

namespace qccl::chaos {

class CollectiveRound {
 public:
  // How a call ended: qcclSuccess, qcclTooFewPeers (alone: the round stops), or a code that
  // ends the communicator or the peer (the caller decides).
  struct Outcome {
    qcclResult_t code = qcclSuccess;
    const char* where = "";
  };

  CollectiveRound(qcclComm_t* comm, uint64_t mine, uint64_t step)
      : comm_(comm), mine_(mine), scale_(step + 1), step_(step) {}

  Outcome run() {
    for (auto fn : {&CollectiveRound::all_gather, &CollectiveRound::all_gather_v,
                    &CollectiveRound::reduce_scatter, &CollectiveRound::broadcast,
                    &CollectiveRound::barrier}) {
      Outcome o = (this->*fn)();
      if (o.code != qcclSuccess) return o;
    }
    return {};
  }

 private:
  static constexpr size_t kWords = 300;     // reduce-scatter input: several per peer
  static constexpr uint64_t kTagBase = 100;  // beside the all-reduces' tags 1 and 2

  void bad(const std::string& what) {
    test::emit(test::strf("bad coll step %llu %s", static_cast<unsigned long long>(step_),
                          what.c_str()));
  }

  // Retries `call` on qcclPeerLost (and on `also`, at most kMaxOtherRetries times in a row);
  // returns anything else.
  template <typename F>
  Outcome retry(const char* where, F&& call, qcclResult_t also = qcclSuccess) {
    for (int others = 0;;) {
      qcclResult_t r = call();
      if (r == qcclPeerLost || (also != qcclSuccess && r == also && ++others <= 20)) {
        test::emit(test::strf("retry %s %d %s step %llu", where, static_cast<int>(r),
                              test::result_name(r), static_cast<unsigned long long>(step_)),
                   qcclGetLastError());
        continue;
      }
      return {r, where};
    }
  }

  // The W distinct bits of `values` (each a bit x scale); 0 if they are not that.
  uint64_t bits_of(const std::vector<uint64_t>& values, size_t w) {
    uint64_t mask = 0;
    for (size_t i = 0; i < w; ++i) {
      uint64_t v = values[i];
      if (v % scale_ != 0 || std::popcount(v / scale_) != 1 || (mask & (v / scale_)) != 0) {
        return 0;
      }
      mask |= v / scale_;
    }
    return mask;
  }

  Outcome all_gather() {
    const uint64_t in = mine_ * scale_;
    std::vector<uint64_t> out(64), ring(64);
    qcclOpInfo_t info{};
    info.peer_ids = ring.data();
    info.peer_ids_capacity = ring.size();
    Outcome o = retry("coll-allgather", [&] {
      return qcclAllGather(&in, out.data(), 1, out.size(), qcclUint64, kTagBase, comm_, &info);
    });
    if (o.code != qcclSuccess) return o;
    ring_head_ = info.world_size > 0 ? ring[0] : 0;
    uint64_t mask = bits_of(out, info.world_size);
    if (in != mine_ * scale_) bad("allgather changed its input");
    if (std::popcount(mask) != static_cast<int>(info.world_size) || (mask & mine_) == 0) {
      bad(test::strf("allgather world %u mask %llu", info.world_size,
                     static_cast<unsigned long long>(mask)));
    }
    return o;
  }

  Outcome all_gather_v() {
    const int me = std::countr_zero(mine_);
    std::vector<uint64_t> in(static_cast<size_t>(me + 1), mine_ * scale_), out(64 * 65 / 2);
    std::vector<size_t> counts(64);
    qcclOpInfo_t info{};
    Outcome o = retry("coll-allgatherv", [&] {
      return qcclAllGatherV(in.data(), in.size(), out.data(), out.size(), qcclUint64,
                            counts.data(), counts.size(), kTagBase + 1, comm_, &info);
    });
    if (o.code != qcclSuccess) return o;
    size_t at = 0;
    uint64_t mask = 0;
    for (size_t i = 0; i < info.world_size; ++i) {
      uint64_t v = out[at];
      uint64_t bit = v / scale_;
      if (v % scale_ != 0 || std::popcount(bit) != 1 ||
          counts[i] != static_cast<size_t>(std::countr_zero(bit) + 1)) {
        bad(test::strf("allgatherv block %zu value %llu count %zu", i,
                       static_cast<unsigned long long>(v), counts[i]));
        return o;
      }
      for (size_t k = 0; k < counts[i]; ++k) {
        if (out[at + k] != v) bad(test::strf("allgatherv block %zu not uniform", i));
      }
      mask |= bit;
      at += counts[i];
    }
    if (std::popcount(mask) != static_cast<int>(info.world_size) || (mask & mine_) == 0) {
      bad(test::strf("allgatherv world %u mask %llu", info.world_size,
                     static_cast<unsigned long long>(mask)));
    }
    return o;
  }

  Outcome reduce_scatter() {
    std::vector<uint64_t> in(kWords, mine_ * scale_), out(kWords);
    qcclReduceDesc_t d{};
    d.count = kWords;
    d.dtype = qcclUint64;
    d.op = qcclSum;
    d.tag = kTagBase + 2;
    qcclOpInfo_t info{};
    Outcome o = retry("coll-reducescatter", [&] {
      return qcclReduceScatter(in.data(), out.data(), out.size(), &d, comm_, &info);
    });
    if (o.code != qcclSuccess) return o;
    if (std::any_of(in.begin(), in.end(), [&](uint64_t x) { return x != mine_ * scale_; })) {
      bad("reducescatter changed its input");
    }
    const uint64_t first = out[0];
    const uint64_t mask = first / scale_;
    size_t block = kWords / info.world_size;  // the smallest block: present everywhere
    for (size_t k = 0; k < block; ++k) {
      if (out[k] != first) bad("reducescatter block not uniform");
    }
    if (first % scale_ != 0 || std::popcount(mask) != static_cast<int>(info.world_size) ||
        (mask & mine_) == 0) {
      bad(test::strf("reducescatter world %u sum %llu", info.world_size,
                     static_cast<unsigned long long>(first)));
    }
    return o;
  }

  Outcome broadcast() {
    std::vector<uint64_t> buf(1000);
    bool first_try = true;
    Outcome o = retry(
        "coll-broadcast",
        [&] {
          // The root: the first peer of the ring of the last op that completed (the all-gather
          // before), which every peer shares. After a failure, the first peer of the ring as
          // this peer sees it then: right after churn peers may still see different epochs,
          // so the roots may differ (qcclMismatch everywhere) or the root may be gone
          // (qcclInvalidArgument everywhere); both are retried the same way.
          uint64_t root_id = ring_head_;
          if (!first_try || root_id == 0) {
            qcclPeerInfo_t first{};
            size_t n = 0;
            // A communicator that ended (kicked, master lost) says so: its code, not a retry.
            if (qcclResult_t r = qcclGetPeers(comm_, &first, 1, &n); r != qcclSuccess) return r;
            if (n == 0) return qcclPeerLost;
            root_id = first.peer_id;
          }
          first_try = false;
          bool root = root_id == own_id();
          std::fill(buf.begin(), buf.end(), root ? mine_ * scale_ : 0);
          qcclResult_t r = qcclBroadcast(buf.data(), buf.size(), qcclUint64, root_id,
                                         kTagBase + 3, comm_, nullptr);
          if (r == qcclMismatch) r = qcclInvalidArgument;  // retried: see above
          if (r != qcclSuccess && !root &&
              std::any_of(buf.begin(), buf.end(), [](uint64_t x) { return x != 0; })) {
            bad("a failed broadcast did not give the buffer back");
          }
          return r;
        },
        qcclInvalidArgument);
    if (o.code != qcclSuccess) return o;
    const uint64_t v = buf[0];
    if (v % scale_ != 0 || std::popcount(v / scale_) != 1) {
      bad(test::strf("broadcast value %llu", static_cast<unsigned long long>(v)));
    }
    for (uint64_t x : buf) {
      if (x != v) {
        bad("broadcast not uniform");
        break;
      }
    }
    return o;
  }

  Outcome barrier() {
    qcclOpInfo_t info{};
    Outcome o = retry("coll-barrier", [&] { return qcclBarrier(kTagBase + 4, comm_, &info); });
    if (o.code == qcclSuccess && info.world_size < 2) bad("barrier world < 2");
    return o;
  }

  uint64_t own_id() {
    int64_t id = 0;
    qcclGetAttribute(comm_, QCCL_ATTR_PEER_ID, &id);
    return static_cast<uint64_t>(id);
  }

  qcclComm_t* comm_;
  uint64_t mine_;
  uint64_t scale_;
  uint64_t step_;
  uint64_t ring_head_ = 0;  // the first peer of the all-gather's ring (0: none yet)
};

}  // namespace qccl::chaos
