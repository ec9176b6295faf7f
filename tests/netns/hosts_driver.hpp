// Shared pieces of the multi-host tests (firewall_netns_test.cpp, addressing_netns_test.cpp):
// a master inside one host namespace, and a driver for qccl_hosts_peer (hosts_peer.cpp) that
// sends a command to some peers and reads each one's answer against a deadline.
//
// Thread-safety: none; use from the test's thread.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "qccl/qccl.h"
#include "support/host_lab.hpp"
#include "support/netns.hpp"
#include "support/proc_cluster.hpp"

namespace qccl::test {

// The master's timings in these tests: a short peer timeout, so that a connection that cannot
// be made fails within seconds (the dial deadline is bounded by it).
constexpr uint32_t kHeartbeatMs = 200;
constexpr uint32_t kPeerTimeoutMs = 2000;
constexpr uint32_t kVoteTimeoutMs = 20000;

// A master started inside host `host` of `lab` (its listener and thread live in that
// namespace), listening on `listen` ("0.0.0.0:0", "[::]:0").
class HostMaster {
 public:
  HostMaster(const HostLab& lab, const std::string& host, const std::string& listen) {
    ScopedNetns inside(lab.ns(host));
    if (!inside.ok()) {
      error_ = inside.error();
      return;
    }
    qcclMasterConfig_t mc = QCCL_MASTER_CONFIG_INIT;
    mc.listen_address = listen.c_str();
    mc.heartbeat_interval_ms = kHeartbeatMs;
    mc.peer_timeout_ms = kPeerTimeoutMs;
    mc.vote_timeout_ms = kVoteTimeoutMs;
    mc.probe_ms = 100;
    if (qcclMasterCreate(&mc, &master_) != qcclSuccess || qcclMasterStart(master_) != qcclSuccess ||
        qcclMasterGetPort(master_, &port_) != qcclSuccess) {
      error_ = qcclGetLastError();
      port_ = 0;
    }
  }
  ~HostMaster() {
    if (master_ != nullptr) qcclMasterDestroy(master_);
  }
  HostMaster(const HostMaster&) = delete;
  HostMaster& operator=(const HostMaster&) = delete;

  bool ok() const { return port_ != 0; }
  const std::string& error() const { return error_; }
  uint16_t port() const { return port_; }
  // "host:port" for a host part such as "10.81.3.1" or "[fd81:3::1]".
  std::string address(const std::string& host) const { return host + ":" + std::to_string(port_); }

 private:
  qcclMaster_t* master_ = nullptr;
  uint16_t port_ = 0;
  std::string error_;
};

// One entry of qcclGetPeers as a peer printed it.
struct PeerEntry {
  int64_t rank = -1;
  uint64_t id = 0;
  std::string address;
};

struct PeerList {
  std::vector<PeerEntry> peers;  // in the order printed: ring order
  uint64_t self = 0;
  int64_t self_rank = -1;
  // The address of the peer with id `id`, or "".
  std::string address_of(uint64_t id) const {
    for (const auto& p : peers) {
      if (p.id == id) return p.address;
    }
    return "";
  }
};

class HostsDriver {
 public:
  HostsDriver(ProcCluster& pc, HostLab& lab) : pc_(pc), lab_(lab) {}

  // Starts qccl_hosts_peer in host `host` with `args` and `env`. It prints "connected" once
  // qcclConnect returned, which for every peer but the first happens only when the group
  // admits it: send it "world N" with the others (the command waits in its stdin), and the
  // answers read the "connected" line on the way. nullopt after a gtest failure.
  std::optional<ProcCluster::Handle> start(const std::string& label, const std::string& host,
                                           const std::vector<std::string>& args,
                                           const std::vector<std::string>& env) {
    auto h = pc_.spawn(label + " (" + lab_.ns(host) + ")", args, env, lab_.exec_prefix(host));
    if (!h) ADD_FAILURE() << "cannot start " << label << ": " << pc_.error();
    if (h && capture_logs_) pc_.capture_stderr_lines(*h);
    return h;
  }

