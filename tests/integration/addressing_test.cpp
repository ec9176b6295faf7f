// Addressing on one machine, through the C API (docs/deployment.md): the data listener's
// address and port range, the advertised address (explicit, from the environment, explicit
// over the environment), the secret from a file, a whole group over IPv6, and qcclGetPeers /
// QCCL_ATTR_PEER_ID. Multi-host cases (firewalls, NAT, a peer on the master's host) are the
// root-only tests of tests/netns/.
#include <qccl/qccl.h>

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "support/cluster.hpp"
#include "support/watchdog.hpp"

QCCL_TEST_WATCHDOG(110);

namespace qccl::test {
namespace {

// A listening TCP socket on 127.0.0.1 (port 0: a free one), closed with the object.
class HeldPort {
 public:
  HeldPort() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&a), len) != 0 || ::listen(fd_, 1) != 0 ||
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      ADD_FAILURE() << "cannot hold a port";
    }
    port_ = ntohs(a.sin_port);
  }
  ~HeldPort() {
    if (fd_ >= 0) ::close(fd_);
  }
  uint16_t port() const { return port_; }

 private:
  int fd_ = -1;
  uint16_t port_ = 0;
};

struct Master {
  qcclMaster_t* m = nullptr;
  std::string address;
  explicit Master(const char* listen = "127.0.0.1:0", const char* token = nullptr) {
    qcclMasterConfig_t mc = QCCL_MASTER_CONFIG_INIT;
    mc.listen_address = listen;
    mc.heartbeat_interval_ms = 100;
    mc.peer_timeout_ms = 4000;
    mc.vote_timeout_ms = 4000;
    mc.auth_token = token;
    uint16_t port = 0;
    EXPECT_EQ(qcclMasterCreate(&mc, &m), qcclSuccess) << qcclGetLastError();
    EXPECT_EQ(qcclMasterStart(m), qcclSuccess) << qcclGetLastError();
    EXPECT_EQ(qcclMasterGetPort(m, &port), qcclSuccess);
    std::string host(listen);
    address = host.substr(0, host.rfind(':')) + ":" + std::to_string(port);
  }
  ~Master() { qcclMasterDestroy(m); }
};

qcclCommConfig_t config(const std::string& master_address) {
  qcclCommConfig_t cc = QCCL_COMM_CONFIG_INIT;
  cc.master_address = master_address.c_str();
  cc.connections_per_peer = 2;
  cc.connect_timeout_ms = 20000;
  return cc;
}

// Connects the others while the first (connected already, alone) waits for them:
// qcclWaitForWorld admits them; theirs returns once the group is complete.
void connect_all(const std::vector<qcclComm_t*>& comms) {
  std::vector<std::unique_ptr<Task>> tasks;
  for (size_t i = 0; i < comms.size(); ++i) {
    tasks.push_back(std::make_unique<Task>([&, i] {
      if (i > 0) {
        qcclResult_t r = qcclConnect(comms[i]);
        EXPECT_EQ(r, qcclSuccess) << "peer " << i << ": " << describe(r);
      }
      qcclResult_t r = qcclWaitForWorld(comms[i], static_cast<int64_t>(comms.size()), 20000);
      EXPECT_EQ(r, qcclSuccess) << "peer " << i << ": " << describe(r);
    }));
  }
  for (auto& t : tasks) ASSERT_TRUE(t->wait_until(Clock::now() + std::chrono::seconds(40)));
}

// Every comm contributes 1 << i; each must get the sum of all.
void expect_all_reduce(const std::vector<qcclComm_t*>& comms) {
  std::vector<std::unique_ptr<Task>> tasks;
  const int64_t want = (int64_t{1} << comms.size()) - 1;
  for (size_t i = 0; i < comms.size(); ++i) {
    tasks.push_back(std::make_unique<Task>([&, i] {
      int64_t v = int64_t{1} << i;
      qcclReduceDesc_t d = {1, qcclInt64, qcclSum, 0, {qcclQuantNone, qcclInt64}};
      qcclResult_t r = qcclAllReduce(&v, &v, &d, comms[i], nullptr);
      EXPECT_EQ(r, qcclSuccess) << "peer " << i << ": " << describe(r);
      EXPECT_EQ(v, want) << "peer " << i;
    }));
  }
  for (auto& t : tasks) ASSERT_TRUE(t->wait_until(Clock::now() + std::chrono::seconds(30)));
}

