// Network-namespace lab for end-to-end tests (tests/netns/): real TCP between hosts whose links
// have different bandwidths, on one machine. The topology is the one of
// benchmarks/netns_lib.sh:
//
//   <prefix>hub   a bridge br0; one veth per namespace below is a port of it (h-<name>)
//   <prefix>m     the master's host: eth0 = 10.79.S.1/24 (the test process's own master listens
//                 here, see ScopedNetns)
//   <prefix>h<i>  host i: eth0 = 10.79.S.(10+i)/24, lo up; peers run here under
//                 `ip netns exec` (exec_prefix())
//
// with <prefix> = "qt<pid>-" and S = 1 + pid % 250 (each lab's bridge is in its own hub
// namespace, so labs never see each other; S only makes addresses easy to tell apart in logs).
// Nothing is added to the root namespace; all traffic stays inside these namespaces.
//
// shape(from, to, rate) limits one DIRECTED pair: tbf would limit a whole interface, so host
// `from`'s eth0 egress gets an htb root (default class 1:1 at 10 gbit: unshaped, e.g. the
// master's traffic) and, per shaped destination, a class at `rate` with a u32 filter on the
// destination address and a pfifo of 100 packets (about 60 ms at 20 mbit instead of the
// 1000-packet default). The reverse direction (and thus the ACKs) follows its own class.
//
// Requirements: root, `ip` and `tc` (iproute2) and kernel htb/u32/veth/bridge support.
// unavailable_reason() says what is missing, for GTEST_SKIP.
//
// Every command runs with a deadline (kCommandTimeout) and is SIGKILLed by pid past it; a
// failed command leaves its command line, exit status and output in error(). The destructor
// deletes exactly the namespaces this lab created, by name (deleting the hub removes every
// veth). Processes still inside a namespace keep it alive until they exit, so end them first:
// declare the lab before the ProcCluster, which is then destroyed (killing its children) first.
//
// Thread-safety: none; use from the test's thread.
#pragma once

#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "support/namespace_lab.hpp"
#include "support/run_command.hpp"

namespace qccl::test {

// Switches the calling thread into network namespace `ns` (a name under /run/netns) for the
// object's lifetime. Threads the calling thread creates meanwhile stay in `ns` for good, and
// sockets it opens meanwhile belong to `ns`: create and start a master inside the scope and
// its listener and io threads live there.
class ScopedNetns {
 public:
  explicit ScopedNetns(const std::string& ns) {
    saved_ = ::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (saved_ < 0) {
      error_ = std::string("open /proc/thread-self/ns/net: ") + std::strerror(errno);
      return;
    }
    const std::string path = "/run/netns/" + ns;
    int target = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (target < 0) {
      error_ = "open " + path + ": " + std::strerror(errno);
      return;
    }
    if (::setns(target, CLONE_NEWNET) != 0) {
      error_ = "setns(" + path + "): " + std::strerror(errno);
    } else {
      entered_ = true;
    }
    ::close(target);
  }
  ~ScopedNetns() {
    if (entered_ && ::setns(saved_, CLONE_NEWNET) != 0) {
      // The rest of the test would run in the wrong namespace: stop here, loudly.
      std::fprintf(stderr, "ScopedNetns: cannot return to the original namespace: %s\n",
                   std::strerror(errno));
      std::abort();
    }
    if (saved_ >= 0) ::close(saved_);
  }
  ScopedNetns(const ScopedNetns&) = delete;
  ScopedNetns& operator=(const ScopedNetns&) = delete;

  bool ok() const { return entered_; }
  const std::string& error() const { return error_; }

 private:
  int saved_ = -1;
  bool entered_ = false;
  std::string error_;
};

class NetnsLab : public NamespaceLab {
 public:
  // Why a lab cannot be built here; "" if it can.
  static std::string unavailable_reason() {
    if (::geteuid() != 0) return "needs root (network namespaces, veth, tc)";
    if (ip_binary().empty()) return "the ip command (iproute2) is not installed";
    if (tc_binary().empty()) return "the tc command (iproute2) is not installed";
    return "";
  }

  // The destructor (NamespaceLab's) deletes the hosts first, the hub last: the hub's veth ends
  // go with it either way.
  NetnsLab()
      : NamespaceLab("NetnsLab"),
        prefix_("qt" + std::to_string(::getpid()) + "-"),
        subnet_("10.79." + std::to_string(1 + ::getpid() % 250) + "."),
        tc_(tc_binary()) {}

  // Creates the hub, the master's namespace and `hosts` host namespaces, and waits (bounded)
  // until every bridge port forwards. False with error() on the first failure (what was
  // created is still deleted by the destructor).
  bool build(int hosts) {
    if (std::string why = unavailable_reason(); !why.empty()) return fail(why);
    const std::string hub = prefix_ + "hub";
    if (!add_namespace(hub)) return false;
    if (!run({ip_, "-n", hub, "link", "add", "name", "br0", "type", "bridge"}) ||
        !run({ip_, "-n", hub, "link", "set", "br0", "up"})) {
      return false;
    }
    if (!add_host("m", subnet_ + "1")) return false;
    for (int i = 0; i < hosts; ++i) {
      if (!add_host("h" + std::to_string(i), host_ip(i))) return false;
    }
    hosts_ = hosts;
    return wait_bridge();
  }

