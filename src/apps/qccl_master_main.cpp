// qccl-master: the standalone master process (README.md, "The master").
//
// Parses the command line, starts a MasterServer, prints one line
// "qccl-master listening on HOST:PORT" (the port actually bound) to stdout and runs until
// SIGINT or SIGTERM. Exit codes:
//   0  stopped by SIGINT/SIGTERM (or --help / --version)
//   1  the server could not start (e.g. the port is in use) or ended on its own
//   2  bad command line: unknown flag, malformed value, unreadable or empty token file,
//      --heartbeat-ms not shorter than --peer-timeout-ms (the effective values)
//
// Signals: SIGINT and SIGTERM are blocked in every thread before the server starts its own
// thread (threads inherit the mask), and main() collects them synchronously with sigwait().
// So no handler ever runs on an arbitrary thread, and stop() is called from ordinary code.
// A watcher thread owns server.wait(); if the server ends without being asked to, it wakes
// main() with SIGUSR1 so that the process does not linger without a server.
#include <pthread.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>

#include "common/address.hpp"
#include "common/logging.hpp"
#include "common/secret_file.hpp"
#include "common/status.hpp"
#include "master/master_server.hpp"

namespace {

constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;

// The default control port. Any port works; peers only need to be told which one.
constexpr const char* kDefaultListen = "0.0.0.0:48148";

// Upper bound of the millisecond flags: about 24 days, far beyond any sane timeout.
constexpr uint32_t kMaxMs = 1u << 31;

const char* signal_name(int sig) {
  switch (sig) {
    case SIGINT:
      return "SIGINT";
    case SIGTERM:
      return "SIGTERM";
    default:
      return "signal";
  }
}

}  // namespace