std::vector<qcclPeerInfo_t> peers_of(qcclComm_t* c) {
  size_t n = 0;
  EXPECT_EQ(qcclGetPeers(c, nullptr, 0, &n), qcclSuccess) << qcclGetLastError();
  std::vector<qcclPeerInfo_t> out(n);
  EXPECT_EQ(qcclGetPeers(c, out.data(), out.size(), &n), qcclSuccess);
  return out;
}

uint16_t port_of(const std::string& address) {
  return static_cast<uint16_t>(std::stoi(address.substr(address.rfind(':') + 1)));
}

TEST(Addressing, ListenRangeSkipsAPortInUseAndGetPeersNamesEveryone) {
  Master master;
  HeldPort held;  // the range's first port is taken
  const std::string range = "127.0.0.1:" + std::to_string(held.port()) + "-" +
                            std::to_string(held.port() + 8);
  std::vector<qcclComm_t*> comms(3, nullptr);
  for (auto& c : comms) {
    qcclCommConfig_t cc = config(master.address);
    cc.listen_address = range.c_str();
    ASSERT_EQ(qcclCommCreate(&cc, &c), qcclSuccess) << qcclGetLastError();
  }
  ASSERT_EQ(qcclConnect(comms[0]), qcclSuccess) << qcclGetLastError();
  connect_all(comms);
  expect_all_reduce(comms);
  std::set<int64_t> ids;
  for (size_t i = 0; i < comms.size(); ++i) {
    auto peers = peers_of(comms[i]);
    ASSERT_EQ(peers.size(), 3u);
    int64_t self = -1;
    ASSERT_EQ(qcclGetAttribute(comms[i], QCCL_ATTR_PEER_ID, &self), qcclSuccess);
    int64_t rank = -1;
    ASSERT_EQ(qcclGetAttribute(comms[i], QCCL_ATTR_RING_RANK, &rank), qcclSuccess);
    EXPECT_EQ(static_cast<int64_t>(peers[static_cast<size_t>(rank)].peer_id), self);
    ids.insert(self);
    for (uint32_t k = 0; k < peers.size(); ++k) {
      EXPECT_EQ(peers[k].ring_rank, k);
      std::string a = peers[k].address;
      EXPECT_EQ(a.rfind("127.0.0.1:", 0), 0u) << a;
      EXPECT_GT(port_of(a), held.port()) << a;
      EXPECT_LE(port_of(a), held.port() + 8) << a;
    }
  }
  EXPECT_EQ(ids.size(), 3u);
  // A capacity below the group size: the count says how many there are.
  qcclPeerInfo_t one;
  size_t n = 0;
  EXPECT_EQ(qcclGetPeers(comms[0], &one, 1, &n), qcclSuccess);
  EXPECT_EQ(n, 3u);
  for (auto* c : comms) qcclCommDestroy(c);
}

TEST(Addressing, ListenRangeWithNoFreePortIsAClearError) {
  Master master;
  HeldPort held;
  const std::string only = "127.0.0.1:" + std::to_string(held.port());
  qcclCommConfig_t cc = config(master.address);
  cc.listen_address = only.c_str();
  qcclComm_t* c = nullptr;
  EXPECT_EQ(qcclCommCreate(&cc, &c), qcclInvalidArgument);
  std::string m = qcclGetLastError();
  EXPECT_NE(m.find("qcclCommCreate: cannot listen for peers on " + only), std::string::npos) << m;
  for (const char* bad : {"127.0.0.1", "127.0.0.1:9-8", "[::1:5"}) {
    cc.listen_address = bad;
    EXPECT_EQ(qcclCommCreate(&cc, &c), qcclInvalidArgument) << bad;
    EXPECT_NE(std::string(qcclGetLastError()).find(bad), std::string::npos) << bad;
  }
  cc.listen_address = nullptr;
  cc.advertise_address = "2001:db8::1";  // an IPv6 host needs brackets
  EXPECT_EQ(qcclCommCreate(&cc, &c), qcclInvalidArgument);
}

