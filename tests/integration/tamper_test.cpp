// An on-path tamperer against encrypted connections (issue 23, net/record_cipher.hpp): a proxy in
// front of one peer B (tests/support/tamper_proxy.hpp) flips a bit in, injects into, replays,
// reorders, drops or truncates one record of a data lane into B in the middle of an
// all-reduce, or one record of a shared-state transfer out of B (B is the donor). B listens
// on a port of the test's choosing and advertises the proxy's, so every other peer dials B
// through the proxy.
//
// What must happen: the reader of the tampered stream refuses it and drops that connection
// (a warning "connection from X: record N failed authentication ...; dropping the
// connection" naming the proxy's end and the tampered record's number; a stream cut
// mid-record is a read error, logged at info level); nothing wrong is ever delivered, nothing
// crashes, nobody is expelled, and every operation is all or nothing:
//  - All-reduce, one lane per neighbour: that lane is the ring's only link into B, so the op
//    fails on every peer with qcclPeerLost (the same message everywhere), every in-place
//    buffer holds its input again, and the retry (a new ring, through the proxy again)
//    succeeds with exact results.
//  - All-reduce, two lanes: the lost lane is retired and its sender resends its frames on the
//    other lane (docs/architecture.md §5, "Stalled lanes"), so the op usually succeeds
//    everywhere with exact results. Frames that the proxy's TCP had acknowledged before it
//    dropped them count as delivered, though: then the op stalls and fails on every peer with
//    qcclPeerLost at the stall deadline (inputs intact). The next op succeeds either way.
//  - Shared state (B is the donor; tensor bytes flow to the receivers, which dial B): a
//    receiver dials 4 connections to its donor and refetches the pieces of the one it lost on
//    the others (docs/shared-state.md §4), so the sync succeeds with the donor's content.
// Integers (and floats compared bit for bit) make results exact.
#include <qccl/qccl.h>

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <spdlog/sinks/base_sink.h>

#include "common/logging.hpp"
#include "support/cluster.hpp"
#include "support/tamper_proxy.hpp"
#include "support/watchdog.hpp"

QCCL_TEST_WATCHDOG(170);

namespace qccl::test {
namespace {

using Action = TamperProxy::Action;
using Dir = TamperProxy::Dir;

constexpr char kSecret[] = "tamper-test secret";
constexpr size_t kPeers = 3;

// The library's log lines (its loggers write to stderr; this sink keeps a copy).
class LogCapture : public spdlog::sinks::base_sink<std::mutex> {
 public:
  // Installed once, before the first cluster of the binary starts any library thread. It
  // keeps info lines too (lane losses, failed downloads); stderr still gets warnings only.
  static LogCapture& get() {
    static std::shared_ptr<LogCapture> sink = [] {
      auto s = std::make_shared<LogCapture>();
      for (const char* component : {"net", "peer", "state", "master"}) {
        auto logger = qccl::log::get(component);
        for (auto& existing : logger->sinks()) existing->set_level(spdlog::level::warn);
        logger->sinks().push_back(s);
      }
      qccl::log::set_level("info");
      return s;
    }();
    return *sink;
  }
  size_t size() {
    std::lock_guard<std::mutex> lock(mutex_);
    return lines_.size();
  }
  // The lines logged since line `since` that contain `needle`.
  std::vector<std::string> find(const std::string& needle, size_t since) {
    std::lock_guard<std::mutex> lock(mutex_);
    std::vector<std::string> out;
    for (size_t i = since; i < lines_.size(); ++i) {
      if (lines_[i].find(needle) != std::string::npos) out.push_back(lines_[i]);
    }
    return out;
  }
  std::string since(size_t first) {
    std::lock_guard<std::mutex> lock(mutex_);
    std::string out;
    for (size_t i = first; i < lines_.size(); ++i) out += lines_[i] + "\n";
    return out;
  }

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    lines_.push_back(fmt::format("[{}] [{}] {}", msg.logger_name,
                                 spdlog::level::to_string_view(msg.level), msg.payload));
  }
  void flush_() override {}

