// qccl shared-state join benchmark: how long a newly admitted peer (the joiner) takes to
// download S MiB of shared state (default 256 MiB, 4 uint32 tensors) from 1, 2, 3... donors.
//
// The driver (this binary without --role) embeds the master and, for each donor count N,
// starts N donor processes and one joiner process (this binary with --role donor / joiner):
//   1. the donors gather, fill their state with deterministic content and sync once together
//      (revision 1; nothing may move: rx = tx = 0); donor 0 then reports READY;
//   2. the driver starts the joiner; the donors admit it (qcclArePeersPending, then
//      qcclUpdateTopology, in lockstep; the joiner's qcclConnect returns at that point);
//   3. R download rounds: a barrier (a max all-reduce), then every peer calls
//      qcclSyncSharedState with the next revision, the joiner with qcclSyncReceiveOnly and
//      all-zero state, so all S MiB differ and are downloaded from every donor; the joiner's
//      call is timed, then it hashes what it received and zeroes its state again;
//   4. one more round without zeroing (nothing differs: the cost of hashing and electing).
// The driver checks every round: the joiner's hash equals the donors', the joiner received S
// MiB, the donors sent S MiB between them, and the no-change round moved nothing. Any failure
// ends with a non-zero exit status.
//
// Loopback: `qccl_state_sync_bench --donors 1,2,3`. Network namespaces (one per peer, a tbf
// limit on each donor link): benchmarks/state_sync_netns.sh, which runs the driver inside the
// master's namespace with --netns PREFIX, so that peer k runs under `ip netns exec PREFIX-dk`
// and the joiner under `ip netns exec PREFIX-j`. Each peer's data listener binds 0.0.0.0 and
// the master hands out the address it sees, i.e. the peer's namespace address.
#include "bench_common.hpp"

#include <cmath>
#include <map>

using namespace qccl_bench;

namespace {

struct Options {
  std::vector<int64_t> donors = {1, 2, 3};
  int64_t size_mib = 256;
  int tensors = 4;
  int rounds = 3;
  uint32_t connections = 0;  // 0 = the library's default (4)
  int timeout_s = 900;       // per donor count
  std::string netns;         // "" = loopback; else namespaces PREFIX-d1.., PREFIX-j
  std::string master_host = "127.0.0.1";
  std::string label;         // first table column; default "loopback" / "netns"
  std::string json;
  // peer roles
  std::string role;          // "", "donor", "joiner"
  std::string master;
  int index = 0;
  int num_donors = 1;
  int result_fd = -1;
};

[[noreturn]] void usage(const char* msg) {
  std::fprintf(stderr,
               "%s\nusage: qccl_state_sync_bench [--donors 1,2,3] [--size-mib 256] [--tensors 4]\n"
               "  [--rounds 3] [--connections C (0 = default 4)] [--timeout-s 900]\n"
               "  [--netns PREFIX --master-host IP] [--label TEXT] [--json FILE]\n"
               "peer roles (started by the driver): --role donor|joiner --master HOST:PORT\n"
               "  --index I --num-donors N --result-fd FD\n",
               msg);
  std::exit(2);
}

Options parse(int argc, char** argv) {
  Options o;
  parse_flags(argc, argv, usage, [&](const std::string& a, auto& val) {
    if (a == "--donors") o.donors = parse_int_list(val());
    else if (a == "--size-mib") o.size_mib = std::stoll(val());
    else if (a == "--tensors") o.tensors = std::stoi(val());
    else if (a == "--rounds") o.rounds = std::stoi(val());
    else if (a == "--connections") o.connections = uint32_t(std::stoul(val()));
    else if (a == "--timeout-s") o.timeout_s = std::stoi(val());
    else if (a == "--netns") o.netns = val();
    else if (a == "--master-host") o.master_host = val();
    else if (a == "--label") o.label = val();
    else if (a == "--json") o.json = val();
    else if (a == "--role") o.role = val();
    else if (a == "--master") o.master = val();
    else if (a == "--index") o.index = std::stoi(val());
    else if (a == "--num-donors") o.num_donors = std::stoi(val());
    else if (a == "--result-fd") o.result_fd = std::stoi(val());
    else if (a == "--help" || a == "-h") usage("");
    else return false;
    return true;
  });
  if (o.size_mib < 1 || o.tensors < 1 || o.rounds < 1) usage("bad counts");
  if ((o.size_mib << 20) % (int64_t(o.tensors) * 4) != 0) usage("size must split into tensors");
  for (int64_t n : o.donors) {
    if (n < 1 || n > 16) usage("--donors: counts must be 1..16");
  }
  if (!o.role.empty() && o.role != "donor" && o.role != "joiner") usage("bad --role");
  if (o.label.empty()) o.label = o.netns.empty() ? "loopback" : "netns";
  return o;
}

// ---- state content -------------------------------------------------------------------------

uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

struct State {
  std::vector<std::vector<uint32_t>> data;
  std::vector<std::string> names;
  std::vector<qcclTensorInfo_t> infos;
  qcclSharedState_t st{};

