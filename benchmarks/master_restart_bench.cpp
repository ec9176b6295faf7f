// qccl master-restart benchmark (issue 22): N peers (default 3) loop all-reduces of one size
// (default 16 MiB) on loopback with master_reconnect_ms set; once every peer has done a few
// warm ops, the parent ends the master at a random point of an op and records
// CLOCK_MONOTONIC:
//   --fault kill   SIGKILL, then, --restart-delay-ms later (the time a supervisor takes to
//                  start it again), a new master on the same port;
//   --fault stop   SIGSTOP of the active master of a list "active,standby" (the standby is up
//                  from the start): the peers notice the silence after the peer timeout.
// The peers retry on qcclPeerLost and report when each op returned; per trial and as the median
// over trials it prints master fault -> first successful all-reduce (the slowest peer's), next
// to the op time. The masters are processes of this binary (--role master), so that a kill is
// a crash.
#include "bench_common.hpp"

#include <memory>
#include <random>

using namespace qccl_bench;

namespace {

struct Options {
  int peers = 3;
  int64_t size_mib = 16;
  int trials = 5;
  int warm_ops = 5;
  int ops_after = 10;  // ops each peer runs after its warm ones
  uint32_t heartbeat_ms = 1000;
  uint32_t peer_timeout_ms = 10000;
  uint32_t restart_delay_ms = 0;
  uint32_t reconnect_ms = 60000;
  bool stop = false;  // --fault stop
  int timeout_s = 120;
  uint64_t seed = 0;
  // peer and master roles
  std::string role;
  std::string master;
  int index = 0;
  int result_fd = -1;
};

[[noreturn]] void usage(const char* msg) {
  std::fprintf(stderr,
               "%s\nusage: qccl_master_restart_bench [--peers 3] [--size-mib 16] [--trials 5]\n"
               "  [--fault kill|stop] [--restart-delay-ms 0] [--heartbeat-ms 1000]\n"
               "  [--peer-timeout-ms 10000] [--reconnect-ms 60000] [--warm-ops 5]\n"
               "  [--ops-after 10] [--timeout-s 120 (per trial)] [--seed S]\n",
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
    else if (a == "--ops-after") o.ops_after = std::stoi(val());
    else if (a == "--heartbeat-ms") o.heartbeat_ms = uint32_t(std::stoul(val()));
    else if (a == "--peer-timeout-ms") o.peer_timeout_ms = uint32_t(std::stoul(val()));
    else if (a == "--restart-delay-ms") o.restart_delay_ms = uint32_t(std::stoul(val()));
    else if (a == "--reconnect-ms") o.reconnect_ms = uint32_t(std::stoul(val()));
    else if (a == "--fault") o.stop = val() == "stop";
    else if (a == "--timeout-s") o.timeout_s = std::stoi(val());
    else if (a == "--seed") o.seed = std::stoull(val());
    else if (a == "--role") o.role = val();
    else if (a == "--master") o.master = val();
    else if (a == "--index") o.index = std::stoi(val());
    else if (a == "--result-fd") o.result_fd = std::stoi(val());
    else if (a == "--help" || a == "-h") usage("");
    else return false;
    return true;
  });
  if (o.peers < 2 || o.size_mib < 1 || o.trials < 1 || o.warm_ops < 1 || o.ops_after < 2) {
    usage("bad counts");
  }
  return o;
}

// ---- master process: serves until killed -------------------------------------------------

int run_master(const Options& o) {
  qcclMaster_t* master = nullptr;
  qcclMasterConfig_t mc = QCCL_MASTER_CONFIG_INIT;
  mc.listen_address = o.master.c_str();
  mc.heartbeat_interval_ms = o.heartbeat_ms;
  mc.peer_timeout_ms = o.peer_timeout_ms;
  check(qcclMasterCreate(&mc, &master), "qcclMasterCreate");
  check(qcclMasterStart(master), "qcclMasterStart");
  uint16_t port = 0;
  check(qcclMasterGetPort(master, &port), "qcclMasterGetPort");
  send_line(o.result_fd, "PORT " + std::to_string(port));
  check(qcclMasterWait(master), "qcclMasterWait");  // until the parent's signal ends us
  return 0;
}

// ---- peer process ------------------------------------------------------------------------

