// The command line of qccl_chaos (chaos_driver.cpp): options, defaults and usage.
#pragma once

#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "chaos_model.hpp"

namespace qccl::chaos {

struct Options {
  int64_t duration_s = 180;
  uint64_t seed = 0;
  bool seed_given = false;
  int min_peers = 3;
  int max_peers = 8;
  int64_t peer_timeout_ms = 2000;
  int64_t heartbeat_ms = 200;
  int64_t vote_timeout_ms = 60000;  // the user default: a stuck peer must show as a stall
  int64_t stall_margin_ms = 3000;
  int64_t fault_interval_ms = 2000;
  int max_impaired = 2;
  int64_t pace_ms = 10;
  int64_t rss_limit_mib = 0;  // 0: the first sample + 64 MiB
  bool netns = true;
  bool master_restarts = false;  // the master may be killed and started again (issue 22)
  bool secret = true;            // a shared secret: every connection encrypted (issue 23)
  bool verbose = false;
  std::string log_dir;
  std::string master_bin = QCCL_CHAOS_MASTER_BIN;
  std::string peer_bin = QCCL_CHAOS_PEER_BIN;
};

[[noreturn]] inline void usage(const std::string& why, int code = 2) {
  std::fprintf(code == 0 ? stdout : stderr,
               "%s%s"
               "usage: qccl_chaos [options]\n"
               "  --duration S           run length in seconds (default 180)\n"
               "  --seed N               random seed (default: from the clock; printed)\n"
               "  --min-peers N          at least N peers alive (default 3)\n"
               "  --max-peers N          at most N peers alive (default 8, at most 16)\n"
               "  --peer-timeout-ms N    master --peer-timeout-ms (default 2000)\n"
               "  --heartbeat-ms N       master --heartbeat-ms (default 200)\n"
               "  --vote-timeout-ms N    master --vote-timeout-ms (default 60000, as for users)\n"
               "  --stall-margin-ms N    progress bound = peer timeout + N (default 3000)\n"
               "  --fault-interval-ms N  mean time between faults (default 2000)\n"
               "  --max-impaired N       at most N peers stopped or cut off at once (default 2)\n"
               "  --pace-ms N            peers pause N ms between steps (default 10)\n"
               "  --rss-limit-mib N      master VmRSS bound (default: first sample + 64)\n"
               "  --no-netns             loopback only, even as root (no network faults)\n"
               "  --master-restarts      also kill the master and start it again (peers resume)\n"
               "  --no-secret            no shared secret (default: one, so every connection is\n"
               "                         authenticated and encrypted)\n"
               "  --log-dir DIR          write every line of every process to DIR/chaos.log\n"
               "  --verbose              echo every line to stdout\n"
               "  --master-bin PATH      qccl-master (default: the build's)\n"
               "  --peer-bin PATH        qccl_chaos_peer (default: the build's)\n",
               why.c_str(), why.empty() ? "" : "\n");
  std::exit(code);
}

inline Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--help" || a == "-h") usage("", 0);
    if (a == "--no-netns") { o.netns = false; continue; }
    if (a == "--master-restarts") { o.master_restarts = true; continue; }
    if (a == "--no-secret") { o.secret = false; continue; }
    if (a == "--verbose") { o.verbose = true; continue; }
    if (i + 1 >= argc) usage("missing value for " + a);
    std::string v = argv[++i];
    if (a == "--log-dir") { o.log_dir = v; continue; }
    if (a == "--master-bin") { o.master_bin = v; continue; }
    if (a == "--peer-bin") { o.peer_bin = v; continue; }
    char* end = nullptr;
    unsigned long long n = std::strtoull(v.c_str(), &end, 10);
    if (v.empty() || *end != '\0' || v[0] == '-') usage("bad value for " + a + ": " + v);
    auto val = static_cast<int64_t>(n);
    if (a == "--duration") o.duration_s = val;
    else if (a == "--seed") { o.seed = n; o.seed_given = true; }
    else if (a == "--min-peers") o.min_peers = static_cast<int>(val);
    else if (a == "--max-peers") o.max_peers = static_cast<int>(val);
    else if (a == "--peer-timeout-ms") o.peer_timeout_ms = val;
    else if (a == "--heartbeat-ms") o.heartbeat_ms = val;
    else if (a == "--vote-timeout-ms") o.vote_timeout_ms = val;
    else if (a == "--stall-margin-ms") o.stall_margin_ms = val;
    else if (a == "--fault-interval-ms") o.fault_interval_ms = val;
    else if (a == "--max-impaired") o.max_impaired = static_cast<int>(val);
    else if (a == "--pace-ms") o.pace_ms = val;
    else if (a == "--rss-limit-mib") o.rss_limit_mib = val;
    else usage("unknown option " + a);
  }
  if (o.min_peers < 2 || o.max_peers < o.min_peers || o.max_peers > kMaxSlots / 2) {
    usage("need 2 <= --min-peers <= --max-peers <= 8");
  }
  if (o.heartbeat_ms < 1 || o.heartbeat_ms >= o.peer_timeout_ms) {
    usage("need 1 <= --heartbeat-ms < --peer-timeout-ms");
  }
  if (o.fault_interval_ms < 10) usage("--fault-interval-ms must be at least 10");
  if (!o.seed_given) {
    o.seed = static_cast<uint64_t>(std::chrono::system_clock::now().time_since_epoch().count()) ^
             (static_cast<uint64_t>(::getpid()) << 32);
  }
  return o;
}

}  // namespace qccl::chaos
