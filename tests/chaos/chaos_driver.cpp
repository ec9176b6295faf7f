// qccl_chaos: the chaos soak harness (docs/reliability.md). It starts the qccl-master binary
// and a changing set of 3-8 qccl_chaos_peer processes that train the toy model of
// chaos_model.hpp in lock step (chaos_peer.cpp), injects faults at random, checks the
// invariants of chaos_checker.hpp from the peers' event lines as they arrive, and prints a
// report. Exit code 0 only if no invariant was violated.
//
//   qccl_chaos [--duration S] [--seed N] [--no-netns] [--log-dir DIR] [more: --help]
//
// Faults, at exponentially distributed intervals (mean --fault-interval-ms), each picked at
// random among those possible at that moment:
//   kill      SIGKILL a peer (replacements keep at least --min-peers alive)
//   stop      SIGSTOP a peer for 0.2-2.5 peer timeouts, then SIGCONT ("long" when it lasted
//             at least the peer timeout: the master expels it and it rejoins when resumed)
//   join      start a new peer (up to --max-peers)
//   leave     a peer leaves gracefully ("leave" on its stdin; qcclCommDestroy)
//   cut       (network namespaces only) the peer's link goes down for 0.2-2.5 peer timeouts
//   throttle  (network namespaces only) the peer's link is limited to 10-50 mbit for 2-10 s
//   master    (--master-restarts) SIGKILL the master, and start a new one on its address
//             0-500 ms later with --resume-grace-ms 1000 (peers run with
//             QCCL_MASTER_RECONNECT_MS and resume); only while more than half the peers are
//             healthy, so that the ring has a quorum, and not again until it settled
// The master and every peer share a secret (a file the driver writes; --no-secret: none), so
// every connection is authenticated and encrypted (docs/security.md), as in a real run.
//
// A fault that could take a peer out of the group (kill, stop, cut, leave) is only injected if
// at least two established, unimpaired peers remain, so the group never empties: its shared
// state always has a holder. At most --max-impaired peers are stopped or cut off at once. With root, ip and tc, every peer slot is its own network
// namespace (chaos_net.hpp) and the master another; otherwise everything runs on loopback and
// the report says that network faults were skipped.
//
// At the end of --duration the harness ends every impairment, waits for the group to make
// progress again, closes every peer's stdin (each leaves gracefully) and stops the master with
// SIGTERM (it must exit 0). Every wait has a deadline; processes are ended by pid. The seed
// reproduces the sequence of fault decisions, not the timing of the processes. SIGINT or
// SIGTERM ends the run early (counted as a violation) after the same cleanup.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "chaos_checker.hpp"
#include "chaos_net.hpp"
#include "chaos_options.hpp"
#include "chaos_report.hpp"
#include "support/peer_events.hpp"
#include "support/proc.hpp"

namespace qccl::chaos {
namespace {

using test::Procs;

// SIGINT / SIGTERM: end the run early, still cleaning up (children, namespaces) and reporting.
volatile std::sig_atomic_t g_interrupted = 0;
void on_interrupt(int) { g_interrupted = 1; }

int64_t now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// VmRSS of a process in KiB, or -1.
int64_t rss_kib(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("VmRSS:", 0) == 0) return std::strtoll(line.c_str() + 6, nullptr, 10);
  }
  return -1;
}

struct PeerProc {
  Procs::Id id = 0;
  int slot = -1;
  int64_t serial = 0;
  std::string label;
  int64_t spawned_us = 0;
  bool killed = false;  // SIGKILL sent by the harness
  bool leaving = false;
  int64_t leave_sent_us = 0, leave_deadline_us = 0;
  bool stopped = false;
  int64_t cont_at_us = 0;
  bool established = false;  // printed a step with its current communicator
  bool exited = false;
  std::string retry_key;  // the call of its last retry line, and how many in a row
  uint64_t retry_run = 0;
};

struct Slot {
  int peer = -1;  // index into peers_, -1 = no live process
  bool cut = false;
  int64_t restore_at_us = 0;
  bool throttled = false;
  int64_t unthrottle_at_us = 0;
};

class Driver {
 public:
  explicit Driver(Options o)
      : opt_(std::move(o)),
        rng_(opt_.seed),
        inv_([this](Inv i, const std::string& what) { on_violation(i, what); }),
        checker_(inv_) {
    bound_us_ = (opt_.peer_timeout_ms + opt_.stall_margin_ms) * 1000;
    connect_timeout_ms_ = 3 * opt_.peer_timeout_ms + 10000;
    report_.opt_line = options_line();
  }
  ~Driver() {
    if (!secret_file_.empty()) ::unlink(secret_file_.c_str());
  }

  int run();

 private:
  enum class Phase { kRun, kQuiesce, kShutdown, kDone };

  // ---- output ----
  std::string options_line() const;
  void log_line(const std::string& who, const std::string& line, bool is_err);
  void on_violation(Inv i, const std::string& what);
  void status_line();

