// An emulated WAN for a test (tests/netsim/netsim.sh, docs/netsim.md): `netsim.sh up` in the
// constructor's up(), `netsim.sh down` in the destructor, so the forwarder (by its pid file)
// and the namespaces go whatever the test did. The prefix is "qn<pid><tag>", so concurrent
// tests and runs never share namespaces; the subnet 10.77.S (S from the pid) only makes logs
// easier to read (each lab's forwarder sees only its own namespaces).
//
// QCCL_NETSIM_SCRIPT and QCCL_NETSIM_BIN are set by CMake. Every command runs with a
// deadline (tests/support/run_command.hpp). Processes still inside a namespace keep
// it alive: declare the lab before anything that starts processes in it (a ProcCluster), so
// that those die first.
//
// Thread-safety: none; use from the test's thread.
#pragma once

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "support/netns.hpp"

namespace qccl::test {

class NetsimLab {
 public:
  static constexpr std::chrono::milliseconds kTimeout{30000};

  // Why the lab cannot run here; "" if it can.
  static std::string unavailable_reason() {
    if (std::string why = NetnsLab::unavailable_reason(); !why.empty()) return why;
    if (::access("/dev/net/tun", R_OK | W_OK) != 0) return "no /dev/net/tun (TUN support)";
    if (::access("/bin/bash", X_OK) != 0) return "no /bin/bash";
    return "";
  }

  explicit NetsimLab(const std::string& tag)
      : prefix_("qn" + std::to_string(::getpid()) + tag),
        subnet_("10.77." + std::to_string(1 + ::getpid() % 250)) {}
  ~NetsimLab() {
    if (!up_) return;
    std::string out;
    std::string err = script({"down"}, &out);
    if (!err.empty())
      std::fprintf(stderr, "NetsimLab: %s\n", err.c_str());
    else if (!out.empty())
      std::fprintf(stderr, "NetsimLab %s down: %s", prefix_.c_str(), out.c_str());
  }
  NetsimLab(const NetsimLab&) = delete;
  NetsimLab& operator=(const NetsimLab&) = delete;

  // netsim.sh up with `peers` peers and `knobs` (e.g. {"--delay-ms", "20"}); "" or the error.
  std::string up(int peers, const std::vector<std::string>& knobs) {
    std::vector<std::string> args{"up",    "--peers", std::to_string(peers), "--subnet",
                                  subnet_, "--bin",   QCCL_NETSIM_BIN};
    args.insert(args.end(), knobs.begin(), knobs.end());
    up_ = true;  // a half-done up is cleaned up by down too
    return script(args, nullptr);
  }
  // netsim.sh set; "" or the error.
  std::string set(const std::vector<std::string>& knobs) {
    std::vector<std::string> args{"set"};
    args.insert(args.end(), knobs.begin(), knobs.end());
    return script(args, nullptr);
  }
  // Runs netsim.sh CMD --prefix <this lab's> ARGS...; "" on exit status 0.
  std::string script(std::vector<std::string> args, std::string* out) const {
    args.insert(args.begin() + 1, {"--prefix", prefix_});
    args.insert(args.begin(), {"/bin/bash", QCCL_NETSIM_SCRIPT});
    return run_command(args, kTimeout, out);
  }

  const std::string& prefix() const { return prefix_; }
  std::string master_ns() const { return prefix_ + "-master"; }
  std::string master_ip() const { return subnet_ + ".1"; }
  // Peer i, from 1.
  std::string peer_ns(int i) const { return prefix_ + "-p" + std::to_string(i); }
  std::string peer_ip(int i) const { return subnet_ + "." + std::to_string(10 + i); }
  std::vector<std::string> exec_prefix(const std::string& ns) const {
    return {ip_binary(), "netns", "exec", ns};
  }

 private:
  std::string prefix_;
  std::string subnet_;
  bool up_ = false;
};

}  // namespace qccl::test
