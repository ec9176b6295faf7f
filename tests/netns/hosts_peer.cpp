// qccl_hosts_peer: the peer program of the multi-host tests (tests/netns/hosts_netns_test.cpp).
// One process per host namespace; the test drives it line by line on stdin, so it decides
// when each collective starts and can change the network (firewall, NAT) in between.
//
//   qccl_hosts_peer --master HOST:PORT --index I [--listen ADDR] [--advertise ADDR]
//                   [--connect-timeout-ms MS] [--state-mib M] [--stale]
//
// --listen / --advertise set qcclCommConfig_t's listen_address / advertise_address
// explicitly; without them the library reads QCCL_LISTEN_ADDRESS / QCCL_ADVERTISE_ADDRESS
// (the test sets those in the peer's environment), so both routes are exercised.
//
// Every peer contributes 2^I to each element of a uint64 all-reduce: a sum S proves which
// peers took part. The shared state is one uint8 tensor of --state-mib MiB filled from a
// seed; a --stale peer has other bytes and revision 0 (the others revision 7), so its first
// qcclSyncSharedState downloads the whole tensor from the up-to-date peers.
//
// Commands (stdin, one per line; EOF or "quit" ends the process):
//   world N      qcclWaitForWorld(N, 60 s)
//   admit        qcclAdmitPending
//   allreduce    one all-reduce of 4096 elements, no retry
//   sync         one qcclSyncSharedState (EnforcePopular)
//   optimize     qcclOptimizeTopology
//   peers        qcclGetPeers: one "peer" line per peer, then "peers"
// Output (stdout, one line per event; "at" is CLOCK_MONOTONIC in µs; text after "msg" is
// qcclGetLastError()):
//   connected index I id ID world W at T
//   ok CMD world W epoch E ms D at T                 (world, admit, optimize)
//   op world W sum S ms D at T                       (allreduce)
//   synced revision R tx X rx Y hash H ms D at T     (sync; H = FNV-1a of the tensor)
//   peer rank R id ID address A at T
//   peers n N self ID rank R at T
//   fail CMD CODE NAME ms D at T msg ...             (a call failed)
//   error WHAT CODE NAME at T msg ...                (setup failed; exit code 3)
//   done at T
// Exit codes: 0 done, 2 bad usage, 3 setup failed.
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "qccl/qccl.h"
#include "support/peer_args.hpp"
#include "support/peer_text.hpp"

namespace {

using qccl::test::emit;
using qccl::test::now_us;
using qccl::test::result_name;
using qccl::test::strf;

struct Options {
  std::string master, listen, advertise;
  int index = -1;
  uint32_t connect_timeout_ms = 30000;
  size_t state_mib = 4;
  bool stale = false;
};

[[noreturn]] void usage(const std::string& why) {
  std::fprintf(stderr,
               "qccl_hosts_peer: %s\n"
               "usage: qccl_hosts_peer --master HOST:PORT --index I [--listen ADDR]\n"
               "  [--advertise ADDR] [--connect-timeout-ms MS] [--state-mib M] [--stale]\n",
               why.c_str());
  std::exit(2);
}

Options parse(int argc, char** argv) {
  Options o;
  qccl::test::parse_options(argc, argv, usage, [&](const std::string& a, const auto& val) {
    if (a == "--master") o.master = val();
    else if (a == "--index") o.index = std::stoi(val());
    else if (a == "--listen") o.listen = val();
    else if (a == "--advertise") o.advertise = val();
    else if (a == "--connect-timeout-ms") o.connect_timeout_ms = static_cast<uint32_t>(std::stoul(val()));
    else if (a == "--state-mib") o.state_mib = std::stoull(val());
    else if (a == "--stale") o.stale = true;
    else return false;
    return true;
  });
  if (o.master.empty()) usage("--master is required");
  if (o.index < 0 || o.index > 62) usage("--index must be in [0, 62]");
  if (o.state_mib < 1 || o.state_mib > 1024) usage("--state-mib must be in [1, 1024]");
  return o;
}

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

class Peer {
 public:
  explicit Peer(Options o) : opt_(std::move(o)) {}
  ~Peer() {
    if (comm_ != nullptr) qcclCommDestroy(comm_);
  }

  int run() {
    make_state();
    qcclCommConfig_t cc = QCCL_COMM_CONFIG_INIT;
    cc.master_address = opt_.master.c_str();
    cc.connect_timeout_ms = opt_.connect_timeout_ms;
    if (!opt_.listen.empty()) cc.listen_address = opt_.listen.c_str();
    if (!opt_.advertise.empty()) cc.advertise_address = opt_.advertise.c_str();
    if (qcclResult_t r = qcclCommCreate(&cc, &comm_); r != qcclSuccess) {
      comm_ = nullptr;
      return error("create", r);
    }
    if (qcclResult_t r = qcclConnect(comm_); r != qcclSuccess) return error("connect", r);
    emit(strf("connected index %d id %llu world %lld", opt_.index,
              static_cast<unsigned long long>(attr(QCCL_ATTR_PEER_ID)),
              static_cast<long long>(attr(QCCL_ATTR_GROUP_WORLD_SIZE))));
    std::string line;
    while (std::getline(std::cin, line)) {
      std::string cmd = line.substr(0, line.find(' '));
      if (cmd == "quit") break;
      command(cmd, line.size() > cmd.size() ? line.substr(cmd.size() + 1) : "");
    }
    emit("done");
    return 0;
  }