  // ---- processes ----
  // Starts the master on `listen` ("host:0" at first; its old address after a kill).
  bool start_master(const std::string& listen);
  bool write_secret();  // a fresh random secret in a private temporary file (secret_file_)
  std::string spawn_peer(const char* why);
  void on_line(Procs::Id id, bool is_out, const std::string& line);
  void on_peer_event(PeerProc& p, const Event& e);
  void reap();
  int alive() const;
  bool healthy(const PeerProc& p) const;
  int established_healthy() const;
  int impaired() const;
  bool may_disable(const PeerProc& p) const;
  std::vector<int> free_slots() const;

  // ---- faults ----
  void timed_actions(int64_t now);
  void inject(int64_t now);
  void note_fault(Fault f, int64_t now, const std::string& what);
  std::string since_last_step() const;
  void disturb(int64_t now);
  void restore_all(int64_t now);
  template <typename Pred> std::optional<int> pick(Pred pred);
  int64_t uniform(int64_t lo, int64_t hi) {
    return std::uniform_int_distribution<int64_t>(lo, hi)(rng_);
  }

  // ---- invariants over time ----
  void check_progress(int64_t now);
  void sample_rss(int64_t now);
  void shutdown(int64_t now);

  Options opt_;
  std::mt19937_64 rng_;
  Invariants inv_;
  StepChecker checker_;
  Report report_;
  Procs procs_;
  std::unique_ptr<NetFaults> net_;
  std::string net_skip_reason_;
  std::optional<Procs::Id> master_;
  std::string master_addr_;
  std::string secret_file_;  // removed by the destructor
  int64_t master_restart_us_ = -1;  // >= 0: the master was killed; start it again then
  int64_t master_settled_us_ = 0;   // until then the restarted master may be taking resumes
  std::vector<PeerProc> peers_;
  std::map<Procs::Id, size_t> peer_of_;
  Slot slots_[kMaxSlots];
  SlotHistory history_;
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> log_{nullptr, &std::fclose};

  Phase phase_ = Phase::kRun;
  int64_t start_us_ = 0, end_us_ = 0;
  int64_t bound_us_ = 0;
  int64_t connect_timeout_ms_ = 0;
  int64_t next_fault_us_ = 0, next_rss_us_ = 0, next_status_us_ = 0;
  int64_t last_step_us_ = -1, last_fault_us_ = -1, first_disturbance_us_ = -1;
  bool stall_reported_ = false;
  int64_t quiesce_start_us_ = 0;
  uint64_t steps_at_quiesce_ = 0;
  int64_t shutdown_deadline_us_ = 0;
  std::vector<std::pair<Fault, int64_t>> unresolved_;  // faults awaiting the next new step
  std::vector<std::string> since_step_;                // their descriptions
  int64_t next_serial_ = 0;
  uint64_t rss_samples_ = 0;
};

std::string Driver::options_line() const {
  return "qccl_chaos --duration " + std::to_string(opt_.duration_s) + " --seed " +
         std::to_string(opt_.seed) + " --min-peers " + std::to_string(opt_.min_peers) +
         " --max-peers " + std::to_string(opt_.max_peers) + " --peer-timeout-ms " +
         std::to_string(opt_.peer_timeout_ms) + " --heartbeat-ms " +
         std::to_string(opt_.heartbeat_ms) + " --vote-timeout-ms " +
         std::to_string(opt_.vote_timeout_ms) + " --stall-margin-ms " +
         std::to_string(opt_.stall_margin_ms) + " --fault-interval-ms " +
         std::to_string(opt_.fault_interval_ms) + " --max-impaired " +
         std::to_string(opt_.max_impaired) + " --pace-ms " + std::to_string(opt_.pace_ms) +
         (opt_.netns ? "" : " --no-netns") + (opt_.master_restarts ? " --master-restarts" : "") +
         (opt_.secret ? "" : " --no-secret");
}

void Driver::log_line(const std::string& who, const std::string& line, bool is_err) {
  const double t = static_cast<double>(now_us() - start_us_) / 1e6;
  if (log_) std::fprintf(log_.get(), "%9.3f %-12s %s%s\n", t, who.c_str(), is_err ? "! " : "", line.c_str());
  if (opt_.verbose) std::printf("%9.3f %-12s %s%s\n", t, who.c_str(), is_err ? "! " : "", line.c_str());
}

void Driver::on_violation(Inv i, const std::string& what) {
  const double t = static_cast<double>(now_us() - start_us_) / 1e6;
  std::printf("VIOLATION at %.3f s [%s] %s\n", t, inv_name(i), what.c_str());
  std::fflush(stdout);
  log_line("harness", std::string("VIOLATION [") + inv_name(i) + "] " + what, false);
}

void Driver::status_line() {
  const int64_t t = (now_us() - start_us_) / 1000000;
  std::printf("[%4lld s] steps %llu, peers %d, faults %llu, violations %llu\n",
              static_cast<long long>(t), static_cast<unsigned long long>(checker_.steps()),
              alive(), static_cast<unsigned long long>(report_.total_faults()),
              static_cast<unsigned long long>(inv_.total_violations()));
  std::fflush(stdout);
}

