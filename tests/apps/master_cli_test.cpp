// The qccl-master command-line contract (README.md, "The master"), tested on the built
// binary: --help exits 0 with usage, a bad flag (or a heartbeat not shorter than the peer
// timeout) exits 2, a port in use exits 1 with a clear message,
// and a started master prints its bound port, then exits 0 on SIGTERM and on SIGINT.
//
// The binary runs as a child (support/proc.hpp) with stdout and stderr on pipes. Every wait is
// a poll() with a deadline on the pipes, never a sleep; every child is SIGKILLed and reaped by
// its pid when its MasterProcess goes out of scope.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>

#include "support/proc.hpp"
#include "support/watchdog.hpp"

QCCL_TEST_WATCHDOG(100);

namespace {

using Clock = std::chrono::steady_clock;

// Generous: sanitizer builds on a loaded 2-core machine start slowly.
constexpr auto kTimeout = std::chrono::seconds(20);

bool contains_ci(std::string_view haystack, std::string_view needle) {
  auto it = std::search(haystack.begin(), haystack.end(), needle.begin(), needle.end(),
                        [](char a, char b) { return std::tolower(a) == std::tolower(b); });
  return it != haystack.end();
}

// One run of the qccl-master binary, a child of support/proc.hpp's Procs: stdin closed at once,
// stdout and stderr collected; SIGKILLed and reaped by its pid when the MasterProcess goes.
class MasterProcess {
 public:
  explicit MasterProcess(const std::vector<std::string>& args) {
    std::vector<std::string> argv{QCCL_MASTER_BIN};
    argv.insert(argv.end(), args.begin(), args.end());
    auto id = procs_.spawn("qccl-master", argv);
    if (!id) {
      ADD_FAILURE() << "cannot start qccl-master: " << procs_.error();
      return;
    }
    id_ = *id;
    procs_.close_stdin(*id_);  // it reads nothing: EOF at once
  }

  MasterProcess(const MasterProcess&) = delete;
  MasterProcess& operator=(const MasterProcess&) = delete;

  pid_t pid() const { return id_ ? procs_.pid(*id_) : -1; }
  const std::string& out() const { return out_; }
  const std::string& err() const { return err_; }

  // Waits for a stdout line that starts with `prefix`; returns it without the newline, or
  // nullopt if the process ended or the deadline passed first.
  std::optional<std::string> wait_for_line(std::string_view prefix) {
    std::optional<std::string> found;
    auto find = [&] {
      size_t start = 0;
      for (size_t nl; (nl = out_.find('\n', start)) != std::string::npos; start = nl + 1) {
        std::string_view line(out_.data() + start, nl - start);
        if (line.substr(0, prefix.size()) == prefix) {
          found = std::string(line);
          return true;
        }
      }
      return procs_.finished(*id_);
    };
    pump_until(Clock::now() + kTimeout, find);
    return found;
  }

  // Waits for the process to exit and for both pipes to reach EOF; returns its exit code, or
  // -1 if it was killed by a signal, or nullopt if the deadline passed first.
  std::optional<int> wait_exit() {
    if (!pump_until(Clock::now() + kTimeout, [&] { return procs_.finished(*id_); })) {
      return std::nullopt;
    }
    const int status = procs_.status(*id_);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }

  std::string describe() const { return "stdout:\n" + out_ + "\nstderr:\n" + err_; }

 private:
  // Collects output and notices the exit until `done()` holds or the deadline passes (then
  // returns false). Each wait is a poll() on the pipes, at most 10 ms once they are closed.
  bool pump_until(Clock::time_point deadline, const std::function<bool()>& done) {
    if (!id_) return false;
    for (;;) {
      procs_.try_reap(*id_);
      if (done()) return true;
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() <= 0) return false;
      const int timeout = static_cast<int>(
          procs_.any_output_open() ? left.count() : std::min<int64_t>(left.count(), 10));
      procs_.poll_once(timeout, [this](qccl::test::Procs::Id, bool is_out, const std::string& l) {
        (is_out ? out_ : err_) += l + "\n";
      });
    }
  }

