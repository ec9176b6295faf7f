// qccl all-reduce benchmark on loopback: the parent runs a master in-process and re-executes
// itself as N peer processes (--role peer), for each N of --peers. Per (N, size) it reports
// median / min / max op time and algbw / busbw as nccl-tests define them:
//   algbw = size / time,  busbw = algbw * 2(N-1)/N   (GB/s = 1e9 bytes/s, median time).
// An iteration's time is the slowest peer's: each peer times its own op after an untimed
// barrier and a max-reduce gathers the times. Every result is checked, on every peer.
#include "bench_common.hpp"


using namespace qccl_bench;

namespace {

struct Options {
  std::vector<int64_t> peers = {2, 3, 4};
  std::vector<int64_t> sizes_mib = {1, 16, 64, 256};
  int iters = 10;
  int warmup = 3;
  uint32_t connections = 0;  // 0 = the library's default
  bool inplace = false;
  int timeout_s = 1800;      // whole run; each N gets what is left
  std::string json;
  // peer role only
  bool peer = false;
  std::string master;
  int index = 0;
  int nranks = 0;
  int result_fd = -1;
};

[[noreturn]] void usage(const char* msg) {
  std::fprintf(stderr,
               "%s\nusage: qccl_allreduce_bench [--peers 2,3,4] [--sizes-mib 1,16,64,256]\n"
               "  [--iters 10] [--warmup 3] [--connections C (0 = default)] [--inplace]\n"
               "  [--timeout-s 1800] [--json FILE]\n",
               msg);
  std::exit(2);
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto val = [&]() -> std::string {
      if (i + 1 >= argc) usage(("missing value for " + a).c_str());
      return argv[++i];
    };
    try {
      if (a == "--peers") o.peers = parse_int_list(val());
      else if (a == "--sizes-mib") o.sizes_mib = parse_int_list(val());
      else if (a == "--iters") o.iters = std::stoi(val());
      else if (a == "--warmup") o.warmup = std::stoi(val());
      else if (a == "--connections") o.connections = uint32_t(std::stoul(val()));
      else if (a == "--inplace") o.inplace = true;
      else if (a == "--timeout-s") o.timeout_s = std::stoi(val());
      else if (a == "--json") o.json = val();
      else if (a == "--role") o.peer = val() == "peer";
      else if (a == "--master") o.master = val();
      else if (a == "--index") o.index = std::stoi(val());
      else if (a == "--nranks") o.nranks = std::stoi(val());
      else if (a == "--result-fd") o.result_fd = std::stoi(val());
      else if (a == "--help" || a == "-h") usage("");
      else usage(("unknown option " + a).c_str());
    } catch (const std::logic_error&) {
      usage(("bad value for " + a).c_str());
    }
  }
  if (o.iters < 1 || o.warmup < 0) usage("--iters must be >= 1 and --warmup >= 0");
  for (auto n : o.peers) if (n < 2) usage("--peers values must be >= 2");
  for (auto s : o.sizes_mib) if (s < 1) usage("--sizes-mib values must be >= 1");
  return o;
}

// ---- peer process ------------------------------------------------------------------------