// ------------------------------------------------------------------ processes

bool Driver::write_secret() {
  char path[] = "/tmp/qccl-chaos-secret-XXXXXX";
  const int fd = ::mkstemp(path);  // mode 0600
  if (fd < 0) {
    std::printf("cannot create a secret file in /tmp\n");
    return false;
  }
  std::string secret = "chaos-";
  for (int i = 0; i < 32; ++i) secret += "0123456789abcdef"[uniform(0, 15)];
  const bool ok = ::write(fd, secret.data(), secret.size()) == static_cast<ssize_t>(secret.size());
  ::close(fd);
  secret_file_ = path;
  return ok;
}

bool Driver::start_master(const std::string& listen) {
  std::vector<std::string> argv = net_ ? net_->master_prefix() : std::vector<std::string>{};
  argv.insert(argv.end(), {opt_.master_bin, "--listen", listen, "--log-level", "info",
                           "--heartbeat-ms", std::to_string(opt_.heartbeat_ms),
                           "--peer-timeout-ms", std::to_string(opt_.peer_timeout_ms),
                           "--vote-timeout-ms", std::to_string(opt_.vote_timeout_ms)});
  // A replacement (on the old address) starts no new run while the peers resume the old one:
  // a joiner that registered first would otherwise start a second run.
  if (report_.master_pid != 0) argv.insert(argv.end(), {"--resume-grace-ms", "1000"});
  if (!secret_file_.empty()) argv.insert(argv.end(), {"--auth-token-file", secret_file_});
  std::vector<std::string> env;
#if defined(__SANITIZE_ADDRESS__)
  // ASan keeps freed memory in a quarantine (256 MiB by default) before reusing it, which
  // would read as growth of VmRSS; a small one keeps the memory invariant meaningful.
  const char* asan = std::getenv("ASAN_OPTIONS");
  const std::string before = asan != nullptr && *asan != '\0' ? std::string(asan) + ":" : "";
  env.push_back("ASAN_OPTIONS=" + before + "quarantine_size_mb=16");
#endif
  master_ = procs_.spawn("master", argv, env);
  if (!master_) {
    std::printf("cannot start %s: %s\n", opt_.master_bin.c_str(), procs_.error().c_str());
    return false;
  }
  master_addr_.clear();
  const int64_t deadline = now_us() + 15'000'000;
  while (master_addr_.empty() && now_us() < deadline && !procs_.try_reap(*master_)) {
    procs_.poll_once(100, [this](Procs::Id id, bool out, const std::string& l) { on_line(id, out, l); });
  }
  if (master_addr_.empty()) {
    std::printf("the master did not print its address within 15 s:\n%s", procs_.tail(*master_).c_str());
    return false;
  }
  if (report_.master_pid == 0) report_.master_pid = procs_.pid(*master_);
  return true;
}

std::vector<int> Driver::free_slots() const {
  std::vector<int> v;
  for (int s = 0; s < kMaxSlots; ++s) {
    if (slots_[s].peer < 0 && !slots_[s].cut && !slots_[s].throttled) v.push_back(s);
  }
  return v;
}

// Starts a peer in a free slot; returns its label ("" if none was started).
std::string Driver::spawn_peer(const char* why) {
  std::vector<int> free = free_slots();
  if (free.empty()) return "";
  const int slot = free[static_cast<size_t>(uniform(0, static_cast<int64_t>(free.size()) - 1))];
  PeerProc p;
  p.slot = slot;
  p.serial = next_serial_++;
  p.label = "p" + std::to_string(p.serial) + "/s" + std::to_string(slot);
  std::vector<std::string> argv = net_ ? net_->exec_prefix(slot) : std::vector<std::string>{};
  argv.insert(argv.end(), {opt_.peer_bin, "--master", master_addr_, "--slot", std::to_string(slot),
                           "--pace-ms", std::to_string(opt_.pace_ms), "--connect-timeout-ms",
                           std::to_string(connect_timeout_ms_)});
  p.spawned_us = now_us();
  history_.begin(slot, p.spawned_us);
  std::vector<std::string> env = {"QCCL_LOG_LEVEL=warn"};
  if (!secret_file_.empty()) env.push_back("QCCL_AUTH_TOKEN_FILE=" + secret_file_);
  // Long enough for any restart here (at most 0.5 s) and for a cut link to come back.
  if (opt_.master_restarts) {
    env.push_back("QCCL_MASTER_RECONNECT_MS=" + std::to_string(5 * opt_.peer_timeout_ms + 10000));
  }
  auto id = procs_.spawn(p.label, argv, env);
  if (!id) {
    history_.end(slot, now_us());
    inv_.violate(Inv::kPeers, "cannot start a peer: " + procs_.error());
    return "";
  }
  p.id = *id;
  slots_[slot].peer = static_cast<int>(peers_.size());
  peer_of_[*id] = peers_.size();
  peers_.push_back(p);
  log_line("harness", std::string("spawn ") + p.label + " pid " + std::to_string(procs_.pid(*id)) +
                          " (" + why + ")", false);
  report_.max_alive = std::max(report_.max_alive, alive());
  return p.label;
}

