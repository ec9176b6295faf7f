// Watchdog for test binaries: if the process is still running after `seconds`, print which
// test hung and end it (SIGALRM's default action). Belt and braces with ctest's TIMEOUT, so a
// hang is reported by the binary itself, with its name. Tests only: the library never does this.
#pragma once

#include <csignal>
#include <cstdio>
#include <unistd.h>

namespace qccl::test {

inline void arm_watchdog(unsigned seconds) {
  std::signal(SIGALRM, SIG_DFL);
  alarm(seconds);
}

// Arms the watchdog at static-initialisation time of the test binary.
struct WatchdogArmer {
  explicit WatchdogArmer(unsigned seconds) { arm_watchdog(seconds); }
};

}  // namespace qccl::test

// Put once in a test .cpp: QCCL_TEST_WATCHDOG(60);
#define QCCL_TEST_WATCHDOG(seconds) \
  static ::qccl::test::WatchdogArmer qccl_watchdog_armer_instance_(seconds)
