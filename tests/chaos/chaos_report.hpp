// The end-of-run report of the chaos harness: what ran, the faults by kind, the recoveries,
// the stalls, the master's memory and every invariant with its number of checks and
// violations. Plain data filled by the driver; render() formats it.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "chaos_checker.hpp"

namespace qccl::chaos {

enum class Fault {
  kKill,
  kStopShort,
  kStopLong,
  kJoin,
  kLeave,
  kCut,
  kThrottle,
  kMasterRestart,
  kCount
};

inline const char* fault_name(Fault f) {
  static const char* const kNames[] = {"kill (SIGKILL)",        "stop < peer timeout",
                                       "stop >= peer timeout",  "join",
                                       "leave (graceful)",      "link cut",
                                       "link throttle",         "master kill + restart"};
  return kNames[static_cast<int>(f)];
}

struct Report {
  std::string opt_line, net_line;
  int master_pid = 0;
  int master_restarts = 0;
  double duration_s = 0;
  uint64_t steps = 0, solo_steps = 0, step_lines = 0, max_step = 0;
  int peers_started = 0, max_alive = 0;
  uint64_t faults[static_cast<int>(Fault::kCount)] = {};
  std::vector<int64_t> recovery_us[static_cast<int>(Fault::kCount)];
  size_t unresolved = 0;
  std::map<std::string, uint64_t> retries, rejoins;
  uint64_t connects = 0, connect_failures = 0, mismatches = 0, replacements = 0;
  uint64_t leaves_done = 0, state_resets = 0, empties = 0, rx_bytes = 0;
  uint64_t max_retries = 0;  // most retries of one call in a row
  std::string max_retries_what;
  std::vector<double> leave_ms;
  int64_t longest_gap_us = 0, longest_wait_us = 0, bound_us = 0;
  std::string longest_wait_what;
  int64_t rss_start_kib = -1, rss_max_kib = -1, rss_end_kib = -1, rss_limit_kib = -1;
  bool rss_violated = false;

  uint64_t total_faults() const {
    uint64_t n = 0;
    for (uint64_t f : faults) n += f;
    return n;
  }

  std::string render(const Invariants& inv) const {
    std::string s;
    auto line = [&s](const char* fmt, auto... args) {
      char buf[512];
      std::snprintf(buf, sizeof buf, fmt, args...);
      s += buf;
      s += '\n';
    };
    auto ms = [](int64_t us) { return static_cast<double>(us) / 1000.0; };
    s += "\n==== qccl chaos report ====\n";
    line("command          %s", opt_line.c_str());
    line("network faults   %s", net_line.c_str());
    line("ran              %.1f s; master pid %d (the first; %d restarts)", duration_s, master_pid,
         master_restarts);
    line("steps            %llu completed (last step %llu; %llu solo, with one peer); %llu step "
         "reports checked",
         ull(steps), ull(max_step), ull(solo_steps), ull(step_lines));
    line("peers            %d processes started, at most %d alive at once, %llu replacements",
         peers_started, max_alive, ull(replacements));
    line("faults           %llu injected:", ull(total_faults()));
    for (int f = 0; f < static_cast<int>(Fault::kCount); ++f) {
      std::vector<int64_t> r = recovery_us[f];
      std::sort(r.begin(), r.end());
      if (r.empty()) {
        line("  %-22s %6llu", fault_name(static_cast<Fault>(f)), ull(faults[f]));
      } else {
        line("  %-22s %6llu   next step after it: median %.0f ms, max %.0f ms",
             fault_name(static_cast<Fault>(f)), ull(faults[f]), ms(r[r.size() / 2]),
             ms(r.back()));
      }
    }
    if (unresolved > 0) line("  (%zu faults at the end not yet followed by a step)", unresolved);
    uint64_t retried = 0, rejoined = 0;
    for (const auto& [k, v] : retries) retried += v;
    for (const auto& [k, v] : rejoins) rejoined += v;
    line("recoveries       %llu retried calls, %llu rejoins (new communicator), %llu connects, "
         "%llu failed connects",
         ull(retried), ull(rejoined), ull(connects), ull(connect_failures));
    for (const auto& [k, v] : retries) line("  retry %-26s %6llu", k.c_str(), ull(v));
    if (max_retries > 0) {
      line("  most retries of one call: %llu, %s", ull(max_retries), max_retries_what.c_str());
    }
    for (const auto& [k, v] : rejoins) line("  rejoin %-25s %6llu", k.c_str(), ull(v));
    std::vector<double> lv = leave_ms;
    std::sort(lv.begin(), lv.end());
    line("  graceful leaves completed %llu (qcclCommDestroy median %.1f ms, max %.1f ms)",
         ull(leaves_done), lv.empty() ? 0.0 : lv[lv.size() / 2], lv.empty() ? 0.0 : lv.back());
    line("  shared state downloaded by rejoining peers: %.1f MiB", rx_bytes / 1048576.0);
    line("  group emptied %llu times, revision resets %llu, refused syncs %llu", ull(empties),
         ull(state_resets), ull(mismatches));
    line("longest stall    %.0f ms between two steps; %.0f ms after the last step or fault "
         "(bound %.0f ms)",
         ms(longest_gap_us), ms(longest_wait_us), ms(bound_us));
    if (!longest_wait_what.empty()) s += "  longest wait: " + longest_wait_what + "\n";
    line("master VmRSS     start %lld KiB, max %lld KiB, end %lld KiB (bound %lld KiB)",
         static_cast<long long>(rss_start_kib), static_cast<long long>(rss_max_kib),
         static_cast<long long>(rss_end_kib), static_cast<long long>(rss_limit_kib));
    line("invariants:");
    for (int i = 0; i < static_cast<int>(Inv::kCount); ++i) {
      const Inv v = static_cast<Inv>(i);
      line("  [%s] %-13s %10llu checks, %llu violations", inv.violations(v) == 0 ? " ok " : "FAIL",
           inv_name(v), ull(inv.checks(v)), ull(inv.violations(v)));
    }
    line("violations       %llu", ull(inv.total_violations()));
    for (const auto& m : inv.messages()) s += "  " + m + "\n";
    return s;
  }

 private:
  static unsigned long long ull(uint64_t x) { return static_cast<unsigned long long>(x); }
};

}  // namespace qccl::chaos