  // Peers started from now on have their stderr lines (the library's log) queued for
  // ProcCluster::next_stderr().
  void capture_logs() { capture_logs_ = true; }

  uint64_t id(ProcCluster::Handle h) const { return ids_.count(h) ? ids_.at(h) : 0; }

  // Sends `cmd` to every peer of `hs`, then reads each one's answer: the first line that is
  // not a "peer" line. Returns them in the order of `hs`; a missing answer is an empty Event
  // (and a gtest failure).
  std::vector<Event> all(const std::vector<ProcCluster::Handle>& hs, const std::string& cmd,
                         Deadline deadline) {
    for (auto h : hs) {
      if (!pc_.send_line(h, cmd)) ADD_FAILURE() << pc_.label(h) << ": cannot send " << cmd;
    }
    std::vector<Event> out;
    for (auto h : hs) out.push_back(answer(h, cmd, deadline));
    return out;
  }

  // Like all(), and every answer must be of kind `kind`.
  std::vector<Event> expect(const std::vector<ProcCluster::Handle>& hs, const std::string& cmd,
                            const char* kind, Deadline deadline) {
    auto es = all(hs, cmd, deadline);
    for (size_t i = 0; i < es.size(); ++i) {
      EXPECT_TRUE(es[i].is(kind)) << pc_.label(hs[i]) << " answered '" << cmd << "' with: "
                                  << es[i].raw;
    }
    return es;
  }

  // The peer's qcclGetPeers.
  PeerList peers(ProcCluster::Handle h, Deadline deadline) {
    PeerList list;
    if (!pc_.send_line(h, "peers")) ADD_FAILURE() << pc_.label(h) << ": cannot send peers";
    for (;;) {
      auto e = next(h, deadline);
      if (!e) {
        ADD_FAILURE() << pc_.label(h) << ": no answer to 'peers' before the deadline";
        return list;
      }
      if (e->is("peer")) {
        list.peers.push_back({e->num("rank"), e->unum("id"), e->field("address").value_or("")});
        continue;
      }
      if (e->is("peers")) {
        EXPECT_EQ(static_cast<size_t>(e->num("n")), list.peers.size()) << e->raw;
        list.self = e->unum("self");
        list.self_rank = e->num("rank");
        return list;
      }
      ADD_FAILURE() << pc_.label(h) << " answered 'peers' with: " << e->raw;
      return list;
    }
  }

 private:
  // The next line that is not "connected" (whose id is recorded).
  std::optional<Event> next(ProcCluster::Handle h, Deadline deadline) {
    for (;;) {
      auto e = pc_.next(h, deadline);
      if (!e || !e->is("connected")) return e;
      ids_[h] = e->unum("id");
    }
  }

  Event answer(ProcCluster::Handle h, const std::string& cmd, Deadline deadline) {
    auto e = next(h, deadline);
    if (!e) {
      ADD_FAILURE() << pc_.label(h) << ": no answer to '" << cmd << "' before the deadline";
      return Event("");
    }
    return *e;
  }

  ProcCluster& pc_;
  HostLab& lab_;
  std::map<ProcCluster::Handle, uint64_t> ids_;
  bool capture_logs_ = false;
};

// The "ms" field of an event as a double (-1 if absent).
inline double ms_of(const Event& e) {
  return std::strtod(e.field("ms").value_or("-1").c_str(), nullptr);
}

// The port of "host:port" / "[v6]:port" (-1 if malformed).
inline int port_of(const std::string& address) {
  size_t colon = address.rfind(':');
  if (colon == std::string::npos || colon + 1 >= address.size()) return -1;
  return std::atoi(address.c_str() + colon + 1);
}
// The host part, brackets kept for IPv6.
inline std::string host_of(const std::string& address) {
  size_t colon = address.rfind(':');
  return colon == std::string::npos ? address : address.substr(0, colon);
}

}  // namespace qccl::test