int main(int argc, char** argv) {
  qccl::master::MasterOptions options;
  options.listen_address = kDefaultListen;
  std::string log_level = "info";
  std::string token_file;

  CLI::App app{
      "qccl-master: the coordinator of a qccl run. Peers register with it, it admits\n"
      "them, builds their rings and expels peers that fail. Runs until SIGINT/SIGTERM.",
      "qccl-master"};
  app.set_version_flag("--version", "qccl-master " QCCL_MASTER_VERSION);
  app.add_option("--listen", options.listen_address,
                 "Address to listen on, HOST:PORT or [IPv6]:PORT; port 0 picks a free port")
      ->type_name("HOST:PORT")
      ->capture_default_str()
      ->check([](const std::string& text) {
        auto parsed = qccl::parse_host_port(text);
        return parsed.is_ok() ? std::string() : parsed.status().message();
      });
  CLI::Option* level_opt =
      app.add_option("--log-level", log_level, "Log level (default info, or $QCCL_LOG_LEVEL)")
          ->type_name("LEVEL")
          ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}));
  app.add_option("--heartbeat-ms", options.heartbeat_interval_ms,
                 "Interval at which peers send heartbeats, in milliseconds")
      ->type_name("N")
      ->capture_default_str()
      ->check(CLI::Range(1u, kMaxMs));
  app.add_option("--peer-timeout-ms", options.peer_timeout_ms,
                 "A peer silent for this long is expelled, in milliseconds")
      ->type_name("N")
      ->capture_default_str()
      ->check(CLI::Range(1u, kMaxMs));
  app.add_option("--vote-timeout-ms", options.vote_timeout_ms,
                 "A peer that does not join a vote or collective within this time is expelled "
                 "as a straggler, in milliseconds")
      ->type_name("N")
      ->capture_default_str()
      ->check(CLI::Range(1u, kMaxMs));
  app.add_option("--probe-ms", options.probe_ms,
                 "qcclOptimizeTopology: measured transfer per probed link, in milliseconds")
      ->type_name("N")
      ->capture_default_str()
      ->check(CLI::Range(1u, qccl::master::kMaxProbeMs));
  uint32_t probe_max_age_s = options.probe_max_age_ms / 1000;
  app.add_option("--probe-max-age-s", probe_max_age_s,
                 "qcclOptimizeTopology: link measurements older than this are probed again, "
                 "in seconds")
      ->type_name("N")
      ->capture_default_str()
      ->check(CLI::Range(1u, kMaxMs / 1000));
  app.add_option("--auth-token-file", token_file,
                 "File holding the shared secret peers must present (one trailing newline is "
                 "ignored); default: no authentication")
      ->type_name("FILE");
  bool no_encryption = false;
  app.add_flag("--no-encryption", no_encryption,
               "With --auth-token-file: authenticate connections only, do not encrypt them "
               "(every peer must say so too: QCCL_ENCRYPTION=off; docs/security.md)");
  app.add_flag("--standby", options.standby,
               "Start no run: take over the run of peers that lost their master and list this "
               "one after it (docs/reliability.md)");
  app.add_option("--resume-grace-ms", options.resume_grace_ms,
                 "Start no new run for this long after starting, so that the peers of a run "
                 "whose master this one replaces resume it first (docs/reliability.md)")
      ->type_name("N")
      ->capture_default_str()
      ->check(CLI::Range(0u, kMaxMs));

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version "fail" with exit code 0; every real parse error exits 2, whatever
    // CLI11's own code for that kind of error is.
    const int cli_code = app.exit(e);
    return cli_code == 0 ? kExitOk : kExitUsage;
  }

  options.probe_max_age_ms = probe_max_age_s * 1000;
  const char* env_encryption = std::getenv("QCCL_ENCRYPTION");
  options.encrypt = !no_encryption && !(env_encryption && std::string(env_encryption) == "off");
  // As qcclMasterCreate refuses it: the effective values, defaults included, so that
  // --peer-timeout-ms 500 alone (heartbeat 1000 by default) is refused too.
  if (options.heartbeat_interval_ms >= options.peer_timeout_ms) {
    const qccl::master::MasterOptions defaults;
    std::cerr << "qccl-master: --heartbeat-ms (" << options.heartbeat_interval_ms
              << ") must be shorter than --peer-timeout-ms (" << options.peer_timeout_ms
              << "); the defaults are " << defaults.heartbeat_interval_ms << " and "
              << defaults.peer_timeout_ms << "\n";
    return kExitUsage;
  }
  if (!token_file.empty()) {
    auto token = qccl::read_secret_file(token_file);
    if (!token.is_ok()) {
      std::cerr << "qccl-master: --auth-token-file: " << token.status().message() << "\n";
      return kExitUsage;
    }
    options.auth_token = std::move(token).value();
  }
  // An explicit flag wins; without one, $QCCL_LOG_LEVEL (read by the logging module) wins
  // over the default.
  if (level_opt->count() > 0 || std::getenv("QCCL_LOG_LEVEL") == nullptr) {
    qccl::log::set_level(log_level);
  }

  // Before any thread exists: every thread created from here on inherits this mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  // A peer that vanishes mid-write must never kill the master.
  std::signal(SIGPIPE, SIG_IGN);

  const std::string listen = options.listen_address;
  qccl::master::MasterServer server(std::move(options));
  if (qccl::Status started = server.start(); !started.is_ok()) {
    std::cerr << "qccl-master: cannot listen on " << listen << ": " << started.message()
              << std::endl;
    return kExitFailure;
  }

  qccl::HostPort bound = qccl::parse_host_port(listen).value();  // validated by the parser
  bound.port = server.port();
  std::cout << "qccl-master listening on " << qccl::format_host_port(bound) << std::endl;
  // MasterServer logs its own "listening on" line with its settings.
  auto logger = qccl::log::get("master");

  std::atomic<bool> server_ended{false};
  const pthread_t main_thread = pthread_self();
  std::thread watcher([&] {
    server.wait();
    server_ended.store(true);
    pthread_kill(main_thread, SIGUSR1);
  });

  int exit_code = kExitOk;
  for (;;) {
    int sig = 0;
    if (sigwait(&signals, &sig) != 0) continue;
    if (sig == SIGUSR1) {
      if (!server_ended.load()) continue;  // a stray SIGUSR1 from outside: ignore it
      logger->error("the server stopped without being asked to");
      exit_code = kExitFailure;
      break;
    }
    logger->info("received {}: stopping", signal_name(sig));
    break;
  }
  server.stop();
  watcher.join();
  logger->info("stopped");
  return exit_code;
}