  State(int tensors, size_t total_bytes) {
    size_t count = total_bytes / size_t(tensors) / 4;
    for (int t = 0; t < tensors; ++t) {
      data.emplace_back(count, 0u);
      names.push_back("layer" + std::to_string(t) + ".weight");
    }
    for (int t = 0; t < tensors; ++t) {
      infos.push_back({names[size_t(t)].c_str(), data[size_t(t)].data(), count, qcclUint32, 0});
    }
    st.revision = 0;
    st.num_tensors = infos.size();
    st.tensors = infos.data();
  }
  void fill_deterministic() {
    for (size_t t = 0; t < data.size(); ++t) {
      uint64_t seed = 0x5eed0000ULL + t;
      auto* w = reinterpret_cast<uint64_t*>(data[t].data());
      for (size_t j = 0; j < data[t].size() / 2; ++j) w[j] = splitmix64(seed);
    }
  }
  void zero() {
    for (auto& v : data) std::memset(v.data(), 0, v.size() * 4);
  }
  // Four-lane multiply-xor hash over all tensors in order (fast enough: about 1 s per GiB).
  uint64_t hash() const {
    uint64_t h[4] = {0x243f6a8885a308d3ULL, 0x13198a2e03707344ULL, 0xa4093822299f31d0ULL,
                     0x082efa98ec4e6c89ULL};
    for (const auto& v : data) {
      const auto* w = reinterpret_cast<const uint64_t*>(v.data());
      size_t n = v.size() / 2, j = 0;
      for (; j + 4 <= n; j += 4) {
        for (int k = 0; k < 4; ++k) {
          h[k] = (h[k] ^ w[j + size_t(k)]) * 0x9e3779b97f4a7c15ULL;
          h[k] ^= h[k] >> 29;
        }
      }
      for (; j < n; ++j) h[0] = ((h[0] ^ w[j]) * 0x9e3779b97f4a7c15ULL) ^ (h[0] >> 29);
    }
    uint64_t out = 0;
    for (uint64_t x : h) out = (out ^ x) * 0xff51afd7ed558ccdULL, out ^= out >> 33;
    return out;
  }
};

// ---- peer processes ------------------------------------------------------------------------

// Lockstep admission until the group has `target` peers. Every accepted peer reads the same
// world size after each update, so they all leave the loop together; a peer admitted by the
// others' qcclUpdateTopology returns from qcclConnect at that same point and reads the same size.
void gather(qcclComm_t* comm, int target, int64_t deadline) {
  for (;;) {
    int64_t ws = 0;
    check(qcclGetAttribute(comm, QCCL_ATTR_GROUP_WORLD_SIZE, &ws), "qcclGetAttribute");
    if (ws == target) return;
    if (ws > target) throw std::runtime_error("group grew past " + std::to_string(target));
    if (now_ns() > deadline) {
      throw std::runtime_error("timed out waiting for " + std::to_string(target) +
                               " peers (have " + std::to_string(ws) + ")");
    }
    int pending = 0;
    check(qcclArePeersPending(comm, &pending), "qcclArePeersPending");
    if (pending) {
      qcclResult_t r = qcclUpdateTopology(comm);
      if (r != qcclSuccess && r != qcclPeerLost) check(r, "qcclUpdateTopology");
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
}

void barrier(qcclComm_t* comm, uint64_t tag) {
  double v = 0;
  qcclReduceDesc_t d = {1, qcclFloat64, qcclMax, tag, {qcclQuantNone, qcclFloat64}};
  check(qcclAllReduce(&v, &v, &d, comm, nullptr), "qcclAllReduce(barrier)");
}

int run_peer(const Options& o) {
  const bool joiner = o.role == "joiner";
  const int64_t deadline = now_ns() + int64_t(o.timeout_s) * 1000000000;
  const std::string who = joiner ? "joiner" : "donor " + std::to_string(o.index);
  qcclComm_t* comm = nullptr;
  try {
    State s(o.tensors, size_t(o.size_mib) << 20);
    if (!joiner) s.fill_deterministic();
    char buf[512];
    if (!joiner) {
      std::snprintf(buf, sizeof buf, "HASH %d %016llx", o.index, (unsigned long long)s.hash());
      send_line(o.result_fd, buf);
    }
    qcclCommConfig_t cc = QCCL_COMM_CONFIG_INIT;
    cc.master_address = o.master.c_str();
    cc.connections_per_peer = o.connections;
    cc.connect_timeout_ms = uint32_t(std::max<int64_t>((deadline - now_ns()) / 1000000, 1));
    check(qcclCommCreate(&cc, &comm), "qcclCommCreate");
    check(qcclConnect(comm), "qcclConnect");
    if (!joiner) {
      gather(comm, o.num_donors, deadline);
      // The donors agree on the content first; nothing may move.
      s.st.revision = 1;
      qcclSyncInfo_t info{};
      int64_t t0 = now_ns();
      check(qcclSyncSharedState(comm, &s.st, qcclSyncEnforcePopular, &info),
            "qcclSyncSharedState(donors)");
      int64_t t1 = now_ns();
      if (info.rx_bytes != 0 || info.tx_bytes != 0) {
        throw std::runtime_error("donors' first sync moved bytes (rx " +
                                 std::to_string(info.rx_bytes) + ", tx " +
                                 std::to_string(info.tx_bytes) + ")");
      }
      std::snprintf(buf, sizeof buf, "READY %d %.3f", o.index, ns_to_ms(t1 - t0));
      send_line(o.result_fd, buf);
    }
    gather(comm, o.num_donors + 1, deadline);
    // Rounds 0..R-1 download everything; round R changes nothing.
    for (int r = 0; r <= o.rounds; ++r) {
      barrier(comm, 1000 + uint64_t(r));
      if (joiner) s.st.revision = r == 0 ? 0 : s.st.revision + 1;
      else s.st.revision += 1;
      qcclSyncInfo_t info{};
      int64_t t0 = now_ns();
      qcclResult_t res = qcclSyncSharedState(
          comm, &s.st, joiner ? qcclSyncReceiveOnly : qcclSyncEnforcePopular, &info);
      int64_t t1 = now_ns();
      check(res, "qcclSyncSharedState");
      uint64_t h = joiner ? s.hash() : 0;
      std::snprintf(buf, sizeof buf, "ROUND %s %d %d %.3f %llu %llu %016llx %llu",
                    joiner ? "joiner" : "donor", o.index, r, ns_to_ms(t1 - t0),
                    (unsigned long long)info.rx_bytes, (unsigned long long)info.tx_bytes,
                    (unsigned long long)h, (unsigned long long)s.st.revision);
      send_line(o.result_fd, buf);
      if (joiner && r + 1 < o.rounds) s.zero();  // stale again for the next download round
    }
    barrier(comm, 2000);
    check(qcclCommDestroy(comm), "qcclCommDestroy");
    comm = nullptr;
    send_line(o.result_fd, "DONE " + who);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", who.c_str(), e.what());
    send_line(o.result_fd, "ERROR " + who + ": " + e.what());
    if (comm) qcclCommDestroy(comm);
    return 1;
  }
}

// ---- driver --------------------------------------------------------------------------------

struct RoundResult {
  double joiner_ms = 0;
  uint64_t joiner_rx = 0;
  uint64_t joiner_hash = 0;
  std::map<int, uint64_t> donor_tx;  // donor index -> bytes sent
  std::map<int, uint64_t> donor_rx;
  double donor_ms_max = 0;
};

struct Config {
  int donors = 0;
  bool ok = false;
  std::string error;
  double donors_sync_ms = 0;      // the donors' first sync (nothing moves)
  std::vector<RoundResult> rounds;  // R download rounds, then the no-change round
};

std::vector<std::string> peer_argv(const Options& o, const std::string& exe,
                                   const std::string& ns, std::vector<std::string> args) {
  std::vector<std::string> argv;
  if (!o.netns.empty()) argv = {find_ip(), "netns", "exec", ns};
  argv.push_back(exe);
  for (auto& a : args) argv.push_back(std::move(a));
  return argv;
}

Config run_config(const Options& o, int n) {
  Config c;
  c.donors = n;
  c.rounds.resize(size_t(o.rounds) + 1);
  const int64_t deadline = now_ns() + int64_t(o.timeout_s) * 1000000000;
  const uint64_t total = uint64_t(o.size_mib) << 20;
  qcclMaster_t* master = nullptr;
  qcclMasterConfig_t mc = QCCL_MASTER_CONFIG_INIT;
  std::string listen = o.master_host + ":0";
  mc.listen_address = listen.c_str();
  std::vector<pid_t> pids;
  int fds[2] = {-1, -1};
  try {
    check(qcclMasterCreate(&mc, &master), "qcclMasterCreate");
    check(qcclMasterStart(master), "qcclMasterStart");
    uint16_t port = 0;
    check(qcclMasterGetPort(master, &port), "qcclMasterGetPort");
    if (pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe failed");
    const std::string exe = self_exe();
    auto common = [&](const std::string& role, int index) {
      return std::vector<std::string>{
          "--role", role, "--master", o.master_host + ":" + std::to_string(port), "--index",
          std::to_string(index), "--num-donors", std::to_string(n), "--size-mib",
          std::to_string(o.size_mib), "--tensors", std::to_string(o.tensors), "--rounds",
          std::to_string(o.rounds), "--connections", std::to_string(o.connections),
          "--timeout-s", std::to_string(o.timeout_s), "--result-fd", std::to_string(fds[1])};
    };
    auto spawn = [&](const std::vector<std::string>& argv) {
      fcntl(fds[1], F_SETFD, 0);  // the write end survives exec in the child only
      pids.push_back(spawn_child(argv));
      fcntl(fds[1], F_SETFD, FD_CLOEXEC);
    };
    for (int i = 0; i < n; ++i) {
      spawn(peer_argv(o, exe, o.netns + "-d" + std::to_string(i + 1), common("donor", i)));
    }
    LineReader reader(fds[0]);
    std::string line;
    std::map<int, uint64_t> donor_hash;
    int ready = 0, done = 0;
    bool joiner_started = false;
    while (done < n + 1) {
      // Wake up every second to notice a peer that died without a word (e.g. a failed exec).
      if (!reader.next(line, std::min(deadline, now_ns() + 1000000000))) {
        if (now_ns() < deadline && reader.error() == "deadline passed") {
          for (size_t k = 0; k < pids.size(); ++k) {
            int st = 0;
            if (pids[k] > 0 && waitpid(pids[k], &st, WNOHANG) == pids[k]) {
              pids[k] = -1;
              if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
                throw std::runtime_error(
                    "peer process " + std::to_string(k) + " ended early (" +
                    (WIFEXITED(st) ? "status " + std::to_string(WEXITSTATUS(st))
                                   : "signal " + std::to_string(WTERMSIG(st))) + ")");
              }
            }
          }
          continue;
        }
        throw std::runtime_error(reader.error() + " (" + std::to_string(ready) + "/" +
                                 std::to_string(n) + " donors ready, joiner " +
                                 (joiner_started ? "started" : "not started") + ", " +
                                 std::to_string(done) + " peers done)");
      }
      std::istringstream in(line);
      std::string kind;
      in >> kind;
      if (kind == "ERROR") throw std::runtime_error(line);
      if (kind == "HASH") {
        int idx;
        std::string hex;
        in >> idx >> hex;
        donor_hash[idx] = std::stoull(hex, nullptr, 16);
      } else if (kind == "READY") {
        int idx;
        double ms;
        in >> idx >> ms;
        c.donors_sync_ms = std::max(c.donors_sync_ms, ms);
        if (++ready == n) {
          spawn(peer_argv(o, exe, o.netns + "-j", common("joiner", 0)));
          joiner_started = true;
          close(fds[1]);  // from now on, EOF means every peer has gone
          fds[1] = -1;
        }
      } else if (kind == "ROUND") {
        std::string role, hex;
        int idx, r;
        double ms;
        unsigned long long rx, tx, rev;
        in >> role >> idx >> r >> ms >> rx >> tx >> hex >> rev;
        if (r < 0 || r > o.rounds) throw std::runtime_error("bad round in: " + line);
        RoundResult& rr = c.rounds[size_t(r)];
        if (role == "joiner") {
          rr.joiner_ms = ms;
          rr.joiner_rx = rx;
          rr.joiner_hash = std::stoull(hex, nullptr, 16);
          if (tx != 0) throw std::runtime_error("the joiner sent bytes: " + line);
        } else {
          rr.donor_tx[idx] = tx;
          rr.donor_rx[idx] = rx;
          rr.donor_ms_max = std::max(rr.donor_ms_max, ms);
        }
      } else if (kind == "DONE") {
        ++done;
      }
    }
    // Verification.
    if (int(donor_hash.size()) != n) throw std::runtime_error("missing donor hashes");
    const uint64_t want = donor_hash.begin()->second;
    for (auto& [i, h] : donor_hash) {
      if (h != want) throw std::runtime_error("donors' contents differ");
    }
    for (int r = 0; r <= o.rounds; ++r) {
      const RoundResult& rr = c.rounds[size_t(r)];
      const bool download = r < o.rounds;
      std::string where = "round " + std::to_string(r + 1) + ": ";
      if (rr.joiner_hash != want) throw std::runtime_error(where + "joiner's hash differs");
      if (rr.joiner_rx != (download ? total : 0)) {
        throw std::runtime_error(where + "joiner received " + std::to_string(rr.joiner_rx) +
                                 " bytes, expected " + std::to_string(download ? total : 0));
      }
      uint64_t sent = 0;
      for (auto& [i, tx] : rr.donor_tx) sent += tx;
      for (auto& [i, rx] : rr.donor_rx) {
        if (rx != 0) throw std::runtime_error(where + "a donor received bytes");
      }
      if (int(rr.donor_tx.size()) != n || sent != (download ? total : 0)) {
        throw std::runtime_error(where + "donors sent " + std::to_string(sent) + " bytes");
      }
    }
    c.ok = true;
  } catch (const std::exception& e) {
    c.error = e.what();
  }
  end_children(pids, c.ok ? 10000000000LL : 500000000LL);
  if (fds[0] >= 0) close(fds[0]);
  if (fds[1] >= 0) close(fds[1]);
  if (master) qcclMasterDestroy(master);
  return c;
}

double mib(uint64_t bytes) { return double(bytes) / double(1 << 20); }

}  // namespace

int main(int argc, char** argv) {
  Options o = parse(argc, argv);
  if (!o.role.empty()) return run_peer(o);
  signal(SIGPIPE, SIG_IGN);
  std::printf("qccl shared-state join: %lld MiB in %d uint32 tensors, %d download rounds, "
              "connections per donor %u%s, %s\n",
              (long long)o.size_mib, o.tensors, o.rounds, o.connections ? o.connections : 4,
              o.connections ? "" : " (default)", o.netns.empty() ? "loopback" : "network namespaces");
  std::fflush(stdout);
  std::vector<Config> results;
  int failed = 0;
  for (int64_t n : o.donors) {
    Config c = run_config(o, int(n));
    if (!c.ok) {
      std::fprintf(stderr, "%lld donor(s): FAILED: %s\n", (long long)n, c.error.c_str());
      ++failed;
      continue;
    }
    for (int r = 0; r < o.rounds; ++r) {
      const RoundResult& rr = c.rounds[size_t(r)];
      std::string tx;
      for (auto& [i, b] : rr.donor_tx) tx += (tx.empty() ? "" : " / ") + std::to_string(int(mib(b) + 0.5));
      std::printf("  %d donor(s) round %d: %.3f s, %.1f MiB/s, MiB sent per donor %s\n", c.donors,
                  r + 1, rr.joiner_ms / 1e3, double(o.size_mib) / (rr.joiner_ms / 1e3), tx.c_str());
    }
    std::printf("  %d donor(s): no-change sync %.3f s (joiner), donors' first sync %.3f s\n",
                c.donors, c.rounds.back().joiner_ms / 1e3, c.donors_sync_ms / 1e3);
    std::fflush(stdout);
    results.push_back(std::move(c));
  }
  if (!results.empty()) {
    double base = 0;  // the 1-donor median if measured, else the first configuration's
    for (const Config& c : results) {
      std::vector<double> ms;
      for (int r = 0; r < o.rounds; ++r) ms.push_back(c.rounds[size_t(r)].joiner_ms);
      if (c.donors == 1 || base == 0) base = median(ms) / 1e3;
      if (c.donors == 1) break;
    }
    std::printf("\n| mode | donors | conns | MiB | median s | MiB/s | speedup | MiB per donor (median round) | no-change sync s |\n");
    std::printf("|---|---|---|---|---|---|---|---|---|\n");
    for (const Config& c : results) {
      std::vector<double> ms;
      for (int r = 0; r < o.rounds; ++r) ms.push_back(c.rounds[size_t(r)].joiner_ms);
      double med = median(ms) / 1e3;
      // The shares of the round whose time is closest to the median.
      size_t pick = 0;
      for (size_t r = 0; r < ms.size(); ++r) {
        if (std::abs(ms[r] / 1e3 - med) < std::abs(ms[pick] / 1e3 - med)) pick = r;
      }
      std::string tx;
      for (auto& [i, b] : c.rounds[pick].donor_tx) tx += (tx.empty() ? "" : " / ") + std::to_string(int(mib(b) + 0.5));
      char speed[32] = "-";
      if (base > 0) std::snprintf(speed, sizeof speed, "%.2fx", base / med);
      std::printf("| %s | %d | %u | %lld | %.3f | %.1f | %s | %s | %.3f |\n", o.label.c_str(),
                  c.donors, o.connections ? o.connections : 4, (long long)o.size_mib, med,
                  double(o.size_mib) / med, speed, tx.c_str(), c.rounds.back().joiner_ms / 1e3);
    }
    if (!o.json.empty()) {
      if (FILE* f = std::fopen(o.json.c_str(), "w")) {
        std::fprintf(f, "{\"mode\": \"%s\", \"size_bytes\": %lld, \"connections\": %u, \"configs\": [",
                     o.label.c_str(), (long long)(o.size_mib << 20), o.connections ? o.connections : 4);
        for (size_t k = 0; k < results.size(); ++k) {
          const Config& c = results[k];
          std::fprintf(f, "%s\n  {\"donors\": %d, \"round_ms\": [", k ? "," : "", c.donors);
          for (int r = 0; r < o.rounds; ++r) std::fprintf(f, "%s%.3f", r ? ", " : "", c.rounds[size_t(r)].joiner_ms);
          std::fprintf(f, "], \"no_change_ms\": %.3f}", c.rounds.back().joiner_ms);
        }
        std::fprintf(f, "\n]}\n");
        std::fclose(f);
      }
    }
  }
  std::fflush(stdout);
  if (failed) std::fprintf(stderr, "%d of %zu configurations failed\n", failed, o.donors.size());
  return failed ? 1 : 0;
}