int run_peer(const Options& o) {
  const int64_t deadline = now_ns() + int64_t(o.timeout_s) * 1000000000;
  setenv("QCCL_MASTER_RECONNECT_MS", std::to_string(o.reconnect_ms).c_str(), 1);
  PeerCtx ctx;
  try {
    join_group(ctx, o.master, o.peers, 0, deadline);
    const size_t count = size_t(o.size_mib) << 18;
    std::vector<float> send(count), recv(count);
    fill_contribution(send, count, o.index);
    const int all = o.peers * (o.peers + 1) / 2;
    std::vector<double> warm_ms;
    std::string ends;  // end times of the ops after the warm ones
    int done = 0, failures = 0;
    uint64_t tag = ctx.next_tag;
    while (done < o.warm_ops + o.ops_after) {
      if (now_ns() > deadline) throw std::runtime_error("trial deadline passed");
      qcclReduceDesc_t d = {count, qcclFloat32, qcclSum, tag, {qcclQuantNone, qcclFloat32}};
      qcclReduceInfo_t info{};
      int64_t t0 = now_ns();
      qcclResult_t r = qcclAllReduce(send.data(), recv.data(), &d, ctx.comm, &info);
      int64_t t1 = now_ns();
      if (r == qcclPeerLost) {  // the op the fault hit: retry it (waits for the new master)
        ++failures;
        continue;
      }
      check(r, "qcclAllReduce");
      ++tag;
      if (int(info.world_size) != o.peers) throw std::runtime_error("a peer was lost");
      if (int64_t bad = first_mismatch(recv.data(), count, all); bad >= 0) {
        throw std::runtime_error("wrong result at element " + std::to_string(bad));
      }
      if (++done <= o.warm_ops) {
        warm_ms.push_back(ns_to_ms(t1 - t0));
        if (done == o.warm_ops) {
          char buf[64];
          std::snprintf(buf, sizeof buf, "WARM %d %.3f", o.index, median(warm_ms));
          send_line(o.result_fd, buf);
        }
      } else {
        ends += " " + std::to_string(t1);
      }
    }
    check(qcclCommDestroy(ctx.comm), "qcclCommDestroy");
    send_line(o.result_fd, "DONE " + std::to_string(o.index) + " " + std::to_string(failures) +
                               ends);
    return 0;
  } catch (const std::exception& e) {
    return peer_failed(ctx, o.result_fd, o.index, e);
  }
}

// ---- parent ------------------------------------------------------------------------------

struct Trial {
  double fault_to_first_ms = -1;  // the slowest peer's first successful op after the fault
  int failures = 0;               // failed attempts (qcclPeerLost), the most of any peer
  double op_ms = 0;               // the op time before the fault
};

class Parent {
 public:
  Parent(const Options& o) : o_(o) {
    if (pipe2(fds_, O_CLOEXEC) != 0) throw std::runtime_error("pipe failed");
    reader_ = std::make_unique<LineReader>(fds_[0]);
  }
  ~Parent() {
    for (size_t slot : masters_) {  // they serve until killed
      if (pids_[slot] > 0) signal(slot, SIGKILL);
    }
    end_children(pids_, 2000000000LL);
    for (int fd : fds_) {
      if (fd >= 0) close(fd);
    }
  }
  // Starts `role` with `args`; returns its index in pids_.
  size_t spawn(const std::string& role, std::vector<std::string> args) {
    std::vector<std::string> argv = {self_exe(), "--role", role, "--result-fd",
                                     std::to_string(fds_[1])};
    argv.insert(argv.end(), args.begin(), args.end());
    fcntl(fds_[1], F_SETFD, 0);  // the write end survives exec in the child only
    pids_.push_back(spawn_child(argv));
    fcntl(fds_[1], F_SETFD, FD_CLOEXEC);
    return pids_.size() - 1;
  }
  // A master on `listen`; returns its port.
  uint16_t start_master(const std::string& listen, size_t* slot, int64_t deadline) {
    *slot = spawn("master", {"--master", listen, "--heartbeat-ms", std::to_string(o_.heartbeat_ms),
                             "--peer-timeout-ms", std::to_string(o_.peer_timeout_ms)});
    masters_.push_back(*slot);
    std::string line;
    if (!reader_->next(line, deadline) || line.rfind("PORT ", 0) != 0) {
      throw std::runtime_error("the master did not report its port: " + line);
    }
    return uint16_t(std::stoi(line.substr(5)));
  }
  void signal(size_t slot, int sig) {
    if (sig == SIGKILL) kill(pids_[slot], SIGCONT);  // harmless; a stopped one ends at once
    kill(pids_[slot], sig);
    if (sig == SIGKILL) {
      waitpid(pids_[slot], nullptr, 0);
      pids_[slot] = -1;
    }
  }
  LineReader& reader() { return *reader_; }

 private:
  const Options& o_;
  int fds_[2] = {-1, -1};
  std::vector<pid_t> pids_;
  std::vector<size_t> masters_;  // their slots in pids_
  std::unique_ptr<LineReader> reader_;
};

