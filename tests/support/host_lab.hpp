// Hosts on separate networks, on one machine, for the multi-host tests (tests/netns/
// hosts_netns_test.cpp): each host is a network namespace; networks are bridges; a host may
// sit on several networks (several interfaces), behind a NAT host, or speak only IPv6; each
// host may load an nftables ruleset. A sibling of NetnsLab (netns.hpp), which builds one
// fixed topology for shaping; this one is assembled by the test:
//
//   HostLab lab;                         // namespaces "qh<pid>-<name>", networks in "<...>hub"
//   lab.add_network("lan");              // a bridge br-lan in the hub namespace
//   lab.add_host("m");                   // a namespace with lo up
//   lab.attach("m", "lan", "eth0", {"10.81.S.1/24"});   // a veth, its other end on br-lan
//   lab.link("nat", "eth1", "in", "eth0", {...}, {...}); // a point-to-point veth pair
//   lab.ip("in", {"route", "add", "default", "via", "192.168.S.1"});
//   lab.sysctl("nat", "net.ipv4.ip_forward", "1");
//   lab.nft("h0", "deploy/qccl-firewall.nft", {"master_port=...", "peer_ports=..."});
//   lab.wait_ready();                    // every bridge port forwards (bounded)
//
// IPv6 addresses are added with `nodad`, so they are usable at once (no duplicate address
// detection to wait for). Nothing is added to the root namespace. Every command runs with a
// deadline (run_command.hpp); a failed one leaves its command line and output in
// error(). The destructor deletes exactly the namespaces this lab created, by name (the hub
// last; deleting a namespace deletes its veth ends). Processes inside a namespace keep it
// alive until they exit, so end them first (declare the lab before the ProcCluster).
//
// Requirements: root, `ip` (iproute2), and for nft(): `nft` (nftables) and kernel nf_tables
// (with nat for NAT rules). unavailable_reason() says what is missing, for GTEST_SKIP.
//
// Thread-safety: none; use from the test's thread.
#pragma once

#include <unistd.h>

#include <chrono>
#include <map>
#include <string>
#include <vector>

#include "support/namespace_lab.hpp"
#include "support/run_command.hpp"

namespace qccl::test {

inline std::string nft_binary() {
  return find_executable({"/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft", "/bin/nft"});
}
inline std::string sysctl_binary() {
  return find_executable({"/usr/sbin/sysctl", "/sbin/sysctl", "/usr/bin/sysctl", "/bin/sysctl"});
}

class HostLab : public NamespaceLab {
 public:
  // Why a lab (with nftables if `need_nft`) cannot be built here; "" if it can.
  static std::string unavailable_reason(bool need_nft) {
    if (::geteuid() != 0) return "needs root (network namespaces, veth, nftables)";
    if (ip_binary().empty()) return "the ip command (iproute2) is not installed";
    if (sysctl_binary().empty()) return "the sysctl command (procps) is not installed";
    if (need_nft && nft_binary().empty()) {
      return "the nft command (nftables) is not installed; scripts/install_deps.sh installs it";
    }
    return "";
  }

  HostLab()
      : NamespaceLab("HostLab"),
        prefix_("qh" + std::to_string(::getpid()) + "-"),
        s_(std::to_string(1 + ::getpid() % 250)) {}

  // S in addresses: 1 + pid % 250, so that logs of concurrent labs are told apart.
  const std::string& s() const { return s_; }
  // The namespace of host `name`.
  std::string ns(const std::string& name) const { return prefix_ + name; }

  // The command prefix that runs a program inside host `name` (ProcCluster::spawn's prefix).
  std::vector<std::string> exec_prefix(const std::string& name) const {
    return {ip_, "netns", "exec", ns(name)};
  }

  bool add_host(const std::string& name) {
    if (std::string why = unavailable_reason(false); !why.empty()) return fail(why);
    return add_namespace(ns(name));
  }

  // A network: bridge br-<name> in the hub namespace (created with the first network).
  bool add_network(const std::string& name) {
    if (!hub_) {
      if (!add_host("hub")) return false;
      hub_ = true;
    }
    return run({ip_, "-n", ns("hub"), "link", "add", "name", "br-" + name, "type", "bridge"}) &&
           run({ip_, "-n", ns("hub"), "link", "set", "br-" + name, "up"});
  }