void Driver::on_line(Procs::Id id, bool is_out, const std::string& line) {
  if (master_ && id == *master_) {
    log_line("master", line, !is_out);
    const std::string kListening = "qccl-master listening on ";
    if (is_out && line.rfind(kListening, 0) == 0) master_addr_ = line.substr(kListening.size());
    if (!is_out && phase_ != Phase::kShutdown && phase_ != Phase::kDone &&
        line.find("ring change: group") != std::string::npos &&
        line.find("is empty") != std::string::npos) {
      checker_.on_group_emptied(now_us());
    }
    return;
  }
  auto it = peer_of_.find(id);
  if (it == peer_of_.end()) return;
  PeerProc& p = peers_[it->second];
  log_line(p.label, line, !is_out);
  if (is_out) on_peer_event(p, Event(line));
}

void Driver::on_peer_event(PeerProc& p, const Event& e) {
  const int64_t now = now_us();
  if (e.is("step")) {
    inv_.check(Inv::kLocal);  // the peer's own checks passed unless it printed "bad"
    StepChecker::Outcome o = checker_.on_step(e, p.serial, p.slot, p.label, history_);
    p.established = true;
    if (o.reset) ++report_.state_resets;
    if (o.new_step) {
      inv_.check(Inv::kProgress);
      if (last_step_us_ >= 0) {
        report_.longest_gap_us = std::max(report_.longest_gap_us, now - last_step_us_);
        const int64_t wait = now - std::max(last_step_us_, last_fault_us_);
        if (wait >= report_.longest_wait_us) {
          report_.longest_wait_us = wait;
          char t[96];
          std::snprintf(t, sizeof t, "step %llu at %.3f s, %.0f ms after the previous step; ",
                        static_cast<unsigned long long>(e.unum("step")),
                        static_cast<double>(now - start_us_) / 1e6,
                        static_cast<double>(now - last_step_us_) / 1e3);
          report_.longest_wait_what = t + since_last_step();
        }
      }
      since_step_.clear();
      last_step_us_ = now;
      first_disturbance_us_ = -1;
      stall_reported_ = false;
      for (auto& [f, at] : unresolved_) report_.recovery_us[static_cast<int>(f)].push_back(now - at);
      unresolved_.clear();
    }
    report_.rx_bytes += e.unum("rx");
  } else if (e.is("connected")) {
    p.established = false;
    ++report_.connects;
  } else if (e.is("connect-fail")) {
    ++report_.connect_failures;
  } else if (e.is("retry")) {
    ++report_.retries[e.word(1)];
    // Retries of the same call in a row (a retry loop that spins shows here).
    const std::string key = e.word(1) + " of step " + e.field("step").value_or("?");
    p.retry_run = key == p.retry_key ? p.retry_run + 1 : 1;
    p.retry_key = key;
    if (p.retry_run > report_.max_retries) {
      report_.max_retries = p.retry_run;
      char t[48];
      std::snprintf(t, sizeof t, " (at %.3f s)", static_cast<double>(now - start_us_) / 1e6);
      report_.max_retries_what = p.label + ", " + key + t;
    }
  } else if (e.is("rejoin")) {
    p.established = false;
    ++report_.rejoins[e.word(4) + " in " + e.field("where").value_or("?")];
  } else if (e.is("mismatch")) {
    ++report_.mismatches;
    if (checker_.empties() == 0) {
      inv_.violate(Inv::kRevisions, p.label + ": a sync was refused while the group never "
                                              "emptied\n  " + e.raw);
    }
  } else if (e.is("bad")) {
    inv_.violate(Inv::kLocal, p.label + ": " + e.raw);
  } else if (e.is("error")) {
    inv_.violate(Inv::kPeers, p.label + ": unexpected result: " + e.raw);
  } else if (e.is("left")) {
    report_.leave_ms.push_back(e.real("ms"));
  }
}

int Driver::alive() const {
  int n = 0;
  for (const auto& p : peers_) n += (!p.exited && !p.killed && !p.leaving) ? 1 : 0;
  return n;
}

bool Driver::healthy(const PeerProc& p) const {
  return !p.exited && !p.killed && !p.leaving && !p.stopped && !slots_[p.slot].cut;
}

// Peers stopped or cut off right now.
int Driver::impaired() const {
  int n = 0;
  for (const auto& p : peers_) n += (!p.exited && p.stopped) ? 1 : 0;
  for (const auto& sl : slots_) n += sl.cut ? 1 : 0;
  return n;
}

int Driver::established_healthy() const {
  int n = 0;
  for (const auto& p : peers_) n += (healthy(p) && p.established) ? 1 : 0;
  return n;
}

// A fault that may take `p` out of the group leaves two established, unimpaired peers.
bool Driver::may_disable(const PeerProc& p) const {
  // Not while a restarted master may still be taking the resumes: a peer lost then could cost
  // the ring its quorum, and the whole group would join again (the group emptied).
  if (master_restart_us_ >= 0 || now_us() < master_settled_us_) return false;
  return established_healthy() - ((healthy(p) && p.established) ? 1 : 0) >= 2;
}

