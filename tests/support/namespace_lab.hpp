// What the network-namespace labs share (NetnsLab in netns.hpp, HostLab in host_lab.hpp): the
// namespaces a lab created, deleted with it, and the commands it runs in them.
//
// Thread-safety: none; use from the test's thread.
#pragma once

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "support/run_command.hpp"

namespace qccl::test {

// The network namespaces a lab created, by name, and the commands it runs in them. The
// destructor deletes exactly those namespaces, last created first (so a hub made first goes
// last; deleting a namespace deletes its veth ends). Every command runs with a deadline
// (kCommandTimeout, see run_command); the last failure of run() or fail() is kept in error().
class NamespaceLab {
 public:
  static constexpr std::chrono::milliseconds kCommandTimeout{10000};

  NamespaceLab(const NamespaceLab&) = delete;
  NamespaceLab& operator=(const NamespaceLab&) = delete;

  const std::string& error() const { return error_; }

 protected:
  // `owner` names the lab in the destructor's messages.
  explicit NamespaceLab(const char* owner) : ip_(ip_binary()), owner_(owner) {}
  ~NamespaceLab() {
    for (auto it = created_.rbegin(); it != created_.rend(); ++it) {
      std::string err = run_command({ip_, "netns", "del", *it}, kCommandTimeout);
      if (!err.empty()) {
        std::fprintf(stderr, "%s: could not delete %s: %s\n", owner_, it->c_str(), err.c_str());
      }
    }
  }

  bool fail(std::string why) {
    error_ = std::move(why);
    return false;
  }
  bool run(const std::vector<std::string>& argv) {
    std::string err = run_command(argv, kCommandTimeout);
    return err.empty() ? true : fail(err);
  }

  // Creates namespace `ns` with its loopback up; the destructor deletes it.
  bool add_namespace(const std::string& ns) {
    if (::access(("/run/netns/" + ns).c_str(), F_OK) == 0) {
      return fail("namespace " + ns + " exists already (left by a crashed run of this pid?); "
                  "remove it with 'ip netns del " + ns + "'");
    }
    if (!run({ip_, "netns", "add", ns})) return false;
    created_.push_back(ns);
    return run({ip_, "-n", ns, "link", "set", "lo", "up"});
  }

  const std::string ip_;  // the ip command (iproute2)

 private:
  const char* owner_;
  std::string error_;
  std::vector<std::string> created_;  // namespace names, in creation order
};

}  // namespace qccl::test