TEST(Addressing, AdvertiseAddressFromTheEnvironmentAndExplicitOverIt) {
  Master master;
  // Any 127/8 address reaches this machine: the others dial what is advertised.
  ASSERT_EQ(setenv("QCCL_ADVERTISE_ADDRESS", "127.0.0.2", 1), 0);
  std::vector<qcclComm_t*> comms(3, nullptr);
  for (size_t i = 0; i < comms.size(); ++i) {
    qcclCommConfig_t cc = config(master.address);
    if (i == 2) cc.advertise_address = "127.0.0.3";
    ASSERT_EQ(qcclCommCreate(&cc, &comms[i]), qcclSuccess) << qcclGetLastError();
  }
  unsetenv("QCCL_ADVERTISE_ADDRESS");
  ASSERT_EQ(qcclConnect(comms[0]), qcclSuccess) << qcclGetLastError();
  connect_all(comms);
  expect_all_reduce(comms);
  std::map<int64_t, std::string> host_of;
  for (const auto& p : peers_of(comms[1])) {
    std::string a = p.address;
    host_of[static_cast<int64_t>(p.peer_id)] = a.substr(0, a.rfind(':'));
  }
  for (size_t i = 0; i < comms.size(); ++i) {
    int64_t id = -1;
    ASSERT_EQ(qcclGetAttribute(comms[i], QCCL_ATTR_PEER_ID, &id), qcclSuccess);
    EXPECT_EQ(host_of[id], i == 2 ? "127.0.0.3" : "127.0.0.2") << "peer " << i;
  }
  for (auto* c : comms) qcclCommDestroy(c);
}

TEST(Addressing, SecretFromAFileOrTheEnvironment) {
  const std::string path = "/tmp/qccl-addressing-test-" + std::to_string(::getpid()) + ".token";
  FILE* f = std::fopen(path.c_str(), "w");
  ASSERT_NE(f, nullptr);
  std::fputs("s3cret\n", f);
  std::fclose(f);
  Master master("127.0.0.1:0", "s3cret");
  std::vector<qcclComm_t*> comms(2, nullptr);
  qcclCommConfig_t a = config(master.address);
  a.auth_token_file = path.c_str();
  ASSERT_EQ(qcclCommCreate(&a, &comms[0]), qcclSuccess) << qcclGetLastError();
  ASSERT_EQ(setenv("QCCL_AUTH_TOKEN_FILE", path.c_str(), 1), 0);
  qcclCommConfig_t b = config(master.address);
  ASSERT_EQ(qcclCommCreate(&b, &comms[1]), qcclSuccess) << qcclGetLastError();
  // An explicit token wins over the environment's file (a wrong one here).
  qcclComm_t* bad = nullptr;
  ASSERT_EQ(setenv("QCCL_AUTH_TOKEN_FILE", "/nonexistent/env.token", 1), 0);
  b.auth_token = "s3cret";
  qcclComm_t* explicit_token = nullptr;
  EXPECT_EQ(qcclCommCreate(&b, &explicit_token), qcclSuccess) << qcclGetLastError();
  if (explicit_token) qcclCommDestroy(explicit_token);
  unsetenv("QCCL_AUTH_TOKEN_FILE");
  // Both explicit fields is a contradiction; a file that cannot be read is refused too.
  b.auth_token_file = path.c_str();
  EXPECT_EQ(qcclCommCreate(&b, &bad), qcclInvalidArgument);
  EXPECT_NE(std::string(qcclGetLastError()).find("both set"), std::string::npos);
  qcclCommConfig_t c = config(master.address);
  c.auth_token_file = "/nonexistent/qccl.token";
  EXPECT_EQ(qcclCommCreate(&c, &bad), qcclInvalidArgument);
  EXPECT_NE(std::string(qcclGetLastError()).find("/nonexistent/qccl.token"), std::string::npos);
  ASSERT_EQ(qcclConnect(comms[0]), qcclSuccess) << qcclGetLastError();
  connect_all(comms);
  expect_all_reduce(comms);
  for (auto* x : comms) qcclCommDestroy(x);
  std::remove(path.c_str());
}

TEST(Addressing, AWholeGroupOverIPv6) {
  Master master("[::1]:0");
  ASSERT_EQ(master.address.rfind("[::1]:", 0), 0u) << master.address;
  std::vector<qcclComm_t*> comms(3, nullptr);
  for (size_t i = 0; i < comms.size(); ++i) {
    qcclCommConfig_t cc = config(master.address);
    if (i == 1) cc.listen_address = "[::1]:0";  // the others: the default, [::]:0
    ASSERT_EQ(qcclCommCreate(&cc, &comms[i]), qcclSuccess) << qcclGetLastError();
  }
  ASSERT_EQ(qcclConnect(comms[0]), qcclSuccess) << qcclGetLastError();
  connect_all(comms);
  expect_all_reduce(comms);
  for (const auto& p : peers_of(comms[0])) {
    EXPECT_EQ(std::string(p.address).rfind("[::1]:", 0), 0u) << p.address;
  }
  for (auto* c : comms) qcclCommDestroy(c);
}

}  // namespace
}  // namespace qccl::test
