// qccl recovery benchmark: N peers (default 3) loop all-reduces of one size (default 16 MiB)
// on loopback; once every peer has done a few warm ops, the parent kill -9s one peer at a
// random point of an op and records CLOCK_MONOTONIC. The survivors retry on qcclPeerLost and
// report, on the same clock, when the failed op returned and when their first successful op
// without the victim returned. Per trial and as the median over trials it prints
//   kill -> failed op returned, kill -> first success (the slowest survivor's),
// next to the steady op time, since the aim is recovery within one op time plus 20 ms.
#include "bench_common.hpp"

#include <map>
#include <random>

using namespace qccl_bench;

namespace {

struct Options {
  int peers = 3;
  int64_t size_mib = 16;
  int trials = 5;
  int warm_ops = 5;
  int post_ops = 5;
  int victim = -1;          // index of the peer to kill; -1 = the last one
  uint32_t connections = 0;
  int timeout_s = 120;      // per trial
  uint64_t seed = 0;        // 0 = from the clock
  std::string json;
  // peer role only
  bool peer = false;
  std::string master;
  int index = 0;
  int result_fd = -1;
};

[[noreturn]] void usage(const char* msg) {
  std::fprintf(stderr,
               "%s\nusage: qccl_recovery_bench [--peers 3] [--size-mib 16] [--trials 5]\n"
               "  [--warm-ops 5] [--post-ops 5] [--victim INDEX] [--connections C]\n"
               "  [--timeout-s 120 (per trial)] [--seed S] [--json FILE]\n",
               msg);
  std::exit(2);
}

Options parse(int argc, char** argv) {
  Options o;
  parse_flags(argc, argv, usage, [&](const std::string& a, auto& val) {
    if (a == "--peers") o.peers = std::stoi(val());
    else if (a == "--size-mib") o.size_mib = std::stoll(val());
    else if (a == "--trials") o.trials = std::stoi(val());
    else if (a == "--warm-ops") o.warm_ops = std::stoi(val());
    else if (a == "--post-ops") o.post_ops = std::stoi(val());
    else if (a == "--victim") o.victim = std::stoi(val());
    else if (a == "--connections") o.connections = uint32_t(std::stoul(val()));
    else if (a == "--timeout-s") o.timeout_s = std::stoi(val());
    else if (a == "--seed") o.seed = std::stoull(val());
    else if (a == "--json") o.json = val();
    else if (a == "--role") o.peer = val() == "peer";
    else if (a == "--master") o.master = val();
    else if (a == "--index") o.index = std::stoi(val());
    else if (a == "--result-fd") o.result_fd = std::stoi(val());
    else if (a == "--help" || a == "-h") usage("");
    else return false;
    return true;
  });
  if (o.peers < 3) usage("--peers must be >= 3 (two must survive)");
  if (o.victim < 0) o.victim = o.peers - 1;
  if (o.victim >= o.peers) usage("--victim must be < --peers");
  if (o.size_mib < 1 || o.trials < 1 || o.warm_ops < 1 || o.post_ops < 1) usage("bad counts");
  return o;
}

// ---- peer process ------------------------------------------------------------------------

int run_peer(const Options& o) {
  const int64_t deadline = now_ns() + int64_t(o.timeout_s) * 1000000000;
  PeerCtx ctx;
  try {
    join_group(ctx, o.master, o.peers, o.connections, deadline);
    const size_t count = size_t(o.size_mib) << 18;
    std::vector<float> send(count), recv(count);
    fill_contribution(send, count, o.index);
    const int all = o.peers * (o.peers + 1) / 2;
    const int survivors = all - (o.victim + 1);
    std::vector<double> pre_ms, post_ms;
    int64_t t_fail = 0, t_first = 0;
    int failures = 0;
    uint64_t tag = ctx.next_tag;
    // Back-to-back ops, no barrier: this is the loop of a training job, and a kill lands in an
    // op (or in the few ms of checking between ops) wherever it happens to be.
    while (int(post_ms.size()) < o.post_ops) {
      if (now_ns() > deadline) throw std::runtime_error("trial deadline passed");
      std::fill(recv.begin(), recv.end(), -1.0f);
      qcclReduceDesc_t d = {count, qcclFloat32, qcclSum, tag, {qcclQuantNone, qcclFloat32}};
      qcclReduceInfo_t info{};
      int64_t t0 = now_ns();
      qcclResult_t r = qcclAllReduce(send.data(), recv.data(), &d, ctx.comm, &info);
      int64_t t1 = now_ns();
      if (r == qcclPeerLost) {  // failed on every survivor: retry the same op at once
        if (failures++ == 0) t_fail = t1;
        continue;
      }
      check(r, "qcclAllReduce");
      ++tag;
      int weight = int(info.world_size) == o.peers       ? all
                   : int(info.world_size) == o.peers - 1 ? survivors
                                                         : -1;
      if (weight < 0) throw std::runtime_error("unexpected world size " +
                                               std::to_string(info.world_size));
      if (int64_t bad = first_mismatch(recv.data(), count, weight); bad >= 0) {
        throw std::runtime_error("wrong result at element " + std::to_string(bad) +
                                 " with world size " + std::to_string(info.world_size));
      }
      if (weight == all) {
        pre_ms.push_back(ns_to_ms(t1 - t0));
        if (int(pre_ms.size()) == o.warm_ops) {
          char buf[64];
          std::snprintf(buf, sizeof buf, "WARM %d %.3f", o.index, median(pre_ms));
          send_line(o.result_fd, buf);
        }
      } else if (t_first == 0) {
        t_first = t1;  // the op that spans the kill is not a steady 2-peer op
      } else {
        post_ms.push_back(ns_to_ms(t1 - t0));
      }
    }
    check(qcclCommDestroy(ctx.comm), "qcclCommDestroy");
    char buf[256];
    std::snprintf(buf, sizeof buf, "DONE %d %lld %lld %d %.3f %.3f", o.index, (long long)t_fail,
                  (long long)t_first, failures, median(pre_ms), median(post_ms));
    send_line(o.result_fd, buf);
    return 0;
  } catch (const std::exception& e) {
    return peer_failed(ctx, o.result_fd, o.index, e);
  }
}

// ---- parent ------------------------------------------------------------------------------

struct Trial {
  double kill_to_fail_ms = -1;   // slowest survivor; -1 if no survivor saw a failed op
  double kill_to_first_ms = -1;  // slowest survivor
  int failures = 0;              // failed attempts on the slowest survivor
  double steady_ms = 0;          // N-peer op time before the kill
  double post_ms = 0;            // (N-1)-peer op time after recovery
};

bool run_trial(const Options& o, std::mt19937_64& rng, Trial& t) {
  const int64_t deadline = now_ns() + int64_t(o.timeout_s) * 1000000000;
  qcclMaster_t* master = nullptr;
  qcclMasterConfig_t mc = QCCL_MASTER_CONFIG_INIT;
  mc.listen_address = "127.0.0.1:0";
  std::vector<pid_t> pids;
  int fds[2] = {-1, -1};
  bool ok = false;
  try {
    check(qcclMasterCreate(&mc, &master), "qcclMasterCreate");
    check(qcclMasterStart(master), "qcclMasterStart");
    uint16_t port = 0;
    check(qcclMasterGetPort(master, &port), "qcclMasterGetPort");
    if (pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe failed");
    std::string exe = self_exe();
    for (int i = 0; i < o.peers; ++i) {
      std::vector<std::string> argv = {
          exe, "--role", "peer", "--master", "127.0.0.1:" + std::to_string(port), "--index",
          std::to_string(i), "--peers", std::to_string(o.peers), "--victim",
          std::to_string(o.victim), "--size-mib", std::to_string(o.size_mib), "--warm-ops",
          std::to_string(o.warm_ops), "--post-ops", std::to_string(o.post_ops),
          "--connections", std::to_string(o.connections), "--timeout-s",
          std::to_string(o.timeout_s), "--result-fd", std::to_string(fds[1])};
      fcntl(fds[1], F_SETFD, 0);  // the write end survives exec in the child only
      pids.push_back(spawn_child(argv));
      fcntl(fds[1], F_SETFD, FD_CLOEXEC);
    }
    close(fds[1]);
    fds[1] = -1;
    LineReader reader(fds[0]);
    std::string line;
    std::vector<double> warm;
    std::map<int, std::vector<std::string>> done;  // survivor index -> DONE fields
    int64_t t_kill = 0;
    while (int(done.size()) < o.peers - 1) {
      if (!reader.next(line, deadline)) {
        throw std::runtime_error(
            reader.error() + " with " +
            std::to_string(warm.size()) + "/" + std::to_string(o.peers) + " peers warm, " +
            (t_kill ? "victim killed, " : "no kill yet, ") + std::to_string(done.size()) + "/" +
            std::to_string(o.peers - 1) + " survivors done");
      }
      std::istringstream in(line);
      std::string kind;
      in >> kind;
      if (kind == "ERROR") throw std::runtime_error(line);
      if (kind == "WARM") {
        int idx;
        double ms;
        in >> idx >> ms;
        warm.push_back(ms);
        if (int(warm.size()) == o.peers) {
          // Kill at a random phase of an op, not always right after a report.
          double op = median(warm);
          std::uniform_real_distribution<double> phase(0.0, op);
          std::this_thread::sleep_for(std::chrono::microseconds(int64_t(phase(rng) * 1000)));
          t_kill = now_ns();
          kill(pids[size_t(o.victim)], SIGKILL);
          waitpid(pids[size_t(o.victim)], nullptr, 0);
          pids[size_t(o.victim)] = -1;
        }
      } else if (kind == "DONE") {
        int idx;
        in >> idx;
        std::vector<std::string> f;
        for (std::string s; in >> s;) f.push_back(s);
        done[idx] = f;
      }
    }
    std::vector<double> steady, post;
    for (auto& [idx, f] : done) {  // f = t_fail t_first failures pre_ms post_ms
      int64_t tf = std::stoll(f[0]), t1 = std::stoll(f[1]);
      if (tf > 0) t.kill_to_fail_ms = std::max(t.kill_to_fail_ms, ns_to_ms(tf - t_kill));
      t.kill_to_first_ms = std::max(t.kill_to_first_ms, ns_to_ms(t1 - t_kill));
      t.failures = std::max(t.failures, std::stoi(f[2]));
      steady.push_back(std::stod(f[3]));
      post.push_back(std::stod(f[4]));
    }
    t.steady_ms = median(steady);
    t.post_ms = median(post);
    ok = true;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "trial failed: %s\n", e.what());
  }
  end_children(pids, ok ? 5000000000LL : 200000000LL);
  if (fds[0] >= 0) close(fds[0]);
  if (fds[1] >= 0) close(fds[1]);
  if (master) qcclMasterDestroy(master);
  return ok;
}

std::string fmt_ms(double v) {
  char buf[32];
  if (v < 0) return "-";
  std::snprintf(buf, sizeof buf, "%.1f", v);
  return buf;
}

}  // namespace

