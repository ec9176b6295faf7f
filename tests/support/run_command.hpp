// Commands that the network-namespace labs run: finding a system binary, and running one with
// a deadline (SIGKILLed by pid past it) and its output captured.
//
// Thread-safety: the functions keep no state; run_command may be called from any thread.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <string>
#include <vector>

namespace qccl::test {

// The first executable among `candidates`, or "" if none.
inline std::string find_executable(std::initializer_list<const char*> candidates) {
  for (const char* p : candidates) {
    if (::access(p, X_OK) == 0) return p;
  }
  return "";
}
inline std::string ip_binary() {
  return find_executable({"/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"});
}
inline std::string tc_binary() {
  return find_executable({"/usr/sbin/tc", "/sbin/tc", "/usr/bin/tc", "/bin/tc"});
}

// Runs argv (argv[0] an absolute path) with stdout and stderr captured into `output`, and
// SIGKILLs it (by pid) if it is still running after `timeout`. Returns an empty string on exit
// status 0, else what went wrong (with the command line and its output).
inline std::string run_command(const std::vector<std::string>& argv,
                               std::chrono::milliseconds timeout, std::string* output = nullptr) {
  std::string cmdline;
  for (const auto& a : argv) cmdline += (cmdline.empty() ? "" : " ") + a;
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  int out[2];
  if (::pipe2(out, O_CLOEXEC) != 0) return cmdline + ": pipe: " + std::strerror(errno);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(out[0]);
    ::close(out[1]);
    return cmdline + ": fork: " + std::strerror(errno);
  }
  if (pid == 0) {  // async-signal-safe calls only: the test process may have threads
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    ::dup2(out[1], 1);
    ::dup2(out[1], 2);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  ::close(out[1]);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string text;
  bool timed_out = false;
  for (;;) {  // read until EOF (the command exited or closed its output) or the deadline
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    pollfd p{out[0], POLLIN, 0};
    int n = ::poll(&p, 1, static_cast<int>(std::min<int64_t>(left.count(), 1000)));
    if (n < 0 && errno != EINTR) break;
    if (n <= 0) continue;
    char buf[4096];
    ssize_t r = ::read(out[0], buf, sizeof buf);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    text.append(buf, static_cast<size_t>(r));
  }
  ::close(out[0]);
  if (timed_out) ::kill(pid, SIGKILL);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (output != nullptr) *output = text;
  if (timed_out) {
    return cmdline + ": still running after " + std::to_string(timeout.count()) +
           " ms (killed); output: " + text;
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return "";
  std::string how = WIFEXITED(status) ? "exit status " + std::to_string(WEXITSTATUS(status))
                                      : "signal " + std::to_string(WTERMSIG(status));
  if (WIFEXITED(status) && WEXITSTATUS(status) == 127) how += " (could not exec?)";
  return cmdline + ": " + how + "; output: " + text;
}

}  // namespace qccl::test