  // Interface `ifname` of host `host` on network `network`, with `addresses` ("A/len"; IPv6
  // ones get nodad).
  bool attach(const std::string& host, const std::string& network, const std::string& ifname,
              const std::vector<std::string>& addresses) {
    const std::string port = "p" + std::to_string(ports_.size());
    ports_[port] = network;
    return run({ip_, "-n", ns("hub"), "link", "add", "name", port, "type", "veth", "peer", "name",
                ifname, "netns", ns(host)}) &&
           run({ip_, "-n", ns("hub"), "link", "set", port, "master", "br-" + network}) &&
           run({ip_, "-n", ns("hub"), "link", "set", port, "up"}) &&
           configure(host, ifname, addresses);
  }

  // A point-to-point veth pair between two hosts.
  bool link(const std::string& a, const std::string& a_if, const std::vector<std::string>& a_addr,
            const std::string& b, const std::string& b_if,
            const std::vector<std::string>& b_addr) {
    return run({ip_, "-n", ns(a), "link", "add", "name", a_if, "type", "veth", "peer", "name",
                b_if, "netns", ns(b)}) &&
           configure(a, a_if, a_addr) && configure(b, b_if, b_addr);
  }

  // `ip -n NS args...` inside host `host`.
  bool ip(const std::string& host, std::vector<std::string> args) {
    args.insert(args.begin(), {ip_, "-n", ns(host)});
    return run(args);
  }

  bool sysctl(const std::string& host, const std::string& key, const std::string& value) {
    return run({ip_, "netns", "exec", ns(host), sysctl_binary(), "-q", "-w", key + "=" + value});
  }

  // Loads an nftables file into host `host`: nft -D d1 -D d2 ... -f file.
  bool nft(const std::string& host, const std::string& file,
           const std::vector<std::string>& defines) {
    std::vector<std::string> argv{ip_, "netns", "exec", ns(host), nft_binary()};
    for (const auto& d : defines) argv.insert(argv.end(), {"-D", d});
    argv.insert(argv.end(), {"-f", file});
    return run(argv);
  }
  // Runs `nft args...` inside host `host`; its output in `out`.
  bool nft_cmd(const std::string& host, const std::vector<std::string>& args,
               std::string* out = nullptr) {
    std::vector<std::string> argv{ip_, "netns", "exec", ns(host), nft_binary()};
    argv.insert(argv.end(), args.begin(), args.end());
    std::string err = run_command(argv, kCommandTimeout, out);
    return err.empty() ? true : fail(err);
  }

  // Waits (5 s at most, re-checking every 20 ms) until every bridge port is up: bridges
  // without STP forward as soon as their ports are.
  bool wait_ready() {
    if (!hub_) return true;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    for (;;) {
      std::string out;
      std::string err =
          run_command({ip_, "-n", ns("hub"), "-br", "link", "show"}, kCommandTimeout, &out);
      if (!err.empty()) return fail(err);
      size_t up = 0;
      for (const auto& [port, network] : ports_) {
        size_t at = out.find(port + "@");
        if (at == std::string::npos) continue;
        size_t eol = out.find('\n', at);
        std::string line = out.substr(at, eol == std::string::npos ? std::string::npos : eol - at);
        if (line.find(" UP ") != std::string::npos) ++up;
      }
      if (up == ports_.size()) return true;
      if (std::chrono::steady_clock::now() >= deadline) {
        return fail("bridge ports not all up after 5 s:\n" + out);
      }
      ::usleep(20000);
    }
  }

 private:
  bool configure(const std::string& host, const std::string& ifname,
                 const std::vector<std::string>& addresses) {
    for (const auto& a : addresses) {
      std::vector<std::string> argv{ip_, "-n", ns(host), "addr", "add", a, "dev", ifname};
      if (a.find(':') != std::string::npos) argv.push_back("nodad");
      if (!run(argv)) return false;
    }
    return run({ip_, "-n", ns(host), "link", "set", ifname, "up"});
  }

  std::string prefix_;
  std::string s_;
  bool hub_ = false;
  std::map<std::string, std::string> ports_;  // hub veth port -> network
};

}  // namespace qccl::test