 private:
  std::vector<std::string> lines_;
};

// A free port of 127.0.0.1: bound to port 0, read back, closed.
uint16_t free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  bool ok = fd >= 0 && ::bind(fd, reinterpret_cast<sockaddr*>(&a), len) == 0 &&
            ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0;
  if (fd >= 0) ::close(fd);
  return ok ? ntohs(a.sin_port) : 0;
}

// A cluster of kPeers with a shared secret, peer `b` behind the proxy.
struct Bed {
  explicit Bed(uint32_t lanes) : b_port(free_port()), proxy(b_port), c(options(lanes)) {}
  static ClusterOptions options(uint32_t lanes) {
    ClusterOptions o;
    o.auth_token = kSecret;
    o.connections_per_peer = lanes;
    return o;
  }
  ::testing::AssertionResult start() {
    if (!c.ok() || b_port == 0 || !proxy.ok()) {
      return ::testing::AssertionFailure() << "no master, port or proxy";
    }
    auto r = c.add_peer();
    if (!r) return r;
    qcclCommConfig_t cc = c.comm_config();
    std::string listen = "127.0.0.1:" + std::to_string(b_port);
    std::string advertise = proxy.address();
    cc.listen_address = listen.c_str();
    cc.advertise_address = advertise.c_str();
    qcclComm_t* comm = nullptr;
    qcclResult_t created = qcclCommCreate(&cc, &comm);
    if (created != qcclSuccess) return ::testing::AssertionFailure() << describe(created);
    r = c.add_peer_with(comm, 0, &b);
    if (!r) return r;
    return c.grow(kPeers - 2);
  }
  // Every peer is still a member (nobody was expelled).
  void expect_all_members() {
    for (size_t i : c.peers()) EXPECT_EQ(c.view(i).global_world_size, int64_t{kPeers}) << i;
    EXPECT_EQ(c.size(), kPeers);
  }

  uint16_t b_port;
  TamperProxy proxy;  // outlives the cluster: the peers leave through it
  Cluster c;
  size_t b = 0;
};

// What each peer's call gave.
struct Outcome {
  qcclResult_t result = qcclInternalError;
  std::string error;
  bool data_ok = false;  // success: the exact result; failure: the input restored
};

std::string summary(const std::vector<Outcome>& out) {
  std::string s;
  for (size_t i = 0; i < out.size(); ++i) {
    s += "peer " + std::to_string(i) + ": " + qcclGetErrorString(out[i].result) + " (" +
         out[i].error + ") data " + (out[i].data_ok ? "ok" : "WRONG") + "; ";
  }
  return s;
}

// All or nothing: the same result everywhere, data as promised for it.
void expect_all_or_nothing(const std::vector<Outcome>& out, const std::string& log) {
  for (size_t i = 0; i < out.size(); ++i) {
    EXPECT_EQ(out[i].result, out[0].result) << summary(out) << "\n" << log;
    EXPECT_TRUE(out[i].result == qcclSuccess || out[i].result == qcclPeerLost)
        << summary(out) << "\n" << log;
    EXPECT_TRUE(out[i].data_ok) << summary(out) << "\n" << log;
  }
}

// What the reader of the tampered stream logs about it: the record that failed
// authentication, or for a stream cut mid-record, the read that failed.
std::string refusal(const TamperProxy::Fired& f) {
  if (f.action == Action::kTruncate) return "read from " + f.reader_sees;
  return "connection from " + f.reader_sees + ": record " + std::to_string(f.record) +
         " failed authentication";
}

// Whether the log since `mark` shows the tampering of an all-reduce lane into B. A truncated
// lane is closed at both ends at once, so its sender's failed write to the proxy can
// fail the ring before B reads the cut record; B, whose epoch is over, then says nothing more.
bool lane_tampering_logged(LogCapture& logs, size_t mark, const TamperProxy::Fired& f,
                           const TamperProxy& proxy) {
  if (!logs.find(refusal(f), mark).empty()) return true;
  return f.action == Action::kTruncate &&
         !logs.find("write to " + proxy.address(), mark).empty();
}

uint64_t input(size_t peer, size_t k) {
  return (uint64_t{peer + 1} << 40) ^ (uint64_t{k} * 0x9E3779B97F4A7C15ull);
}

// ---- all-reduce ---------------------------------------------------------------------------

