// Network faults of the chaos harness: every peer slot is a host of a NetnsLab
// (tests/support/netns.hpp: one namespace per slot, all on one bridge, the master in its own
// namespace), so a slot's link can be cut (`ip link set dev eth0 down` inside the slot's
// namespace: its packets go nowhere, the others see silence) or throttled (tbf on both ends of
// its veth: the slot's eth0 egress and the bridge port's egress towards it) and restored.
// Every command runs under NetnsLab's deadline; a failed command is reported, not retried.
//
// Thread-safety: none.
#pragma once

#include <string>
#include <vector>

#include "support/netns.hpp"

namespace qccl::chaos {

class NetFaults {
 public:
  // Builds the lab with `slots` hosts; false with error() if it cannot.
  bool build(int slots) {
    if (!lab_.build(slots)) {
      error_ = lab_.error();
      return false;
    }
    const std::string m = lab_.master_ns();
    hub_ = m.substr(0, m.size() - 1) + "hub";  // <prefix>m -> <prefix>hub
    return true;
  }

  const std::string& error() const { return error_; }
  std::string master_ns() const { return lab_.master_ns(); }
  std::string master_ip() const { return lab_.master_ip(); }
  std::vector<std::string> exec_prefix(int slot) const {
    return lab_.exec_prefix(lab_.host_ns(slot));
  }
  std::vector<std::string> master_prefix() const { return lab_.exec_prefix(lab_.master_ns()); }

  bool cut(int slot) { return ip({"-n", lab_.host_ns(slot), "link", "set", "dev", "eth0", "down"}); }
  bool restore(int slot) {
    return ip({"-n", lab_.host_ns(slot), "link", "set", "dev", "eth0", "up"});
  }

  bool throttle(int slot, int mbit) {
    const std::vector<std::string> tbf{"tbf", "rate", std::to_string(mbit) + "mbit", "burst",
                                       "32kb", "latency", "100ms"};
    return tc_replace(lab_.host_ns(slot), "eth0", tbf) && tc_replace(hub_, port(slot), tbf);
  }
  bool unthrottle(int slot) {
    bool a = tc({"-n", lab_.host_ns(slot), "qdisc", "del", "dev", "eth0", "root"});
    bool b = tc({"-n", hub_, "qdisc", "del", "dev", port(slot), "root"});
    return a && b;
  }

 private:
  static std::string port(int slot) { return "h-h" + std::to_string(slot); }

  bool tc_replace(const std::string& ns, const std::string& dev,
                  const std::vector<std::string>& qdisc) {
    std::vector<std::string> a{"-n", ns, "qdisc", "replace", "dev", dev, "root"};
    a.insert(a.end(), qdisc.begin(), qdisc.end());
    return tc(a);
  }
  bool ip(const std::vector<std::string>& args) { return run(test::ip_binary(), args); }
  bool tc(const std::vector<std::string>& args) { return run(test::tc_binary(), args); }
  bool run(const std::string& bin, const std::vector<std::string>& args) {
    std::vector<std::string> argv{bin};
    argv.insert(argv.end(), args.begin(), args.end());
    error_ = test::run_command(argv, test::NetnsLab::kCommandTimeout);
    return error_.empty();
  }

  test::NetnsLab lab_;
  std::string hub_;
  std::string error_;
};

}  // namespace qccl::chaos