 private:
  int64_t attr(qcclAttribute_t a) const {
    int64_t v = -1;
    if (qcclGetAttribute(comm_, a, &v) != qcclSuccess) return -1;
    return v;
  }

  int error(const char* what, qcclResult_t r) {
    emit(strf("error %s %d %s", what, static_cast<int>(r), result_name(r)), qcclGetLastError());
    return 3;
  }

  void fail(const std::string& cmd, qcclResult_t r, double ms) {
    emit(strf("fail %s %d %s ms %.3f", cmd.c_str(), static_cast<int>(r), result_name(r), ms),
         qcclGetLastError());
  }

  void command(const std::string& cmd, const std::string& arg) {
    const auto t0 = std::chrono::steady_clock::now();
    auto ms = [&] {
      return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
          .count();
    };
    qcclResult_t r = qcclSuccess;
    if (cmd == "world") {
      r = qcclWaitForWorld(comm_, std::atoll(arg.c_str()), 60000);
    } else if (cmd == "admit") {
      r = qcclAdmitPending(comm_, nullptr);
    } else if (cmd == "optimize") {
      r = qcclOptimizeTopology(comm_);
    } else if (cmd == "allreduce") {
      std::vector<uint64_t> send(4096, uint64_t{1} << opt_.index), recv(4096, 0);
      qcclReduceDesc_t desc{};
      desc.count = send.size();
      desc.dtype = qcclUint64;
      desc.op = qcclSum;
      qcclReduceInfo_t info{};
      r = qcclAllReduce(send.data(), recv.data(), &desc, comm_, &info);
      if (r == qcclSuccess) {
        bool uniform = true;
        for (uint64_t x : recv) uniform = uniform && x == recv[0];
        emit(strf("op world %u sum %llu uniform %d ms %.3f", info.world_size,
                  static_cast<unsigned long long>(recv[0]), uniform ? 1 : 0, ms()));
        return;
      }
    } else if (cmd == "sync") {
      qcclSharedState_t st{};
      st.revision = revision_;
      st.num_tensors = 1;
      st.tensors = &tensor_;
      qcclSyncInfo_t info{};
      r = qcclSyncSharedState(comm_, &st, qcclSyncEnforcePopular, &info);
      if (r == qcclSuccess) {
        emit(strf("synced revision %llu tx %llu rx %llu hash %016llx ms %.3f",
                  static_cast<unsigned long long>(st.revision),
                  static_cast<unsigned long long>(info.tx_bytes),
                  static_cast<unsigned long long>(info.rx_bytes),
                  static_cast<unsigned long long>(hash()), ms()));
        revision_ = st.revision + 1;
        return;
      }
    } else if (cmd == "peers") {
      std::vector<qcclPeerInfo_t> peers(64);
      size_t n = 0;
      r = qcclGetPeers(comm_, peers.data(), peers.size(), &n);
      if (r == qcclSuccess) {
        for (size_t i = 0; i < n && i < peers.size(); ++i) {
          emit(strf("peer rank %u id %llu address %s", peers[i].ring_rank,
                    static_cast<unsigned long long>(peers[i].peer_id), peers[i].address));
        }
        emit(strf("peers n %zu self %llu rank %lld", n,
                  static_cast<unsigned long long>(attr(QCCL_ATTR_PEER_ID)),
                  static_cast<long long>(attr(QCCL_ATTR_RING_RANK))));
        return;
      }
    } else {
      emit("unknown-command " + cmd);
      return;
    }
    if (r != qcclSuccess) {
      fail(cmd, r, ms());
      return;
    }
    emit(strf("ok %s world %lld epoch %lld ms %.3f", cmd.c_str(),
              static_cast<long long>(attr(QCCL_ATTR_GROUP_WORLD_SIZE)),
              static_cast<long long>(attr(QCCL_ATTR_EPOCH)), ms()));
  }

  void make_state() {
    bytes_.resize(opt_.state_mib << 20);
    const uint64_t seed = opt_.stale ? 2 : 1;
    for (size_t i = 0; i < bytes_.size(); i += 8) {
      uint64_t w = splitmix64(seed * 0x1000000 + i);
      for (size_t k = 0; k < 8 && i + k < bytes_.size(); ++k) bytes_[i + k] = uint8_t(w >> (8 * k));
    }
    tensor_.name = "weights";
    tensor_.data = bytes_.data();
    tensor_.count = bytes_.size();
    tensor_.dtype = qcclUint8;
    revision_ = opt_.stale ? 0 : 7;
  }

  uint64_t hash() const {
    uint64_t h = 0xCBF29CE484222325ull;
    for (uint8_t b : bytes_) h = (h ^ b) * 0x100000001B3ull;
    return h;
  }

  Options opt_;
  qcclComm_t* comm_ = nullptr;
  std::vector<uint8_t> bytes_;
  qcclTensorInfo_t tensor_{};
  uint64_t revision_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  Peer peer(parse(argc, argv));
  return peer.run();
}