  qccl::test::Procs procs_;
  std::optional<qccl::test::Procs::Id> id_;
  std::string out_;
  std::string err_;
};

// A TCP socket bound to 127.0.0.1 on a port the kernel picked, listening; closed on scope exit.
class BusyPort {
 public:
  BusyPort() {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    socklen_t len = sizeof addr;
    if (fd_ < 0 || bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        listen(fd_, 4) != 0 || getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      ADD_FAILURE() << "cannot bind a loopback socket: " << std::strerror(errno);
      return;
    }
    port_ = ntohs(addr.sin_port);
  }
  ~BusyPort() {
    if (fd_ >= 0) close(fd_);
  }
  BusyPort(const BusyPort&) = delete;
  BusyPort& operator=(const BusyPort&) = delete;
  uint16_t port() const { return port_; }

 private:
  int fd_ = -1;
  uint16_t port_ = 0;
};

// True if a TCP connection to 127.0.0.1:port is accepted by the kernel.
bool can_connect(uint16_t port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  bool ok = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  close(fd);
  return ok;
}

TEST(MasterCli, HelpPrintsUsageAndExitsZero) {
  MasterProcess p({"--help"});
  EXPECT_EQ(p.wait_exit(), 0) << p.describe();
  for (const char* flag : {"Usage", "--listen", "--log-level", "--heartbeat-ms",
                           "--peer-timeout-ms", "--vote-timeout-ms", "--probe-ms",
                           "--probe-max-age-s", "--auth-token-file"}) {
    EXPECT_NE(p.out().find(flag), std::string::npos) << flag << " missing in\n" << p.describe();
  }
}

TEST(MasterCli, VersionExitsZero) {
  MasterProcess p({"--version"});
  EXPECT_EQ(p.wait_exit(), 0) << p.describe();
  EXPECT_NE(p.out().find("qccl-master"), std::string::npos) << p.describe();
}

TEST(MasterCli, UnknownFlagExitsTwo) {
  MasterProcess p({"--bogus"});
  EXPECT_EQ(p.wait_exit(), 2) << p.describe();
  EXPECT_NE(p.err().find("--bogus"), std::string::npos) << p.describe();
}

TEST(MasterCli, BadValuesExitTwo) {
  const std::vector<std::vector<std::string>> cases = {
      {"--listen", "no-port-here"},  {"--listen", "127.0.0.1:99999"},
      {"--log-level", "loud"},       {"--heartbeat-ms", "0"},
      {"--peer-timeout-ms", "soon"}, {"--auth-token-file", "/nonexistent-qccl-dir/token"},
      {"--probe-ms", "0"},           {"--probe-ms", "60001"},
      {"--probe-max-age-s", "0"},
      {"unexpected-positional"},
  };
  for (const auto& args : cases) {
    MasterProcess p(args);
    EXPECT_EQ(p.wait_exit(), 2) << args[0] << "\n" << p.describe();
    EXPECT_FALSE(p.err().empty()) << args[0];
  }
}

// qcclMasterCreate refuses heartbeat_interval_ms >= peer_timeout_ms; so does the binary, on
// the effective values: a flag against the other's default counts too.
TEST(MasterCli, HeartbeatNotShorterThanPeerTimeoutExitsTwo) {
  const std::vector<std::vector<std::string>> cases = {
      {"--heartbeat-ms", "500", "--peer-timeout-ms", "500"},
      {"--heartbeat-ms", "700", "--peer-timeout-ms", "600"},
      {"--heartbeat-ms", "10000"},     // the default peer timeout is 10000
      {"--heartbeat-ms", "20000"},
      {"--peer-timeout-ms", "1000"},   // the default heartbeat is 1000
      {"--peer-timeout-ms", "999"},
  };
  for (const auto& args : cases) {
    std::vector<std::string> full = {"--listen", "127.0.0.1:0"};
    full.insert(full.end(), args.begin(), args.end());
    MasterProcess p(full);
    EXPECT_EQ(p.wait_exit(), 2) << args[0] << " " << args[1] << "\n" << p.describe();
    EXPECT_NE(p.err().find("--heartbeat-ms"), std::string::npos) << p.describe();
    EXPECT_NE(p.err().find("must be shorter than --peer-timeout-ms"), std::string::npos)
        << p.describe();
    EXPECT_EQ(p.out().find("listening on"), std::string::npos) << p.describe();
  }
}