int run_peer(const Options& o) {
  const int64_t deadline = now_ns() + int64_t(o.timeout_s) * 1000000000;
  PeerCtx ctx;
  try {
    join_group(ctx, o.master, o.nranks, o.connections, deadline);
    const int64_t weight = int64_t(o.nranks) * (o.nranks + 1) / 2;  // sum of (index+1)
    size_t max_count = size_t(*std::max_element(o.sizes_mib.begin(), o.sizes_mib.end())) << 18;
    std::vector<float> send(max_count), recv(max_count);
    for (int64_t mib : o.sizes_mib) {
      const size_t count = size_t(mib) << 18;  // 2^20 bytes / 4 bytes per float
      fill_contribution(send, count, o.index);
      std::string line = "RESULT " + std::to_string(count * 4);
      for (int it = 0; it < o.warmup + o.iters; ++it) {
        // Out of place: poison recv so a stale correct result cannot pass the check.
        // In place: restore the input the previous op overwrote. Both untimed.
        if (o.inplace) std::copy(send.begin(), send.begin() + long(count), recv.begin());
        else std::fill(recv.begin(), recv.begin() + long(count), -1.0f);
        const void* src = o.inplace ? static_cast<const void*>(recv.data()) : send.data();
        qcclReduceDesc_t d = {count, qcclFloat32, qcclSum, 0, {qcclQuantNone, qcclFloat32}};
        qcclReduceInfo_t info{};
        allreduce_max(ctx, 0.0);  // barrier
        d.tag = ctx.next_tag++;
        int64_t t0 = now_ns();
        check(qcclAllReduce(src, recv.data(), &d, ctx.comm, &info), "qcclAllReduce");
        int64_t t1 = now_ns();
        int64_t bad = first_mismatch(recv.data(), count, int(weight));
        if (bad >= 0) {
          std::fprintf(stderr, "peer %d: %lld MiB: recv[%lld] = %g, want %g\n", o.index,
                       (long long)mib, (long long)bad, double(recv[size_t(bad)]),
                       double(weight) * double(size_t(bad) % 1024 + 1));
        }
        // One reduce gathers the slowest time and whether any peer saw a wrong result, so
        // all peers stop together instead of leaving the others blocked.
        bool wrong = bad >= 0 || info.world_size != uint32_t(o.nranks);
        double v[2] = {ns_to_ms(t1 - t0), wrong ? 1.0 : 0.0};
        allreduce_max(ctx, v, 2);
        if (v[1] != 0.0) throw std::runtime_error("wrong all-reduce result on some peer");
        if (it >= o.warmup) {
          char buf[32];
          std::snprintf(buf, sizeof buf, " %.4f", v[0]);
          line += buf;
        }
      }
      if (o.index == 0) send_line(o.result_fd, line);
    }
    // Nobody leaves while another still counts on it. All results are in by now, so a peer
    // lost here (one that returned from this barrier first and left) costs nothing.
    try {
      allreduce_max(ctx, 0.0);
    } catch (const QcclError& e) {
      if (e.code != qcclPeerLost) throw;
      std::fprintf(stderr, "peer %d: final barrier: %s\n", o.index, e.what());
    }
    check(qcclCommDestroy(ctx.comm), "qcclCommDestroy");
    send_line(o.result_fd, "DONE " + std::to_string(o.index));
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "peer %d: %s\n", o.index, e.what());
    send_line(o.result_fd, "ERROR " + std::to_string(o.index) + " " + e.what());
    if (ctx.comm) qcclCommDestroy(ctx.comm);
    return 1;
  }
}

// ---- parent ------------------------------------------------------------------------------

struct Row {
  int n;
  int64_t size_bytes;
  std::vector<double> times_ms;
  double med, mn, mx, algbw, busbw;
};

Row make_row(int n, int64_t size_bytes, std::vector<double> t) {
  Row r{n, size_bytes, t, median(t), *std::min_element(t.begin(), t.end()),
        *std::max_element(t.begin(), t.end()), 0, 0};
  r.algbw = double(size_bytes) / (r.med / 1e3) / 1e9;
  r.busbw = r.algbw * 2.0 * (n - 1) / n;
  return r;
}

void print_row(const Row& r, const Options& o) {
  std::printf("%3d %10.0f %6u %6zu %11.3f %9.3f %9.3f %12.3f %12.3f\n", r.n,
              double(r.size_bytes) / (1 << 20), o.connections, r.times_ms.size(), r.med, r.mn,
              r.mx, r.algbw, r.busbw);
  std::fflush(stdout);
}

