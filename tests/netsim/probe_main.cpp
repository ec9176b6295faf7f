// qccl_netsim_probe: measures an emulated WAN between two namespaces of netsim.sh from one
// process (probe.hpp), for the figures of docs/netsim.md. Run as root.
//
//   qccl_netsim_probe rtt     --from NS=IP --to NS=IP [--count 50]
//   qccl_netsim_probe connect --from NS=IP --to NS=IP [--count 20]
//   qccl_netsim_probe loss    --from NS=IP --to NS=IP [--count 2000] [--bytes 200] [--per-ms 2]
//   qccl_netsim_probe tcp     --from NS=IP --to NS=IP [--flows 1] [--warmup 1] [--seconds 3]
//                             [--cpu-pid PID]
//
// --cpu-pid: also report the CPU time that process (the forwarder) used during the run, as a
// percentage of one core. Exit codes: 0 measured, 1 the measurement failed, 2 bad flags.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include "probe.hpp"

namespace {

using qccl::netsim::probe::Endpoint;

Endpoint endpoint(const std::string& spec) {
  const size_t eq = spec.find('=');
  return Endpoint{spec.substr(0, eq), eq == std::string::npos ? "" : spec.substr(eq + 1)};
}

// utime + stime of `pid` in seconds, or -1.
double cpu_seconds(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t close = stat.rfind(')');
  if (close == std::string::npos) return -1;
  std::istringstream rest(stat.substr(close + 2));
  std::string field;
  double utime = 0, stime = 0;
  for (int i = 3; rest >> field; ++i) {  // field 3 is the state
    if (i == 14) utime = std::stod(field);
    if (i == 15) {
      stime = std::stod(field);
      break;
    }
  }
  return (utime + stime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

void print_series(const char* what, const std::vector<double>& v) {
  using qccl::netsim::probe::quantile;
  const double mean = std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size());
  fmt::print("{} n {} min {:.3f} median {:.3f} mean {:.3f} p90 {:.3f} max {:.3f} ms\n", what,
             v.size(), quantile(v, 0), quantile(v, 0.5), mean, quantile(v, 0.9), quantile(v, 1));
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"qccl_netsim_probe: RTT, loss and TCP goodput between two namespaces"};
  app.require_subcommand(1);
  std::string from, to;
  int count = 0, bytes = 200, per_ms = 2, flows = 1, cpu_pid = 0;
  double warmup = 1, seconds = 3;
  auto common = [&](CLI::App* sub, int default_count) {
    sub->add_option("--from", from, "Sender: NAMESPACE=IPV4")->required();
    sub->add_option("--to", to, "Receiver: NAMESPACE=IPV4")->required();
    if (default_count > 0) {
      count = default_count;
      sub->add_option("--count", count)->capture_default_str()->check(CLI::Range(1, 1000000));
    }
  };
  CLI::App* rtt = app.add_subcommand("rtt", "UDP ping-pong round trips");
  common(rtt, 50);
  CLI::App* connect = app.add_subcommand("connect", "TCP connect() times (one RTT each)");
  common(connect, 20);
  CLI::App* loss = app.add_subcommand("loss", "UDP datagrams sent vs received");
  common(loss, 2000);
  loss->add_option("--bytes", bytes)->capture_default_str()->check(CLI::Range(4, 1400));
  loss->add_option("--per-ms", per_ms)->capture_default_str()->check(CLI::Range(1, 1000));
  CLI::App* tcp = app.add_subcommand("tcp", "TCP goodput of parallel flows");
  common(tcp, 0);
  tcp->add_option("--flows", flows)->capture_default_str()->check(CLI::Range(1, 256));
  tcp->add_option("--warmup", warmup, "Seconds before measuring")->capture_default_str();
  tcp->add_option("--seconds", seconds, "Seconds measured")->capture_default_str();
  tcp->add_option("--cpu-pid", cpu_pid, "Report this process's CPU use too");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  const Endpoint a = endpoint(from), b = endpoint(to);
  std::string err;
  if (rtt->parsed()) {
    std::vector<double> v;
    err = qccl::netsim::probe::udp_rtts(a, b, count, 5000, &v);
    if (err.empty()) print_series("udp-rtt", v);
  } else if (connect->parsed()) {
    std::vector<double> v;
    err = qccl::netsim::probe::tcp_connect_times(a, b, count, 10000, &v);
    if (err.empty()) print_series("tcp-connect", v);
  } else if (loss->parsed()) {
    int received = 0, out_of_order = 0;
    const auto t0 = std::chrono::steady_clock::now();
    err = qccl::netsim::probe::udp_loss(a, b, count, bytes, per_ms, 200, &received, &out_of_order);
    // Less the final 200 ms of silence that ends the count.
    const double s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() - 0.2;
    if (err.empty()) {
      fmt::print(
          "udp-loss sent {} received {} lost {:.2f}% out-of-order {} in {:.3f} s "
          "({:.0f} received/s)\n",
          count, received, 100.0 * (count - received) / count, out_of_order, s, received / s);
    }
  } else {
    std::vector<double> v;
    const double cpu0 = cpu_pid > 0 ? cpu_seconds(cpu_pid) : 0;
    const auto t0 = std::chrono::steady_clock::now();
    err = qccl::netsim::probe::tcp_goodput(a, b, flows, warmup, seconds, &v);
    const double wall =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (err.empty()) {
      std::string per;
      for (double x : v) per += fmt::format(" {:.1f}", x / 1e6);
      fmt::print("tcp flows {} total {:.1f} Mbit/s per-flow{}", flows,
                 std::accumulate(v.begin(), v.end(), 0.0) / 1e6, per);
      if (cpu_pid > 0) {
        fmt::print(" forwarder-cpu {:.0f}%", 100 * (cpu_seconds(cpu_pid) - cpu0) / wall);
      }
      fmt::print("\n");
    }
  }
  if (!err.empty()) {
    std::cerr << "qccl_netsim_probe: " << err << "\n";
    return 1;
  }
  return 0;
}
