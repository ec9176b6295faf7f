// qccl_netsim: a user-space WAN emulator between network namespaces (docs/netsim.md). Usually
// started by tests/netsim/netsim.sh, which creates the namespaces first and configures the
// devices after.
//
//   qccl_netsim --node NS=IPV4 --node NS=IPV4 [--node ...] [--dev wan0]
//       [--delay-ms D] [--jitter-ms J] [--loss PCT] [--seed S] [--flow-cap RATE]
//       [--flow-queue-kb KB] [--max-packets N] [--control FILE] [--status FILE]
//       [--stats-interval-s S] [--log-level LEVEL] [--dry-run]
//
// It creates one TUN device `--dev` inside each namespace NS (tun.hpp) and forwards between
// them (forwarder.hpp) through the emulation (emulation.hpp). Once every device exists it
// writes "ready generation 0 pid P" to the --status file (atomically: a rename), which is
// what netsim.sh waits for before it assigns the addresses.
//
// SIGHUP re-reads the --control file: one line of knob flags (--delay-ms, --jitter-ms, --loss,
// --flow-cap, --flow-queue-kb) plus --generation N; the flags given replace the current
// values, the others stay. The status file then says "ready generation N pid P", or
// "error generation N: WHY" (the knobs are then unchanged). SIGUSR1 logs the counters.
// SIGINT/SIGTERM: stop, print the
// stats, exit 0. --dry-run only checks the flags.
// Exit codes: 0 stopped by a signal (or --dry-run, --help), 1 setup failed (e.g. not root),
// 2 bad flags.
#include <arpa/inet.h>
#include <sys/prctl.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>
#include <asio/io_context.hpp>
#include <asio/signal_set.hpp>
#include <asio/steady_timer.hpp>

#include "emulation.hpp"
#include "forwarder.hpp"
#include "tun.hpp"

namespace {

using qccl::netsim::Knobs;

constexpr int kExitOk = 0;
constexpr int kExitSetup = 1;
constexpr int kExitUsage = 2;
constexpr int64_t kFlowIdleNs = 30'000'000'000;

// The knob flags, as text until validated: shared by the command line and the control file.
struct KnobFlags {
  double delay_ms = 0, jitter_ms = 0, loss_pct = 0;
  std::string flow_cap = "0";
  uint64_t flow_queue_kb = 0;

  void add_to(CLI::App& app) {
    app.add_option("--delay-ms", delay_ms, "One-way delay, milliseconds")
        ->capture_default_str()
        ->check(CLI::Range(0.0, 10000.0));
    app.add_option("--jitter-ms", jitter_ms,
                   "Uniform jitter +-J ms on top of the delay (never reorders a flow)")
        ->capture_default_str()
        ->check(CLI::Range(0.0, 10000.0));
    app.add_option("--loss", loss_pct, "Random loss, percent of packets")
        ->capture_default_str()
        ->check(CLI::Range(0.0, 100.0));
    app.add_option("--flow-cap", flow_cap,
                   "Per-flow (IPv4 5-tuple) rate cap, e.g. 20mbit; 0 = none")
        ->type_name("RATE")
        ->capture_default_str()
        ->check([](const std::string& s) {
          return qccl::netsim::parse_rate(s) ? std::string()
                                             : "not a rate (e.g. 20mbit, 1gbit, 0): " + s;
        });
    app.add_option("--flow-queue-kb", flow_queue_kb,
                   "Per-flow shaper queue in KiB; 0 = cap x (delay + 100 ms)")
        ->capture_default_str()
        ->check(CLI::Range(uint64_t{0}, uint64_t{1} << 20));
  }
  // The knobs, with the flags that `app` saw replacing those of `base`.
  Knobs apply(const CLI::App& app, Knobs base) const {
    if (app.count("--delay-ms")) base.delay_ms = delay_ms;
    if (app.count("--jitter-ms")) base.jitter_ms = jitter_ms;
    if (app.count("--loss")) base.loss_pct = loss_pct;
    if (app.count("--flow-cap")) base.flow_cap_bps = *qccl::netsim::parse_rate(flow_cap);
    if (app.count("--flow-queue-kb")) base.flow_queue_bytes = flow_queue_kb * 1024;
    return base;
  }
};

std::string describe(const Knobs& k) {
  return fmt::format("delay {} ms, jitter {} ms, loss {}%, flow cap {}, flow queue {}", k.delay_ms,
                     k.jitter_ms, k.loss_pct,
                     k.flow_cap_bps ? fmt::format("{} bit/s", k.flow_cap_bps) : "none",
                     k.flow_queue_bytes ? fmt::format("{} B", k.flow_queue_bytes) : "auto");
}

std::string describe(const qccl::netsim::Stats& s) {
  return fmt::format(
      "forwarded {} bytes {} lost {} cap_dropped {} unknown {} overflow {} write_errors {}",
      s.forwarded, s.forwarded_bytes, s.lost, s.cap_dropped, s.unknown, s.overflow, s.write_errors);
}

// Replaces `path` with `text` atomically (readers see the old or the new file, never half).
bool write_status(const std::string& path, const std::string& text) {
  if (path.empty()) return true;
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << text << "\n";
    if (!out.flush()) return false;
  }
  return std::rename(tmp.c_str(), path.c_str()) == 0;
}