// Runs one group size: a fresh master, n peers, and the rows they report.
bool run_group(const Options& o, int n, int64_t deadline, std::vector<Row>& rows) {
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
    std::string exe = self_exe(), sizes;
    for (auto s : o.sizes_mib) {
      if (!sizes.empty()) sizes += ',';
      sizes += std::to_string(s);
    }
    int64_t left_s = std::max<int64_t>((deadline - now_ns()) / 1000000000, 1);
    for (int i = 0; i < n; ++i) {
      std::vector<std::string> argv = {exe, "--role", "peer", "--master",
                                       "127.0.0.1:" + std::to_string(port), "--index",
                                       std::to_string(i), "--nranks", std::to_string(n),
                                       "--sizes-mib", sizes, "--iters", std::to_string(o.iters),
                                       "--warmup", std::to_string(o.warmup), "--connections",
                                       std::to_string(o.connections), "--timeout-s",
                                       std::to_string(left_s), "--result-fd",
                                       std::to_string(fds[1])};
      if (o.inplace) argv.push_back("--inplace");
      // The write end must survive exec in the child only: clear CLOEXEC around the fork.
      fcntl(fds[1], F_SETFD, 0);
      pids.push_back(spawn_child(argv));
      fcntl(fds[1], F_SETFD, FD_CLOEXEC);
    }
    close(fds[1]);
    fds[1] = -1;
    LineReader reader(fds[0]);
    size_t next_size = 0;
    int done = 0;
    std::string line;
    while (done < n) {
      if (!reader.next(line, deadline)) {
        std::fprintf(stderr, "N=%d: %s\n", n, reader.error().c_str());
        break;
      }
      std::istringstream in(line);
      std::string kind;
      in >> kind;
      if (kind == "RESULT" && next_size < o.sizes_mib.size()) {
        int64_t bytes = 0;
        in >> bytes;
        std::vector<double> t;
        for (double x; in >> x;) t.push_back(x);
        rows.push_back(make_row(n, bytes, t));
        print_row(rows.back(), o);
        ++next_size;
      } else if (kind == "DONE") {
        ++done;
      } else if (kind == "ERROR") {
        std::fprintf(stderr, "N=%d: %s\n", n, line.c_str());
        break;
      }
    }
    ok = done == n && next_size == o.sizes_mib.size();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "N=%d: %s\n", n, e.what());
  }
  // Peers that finished exit on their own; give them a moment, then end any that did not.
  end_children(pids, ok ? 5000000000LL : 200000000LL);
  if (fds[0] >= 0) close(fds[0]);
  if (fds[1] >= 0) close(fds[1]);
  if (master) qcclMasterDestroy(master);
  return ok;
}

void write_json(const Options& o, const std::vector<Row>& rows) {
  FILE* f = std::fopen(o.json.c_str(), "w");
  if (!f) {
    std::fprintf(stderr, "cannot write %s\n", o.json.c_str());
    return;
  }
  std::fprintf(f, "{\"system\": \"qccl\", \"connections\": %u, \"inplace\": %s, \"iters\": %d, "
               "\"warmup\": %d, \"results\": [",
               o.connections, o.inplace ? "true" : "false", o.iters, o.warmup);
  for (size_t i = 0; i < rows.size(); ++i) {
    const Row& r = rows[i];
    std::fprintf(f, "%s\n  {\"n\": %d, \"size_bytes\": %lld, \"times_ms\": [", i ? "," : "", r.n,
                 (long long)r.size_bytes);
    for (size_t k = 0; k < r.times_ms.size(); ++k) {
      std::fprintf(f, "%s%.4f", k ? ", " : "", r.times_ms[k]);
    }
    std::fprintf(f, "], \"median_ms\": %.4f, \"min_ms\": %.4f, \"max_ms\": %.4f, "
                 "\"algbw_gbs\": %.4f, \"busbw_gbs\": %.4f}",
                 r.med, r.mn, r.mx, r.algbw, r.busbw);
  }
  std::fprintf(f, "\n]}\n");
  std::fclose(f);
}

}  // namespace

int main(int argc, char** argv) {
  Options o = parse(argc, argv);
  if (o.peer) return run_peer(o);
  signal(SIGPIPE, SIG_IGN);
  const int64_t deadline = now_ns() + int64_t(o.timeout_s) * 1000000000;
  std::printf("qccl all-reduce, float32 sum, loopback, %s; busbw = size/time * 2(N-1)/N\n",
              o.inplace ? "in place" : "out of place");
  std::printf("%3s %10s %6s %6s %11s %9s %9s %12s %12s\n", "N", "size(MiB)", "conns", "iters",
              "median(ms)", "min(ms)", "max(ms)", "algbw(GB/s)", "busbw(GB/s)");
  std::vector<Row> rows;
  bool ok = true;
  for (int64_t n : o.peers) ok = run_group(o, int(n), deadline, rows) && ok;
  if (!o.json.empty()) write_json(o, rows);
  return ok ? 0 : 1;
}