void run_until_signal(int sig, std::vector<std::string> extra_args = {});

// The limit itself: one millisecond shorter is accepted, with and without the defaults.
TEST(MasterCli, HeartbeatJustShorterThanPeerTimeoutRuns) {
  run_until_signal(SIGTERM, {"--heartbeat-ms", "499", "--peer-timeout-ms", "500"});
  run_until_signal(SIGTERM, {"--heartbeat-ms", "9999"});
  run_until_signal(SIGTERM, {"--peer-timeout-ms", "1001"});
}

TEST(MasterCli, PortInUseExitsOneWithClearMessage) {
  BusyPort busy;
  ASSERT_NE(busy.port(), 0);
  const std::string address = "127.0.0.1:" + std::to_string(busy.port());
  MasterProcess p({"--listen", address});
  EXPECT_EQ(p.wait_exit(), 1) << p.describe();
  EXPECT_TRUE(contains_ci(p.err(), "in use")) << p.describe();
  EXPECT_NE(p.err().find(address), std::string::npos) << p.describe();
  EXPECT_EQ(p.out().find("listening on"), std::string::npos) << p.describe();
}

// Starts a master on an ephemeral port, checks the printed port accepts connections, sends
// `sig` and expects exit code 0.
void run_until_signal(int sig, std::vector<std::string> extra_args) {
  std::vector<std::string> args = {"--listen", "127.0.0.1:0", "--log-level", "warn"};
  args.insert(args.end(), extra_args.begin(), extra_args.end());
  MasterProcess p(args);
  const std::string prefix = "qccl-master listening on 127.0.0.1:";
  std::optional<std::string> line = p.wait_for_line(prefix);
  ASSERT_TRUE(line.has_value()) << p.describe();
  const int port = std::atoi(line->c_str() + prefix.size());
  ASSERT_GT(port, 0) << *line;
  ASSERT_LT(port, 65536) << *line;
  EXPECT_TRUE(can_connect(static_cast<uint16_t>(port))) << *line;

  ASSERT_EQ(kill(p.pid(), sig), 0);
  EXPECT_EQ(p.wait_exit(), 0) << p.describe();
}

TEST(MasterCli, StopsCleanlyOnSigterm) { run_until_signal(SIGTERM); }

TEST(MasterCli, StopsCleanlyOnSigint) { run_until_signal(SIGINT); }

TEST(MasterCli, ReadsAuthTokenFile) {
  char path[] = "/tmp/qccl_master_cli_token_XXXXXX";
  const int fd = mkstemp(path);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  static const char kToken[] = "s3cret\n";
  ASSERT_EQ(write(fd, kToken, sizeof kToken - 1), static_cast<ssize_t>(sizeof kToken - 1));
  close(fd);
  run_until_signal(SIGTERM, {"--auth-token-file", path});
  unlink(path);
}

TEST(MasterCli, EmptyAuthTokenFileExitsTwo) {
  char path[] = "/tmp/qccl_master_cli_token_XXXXXX";
  const int fd = mkstemp(path);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  close(fd);
  MasterProcess p({"--auth-token-file", path});
  EXPECT_EQ(p.wait_exit(), 2) << p.describe();
  unlink(path);
}

}  // namespace