  int hosts() const { return hosts_; }
  std::string host_ns(int i) const { return prefix_ + "h" + std::to_string(i); }
  std::string host_ip(int i) const { return subnet_ + std::to_string(10 + i); }
  std::string master_ns() const { return prefix_ + "m"; }
  std::string master_ip() const { return subnet_ + "1"; }

  // The command prefix that runs a program inside namespace `ns`: ip execs it in place, so
  // the spawned pid is the program's (ProcCluster::spawn's `prefix`).
  std::vector<std::string> exec_prefix(const std::string& ns) const {
    return {ip_, "netns", "exec", ns};
  }

  // Limits the traffic from host `from` to host `to` to `bits_per_s` (see the file comment).
  // Calling it again for the same pair changes the rate.
  bool shape(int from, int to, uint64_t bits_per_s) {
    if (from < 0 || from >= hosts_ || to < 0 || to >= hosts_ || from == to) {
      return fail("shape(" + std::to_string(from) + ", " + std::to_string(to) + "): bad hosts");
    }
    const std::string ns = host_ns(from);
    if (htb_hosts_.insert(from).second) {
      if (!run({tc_, "-n", ns, "qdisc", "replace", "dev", "eth0", "root", "handle", "1:", "htb",
                "default", "1"}) ||
          !run({tc_, "-n", ns, "class", "add", "dev", "eth0", "parent", "1:", "classid", "1:1",
                "htb", "rate", "10gbit", "burst", "1mb", "quantum", "60000"})) {
        return false;
      }
    }
    // Burst: 4 ms at the rate (at least 16 kB), else htb's timer keeps a stream below it.
    const std::string rate = std::to_string(bits_per_s) + "bit";
    const std::string burst = std::to_string(std::max<uint64_t>(16000, bits_per_s / 8 / 250));
    const std::string classid = "1:" + std::to_string(10 + to);
    const bool first = shaped_.insert({from, to}).second;
    if (!run({tc_, "-n", ns, "class", first ? "add" : "change", "dev", "eth0", "parent", "1:",
              "classid", classid, "htb", "rate", rate, "ceil", rate, "burst", burst, "cburst",
              burst, "quantum", "60000"})) {
      return false;
    }
    if (!first) return true;
    return run({tc_, "-n", ns, "qdisc", "add", "dev", "eth0", "parent", classid, "handle",
                std::to_string(10 + to) + ":", "pfifo", "limit", "100"}) &&
           run({tc_, "-n", ns, "filter", "add", "dev", "eth0", "parent", "1:", "protocol", "ip",
                "prio", "1", "u32", "match", "ip", "dst", host_ip(to) + "/32", "flowid", classid});
  }

  // `tc -s class show` of every shaped host (bytes sent and drops per class), for failure
  // messages and logs.
  std::string shaping_stats() const {
    std::string s;
    for (int h : htb_hosts_) {
      std::string out;
      std::string err = run_command({tc_, "-s", "-n", host_ns(h), "class", "show", "dev", "eth0"},
                                    kCommandTimeout, &out);
      s += "== " + host_ns(h) + " eth0\n" + (err.empty() ? out : err) + "\n";
    }
    return s;
  }

 private:
  // Namespace <prefix><name> with eth0 = `address`/24, the other end h-<name> on br0.
  bool add_host(const std::string& name, const std::string& address) {
    const std::string ns = prefix_ + name, hub = prefix_ + "hub", port = "h-" + name;
    return add_namespace(ns) &&
           run({ip_, "-n", hub, "link", "add", "name", port, "type", "veth", "peer", "name",
                "eth0", "netns", ns}) &&
           run({ip_, "-n", hub, "link", "set", port, "master", "br0"}) &&
           run({ip_, "-n", hub, "link", "set", port, "up"}) &&
           run({ip_, "-n", ns, "addr", "add", address + "/24", "dev", "eth0"}) &&
           run({ip_, "-n", ns, "link", "set", "eth0", "up"});
  }

  // br0 has no STP, so its ports forward as soon as they are up; this waits for that (5 s at
  // most), re-checking every 20 ms.
  bool wait_bridge() {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    std::string out;
    for (;;) {
      std::string err =
          run_command({ip_, "-n", prefix_ + "hub", "-br", "link", "show", "master", "br0"},
                      kCommandTimeout, &out);
      if (!err.empty()) return fail(err);
      size_t up = 0, lines = 0;
      for (size_t p = 0; p < out.size();) {
        size_t nl = out.find('\n', p);
        std::string line = out.substr(p, nl == std::string::npos ? std::string::npos : nl - p);
        if (!line.empty()) {
          ++lines;
          if (line.find(" UP ") != std::string::npos) ++up;
        }
        p = nl == std::string::npos ? out.size() : nl + 1;
      }
      if (lines == static_cast<size_t>(hosts_ + 1) && up == lines) return true;
      if (std::chrono::steady_clock::now() >= deadline) {
        return fail("bridge ports not all up after 5 s:\n" + out);
      }
      ::usleep(20000);
    }
  }

  std::string prefix_;
  std::string subnet_;  // "10.79.S."
  std::string tc_;
  std::set<int> htb_hosts_;
  std::set<std::pair<int, int>> shaped_;
  int hosts_ = 0;
};

}  // namespace qccl::test