// Reads the control file and returns the new knobs, or an error; *generation is set from it.
std::string reload(const std::string& path, Knobs* knobs, uint64_t* generation) {
  std::ifstream in(path);
  if (!in) return "cannot read " + path;
  std::stringstream text;
  text << in.rdbuf();
  // Read first, so that even a rejected file's generation reaches the status file.
  if (size_t at = text.str().find("--generation "); at != std::string::npos) {
    *generation = std::strtoull(text.str().c_str() + at + 13, nullptr, 10);
  }
  CLI::App app{"control file"};
  KnobFlags flags;
  flags.add_to(app);
  app.add_option("--generation", *generation, "")->required();
  try {
    std::string line = text.str();
    while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
    app.parse(line, false);
  } catch (const CLI::ParseError& e) {
    return std::string("bad control file: ") + e.what();
  }
  Knobs next = flags.apply(app, *knobs);
  if (std::string why = qccl::netsim::validate(next); !why.empty()) return why;
  *knobs = next;
  return "";
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> node_specs;
  std::string dev = "wan0";
  uint64_t seed = 1;
  size_t max_packets = 65536;
  std::string control_path, status_path, log_level = "info";
  unsigned stats_interval_s = 10;
  KnobFlags flags;

  CLI::App app{
      "qccl_netsim: a user-space WAN emulator. One TUN device per network namespace; packets\n"
      "between them get a delay, jitter, loss and a per-flow rate cap. Runs until SIGINT/SIGTERM;\n"
      "SIGHUP re-reads --control. Usually started by tests/netsim/netsim.sh.",
      "qccl_netsim"};
  app.add_option("--node", node_specs, "A node: NAMESPACE=IPV4 (at least two)")
      ->type_name("NS=IPV4")
      ->required();
  app.add_option("--dev", dev, "TUN device name created in every namespace")->capture_default_str();
  flags.add_to(app);
  app.add_option("--seed", seed, "Seed of the loss and jitter draws")->capture_default_str();
  app.add_option("--max-packets", max_packets, "Packets queued at most (all flows)")
      ->capture_default_str()
      ->check(CLI::Range(size_t{64}, size_t{1} << 22));
  app.add_option("--control", control_path, "Knob flags re-read on SIGHUP")->type_name("FILE");
  app.add_option("--status", status_path, "Readiness/status file written atomically")
      ->type_name("FILE");
  app.add_option("--stats-interval-s", stats_interval_s, "Log the counters every S s; 0 = never")
      ->capture_default_str();
  bool dry_run = false;
  app.add_flag("--dry-run", dry_run, "Check the flags and exit (0 if they are valid)");
  app.add_option("--log-level", log_level, "Log level")
      ->capture_default_str()
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}));
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? kExitOk : kExitUsage;
  }
  Knobs knobs = flags.apply(app, Knobs{});
  if (std::string why = qccl::netsim::validate(knobs); !why.empty()) {
    std::cerr << "qccl_netsim: " << why << "\n";
    return kExitUsage;
  }
  std::vector<qccl::netsim::Node> nodes;
  for (const std::string& spec : node_specs) {
    const size_t eq = spec.find('=');
    qccl::netsim::Node n;
    n.netns = spec.substr(0, eq);
    const std::string ip = eq == std::string::npos ? "" : spec.substr(eq + 1);
    in_addr a{};
    if (n.netns.empty() || ::inet_pton(AF_INET, ip.c_str(), &a) != 1) {
      std::cerr << "qccl_netsim: --node " << spec << ": expected NAMESPACE=IPV4\n";
      return kExitUsage;
    }
    n.address = a.s_addr;
    for (const auto& other : nodes) {
      if (other.address == n.address || other.netns == n.netns) {
        std::cerr << "qccl_netsim: --node " << spec << ": namespace or address given twice\n";
        return kExitUsage;
      }
    }
    nodes.push_back(n);
  }
  if (nodes.size() < 2) {
    std::cerr << "qccl_netsim: at least two --node are needed\n";
    return kExitUsage;
  }
  if (dry_run) return kExitOk;
  spdlog::set_level(spdlog::level::from_str(log_level));
  spdlog::set_pattern("[%Y-%m-%d %H:%M:%S.%e] [netsim] [%l] %v");
  // Timer slack: the kernel may otherwise delay every wake-up by up to 50 µs.
  ::prctl(PR_SET_TIMERSLACK, 1UL);

  for (auto& n : nodes) {
    std::string error;
    n.fd = qccl::netsim::open_tun_in(n.netns, dev, &error);
    if (n.fd < 0) {
      std::cerr << "qccl_netsim: " << error << "\n";
      for (auto& m : nodes) {
        if (m.fd >= 0) ::close(m.fd);
      }
      return kExitSetup;
    }
  }

  asio::io_context io(1);
  qccl::netsim::Forwarder fwd(io, nodes, knobs, seed, max_packets);
  fwd.start();
  spdlog::info("{} nodes, device {}: {}", nodes.size(), dev, describe(knobs));

  uint64_t generation = 0;
  const std::string pid = std::to_string(::getpid());
  if (!write_status(status_path, "ready generation 0 pid " + pid)) {
    std::cerr << "qccl_netsim: cannot write " << status_path << "\n";
    return kExitSetup;
  }

  asio::steady_timer stats_timer(io);
  std::function<void()> arm_stats = [&] {
    if (stats_interval_s == 0) return;
    stats_timer.expires_after(std::chrono::seconds(stats_interval_s));
    stats_timer.async_wait([&](asio::error_code ec) {
      if (ec) return;
      fwd.expire_flows(kFlowIdleNs);
      spdlog::info("{} queued {} flows {}", describe(fwd.stats()), fwd.queued(), fwd.flows());
      arm_stats();
    });
  };
  arm_stats();

  asio::signal_set signals(io, SIGINT, SIGTERM, SIGHUP);
  signals.add(SIGUSR1);
  std::function<void()> arm_signals = [&] {
    signals.async_wait([&](asio::error_code ec, int sig) {
      if (ec) return;
      if (sig == SIGUSR1) {
        spdlog::info("{} queued {} flows {}", describe(fwd.stats()), fwd.queued(), fwd.flows());
        arm_signals();
        return;
      }
      if (sig != SIGHUP) {
        spdlog::info("{}: stopping", sig == SIGINT ? "SIGINT" : "SIGTERM");
        fwd.stop();
        stats_timer.cancel();
        return;
      }
      uint64_t gen = 0;
      std::string why =
          control_path.empty() ? "no --control file" : reload(control_path, &knobs, &gen);
      if (why.empty()) {
        generation = gen;
        fwd.set_knobs(knobs);
        spdlog::info("generation {}: {}", generation, describe(knobs));
        write_status(status_path, fmt::format("ready generation {} pid {}", generation, pid));
      } else {
        spdlog::error("SIGHUP: {}", why);
        write_status(status_path, fmt::format("error generation {}: {}", gen, why));
      }
      arm_signals();
    });
  };
  arm_signals();

  io.run();
  const std::string summary = describe(fwd.stats());
  spdlog::info("exit: {}", summary);
  std::cout << "qccl_netsim stats " << summary << std::endl;
  return kExitOk;
}