bool run_trial(const Options& o, std::mt19937_64& rng, Trial& t) {
  const int64_t deadline = now_ns() + int64_t(o.timeout_s) * 1000000000;
  try {
    Parent p(o);
    size_t active = 0, standby = 0;
    uint16_t port = p.start_master("127.0.0.1:0", &active, deadline);
    std::string list = "127.0.0.1:" + std::to_string(port);
    if (o.stop) {
      list += ",127.0.0.1:" + std::to_string(p.start_master("127.0.0.1:0", &standby, deadline));
    }
    for (int i = 0; i < o.peers; ++i) {
      p.spawn("peer", {"--master", list, "--index", std::to_string(i), "--peers",
                       std::to_string(o.peers), "--size-mib", std::to_string(o.size_mib),
                       "--warm-ops", std::to_string(o.warm_ops), "--ops-after",
                       std::to_string(o.ops_after), "--timeout-s", std::to_string(o.timeout_s),
                       "--reconnect-ms", std::to_string(o.reconnect_ms)});
    }
    std::string line;
    std::vector<double> warm;
    std::vector<int64_t> first_after;
    int64_t t_fault = 0;
    int done = 0;
    while (done < o.peers) {
      if (!p.reader().next(line, deadline)) throw std::runtime_error(p.reader().error());
      std::istringstream in(line);
      std::string kind;
      in >> kind;
      if (kind == "ERROR") throw std::runtime_error(line);
      if (kind == "WARM") {
        int idx;
        double ms;
        in >> idx >> ms;
        warm.push_back(ms);
        if (int(warm.size()) != o.peers) continue;
        // At a random phase of an op (this places the fault; it synchronises nothing).
        std::uniform_real_distribution<double> phase(0.0, median(warm));
        std::this_thread::sleep_for(std::chrono::microseconds(int64_t(phase(rng) * 1000)));
        t_fault = now_ns();
        p.signal(active, o.stop ? SIGSTOP : SIGKILL);
        if (!o.stop) {
          std::this_thread::sleep_for(std::chrono::milliseconds(o.restart_delay_ms));
          p.start_master("127.0.0.1:" + std::to_string(port), &active, deadline);
        }
      } else if (kind == "DONE") {
        int idx, failures;
        in >> idx >> failures;
        t.failures = std::max(t.failures, failures);
        int64_t first = 0;
        for (int64_t end; in >> end;) {
          if (end > t_fault) {
            first = end;
            break;
          }
        }
        if (first == 0) throw std::runtime_error("no op after the fault: raise --ops-after");
        first_after.push_back(first);
        ++done;
      }
    }
    int64_t slowest = *std::max_element(first_after.begin(), first_after.end());
    t.fault_to_first_ms = ns_to_ms(slowest - t_fault);
    t.op_ms = median(warm);
    return true;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "trial failed: %s\n", e.what());
    return false;
  }
}

}  // namespace

int main(int argc, char** argv) {
  Options o = parse(argc, argv);
  if (o.role == "peer") return run_peer(o);
  if (o.role == "master") return run_master(o);
  signal(SIGPIPE, SIG_IGN);
  std::mt19937_64 rng(o.seed ? o.seed : uint64_t(now_ns()));
  std::printf("qccl master %s: %d peers, %lld MiB float32 sum in a loop, heartbeat %u ms, peer "
              "timeout %u ms%s\n",
              o.stop ? "SIGSTOP, standby listed" : "SIGKILL, restarted on the same port",
              o.peers, (long long)o.size_mib, o.heartbeat_ms, o.peer_timeout_ms,
              o.stop ? "" : (", restart after " + std::to_string(o.restart_delay_ms) + " ms").c_str());
  std::printf("%5s %22s %9s %10s\n", "trial", "fault->first-ok(ms)", "retries", "op (ms)");
  std::vector<double> first, ops;
  int failed = 0;
  for (int k = 0; k < o.trials; ++k) {
    Trial t;
    if (!run_trial(o, rng, t)) {
      ++failed;
      continue;
    }
    first.push_back(t.fault_to_first_ms);
    ops.push_back(t.op_ms);
    std::printf("%5d %22.1f %9d %10.1f\n", k + 1, t.fault_to_first_ms, t.failures, t.op_ms);
    std::fflush(stdout);
  }
  if (!first.empty()) {
    std::printf("%5s %22.1f %9s %10.1f   (min %.1f, max %.1f)\n", "med", median(first), "",
                median(ops), *std::min_element(first.begin(), first.end()),
                *std::max_element(first.begin(), first.end()));
  }
  if (failed) std::fprintf(stderr, "%d of %d trials failed\n", failed, o.trials);
  return failed ? 1 : 0;
}