int main(int argc, char** argv) {
  Options o = parse(argc, argv);
  if (o.peer) return run_peer(o);
  signal(SIGPIPE, SIG_IGN);
  std::mt19937_64 rng(o.seed ? o.seed : uint64_t(now_ns()));
  std::printf("qccl recovery: %d peers, %lld MiB float32 sum in a loop, kill -9 of peer %d\n",
              o.peers, (long long)o.size_mib, o.victim);
  std::printf("%5s %16s %18s %9s %14s %14s %10s\n", "trial", "kill->fail(ms)",
              "kill->first-ok(ms)", "retries", "op N (ms)", "op N-1 (ms)", "<=op+20ms");
  std::vector<Trial> trials;
  int failed = 0;
  for (int k = 0; k < o.trials; ++k) {
    Trial t;
    if (!run_trial(o, rng, t)) {
      ++failed;
      continue;
    }
    trials.push_back(t);
    std::printf("%5d %16s %18s %9d %14.1f %14.1f %10s\n", k + 1, fmt_ms(t.kill_to_fail_ms).c_str(),
                fmt_ms(t.kill_to_first_ms).c_str(), t.failures, t.steady_ms, t.post_ms,
                t.kill_to_first_ms <= t.steady_ms + 20 ? "yes" : "no");
    std::fflush(stdout);
  }
  if (!trials.empty()) {
    std::vector<double> fail, first, steady, post;
    for (auto& t : trials) {
      if (t.kill_to_fail_ms >= 0) fail.push_back(t.kill_to_fail_ms);
      first.push_back(t.kill_to_first_ms);
      steady.push_back(t.steady_ms);
      post.push_back(t.post_ms);
    }
    double mf = fail.empty() ? -1 : median(fail), m1 = median(first), ms = median(steady);
    std::printf("%5s %16s %18s %9s %14.1f %14.1f %10s\n", "med", fmt_ms(mf).c_str(),
                fmt_ms(m1).c_str(), "", ms, median(post), m1 <= ms + 20 ? "yes" : "no");
    if (!o.json.empty()) {
      if (FILE* f = std::fopen(o.json.c_str(), "w")) {
        std::fprintf(f, "{\"system\": \"qccl\", \"peers\": %d, \"size_bytes\": %lld, \"trials\": [",
                     o.peers, (long long)(o.size_mib << 20));
        for (size_t i = 0; i < trials.size(); ++i) {
          const Trial& t = trials[i];
          std::fprintf(f, "%s\n  {\"kill_to_fail_ms\": %s, \"kill_to_first_ok_ms\": %.3f, "
                       "\"retries\": %d, \"op_ms\": %.3f, \"op_after_ms\": %.3f}",
                       i ? "," : "", t.kill_to_fail_ms < 0 ? "null" : std::to_string(t.kill_to_fail_ms).c_str(),
                       t.kill_to_first_ms, t.failures, t.steady_ms, t.post_ms);
        }
        std::fprintf(f, "\n], \"median_kill_to_first_ok_ms\": %.3f, \"median_op_ms\": %.3f, "
                     "\"failed_trials\": %d}\n", m1, ms, failed);
        std::fclose(f);
      }
    }
  }
  std::fflush(stdout);
  if (failed) std::fprintf(stderr, "%d of %d trials failed\n", failed, o.trials);
  return failed ? 1 : 0;
}