constexpr size_t kCount = size_t{1} << 20;  // 8 MiB of uint64 per peer
constexpr uint64_t kArmAfter = 2u << 20;      // payload bytes into B before the tampered record

// One in-place all-reduce on every peer of `bed`: what each got.
std::vector<Outcome> all_reduce(Bed& bed, uint64_t tag) {
  std::vector<uint64_t> want(kCount, 0);
  for (size_t k = 0; k < kCount; ++k) {
    for (size_t i : bed.c.peers()) want[k] += input(i, k);
  }
  std::vector<Outcome> out(bed.c.slots());
  EXPECT_TRUE(bed.c.run([&](size_t i, qcclComm_t* comm) {
    std::vector<uint64_t> v(kCount);
    for (size_t k = 0; k < kCount; ++k) v[k] = input(i, k);
    qcclReduceDesc_t d = {kCount, qcclUint64, qcclSum, tag, {qcclQuantNone, qcclUint64}};
    Outcome& o = out[i];
    o.result = qcclAllReduce(v.data(), v.data(), &d, comm, nullptr);
    if (o.result != qcclSuccess) o.error = qcclGetLastError();
    o.data_ok = true;
    for (size_t k = 0; k < kCount && o.data_ok; ++k) {
      o.data_ok = v[k] == (o.result == qcclSuccess ? want[k] : input(i, k));
    }
  }));
  return out;
}

struct ReduceCase {
  Action action;
  uint32_t lanes;
};

class TamperAllReduce : public ::testing::TestWithParam<ReduceCase> {};

TEST_P(TamperAllReduce, FailsEverywhereOrRecoversAndTheNextOpIsExact) {
  const auto [action, lanes] = GetParam();
  LogCapture& logs = LogCapture::get();
  Bed bed(lanes);
  ASSERT_TRUE(bed.start());
  // A clean op first: the lanes into B are up and the proxy has seen them.
  auto clean = all_reduce(bed, 1);
  for (const auto& o : clean) ASSERT_EQ(o.result, qcclSuccess) << summary(clean);
  ASSERT_GE(bed.proxy.connections(), size_t{lanes});

  const size_t mark = logs.size();
  ASSERT_TRUE(bed.proxy.arm(Dir::kToServer, action, kArmAfter));
  auto out = all_reduce(bed, 2);
  auto fired = bed.proxy.fired();
  ASSERT_TRUE(fired.has_value()) << "the proxy never tampered; " << summary(out);
  EXPECT_EQ(fired->dir, Dir::kToServer);
  const std::string log = logs.since(mark);
  expect_all_or_nothing(out, log);
  // B refused the record (or the cut stream) and said so, naming the proxy's connection.
  EXPECT_TRUE(lane_tampering_logged(logs, mark, *fired, bed.proxy)) << refusal(*fired) << "\n"
                                                                   << log;
  for (const auto& o : out) {
    if (lanes == 1) {
      // The only lane into B is gone mid-op: the op fails everywhere. (Its message names the
      // first failure the master heard of: B's refusal, or its sender's broken pipe.)
      EXPECT_EQ(o.result, qcclPeerLost) << summary(out) << "\n" << log;
      EXPECT_EQ(o.error, out[0].error) << summary(out);
    } else {
      // The other lane carries the lost one's frames: those its sender still held as not
      // delivered. Frames the tamperer's TCP had acknowledged count as delivered, so if the
      // dropped record held some, the op stalls and fails everywhere at the stall deadline
      // (seen under ASan's slowdown). Either way, all or nothing (checked above).
      EXPECT_TRUE(o.result == qcclSuccess || o.result == qcclPeerLost)
          << summary(out) << "\n" << log;
      EXPECT_EQ(o.result, out[0].result) << summary(out);
    }
  }

  auto retry = all_reduce(bed, 3);
  for (const auto& o : retry) {
    EXPECT_EQ(o.result, qcclSuccess) << summary(retry) << "\n" << logs.since(mark);
    EXPECT_TRUE(o.data_ok) << summary(retry);
  }
  bed.expect_all_members();
}