void Driver::reap() {
  for (size_t i = 0; i < peers_.size(); ++i) {
    PeerProc& p = peers_[i];
    if (p.exited || !procs_.try_reap(p.id)) continue;
    const int64_t now = now_us();
    p.exited = true;
    history_.end(p.slot, now);
    slots_[p.slot].peer = -1;
    procs_.release(p.id, [this](Procs::Id id, bool out, const std::string& l) { on_line(id, out, l); });
    const int st = procs_.status(p.id);
    log_line("harness", p.label + " exited, wait status " + std::to_string(st), false);
    if (p.killed) continue;
    inv_.check(Inv::kPeers);
    if (p.leaving && WIFEXITED(st) && WEXITSTATUS(st) == 0) {
      ++report_.leaves_done;
      continue;
    }
    std::string how = WIFEXITED(st) ? "exit status " + std::to_string(WEXITSTATUS(st))
                                    : "signal " + std::to_string(WTERMSIG(st));
    inv_.violate(Inv::kPeers, p.label + " exited unasked (" + how + "); its last lines:\n" +
                                  procs_.tail(p.id));
  }
  if (master_ && phase_ != Phase::kDone && procs_.try_reap(*master_)) {
    inv_.violate(Inv::kMaster, "the master exited (wait status " +
                                   std::to_string(procs_.status(*master_)) + "); its last lines:\n" +
                                   procs_.tail(*master_));
    phase_ = Phase::kDone;
  }
}

// ------------------------------------------------------------------ faults

void Driver::note_fault(Fault f, int64_t now, const std::string& what) {
  log_line("harness", "fault " + what, false);
  ++report_.faults[static_cast<int>(f)];
  disturb(now);
  unresolved_.emplace_back(f, now);
  char t[32];
  std::snprintf(t, sizeof t, "%.3f s ", static_cast<double>(now - start_us_) / 1e6);
  if (since_step_.size() < 16) since_step_.push_back(t + what);
}

// What happened since the last step, for the report and violation messages.
std::string Driver::since_last_step() const {
  std::string s = "faults since: ";
  for (const auto& f : since_step_) s += f + "; ";
  return since_step_.empty() ? "no fault since" : s.substr(0, s.size() - 2);
}

// A disturbance restarts the progress clock, but only within one bound of the first
// disturbance since the last step: a hang is found within two bounds even if faults keep
// coming.
void Driver::disturb(int64_t now) {
  if (first_disturbance_us_ < 0) first_disturbance_us_ = now;
  if (now <= first_disturbance_us_ + bound_us_) last_fault_us_ = now;
}

template <typename Pred>
std::optional<int> Driver::pick(Pred pred) {
  std::vector<int> c;
  for (size_t i = 0; i < peers_.size(); ++i) {
    if (pred(peers_[i])) c.push_back(static_cast<int>(i));
  }
  if (c.empty()) return std::nullopt;
  return c[static_cast<size_t>(uniform(0, static_cast<int64_t>(c.size()) - 1))];
}