INSTANTIATE_TEST_SUITE_P(
    Actions, TamperAllReduce,
    ::testing::Values(ReduceCase{Action::kFlipBit, 1}, ReduceCase{Action::kInject, 1},
                      ReduceCase{Action::kReplay, 1}, ReduceCase{Action::kReorder, 1},
                      ReduceCase{Action::kDrop, 1}, ReduceCase{Action::kTruncate, 1},
                      ReduceCase{Action::kFlipBit, 2}, ReduceCase{Action::kInject, 2},
                      ReduceCase{Action::kReplay, 2}, ReduceCase{Action::kReorder, 2},
                      ReduceCase{Action::kDrop, 2}, ReduceCase{Action::kTruncate, 2}),
    [](const auto& param_info) {
      const ReduceCase& p = param_info.param;
      return std::string(TamperProxy::name(p.action)) + "_" + std::to_string(p.lanes) + "Lane" +
             (p.lanes > 1 ? "s" : "");
    });

// ---- shared state -------------------------------------------------------------------------

constexpr size_t kStateFloats = size_t{1} << 20;  // 4 MiB: 4 pieces per receiver

float donor_value(size_t k) { return static_cast<float>(k) * 0.5f - 1000.0f; }

// One sync on every peer: B (the donor, send-only) holds the truth, the others receive.
std::vector<Outcome> sync_state(Bed& bed, uint64_t revision) {
  std::vector<Outcome> out(bed.c.slots());
  EXPECT_TRUE(bed.c.run([&](size_t i, qcclComm_t* comm) {
    const bool donor = i == bed.b;
    std::vector<float> w(kStateFloats);
    for (size_t k = 0; k < kStateFloats; ++k) w[k] = donor ? donor_value(k) : -1.0f;
    qcclTensorInfo_t t{"w", w.data(), w.size(), qcclFloat32, 0};
    qcclSharedState_t st{revision, 1, &t};
    Outcome& o = out[i];
    o.result = qcclSyncSharedState(comm, &st, donor ? qcclSyncSendOnly : qcclSyncReceiveOnly,
                                   nullptr);
    if (o.result != qcclSuccess) o.error = qcclGetLastError();
    const bool updated = donor || o.result == qcclSuccess;
    o.data_ok = true;
    for (size_t k = 0; k < kStateFloats && o.data_ok; ++k) {
      o.data_ok = w[k] == (updated ? donor_value(k) : -1.0f);
    }
  }));
  return out;
}

class TamperSharedState : public ::testing::TestWithParam<Action> {};

TEST_P(TamperSharedState, TheDownloadRefetchesTheLostPiecesAndIsExact) {
  LogCapture& logs = LogCapture::get();
  Bed bed(2);
  ASSERT_TRUE(bed.start());
  const size_t mark = logs.size();
  // Tensor bytes flow server -> client: the receivers dial their donor, B, through the proxy.
  ASSERT_TRUE(bed.proxy.arm(Dir::kToClient, GetParam(), 1u << 20));
  auto out = sync_state(bed, 1);
  auto fired = bed.proxy.fired();
  ASSERT_TRUE(fired.has_value()) << "the proxy never tampered; " << summary(out);
  EXPECT_EQ(fired->dir, Dir::kToClient);
  EXPECT_GT(fired->record, 0u) << "record 0 is the PreambleAck, not tensor bytes";
  const std::string log = logs.since(mark);
  for (const auto& o : out) {
    EXPECT_EQ(o.result, qcclSuccess) << summary(out) << "\n" << log;
    EXPECT_TRUE(o.data_ok) << summary(out) << "\n" << log;
  }
  // The receiver refused the record (or the cut stream) and said so.
  const std::string why = refusal(*fired);
  EXPECT_FALSE(logs.find(why, mark).empty()) << why << "\n" << log;
  // The run goes on: the next revision syncs too.
  auto next = sync_state(bed, 2);
  for (const auto& o : next) EXPECT_EQ(o.result, qcclSuccess) << summary(next);
  bed.expect_all_members();
}

INSTANTIATE_TEST_SUITE_P(Actions, TamperSharedState,
                         ::testing::Values(Action::kFlipBit, Action::kReplay, Action::kTruncate),
                         [](const auto& param_info) {
                           return TamperProxy::name(param_info.param);
                         });

}  // namespace
}  // namespace qccl::test