void Driver::inject(int64_t now) {
  const int64_t pt = opt_.peer_timeout_ms * 1000;
  auto running = [this](const PeerProc& p) { return !p.exited && !p.killed && !p.leaving; };
  std::optional<int> kill = pick([&](const PeerProc& p) { return running(p) && may_disable(p); });
  const bool impair = impaired() < opt_.max_impaired;
  std::optional<int> stop =
      pick([&](const PeerProc& p) { return impair && healthy(p) && may_disable(p); });
  std::optional<int> leave = pick([&](const PeerProc& p) {
    return healthy(p) && p.established && may_disable(p) && alive() > opt_.min_peers;
  });
  std::optional<int> throttle = pick([&](const PeerProc& p) {
    return net_ && running(p) && !slots_[p.slot].throttled;
  });
  const bool join = alive() < opt_.max_peers && !free_slots().empty();
  const bool cut = net_ && stop.has_value();
  // While more than half the peers are healthy, so that the ring has a quorum to resume with
  // (the impaired ones find the run gone on without them and join again).
  const bool master = opt_.master_restarts && master_ && master_restart_us_ < 0 &&
                      now >= master_settled_us_ && established_healthy() >= 2 &&
                      2 * established_healthy() > alive();

  struct Choice { int weight; int kind; };
  const Choice choices[] = {{kill ? 3 : 0, 0}, {stop ? 3 : 0, 1}, {join ? 3 : 0, 2},
                            {leave ? 2 : 0, 3}, {cut ? 3 : 0, 4},  {throttle ? 2 : 0, 5},
                            {master ? 2 : 0, 6}};
  int total = 0;
  for (const auto& c : choices) total += c.weight;
  if (total == 0) return;
  int r = static_cast<int>(uniform(0, total - 1));
  int kind = 0;
  for (const auto& c : choices) {
    if (r < c.weight) { kind = c.kind; break; }
    r -= c.weight;
  }
  switch (kind) {
    case 0: {
      PeerProc& p = peers_[static_cast<size_t>(*kill)];
      procs_.signal(p.id, SIGKILL);
      p.killed = true;
      note_fault(Fault::kKill, now, "kill " + p.label);
      break;
    }
    case 1: {
      PeerProc& p = peers_[static_cast<size_t>(*stop)];
      const int64_t d = uniform(pt / 5, pt * 5 / 2);
      procs_.signal(p.id, SIGSTOP);
      p.stopped = true;
      p.cont_at_us = now + d;
      note_fault(d >= pt ? Fault::kStopLong : Fault::kStopShort, now,
                 "stop " + p.label + " for " + std::to_string(d / 1000) + " ms");
      break;
    }
    case 2:
      note_fault(Fault::kJoin, now, "join " + spawn_peer("fault join"));
      break;
    case 3: {
      PeerProc& p = peers_[static_cast<size_t>(*leave)];
      procs_.send_line(p.id, "leave");
      p.leaving = true;
      p.leave_sent_us = now;
      p.leave_deadline_us = now + connect_timeout_ms_ * 1000 + bound_us_ + 10'000'000;
      note_fault(Fault::kLeave, now, "leave " + p.label);
      break;
    }
    case 4: {
      PeerProc& p = peers_[static_cast<size_t>(*stop)];
      const int64_t d = uniform(pt / 5, pt * 5 / 2);
      if (!net_->cut(p.slot)) {
        inv_.violate(Inv::kPeers, "cannot cut a link: " + net_->error());
        break;
      }
      slots_[p.slot].cut = true;
      slots_[p.slot].restore_at_us = now + d;
      note_fault(Fault::kCut, now, "cut " + p.label + " for " + std::to_string(d / 1000) + " ms");
      break;
    }
    case 5: {
      PeerProc& p = peers_[static_cast<size_t>(*throttle)];
      const int mbit = static_cast<int>(uniform(1, 5)) * 10;
      const int64_t d = uniform(2'000'000, 10'000'000);
      if (!net_->throttle(p.slot, mbit)) {
        inv_.violate(Inv::kPeers, "cannot throttle a link: " + net_->error());
        break;
      }
      slots_[p.slot].throttled = true;
      slots_[p.slot].unthrottle_at_us = now + d;
      note_fault(Fault::kThrottle, now, "throttle " + p.label + " to " + std::to_string(mbit) +
                                            " mbit for " + std::to_string(d / 1000) + " ms");
      break;
    }
    case 6: {
      const int64_t d = uniform(0, 500'000);
      procs_.kill_and_reap(*master_);
      procs_.release(*master_, [this](Procs::Id id, bool out, const std::string& l) {
        on_line(id, out, l);
      });
      master_.reset();
      master_restart_us_ = now + d;
      note_fault(Fault::kMasterRestart, now, "master kill, restart after " +
                                                 std::to_string(d / 1000) + " ms");
      break;
    }
  }
}

void Driver::timed_actions(int64_t now) {
  if (master_restart_us_ >= 0 && now >= master_restart_us_) {
    const std::string address = master_addr_;
    master_restart_us_ = -1;
    if (start_master(address)) {
      log_line("harness", "master restarted at " + master_addr_ + " pid " +
                              std::to_string(procs_.pid(*master_)), false);
      master_settled_us_ = now_us() + opt_.peer_timeout_ms * 1000 + 1'000'000;
      ++report_.master_restarts;
    } else {
      inv_.violate(Inv::kMaster, "cannot start the master again at " + address);
      master_addr_ = address;
    }
  }
  for (auto& p : peers_) {
    if (p.stopped && now >= p.cont_at_us) {
      procs_.signal(p.id, SIGCONT);
      p.stopped = false;
      log_line("harness", "cont " + p.label, false);
    }
    if (p.leaving && !p.exited && !p.killed && now >= p.leave_deadline_us) {
      inv_.violate(Inv::kPeers, p.label + " did not leave within " +
                                    std::to_string((now - p.leave_sent_us) / 1000) +
                                    " ms; its last lines:\n" + procs_.tail(p.id));
      procs_.signal(p.id, SIGKILL);
      p.killed = true;
    }
  }
  for (int s = 0; s < kMaxSlots; ++s) {
    Slot& sl = slots_[s];
    if (sl.cut && now >= sl.restore_at_us) {
      if (!net_->restore(s)) inv_.violate(Inv::kPeers, "cannot restore a link: " + net_->error());
      sl.cut = false;
      log_line("harness", "restore link of slot " + std::to_string(s), false);
    }
    if (sl.throttled && now >= sl.unthrottle_at_us) {
      if (!net_->unthrottle(s)) inv_.violate(Inv::kPeers, "cannot unthrottle a link: " + net_->error());
      sl.throttled = false;
      log_line("harness", "unthrottle slot " + std::to_string(s), false);
    }
  }
}

void Driver::restore_all(int64_t now) {
  if (master_restart_us_ >= 0) master_restart_us_ = std::min(master_restart_us_, now);
  for (auto& p : peers_) p.cont_at_us = std::min(p.cont_at_us, now);
  for (auto& sl : slots_) {
    sl.restore_at_us = std::min(sl.restore_at_us, now);
    sl.unthrottle_at_us = std::min(sl.unthrottle_at_us, now);
  }
  timed_actions(now);
}

// ------------------------------------------------------------------ invariants over time

void Driver::check_progress(int64_t now) {
  if (phase_ != Phase::kRun && phase_ != Phase::kQuiesce) return;
  if (last_step_us_ < 0) {
    if (now - start_us_ > 30'000'000 + bound_us_ && !stall_reported_) {
      inv_.violate(Inv::kProgress, "no step completed within " +
                                       std::to_string((now - start_us_) / 1000) + " ms of the start");
      stall_reported_ = true;
    }
    return;
  }
  const int64_t wait = now - std::max(last_step_us_, last_fault_us_);
  if (wait > report_.longest_wait_us) {  // a stall still going on (at the end, or a violation)
    report_.longest_wait_us = wait;
    char t[96];
    std::snprintf(t, sizeof t, "at %.3f s, the last step at %.3f s; ",
                  static_cast<double>(now - start_us_) / 1e6,
                  static_cast<double>(last_step_us_ - start_us_) / 1e6);
    report_.longest_wait_what = t + since_last_step();
  }
  report_.longest_gap_us = std::max(report_.longest_gap_us, now - last_step_us_);
  if (wait > bound_us_ && !stall_reported_) {
    inv_.violate(Inv::kProgress, "no step for " + std::to_string(wait / 1000) +
                                     " ms after the last step or fault (bound " +
                                     std::to_string(bound_us_ / 1000) + " ms); last step " +
                                     std::to_string(checker_.max_step()) + "; " + since_last_step());
    stall_reported_ = true;
  }
}

void Driver::sample_rss(int64_t now) {
  if (!master_ || now < next_rss_us_) return;
  next_rss_us_ = now + 1'000'000;
  const int64_t kib = rss_kib(procs_.pid(*master_));
  if (kib < 0) return;
  if (report_.rss_start_kib < 0) {
    if (last_step_us_ < 0) return;  // the baseline is taken once the run is going
    report_.rss_start_kib = kib;
    report_.rss_limit_kib = opt_.rss_limit_mib > 0 ? opt_.rss_limit_mib * 1024 : kib + 64 * 1024;
  }
  inv_.check(Inv::kMaster);
  if (++rss_samples_ % 10 == 0) log_line("harness", "master VmRSS " + std::to_string(kib) + " KiB", false);
  report_.rss_end_kib = kib;
  report_.rss_max_kib = std::max(report_.rss_max_kib, kib);
  inv_.check(Inv::kMemory);
  if (kib > report_.rss_limit_kib && !report_.rss_violated) {
    report_.rss_violated = true;
    inv_.violate(Inv::kMemory, "master VmRSS " + std::to_string(kib) + " KiB above the bound of " +
                                   std::to_string(report_.rss_limit_kib) + " KiB");
  }
}

void Driver::shutdown(int64_t now) {
  bool all_gone = true;
  for (auto& p : peers_) {
    if (!p.exited) all_gone = false;
  }
  if (!all_gone && now < shutdown_deadline_us_) return;
  for (auto& p : peers_) {
    if (p.exited) continue;
    inv_.violate(Inv::kPeers, p.label + " did not leave at the end; its last lines:\n" +
                                  procs_.tail(p.id));
    procs_.kill_and_reap(p.id);
    p.killed = p.exited = true;
  }
  // The master: SIGTERM, and it must exit 0 within 10 s.
  phase_ = Phase::kDone;
  inv_.check(Inv::kMaster);
  procs_.signal(*master_, SIGTERM);
  const int64_t deadline = now_us() + 10'000'000;
  while (!procs_.try_reap(*master_) && now_us() < deadline) {
    procs_.poll_once(50, [this](Procs::Id id, bool out, const std::string& l) { on_line(id, out, l); });
  }
  if (!procs_.try_reap(*master_)) {
    inv_.violate(Inv::kMaster, "the master did not exit within 10 s of SIGTERM");
    procs_.kill_and_reap(*master_);
  } else if (int st = procs_.status(*master_); !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
    inv_.violate(Inv::kMaster, "the master ended with wait status " + std::to_string(st) +
                                   " after SIGTERM");
  }
}

int Driver::run() {
  start_us_ = now_us();
  if (!opt_.log_dir.empty()) {
    ::mkdir(opt_.log_dir.c_str(), 0755);
    log_.reset(std::fopen((opt_.log_dir + "/chaos.log").c_str(), "w"));
    if (!log_) usage("cannot write " + opt_.log_dir + "/chaos.log");
  }
  std::printf("qccl chaos: %s\n", report_.opt_line.c_str());
  if (opt_.netns) {
    net_skip_reason_ = test::NetnsLab::unavailable_reason();
    if (net_skip_reason_.empty()) {
      net_ = std::make_unique<NetFaults>();
      if (!net_->build(kMaxSlots)) {
        std::printf("cannot build the network namespaces: %s\n", net_->error().c_str());
        return 1;
      }
    }
  } else {
    net_skip_reason_ = "--no-netns";
  }
  report_.net_line = net_ ? "on (every peer slot in its own network namespace)"
                          : "skipped (" + net_skip_reason_ + ")";
  std::printf("network faults: %s\n", report_.net_line.c_str());
  if (opt_.secret && !write_secret()) return 1;
  if (!start_master((net_ ? net_->master_ip() : "127.0.0.1") + ":0")) return 1;
  std::printf("master pid %d at %s\n", report_.master_pid, master_addr_.c_str());
  std::fflush(stdout);

  start_us_ = now_us();
  end_us_ = start_us_ + opt_.duration_s * 1'000'000;
  const int initial = std::min(opt_.max_peers, opt_.min_peers + static_cast<int>(uniform(0, 2)));
  for (int i = 0; i < initial; ++i) spawn_peer("initial");
  std::exponential_distribution<double> gap(1.0 / static_cast<double>(opt_.fault_interval_ms));
  // The first fault after the first steps had a chance to happen.
  next_fault_us_ = start_us_ + 3'000'000 + static_cast<int64_t>(gap(rng_) * 1000);
  const int64_t status_every = opt_.duration_s <= 300 ? 10'000'000 : 60'000'000;
  next_status_us_ = start_us_ + status_every;

  while (phase_ != Phase::kDone) {
    if (g_interrupted != 0) {
      std::printf("interrupted: stopping every process\n");
      inv_.violate(Inv::kPeers, "the run was interrupted");
      break;
    }
    procs_.poll_once(20, [this](Procs::Id id, bool out, const std::string& l) { on_line(id, out, l); });
    reap();
    if (phase_ == Phase::kDone) break;
    const int64_t now = now_us();
    timed_actions(now);
    check_progress(now);
    sample_rss(now);
    if (now >= next_status_us_) {
      status_line();
      next_status_us_ += status_every;
    }
    switch (phase_) {
      case Phase::kRun:
        while (alive() < opt_.min_peers && !free_slots().empty()) {
          spawn_peer("replacement");
          ++report_.replacements;
        }
        if (now >= next_fault_us_ && now < end_us_) {
          inject(now);
          next_fault_us_ = now + static_cast<int64_t>(gap(rng_) * 1000);
        }
        if (now >= end_us_) {
          // End every impairment; the group must make progress again.
          restore_all(now);
          disturb(now);
          quiesce_start_us_ = now;
          steps_at_quiesce_ = checker_.steps();
          phase_ = Phase::kQuiesce;
          log_line("harness", "quiesce: every impairment ended", false);
        }
        break;
      case Phase::kQuiesce:
        if (checker_.steps() >= steps_at_quiesce_ + 3 || now - quiesce_start_us_ > 2 * bound_us_) {
          shutdown_deadline_us_ = now + connect_timeout_ms_ * 1000 + bound_us_ + 10'000'000;
          for (auto& p : peers_) {
            if (p.exited) continue;
            if (!p.leaving) {
              p.leave_sent_us = now;
              p.leave_deadline_us = shutdown_deadline_us_;
            }
            p.leaving = true;
            procs_.close_stdin(p.id);  // EOF: leave gracefully
          }
          phase_ = Phase::kShutdown;
          log_line("harness", "shutdown: every peer's stdin closed", false);
        }
        break;
      case Phase::kShutdown:
        shutdown(now);
        break;
      case Phase::kDone:
        break;
    }
  }
  procs_.kill_all();
  report_.duration_s = static_cast<double>(now_us() - start_us_) / 1e6;
  report_.steps = checker_.steps();
  report_.solo_steps = checker_.solo_steps();
  report_.step_lines = checker_.lines();
  report_.max_step = checker_.max_step();
  report_.empties = checker_.empties();
  report_.peers_started = static_cast<int>(peers_.size());
  report_.bound_us = bound_us_;
  report_.unresolved = unresolved_.size();
  const std::string text = report_.render(inv_);
  std::fputs(text.c_str(), stdout);
  if (!opt_.log_dir.empty()) {
    if (std::FILE* f = std::fopen((opt_.log_dir + "/report.txt").c_str(), "w")) {
      std::fputs(text.c_str(), f);
      std::fclose(f);
    }
  }
  return inv_.total_violations() == 0 ? 0 : 1;
}

}  // namespace
}  // namespace qccl::chaos

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  qccl::chaos::Options opt = qccl::chaos::parse(argc, argv);
  // Last resort: every wait has its own deadline, so this only fires on a harness bug. The
  // children die with us (PR_SET_PDEATHSIG).
  ::alarm(static_cast<unsigned>(opt.duration_s + 600));
  std::signal(SIGINT, qccl::chaos::on_interrupt);
  std::signal(SIGTERM, qccl::chaos::on_interrupt);
  qccl::chaos::Driver driver(std::move(opt));
  return driver.run();
}
