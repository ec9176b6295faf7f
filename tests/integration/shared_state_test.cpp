// Shared-state synchronisation over the public C API (qcclSyncSharedState), PCCL's shared-state
// suite re-expressed for qccl's rules (docs/shared-state.md, src/master/state_election.hpp):
// transfers only of dirty tensors with exact byte counts, the election (newest revision, then
// most voters, then the smallest peer id; send-only / enforce-popular / receive-only), the
// revision rule, key-set mismatches, separate peer groups, drag-along and late-joining peers,
// every dtype, edge sizes and a 256 MiB tensor, and the argument / usage errors.
//
// Every peer function runs on its own thread (Cluster::run); outcomes are recorded per peer and
// checked on the main thread, so a failure names the peer and the step.
//
// Peer ids: the master numbers peers from 1 in registration order and the Cluster registers one
// peer at a time, so cluster slot i is master peer i + 1. Messages are checked against that.
#include <qccl/qccl.h>

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <latch>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "support/cluster.hpp"
#include "support/watchdog.hpp"

QCCL_TEST_WATCHDOG(230);

namespace qccl::test {
namespace {

constexpr size_t kMiB = size_t{1} << 20;

size_t dtype_bytes(qcclDataType_t t) {
  switch (t) {
    case qcclUint8:
    case qcclInt8:
      return 1;
    case qcclUint16:
    case qcclInt16:
    case qcclFloat16:
    case qcclBFloat16:
      return 2;
    case qcclUint32:
    case qcclInt32:
    case qcclFloat32:
      return 4;
    default:
      return 8;
  }
}

bool mentions(const std::string& text, const std::string& what) {
  return text.find(what) != std::string::npos;
}

// "peer 3": how the master names cluster slot i (see the header comment).
std::string peer_name(size_t slot) { return "peer " + std::to_string(slot + 1); }

uint64_t splitmix(uint64_t& x) {
  uint64_t z = (x += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

uint64_t seed_of(const std::string& name, uint64_t version) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (unsigned char ch : name) h = (h ^ ch) * 1099511628211ull;
  return h ^ (version * 0xD6E8FEB86659FD93ull);
}

// Deterministic pseudo-random bytes.
void fill(uint8_t* p, size_t n, uint64_t seed) {
  uint64_t x = seed;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t v = splitmix(x);
    std::memcpy(p + i, &v, 8);
  }
  if (i < n) {
    uint64_t v = splitmix(x);
    std::memcpy(p + i, &v, n - i);
  }
}

struct Spec {
  std::string name;
  qcclDataType_t dtype;
  size_t count;
  bool allow_inequality = false;
  size_t bytes() const { return count * dtype_bytes(dtype); }
};

// What one call of qcclSyncSharedState returned, read on the calling thread.
struct Outcome {
  qcclResult_t result = qcclInternalError;
  uint64_t tx = 0, rx = 0;
  uint64_t revision = 0;  // state->revision after the call
  std::string error;      // qcclGetLastError() after the call
  bool ran = false;
};

std::ostream& operator<<(std::ostream& os, const Outcome& o) {
  if (!o.ran) return os << "{not run}";
  return os << "{" << qcclGetErrorString(o.result) << ", tx " << o.tx << ", rx " << o.rx
            << ", revision " << o.revision << ", \"" << o.error << "\"}";
}

// One peer's shared state: the bytes of each tensor, in the order of the specs (deliberately
// not sorted by name: the library sorts).
class State {
 public:
  State() = default;
  State(std::vector<Spec> specs, uint64_t version, uint64_t rev = 0)
      : revision(rev), specs_(std::move(specs)), data_(specs_.size()) {
    for (size_t k = 0; k < specs_.size(); ++k) {
      data_[k].resize(specs_[k].bytes());
      set(specs_[k].name, version);
    }
  }

  // Gives tensor `name` its content number `version` (the same on every peer).
  void set(const std::string& name, uint64_t version) {
    auto& d = (*this)[name];
    fill(d.data(), d.size(), seed_of(name, version));
  }
  void set_all(uint64_t version) {
    for (const Spec& s : specs_) set(s.name, version);
  }
  // Flips one byte of tensor `name` (offset from the start; SIZE_MAX = the last byte).
  void flip(const std::string& name, size_t offset = SIZE_MAX) {
    auto& d = (*this)[name];
    d.at(offset == SIZE_MAX ? d.size() - 1 : offset) ^= 0x5A;
  }
  std::vector<uint8_t>& operator[](const std::string& name) { return data_.at(index(name)); }
  const std::vector<uint8_t>& operator[](const std::string& name) const {
    return data_.at(index(name));
  }
  std::vector<Spec>& specs() { return specs_; }
  const std::vector<Spec>& specs() const { return specs_; }

  size_t bytes(const std::vector<std::string>& names) const {
    size_t n = 0;
    for (const auto& name : names) n += specs_.at(index(name)).bytes();
    return n;
  }
  size_t total_bytes() const {
    size_t n = 0;
    for (const Spec& s : specs_) n += s.allow_inequality ? 0 : s.bytes();
    return n;
  }

  Outcome sync(qcclComm_t* comm, qcclSyncStrategy_t strategy) {
    std::vector<qcclTensorInfo_t> t(specs_.size());
    for (size_t k = 0; k < specs_.size(); ++k) {
      const Spec& s = specs_[k];
      t[k] = {s.name.c_str(), s.count == 0 ? nullptr : data_[k].data(), s.count, s.dtype,
              s.allow_inequality ? 1 : 0};
    }
    qcclSharedState_t st{revision, t.size(), t.data()};
    qcclSyncInfo_t info{12345, 67890};  // must be overwritten
    Outcome o;
    o.result = qcclSyncSharedState(comm, &st, strategy, &info);
    o.error = qcclGetLastError();
    o.tx = info.tx_bytes;
    o.rx = info.rx_bytes;
    o.revision = st.revision;
    o.ran = true;
    revision = st.revision;
    return o;
  }

  uint64_t revision = 0;

 private:
  size_t index(const std::string& name) const {
    for (size_t k = 0; k < specs_.size(); ++k) {
      if (specs_[k].name == name) return k;
    }
    ADD_FAILURE() << "no tensor '" << name << "'";
    return specs_.size();  // .at() throws
  }

  std::vector<Spec> specs_;
  std::vector<std::vector<uint8_t>> data_;
};

// Byte-for-byte equality of two states (allow_inequality tensors only if `all`); names the
// first differing tensor and offset.
::testing::AssertionResult same(const State& a, const State& b, bool all = false) {
  if (a.specs().size() != b.specs().size()) return ::testing::AssertionFailure() << "layouts";
  for (const Spec& s : a.specs()) {
    if (s.allow_inequality && !all) continue;
    const auto& x = a[s.name];
    const auto& y = b[s.name];
    if (x.size() != y.size()) {
      return ::testing::AssertionFailure() << "'" << s.name << "' sizes " << x.size() << " vs "
                                           << y.size();
    }
    if (x.empty() || std::memcmp(x.data(), y.data(), x.size()) == 0) continue;
    size_t k = 0;
    while (x[k] == y[k]) ++k;
    return ::testing::AssertionFailure() << "'" << s.name << "' differs at byte " << k << " of "
                                         << x.size();
  }
  return ::testing::AssertionSuccess();
}

uint64_t sum_tx(const std::vector<Outcome>& out, const std::vector<size_t>& ids) {
  uint64_t n = 0;
  for (size_t i : ids) n += out.at(i).tx;
  return n;
}
uint64_t sum_rx(const std::vector<Outcome>& out, const std::vector<size_t>& ids) {
  uint64_t n = 0;
  for (size_t i : ids) n += out.at(i).rx;
  return n;
}

// Every peer in `ids` succeeded with `revision`.
void expect_success(const std::vector<Outcome>& out, const std::vector<size_t>& ids,
                    uint64_t revision) {
  for (size_t i : ids) {
    const Outcome& o = out.at(i);
    EXPECT_EQ(o.result, qcclSuccess) << "slot " << i << ": " << o;
    EXPECT_EQ(o.revision, revision) << "slot " << i << ": " << o;
  }
}

// Every peer in `ids` got `result`, with no bytes moved, and an error naming every `word`.
void expect_failure(const std::vector<Outcome>& out, const std::vector<size_t>& ids,
                    qcclResult_t result, const std::vector<std::string>& words) {
  for (size_t i : ids) {
    const Outcome& o = out.at(i);
    EXPECT_EQ(o.result, result) << "slot " << i << ": " << o;
    EXPECT_EQ(o.tx, 0u) << "slot " << i;
    EXPECT_EQ(o.rx, 0u) << "slot " << i;
    for (const auto& w : words) EXPECT_TRUE(mentions(o.error, w)) << "slot " << i << ": " << o;
  }
}

// A state of mixed tensors used by several tests.
std::vector<Spec> mixed_specs() {
  return {{"weights", qcclFloat32, 300001},
          {"bias", qcclBFloat16, 77},
          {"step", qcclInt64, 1},
          {"moments", qcclFloat64, 2 * 65536 + 3}};
}

// ---- transfers ---------------------------------------------------------------------------------

TEST(SharedState, NoTransferWhenIdentical) {
  Cluster c;
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(c.grow(3));
  std::vector<State> st(c.slots(), State(mixed_specs(), 1, 0));
  const State expected(mixed_specs(), 1, 0);
  for (uint64_t rev : {0u, 1u, 2u}) {
    SCOPED_TRACE("revision " + std::to_string(rev));
    std::vector<Outcome> out(c.slots());
    ASSERT_TRUE(c.run([&](size_t i, qcclComm_t* comm) {
      st[i].revision = rev;
      out[i] = st[i].sync(comm, qcclSyncEnforcePopular);
    }));
    expect_success(out, c.peers(), rev);
    for (size_t i : c.peers()) {
      EXPECT_EQ(out[i].tx, 0u) << "slot " << i;
      EXPECT_EQ(out[i].rx, 0u) << "slot " << i;
      EXPECT_TRUE(same(st[i], expected)) << "slot " << i;
    }
  }
}

// Only the tensors whose content differs travel; the donors' tx adds up to the receiver's rx.
TEST(SharedState, OnlyDirtyKeysAreSent) {
  Cluster c;
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(c.grow(3));
  const std::vector<Spec> specs = {{"a", qcclFloat32, kMiB / 4 + 3},
                                   {"b", qcclUint8, 5000},
                                   {"c", qcclFloat64, 2048},
                                   {"d", qcclInt32, 17}};
  std::vector<State> st(c.slots(), State(specs, 1, 0));
  State expected(specs, 1, 0);
  std::vector<Outcome> out(c.slots());
  ASSERT_TRUE(c.run([&](size_t i, qcclComm_t* comm) { out[i] = st[i].sync(comm, qcclSyncEnforcePopular); }));
  expect_success(out, c.peers(), 0);
  EXPECT_EQ(sum_rx(out, c.peers()), 0u);

  // Revision 1: slot 2 dirtied b and d (one byte each).
  st[2].flip("b", 4999);
  st[2].flip("d", 0);
  ASSERT_TRUE(c.run([&](size_t i, qcclComm_t* comm) {
    st[i].revision = 1;
    out[i] = st[i].sync(comm, qcclSyncEnforcePopular);
  }));
  expect_success(out, c.peers(), 1);
  EXPECT_EQ(out[2].rx, expected.bytes({"b", "d"})) << out[2];
  EXPECT_EQ(out[2].tx, 0u) << out[2];
  EXPECT_EQ(out[0].rx, 0u) << out[0];
  EXPECT_EQ(out[1].rx, 0u) << out[1];
  EXPECT_EQ(out[0].tx + out[1].tx, out[2].rx) << out[0] << out[1];
  for (size_t i : c.peers()) EXPECT_TRUE(same(st[i], expected)) << "slot " << i;

  // Revision 2: slot 0 dirtied a (first byte).
  st[0].flip("a", 0);
  ASSERT_TRUE(c.run([&](size_t i, qcclComm_t* comm) {
    st[i].revision = 2;
    out[i] = st[i].sync(comm, qcclSyncEnforcePopular);
  }));
  expect_success(out, c.peers(), 2);
  EXPECT_EQ(out[0].rx, expected.bytes({"a"})) << out[0];
  EXPECT_EQ(out[0].tx, 0u);
  EXPECT_EQ(out[1].rx + out[2].rx, 0u);
  EXPECT_EQ(out[1].tx + out[2].tx, expected.bytes({"a"})) << out[1] << out[2];
  for (size_t i : c.peers()) EXPECT_TRUE(same(st[i], expected)) << "slot " << i;
}

// Three peers, three keys: the two peers that agree outvote the smallest id.
TEST(SharedState, PopularContentWinsAmongThree) {
  Cluster c;
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(c.grow(3));
  const std::vector<Spec> specs = {{"x", qcclFloat32, 40000},
                                   {"y", qcclInt16, 12345},
                                   {"z", qcclUint64, 999}};
  std::vector<State> st(c.slots(), State(specs, 1, 4));
  st[0].set("x", 2);
  st[0].set("z", 2);
  const State expected(specs, 1, 4);
  std::vector<Outcome> out(c.slots());
  ASSERT_TRUE(c.run([&](size_t i, qcclComm_t* comm) { out[i] = st[i].sync(comm, qcclSyncEnforcePopular); }));
  expect_success(out, c.peers(), 4);
  EXPECT_EQ(out[0].rx, expected.bytes({"x", "z"})) << out[0];
  EXPECT_EQ(out[0].tx, 0u);
  EXPECT_EQ(out[1].rx + out[2].rx, 0u);
  EXPECT_EQ(out[1].tx + out[2].tx, out[0].rx) << out[1] << out[2];
  for (size_t i : c.peers()) EXPECT_TRUE(same(st[i], expected)) << "slot " << i;
}

// Four peers with multiple keys: 2 votes beat 1 + 1; then a 2 : 2 tie goes to the group that
// holds the smallest peer id.
TEST(SharedState, PopularContentWinsAmongFourThenTieGoesToSmallestPeer) {
  Cluster c;
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(c.grow(4));
  const std::vector<Spec> specs = {{"k1", qcclUint8, 70001},
                                   {"k2", qcclFloat16, 33333},
                                   {"k3", qcclInt32, 4097}};
  // Slots 1 and 3 hold X; slot 0 differs on k2; slot 2 on k1 and k2.
  std::vector<State> st(c.slots(), State(specs, 1, 9));
  st[0].set("k2", 2);
  st[2].set("k1", 3);
  st[2].set("k2", 3);
  State expected(specs, 1, 9);
  std::vector<Outcome> out(c.slots());
  ASSERT_TRUE(c.run([&](size_t i, qcclComm_t* comm) { out[i] = st[i].sync(comm, qcclSyncEnforcePopular); }));
  expect_success(out, c.peers(), 9);
  EXPECT_EQ(out[0].rx, expected.bytes({"k2"})) << out[0];
  EXPECT_EQ(out[2].rx, expected.bytes({"k1", "k2"})) << out[2];
  EXPECT_EQ(out[1].rx + out[3].rx, 0u);
  EXPECT_EQ(out[0].tx + out[2].tx, 0u) << "receivers must not serve";
  EXPECT_EQ(out[1].tx + out[3].tx, out[0].rx + out[2].rx) << out[1] << out[3];
  for (size_t i : c.peers()) EXPECT_TRUE(same(st[i], expected)) << "slot " << i;

  // Revision 10: slots 0 and 3 hold Y (k3 changed), slots 1 and 2 hold X' (k1 changed).
  st[0].set("k3", 7);
  st[3].set("k3", 7);
  st[1].set("k1", 8);
  st[2].set("k1", 8);
  expected.set("k3", 7);  // the group of slot 0 (peer 1) wins the tie
  ASSERT_TRUE(c.run([&](size_t i, qcclComm_t* comm) {
    st[i].revision = 10;
    out[i] = st[i].sync(comm, qcclSyncEnforcePopular);
  }));
  expect_success(out, c.peers(), 10);
  for (size_t i : {size_t{1}, size_t{2}}) {
    EXPECT_EQ(out[i].rx, expected.bytes({"k1", "k3"})) << "slot " << i << ": " << out[i];
    EXPECT_EQ(out[i].tx, 0u) << "slot " << i;
  }
  EXPECT_EQ(out[0].rx + out[3].rx, 0u);
  EXPECT_EQ(out[0].tx + out[3].tx, 2 * expected.bytes({"k1", "k3"})) << out[0] << out[3];
  for (size_t i : c.peers()) EXPECT_TRUE(same(st[i], expected)) << "slot " << i;
}

// Two groups with their own keys (one name in common, with another dtype and count) and their
// own revisions sync concurrently; a revision violation in group 1 does not touch group 0.
TEST(SharedState, PeerGroupsSyncSeparately) {
  Cluster c;
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(c.grow(2, 0));
  ASSERT_TRUE(c.grow(3, 1));
  const std::vector<size_t> g0 = c.peers_in_group(0), g1 = c.peers_in_group(1);
  ASSERT_EQ(g0, (std::vector<size_t>{0, 1}));
  ASSERT_EQ(g1, (std::vector<size_t>{2, 3, 4}));
  const std::vector<Spec> specs0 = {{"g0.w", qcclFloat32, 70000},
                                    {"g0.b", qcclUint16, 33},
                                    {"common", qcclFloat32, 10}};
  const std::vector<Spec> specs1 = {{"g1.emb", qcclBFloat16, 100001},
                                    {"g1.step", qcclUint64, 1},
                                    {"common", qcclInt8, 99}};
  std::vector<State> st(c.slots());
  for (size_t i : g0) st[i] = State(specs0, 1, 100);
  for (size_t i : g1) st[i] = State(specs1, 1, 7);
  State exp0(specs0, 1, 0), exp1(specs1, 1, 0);
  // Slot 1 diverges on g0.b; slot 4 on g1.emb and common.
  st[1].set("g0.b", 5);
  st[4].set("g1.emb", 5);
  st[4].set("common", 5);
  std::vector<Outcome> out(c.slots());
  ASSERT_TRUE(c.run([&](size_t i, qcclComm_t* comm) { out[i] = st[i].sync(comm, qcclSyncEnforcePopular); }));
  expect_success(out, g0, 100);
  expect_success(out, g1, 7);
  EXPECT_EQ(out[1].rx, exp0.bytes({"g0.b"})) << out[1];
  EXPECT_EQ(out[0].rx, 0u);
  EXPECT_EQ(out[0].tx, out[1].rx);
  EXPECT_EQ(out[4].rx, exp1.bytes({"g1.emb", "common"})) << out[4];
  EXPECT_EQ(out[2].rx + out[3].rx, 0u);
  EXPECT_EQ(out[2].tx + out[3].tx, out[4].rx) << out[2] << out[3];
  for (size_t i : g0) EXPECT_TRUE(same(st[i], exp0)) << "slot " << i;
  for (size_t i : g1) EXPECT_TRUE(same(st[i], exp1)) << "slot " << i;

  // Both advance by one, each from its own revision, with new content in one tensor each.
  exp0.set("g0.w", 2);
  exp1.set("g1.step", 2);
  ASSERT_TRUE(c.run([&](size_t i, qcclComm_t* comm) {
    st[i].set(i < 2 ? "g0.w" : "g1.step", 2);
    st[i].revision += 1;
    out[i] = st[i].sync(comm, qcclSyncEnforcePopular);
  }));
  expect_success(out, g0, 101);
  expect_success(out, g1, 8);
  for (size_t i : c.peers()) {
    EXPECT_EQ(out[i].tx, 0u) << "slot " << i;
    EXPECT_EQ(out[i].rx, 0u) << "slot " << i;
    EXPECT_TRUE(same(st[i], i < 2 ? exp0 : exp1)) << "slot " << i;
  }

  // Group 1 skips a revision (slot 3 passes 10, expected 9); group 0 is unaffected.
  ASSERT_TRUE(c.run([&](size_t i, qcclComm_t* comm) {
    st[i].revision = i == 3 ? 10 : st[i].revision + 1;
    out[i] = st[i].sync(comm, qcclSyncEnforcePopular);
  }));
  expect_success(out, g0, 102);
  expect_failure(out, g1, qcclMismatch, {"revision 10", peer_name(3)});
  ASSERT_TRUE(c.run_on(g1, [&](size_t i, qcclComm_t* comm) {
    st[i].revision = 9;
    out[i] = st[i].sync(comm, qcclSyncEnforcePopular);
  }));
  expect_success(out, g1, 9);
}

// Ten steps; every peer applies the same deterministic update and increments the revision, so
// no byte ever moves.
TEST(SharedState, MultiStepAdvancementMovesNothing) {
  Cluster c;
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(c.grow(3));
  std::vector<State> st(c.slots(), State(mixed_specs(), 1, 0));
  std::vector<std::vector<Outcome>> out(11, std::vector<Outcome>(c.slots()));
  ASSERT_TRUE(c.run([&](size_t i, qcclComm_t* comm) {
    for (uint64_t step = 0; step <= 10; ++step) {
      if (step > 0) {
        for (const Spec& s : st[i].specs()) {
          auto& d = st[i][s.name];
          for (size_t k = 0; k < d.size(); ++k) {
            d[k] = static_cast<uint8_t>(d[k] * 31u + step + k);
          }
        }
        st[i].revision = step;
      }
      out[step][i] = st[i].sync(comm, qcclSyncEnforcePopular);
      if (out[step][i].result != qcclSuccess) return;
    }
  }));
  for (uint64_t step = 0; step <= 10; ++step) {
    SCOPED_TRACE("step " + std::to_string(step));
    expect_success(out[step], c.peers(), step);
    for (size_t i : c.peers()) {
      EXPECT_EQ(out[step][i].tx, 0u) << "slot " << i;
      EXPECT_EQ(out[step][i].rx, 0u) << "slot " << i;
    }
  }
  for (size_t i : c.peers()) EXPECT_TRUE(same(st[i], st[0])) << "slot " << i;
  EXPECT_FALSE(same(st[0], State(mixed_specs(), 1, 0))) << "the updates changed nothing";
}

// A drag-along peer never advances: every step it passes revision 0 and its initial content
// again, and receives exactly the tensors that changed since then.
TEST(SharedState, DragAlongPeerReceivesExactlyTheChangedTensors) {
  Cluster c;
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(c.grow(3));
  const std::vector<Spec> specs = {{"a", qcclUint8, 3 * kMiB + 11},
                                   {"b", qcclFloat32, 50000},
                                   {"c", qcclInt16, 999}};
  const State initial(specs, 0, 0);
  std::vector<State> st(c.slots(), initial);
  constexpr uint64_t kSteps = 6;
  std::vector<std::vector<Outcome>> out(kSteps + 1, std::vector<Outcome>(c.slots()));
  std::vector<State> truth(kSteps + 1, initial);  // the advancing content after each step
  for (uint64_t s = 1; s <= kSteps; ++s) {
    truth[s] = truth[s - 1];
    truth[s].set("a", s);               // a changes every step
    if (s >= 3) truth[s].set("b", s);   // b from step 3 on; c never
    truth[s].revision = s;
  }
  ASSERT_TRUE(c.run([&](size_t i, qcclComm_t* comm) {
    for (uint64_t s = 0; s <= kSteps; ++s) {
      if (i == 2) {
        st[i] = initial;  // stale content, revision 0
      } else if (s > 0) {
        st[i].set("a", s);
        if (s >= 3) st[i].set("b", s);
        st[i].revision = s;
      }
      out[s][i] = st[i].sync(comm, qcclSyncEnforcePopular);
      if (out[s][i].result != qcclSuccess) return;
      EXPECT_TRUE(same(st[i], truth[s])) << "slot " << i << " step " << s;
    }
  }));
  for (uint64_t s = 0; s <= kSteps; ++s) {
    SCOPED_TRACE("step " + std::to_string(s));
    expect_success(out[s], c.peers(), s);
    const uint64_t want = s == 0 ? 0 : s < 3 ? initial.bytes({"a"}) : initial.bytes({"a", "b"});
    EXPECT_EQ(out[s][2].rx, want) << out[s][2];
    EXPECT_EQ(out[s][2].tx, 0u) << out[s][2];
    EXPECT_EQ(out[s][0].rx + out[s][1].rx, 0u);
    EXPECT_EQ(out[s][0].tx + out[s][1].tx, want) << out[s][0] << out[s][1];
  }
}

// ---- the revision rule -----------------------------------------------------------------------

// A peer jumping two revisions fails the sync on every peer with nothing changed; a correct
// retry then succeeds; passing the last revision again (not ahead) is accepted.
TEST(SharedState, RevisionSkipIsMismatchEverywhereThenRetrySucceeds) {
  Cluster c;
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(c.grow(3));
  std::vector<State> st(c.slots(), State(mixed_specs(), 1, 3));
  const State expected(mixed_specs(), 1, 0);
  std::vector<Outcome> out(c.slots());
  ASSERT_TRUE(c.run([&](size_t i, qcclComm_t* comm) { out[i] = st[i].sync(comm, qcclSyncEnforcePopular); }));
  expect_success(out, c.peers(), 3);

  // Slot 2 diverged (a transfer would show); slot 1 passes 5 where 4 is expected.
  st[2].set("bias", 9);
  std::vector<State> before = st;
  ASSERT_TRUE(c.run([&](size_t i, qcclComm_t* comm) {
    st[i].revision = i == 1 ? 5 : 4;
    out[i] = st[i].sync(comm, qcclSyncEnforcePopular);
  }));
  expect_failure(out, c.peers(), qcclMismatch, {"revision 5", "at most 4", peer_name(1)});
  for (size_t i : c.peers()) {
    EXPECT_EQ(out[i].revision, i == 1 ? 5u : 4u) << "slot " << i << ": revision was changed";
    EXPECT_TRUE(same(st[i], before[i], true)) << "slot " << i << ": content was changed";
  }

  // The same skip right after the first sync, by slot 0 this time: still refused.
  ASSERT_TRUE(c.run([&](size_t i, qcclComm_t* comm) {
    st[i].revision = i == 0 ? 6 : 4;
    out[i] = st[i].sync(comm, qcclSyncEnforcePopular);
  }));
  expect_failure(out, c.peers(), qcclMismatch, {"revision 6", peer_name(0)});

  ASSERT_TRUE(c.run([&](size_t i, qcclComm_t* comm) {
    st[i].revision = 4;
    out[i] = st[i].sync(comm, qcclSyncEnforcePopular);
  }));
  expect_success(out, c.peers(), 4);
  EXPECT_EQ(out[2].rx, expected.bytes({"bias"})) << out[2];
  EXPECT_EQ(out[0].tx + out[1].tx, expected.bytes({"bias"})) << out[0] << out[1];
  for (size_t i : c.peers()) EXPECT_TRUE(same(st[i], expected)) << "slot " << i;

  // Revision 4 again (not ahead of the expected 5) is accepted; 5 then still is the next.
  ASSERT_TRUE(c.run([&](size_t i, qcclComm_t* comm) { out[i] = st[i].sync(comm, qcclSyncEnforcePopular); }));
  expect_success(out, c.peers(), 4);
  ASSERT_TRUE(c.run([&](size_t i, qcclComm_t* comm) {
    st[i].revision = 5;
    out[i] = st[i].sync(comm, qcclSyncEnforcePopular);
  }));
  expect_success(out, c.peers(), 5);
  EXPECT_EQ(sum_rx(out, c.peers()), 0u);
}

// The first sync of a run accepts any revision (resuming from checkpoints); the newest wins
// even against more voters. From then on the revision advances by one.
TEST(SharedState, FirstSyncAcceptsAnyRevisionNewestWins) {
  Cluster c;
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(c.grow(3));
  std::vector<State> st(c.slots(), State(mixed_specs(), 1, 40));
  st[2] = State(mixed_specs(), 2, 41);  // newest checkpoint, every tensor different
  st[2].set("step", 1);                 // ... except this one
  const State expected = st[2];
  std::vector<Outcome> out(c.slots());
  ASSERT_TRUE(c.run([&](size_t i, qcclComm_t* comm) { out[i] = st[i].sync(comm, qcclSyncEnforcePopular); }));
  expect_success(out, c.peers(), 41);
  const uint64_t want = expected.bytes({"weights", "bias", "moments"});
  EXPECT_EQ(out[0].rx, want) << out[0];
  EXPECT_EQ(out[1].rx, want) << out[1];
  EXPECT_EQ(out[2].rx, 0u);
  EXPECT_EQ(out[2].tx, 2 * want) << out[2];
  EXPECT_EQ(out[0].tx + out[1].tx, 0u);
  for (size_t i : c.peers()) EXPECT_TRUE(same(st[i], expected)) << "slot " << i;

  ASSERT_TRUE(c.run([&](size_t i, qcclComm_t* comm) {
    st[i].revision = 43;
    out[i] = st[i].sync(comm, qcclSyncEnforcePopular);
  }));
  expect_failure(out, c.peers(), qcclMismatch, {"revision 43", "at most 42"});
  ASSERT_TRUE(c.run([&](size_t i, qcclComm_t* comm) {
    st[i].revision = 42;
    out[i] = st[i].sync(comm, qcclSyncEnforcePopular);
  }));
  expect_success(out, c.peers(), 42);
}

// ---- key sets ------------------------------------------------------------------------------

TEST(SharedState, KeySetMismatchIsRejectedEverywhereWithNothingChanged) {
  Cluster c;
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(c.grow(3));
  const std::vector<Spec> specs = {{"a", qcclFloat32, 1000},
                                   {"b", qcclInt32, 500},
                                   {"c", qcclUint8, 77}};
  const State expected(specs, 1, 0);
  std::vector<State> st(c.slots(), expected);
  std::vector<Outcome> out(c.slots());
  ASSERT_TRUE(c.run([&](size_t i, qcclComm_t* comm) { out[i] = st[i].sync(comm, qcclSyncEnforcePopular); }));
  expect_success(out, c.peers(), 0);

  struct Case {
    const char* what;
    size_t slot;                  // the odd peer
    void (*change)(std::vector<Spec>&);
    std::vector<std::string> words;  // in every peer's error
  };
  const Case cases[] = {
      {"missing key", 2, [](std::vector<Spec>& s) { s.erase(s.begin() + 2); }, {"'c'", "missing"}},
      {"extra key", 1, [](std::vector<Spec>& s) { s.push_back({"d", qcclUint8, 1}); }, {"'d'"}},
      {"renamed key", 2, [](std::vector<Spec>& s) { s[0] = Spec{"A", s[0].dtype, s[0].count}; }, {"'A'"}},
      {"different count", 1, [](std::vector<Spec>& s) { s[1].count = 501; }, {"'b'", "count 501"}},
      {"different dtype, same bytes", 0,
       [](std::vector<Spec>& s) { s[1].dtype = qcclFloat32; }, {"'b'", "dtype"}},
      {"allow_content_inequality differs", 2,
       [](std::vector<Spec>& s) { s[2].allow_inequality = true; }, {"'c'", "allow_inequality"}},
  };
  for (const Case& k : cases) {
    SCOPED_TRACE(k.what);
    // The odd peer's state: same content where the layout allows.
    std::vector<State> trial(c.slots(), expected);
    std::vector<Spec> odd = specs;
    k.change(odd);
    trial[k.slot] = State(odd, 1, 0);
    trial[(k.slot + 1) % 3].flip("a");  // would be fetched if the sync went ahead
    for (auto& s : trial) s.revision = 1;
    std::vector<State> before = trial;
    ASSERT_TRUE(c.run([&](size_t i, qcclComm_t* comm) { out[i] = trial[i].sync(comm, qcclSyncEnforcePopular); }));
    std::vector<std::string> words = k.words;
    words.push_back(peer_name(k.slot));
    expect_failure(out, c.peers(), qcclMismatch, words);
    for (size_t i : c.peers()) {
      EXPECT_EQ(trial[i].revision, 1u) << "slot " << i;
      EXPECT_TRUE(same(trial[i], before[i], true)) << "slot " << i << ": content changed";
    }
  }

  // The group still works, and its expected revision is still 1.
  st[1].flip("b", 3);
  ASSERT_TRUE(c.run([&](size_t i, qcclComm_t* comm) {
    st[i].revision = 1;
    out[i] = st[i].sync(comm, qcclSyncEnforcePopular);
  }));
  expect_success(out, c.peers(), 1);
  EXPECT_EQ(out[1].rx, expected.bytes({"b"})) << out[1];
  EXPECT_EQ(out[0].tx + out[2].tx, expected.bytes({"b"}));
  for (size_t i : c.peers()) EXPECT_TRUE(same(st[i], expected)) << "slot " << i;
}

// ---- strategies ------------------------------------------------------------------------------

// Two send-only peers disagree at the same revision with one vote each: the smallest peer id
// wins, the other is kicked; the enforce-popular peer that agreed with the loser is overwritten.
TEST(SharedState, TwoSendOnlyPeersDisagreeTheLoserIsKicked) {
  Cluster c;
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(c.grow(3));
  const State x(mixed_specs(), 1, 6);
  State y = x;
  y.set("weights", 2);
  y.set("step", 2);
  std::vector<State> st = {x, y, y};
  const qcclSyncStrategy_t strategy[3] = {qcclSyncSendOnly, qcclSyncSendOnly,
                                          qcclSyncEnforcePopular};
  std::vector<Outcome> out(c.slots());
  ASSERT_TRUE(c.run([&](size_t i, qcclComm_t* comm) { out[i] = st[i].sync(comm, strategy[i]); }));
  const uint64_t diff = x.bytes({"weights", "step"});
  expect_success(out, {0, 2}, 6);
  EXPECT_EQ(out[0].tx, diff) << out[0];
  EXPECT_EQ(out[0].rx, 0u);
  EXPECT_EQ(out[2].rx, diff) << out[2];
  EXPECT_EQ(out[2].tx, 0u);
  EXPECT_TRUE(same(st[0], x));
  EXPECT_TRUE(same(st[2], x));
  EXPECT_EQ(out[1].result, qcclKicked) << out[1];
  EXPECT_TRUE(mentions(out[1].error, "send-only " + peer_name(1))) << out[1];
  EXPECT_TRUE(mentions(out[1].error, "held by " + peer_name(0))) << out[1];
  EXPECT_TRUE(same(st[1], y, true)) << "the loser's state was changed";

  // The survivors go on without it.
  ASSERT_TRUE(c.run_on({0, 2}, [&](size_t i, qcclComm_t* comm) {
    st[i].revision = 7;
    out[i] = st[i].sync(comm, qcclSyncEnforcePopular);
  }));
  expect_success(out, {0, 2}, 7);
  EXPECT_EQ(sum_rx(out, {0, 2}) + sum_tx(out, {0, 2}), 0u);
}

// Send-only peers at different revisions: the newer wins even with the larger peer id; two
// agreeing send-only peers both serve.
TEST(SharedState, NewerSendOnlyWinsAgreeingSendOnlyPeersBothServe) {
  Cluster c;
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(c.grow(4));
  const State older(mixed_specs(), 1, 20);
  const State newer(mixed_specs(), 2, 21);
  // Slot 0: send-only older (kicked); slots 1, 2: send-only newer; slot 3: enforce-popular older.
  std::vector<State> st = {older, newer, newer, older};
  const qcclSyncStrategy_t strategy[4] = {qcclSyncSendOnly, qcclSyncSendOnly, qcclSyncSendOnly,
                                          qcclSyncEnforcePopular};
  std::vector<Outcome> out(c.slots());
  ASSERT_TRUE(c.run([&](size_t i, qcclComm_t* comm) { out[i] = st[i].sync(comm, strategy[i]); }));
  EXPECT_EQ(out[0].result, qcclKicked) << out[0];
  EXPECT_TRUE(mentions(out[0].error, "send-only " + peer_name(0))) << out[0];
  EXPECT_TRUE(same(st[0], older));
  expect_success(out, {1, 2, 3}, 21);
  EXPECT_EQ(out[3].rx, newer.total_bytes()) << out[3];
  EXPECT_EQ(out[1].tx + out[2].tx, newer.total_bytes()) << out[1] << out[2];
  EXPECT_EQ(out[1].rx + out[2].rx, 0u);
  for (size_t i : {1, 2, 3}) EXPECT_TRUE(same(st[i], newer)) << "slot " << i;
}

// Send-only + receive-only: the receive-only peer's newer revision does not count.
TEST(SharedState, SendOnlyAndReceiveOnly) {
  Cluster c;
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(c.grow(2));
  const State truth(mixed_specs(), 1, 3);
  std::vector<State> st = {State(mixed_specs(), 2, 9), truth};
  const qcclSyncStrategy_t strategy[2] = {qcclSyncReceiveOnly, qcclSyncSendOnly};
  std::vector<Outcome> out(c.slots());
  ASSERT_TRUE(c.run([&](size_t i, qcclComm_t* comm) { out[i] = st[i].sync(comm, strategy[i]); }));
  expect_success(out, {0, 1}, 3);
  EXPECT_EQ(out[0].rx, truth.total_bytes()) << out[0];
  EXPECT_EQ(out[0].tx, 0u);
  EXPECT_EQ(out[1].tx, truth.total_bytes()) << out[1];
  EXPECT_EQ(out[1].rx, 0u);
  EXPECT_TRUE(same(st[0], truth));
  EXPECT_TRUE(same(st[1], truth));
}

// A send-only peer beats two agreeing enforce-popular peers (they are not kicked: they fetch).
TEST(SharedState, SendOnlyBeatsPopularContent) {
  Cluster c;
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(c.grow(3));
  const State truth(mixed_specs(), 1, 0);
  State popular = truth;
  popular.set("moments", 4);
  std::vector<State> st = {popular, truth, popular};
  const qcclSyncStrategy_t strategy[3] = {qcclSyncEnforcePopular, qcclSyncSendOnly,
                                          qcclSyncEnforcePopular};
  std::vector<Outcome> out(c.slots());
  ASSERT_TRUE(c.run([&](size_t i, qcclComm_t* comm) { out[i] = st[i].sync(comm, strategy[i]); }));
  expect_success(out, c.peers(), 0);
  const uint64_t m = truth.bytes({"moments"});
  EXPECT_EQ(out[0].rx, m) << out[0];
  EXPECT_EQ(out[2].rx, m) << out[2];
  EXPECT_EQ(out[1].tx, 2 * m) << out[1];
  EXPECT_EQ(out[0].tx + out[2].tx + out[1].rx, 0u);
  for (size_t i : c.peers()) EXPECT_TRUE(same(st[i], truth)) << "slot " << i;
}

// Receive-only alongside enforce-popular peers: a stale receive-only peer gets everything; one
// that already holds the content moves nothing; and its vote never counts for popularity.
TEST(SharedState, ReceiveOnlyWithEnforcePopularPeers) {
  Cluster c;
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(c.grow(3));
  const State x(mixed_specs(), 1, 2);
  std::vector<State> st = {x, x, State(mixed_specs(), 0, 0)};
  const qcclSyncStrategy_t strategy[3] = {qcclSyncEnforcePopular, qcclSyncEnforcePopular,
                                          qcclSyncReceiveOnly};
  std::vector<Outcome> out(c.slots());
  ASSERT_TRUE(c.run([&](size_t i, qcclComm_t* comm) { out[i] = st[i].sync(comm, strategy[i]); }));
  expect_success(out, c.peers(), 2);
  EXPECT_EQ(out[2].rx, x.total_bytes()) << out[2];
  EXPECT_EQ(out[0].tx + out[1].tx, x.total_bytes()) << out[0] << out[1];
  for (size_t i : c.peers()) EXPECT_TRUE(same(st[i], x)) << "slot " << i;

  // Already up to date: nothing moves.
  ASSERT_TRUE(c.run([&](size_t i, qcclComm_t* comm) {
    st[i].revision = 3;
    out[i] = st[i].sync(comm, strategy[i]);
  }));
  expect_success(out, c.peers(), 3);
  EXPECT_EQ(sum_rx(out, c.peers()) + sum_tx(out, c.peers()), 0u);

  // Slot 0 changed "bias"; slot 1 and the receive-only slot 2 hold the old one. Among the
  // candidates it is 1 : 1 and the smallest peer id (slot 0) wins.
  State changed = x;
  changed.set("bias", 3);
  st[0].set("bias", 3);
  ASSERT_TRUE(c.run([&](size_t i, qcclComm_t* comm) {
    st[i].revision = 4;
    out[i] = st[i].sync(comm, strategy[i]);
  }));
  expect_success(out, c.peers(), 4);
  EXPECT_EQ(out[1].rx, x.bytes({"bias"})) << out[1];
  EXPECT_EQ(out[2].rx, x.bytes({"bias"})) << out[2];
  EXPECT_EQ(out[0].tx, 2 * x.bytes({"bias"})) << out[0];
  for (size_t i : c.peers()) EXPECT_TRUE(same(st[i], changed)) << "slot " << i;
}

TEST(SharedState, AllReceiveOnlyIsMismatch) {
  Cluster c;
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(c.grow(3));
  std::vector<State> st(c.slots(), State(mixed_specs(), 1, 0));
  st[1].set("weights", 2);
  std::vector<State> before = st;
  std::vector<Outcome> out(c.slots());
  ASSERT_TRUE(c.run([&](size_t i, qcclComm_t* comm) { out[i] = st[i].sync(comm, qcclSyncReceiveOnly); }));
  expect_failure(out, c.peers(), qcclMismatch, {"receive-only"});
  for (size_t i : c.peers()) EXPECT_TRUE(same(st[i], before[i], true)) << "slot " << i;

  // Receive-only on all but one works.
  ASSERT_TRUE(c.run([&](size_t i, qcclComm_t* comm) {
    out[i] = st[i].sync(comm, i == 1 ? qcclSyncEnforcePopular : qcclSyncReceiveOnly);
  }));
  expect_success(out, c.peers(), 0);
  EXPECT_EQ(out[0].rx, before[0].bytes({"weights"}));
  EXPECT_EQ(out[2].rx, before[0].bytes({"weights"}));
  EXPECT_EQ(out[1].tx, 2 * before[0].bytes({"weights"}));
  for (size_t i : c.peers()) EXPECT_TRUE(same(st[i], before[1])) << "slot " << i;
}

// ---- allow_content_inequality -------------------------------------------------------------

TEST(SharedState, AllowContentInequalityTensorsAreNeverComparedNorSent) {
  Cluster c;
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(c.grow(3));
  const std::vector<Spec> specs = {{"shared", qcclFloat32, 60000},
                                   {"local", qcclUint8, 3 * kMiB, true},
                                   {"rng", qcclUint64, 4, true}};
  std::vector<State> st;
  for (size_t i = 0; i < c.slots(); ++i) {
    st.emplace_back(specs, 1, 0);
    st[i].set("local", 10 + i);
    st[i].set("rng", 20 + i);
  }
  std::vector<State> before = st;
  std::vector<Outcome> out(c.slots());
  ASSERT_TRUE(c.run([&](size_t i, qcclComm_t* comm) { out[i] = st[i].sync(comm, qcclSyncEnforcePopular); }));
  expect_success(out, c.peers(), 0);
  EXPECT_EQ(sum_rx(out, c.peers()) + sum_tx(out, c.peers()), 0u);
  for (size_t i : c.peers()) EXPECT_TRUE(same(st[i], before[i], true)) << "slot " << i;

  // Slot 1 diverges on "shared" too: only "shared" travels.
  st[1].set("shared", 2);
  ASSERT_TRUE(c.run([&](size_t i, qcclComm_t* comm) {
    st[i].revision = 1;
    out[i] = st[i].sync(comm, qcclSyncEnforcePopular);
  }));
  expect_success(out, c.peers(), 1);
  EXPECT_EQ(out[1].rx, st[0].bytes({"shared"})) << out[1];
  EXPECT_EQ(out[0].tx + out[2].tx, st[0].bytes({"shared"}));
  for (size_t i : c.peers()) EXPECT_TRUE(same(st[i], before[i], true)) << "slot " << i;
}

// ---- errors ----------------------------------------------------------------------------------

TEST(SharedState, ArgumentErrors) {
  Cluster c;
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(c.grow(2));
  std::vector<Outcome> out(c.slots());
  ASSERT_TRUE(c.run([&](size_t i, qcclComm_t* comm) {
    std::vector<float> a(100, 1.0f);
    std::vector<int8_t> b(7, 3);
    auto call = [&](std::vector<qcclTensorInfo_t> t, int strategy = qcclSyncEnforcePopular) {
      qcclSharedState_t st{0, t.size(), t.data()};
      qcclSyncInfo_t info{1, 1};
      qcclResult_t r = qcclSyncSharedState(comm, &st, static_cast<qcclSyncStrategy_t>(strategy),
                                           &info);
      return std::make_pair(r, std::string(qcclGetLastError()));
    };
    auto expect_invalid = [&](std::pair<qcclResult_t, std::string> got, const char* what,
                              const char* word) {
      EXPECT_EQ(got.first, qcclInvalidArgument) << what << ": " << got.second;
      EXPECT_TRUE(mentions(got.second, "qcclSyncSharedState")) << what << ": " << got.second;
      EXPECT_TRUE(mentions(got.second, word)) << what << ": " << got.second;
    };
    qcclResult_t r = qcclSyncSharedState(comm, nullptr, qcclSyncEnforcePopular, nullptr);
    EXPECT_EQ(r, qcclInvalidArgument) << describe(r);
    EXPECT_TRUE(mentions(qcclGetLastError(), "state")) << qcclGetLastError();
    qcclSharedState_t none{0, 0, nullptr};
    r = qcclSyncSharedState(nullptr, &none, qcclSyncEnforcePopular, nullptr);
    EXPECT_EQ(r, qcclInvalidArgument) << describe(r);
    qcclSharedState_t no_array{0, 2, nullptr};
    r = qcclSyncSharedState(comm, &no_array, qcclSyncEnforcePopular, nullptr);
    EXPECT_EQ(r, qcclInvalidArgument) << describe(r);

    expect_invalid(call({{"a", a.data(), 100, qcclFloat32, 0}, {nullptr, b.data(), 7, qcclInt8, 0}}),
                   "NULL name", "name == NULL");
    expect_invalid(call({{"a", a.data(), 100, qcclFloat32, 0}, {"", b.data(), 7, qcclInt8, 0}}),
                   "empty name", "name");
    expect_invalid(call({{"dup", a.data(), 100, qcclFloat32, 0}, {"x", b.data(), 7, qcclInt8, 0},
                         {"dup", b.data(), 7, qcclInt8, 0}}),
                   "duplicate names", "'dup'");
    expect_invalid(call({{"a", a.data(), 100, qcclFloat32, 0},
                         {"odd", b.data(), 7, static_cast<qcclDataType_t>(15), 0}}),
                   "unknown dtype", "'odd'");
    expect_invalid(call({{"a", a.data(), 100, qcclFloat32, 0},
                         {"odd", b.data(), 7, qcclNumDataTypes, 0}}),
                   "qcclNumDataTypes", "'odd'");
    expect_invalid(call({{"a", a.data(), 100, qcclFloat32, 0}, {"nul", nullptr, 5, qcclInt8, 0}}),
                   "NULL data", "'nul'");
    expect_invalid(call({{"a", a.data(), 100, qcclFloat32, 0}}, 3), "unknown strategy",
                   "strategy");
    EXPECT_EQ(a, std::vector<float>(100, 1.0f));

    // None of them reached the master: a valid sync (NULL data with count 0 is legal, and
    // info_out is NULLABLE) goes through on both peers.
    qcclTensorInfo_t t[2] = {{"a", a.data(), 100, qcclFloat32, 0}, {"empty", nullptr, 0, qcclInt8, 0}};
    qcclSharedState_t st{5, 2, t};
    r = qcclSyncSharedState(comm, &st, qcclSyncEnforcePopular, nullptr);
    out[i].result = r;
    out[i].error = qcclGetLastError();
    out[i].revision = st.revision;
    out[i].ran = true;
  }));
  expect_success(out, c.peers(), 5);
}

TEST(SharedState, InvalidUsageBeforeConnect) {
  Cluster c;
  ASSERT_TRUE(c.ok());
  qcclCommConfig_t cc = QCCL_COMM_CONFIG_INIT;
  cc.master_address = c.master_address().c_str();
  qcclComm_t* comm = nullptr;
  ASSERT_EQ(qcclCommCreate(&cc, &comm), qcclSuccess) << qcclGetLastError();
  State st(mixed_specs(), 1, 3);
  Outcome o = st.sync(comm, qcclSyncEnforcePopular);
  EXPECT_EQ(o.result, qcclInvalidUsage) << o;
  EXPECT_TRUE(mentions(o.error, "qcclSyncSharedState")) << o;
  EXPECT_EQ(o.revision, 3u);
  EXPECT_EQ(o.tx + o.rx, 0u) << "info_out must be zeroed on failure";
  EXPECT_EQ(qcclCommDestroy(comm), qcclSuccess) << qcclGetLastError();
}

// An async all-reduce in flight: the sync is refused at once (not voted), the all-reduce then
// completes, and the next sync works.
TEST(SharedState, InvalidUsageWithAllReduceInFlight) {
  Cluster c;
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(c.grow(2));
  const size_t a = c.peers()[0];
  std::latch a_checked(1);
  std::vector<State> st(c.slots(), State(mixed_specs(), 1, 0));
  st[1].set("bias", 2);
  std::vector<Outcome> refused(c.slots()), out(c.slots());
  std::vector<qcclResult_t> reduce(c.slots(), qcclInternalError);
  std::vector<std::vector<float>> buf(c.slots(), std::vector<float>(4099));
  ASSERT_TRUE(c.run([&](size_t i, qcclComm_t* comm) {
    for (size_t k = 0; k < buf[i].size(); ++k) buf[i][k] = static_cast<float>(k % 7 + i);
    qcclReduceDesc_t d = {buf[i].size(), qcclFloat32, qcclSum, 5, {qcclQuantNone, qcclFloat32}};
    if (i == a) {
      qcclOp_t* op = nullptr;
      qcclResult_t r = qcclAllReduceAsync(buf[i].data(), buf[i].data(), &d, comm, &op);
      if (r == qcclSuccess) {
        refused[i] = st[i].sync(comm, qcclSyncEnforcePopular);
      } else {
        ADD_FAILURE() << "qcclAllReduceAsync: " << describe(r);
      }
      a_checked.count_down();
      if (r == qcclSuccess) reduce[i] = qcclWait(op, nullptr);
    } else {
      a_checked.wait();
      reduce[i] = qcclAllReduce(buf[i].data(), buf[i].data(), &d, comm, nullptr);
    }
    out[i] = st[i].sync(comm, qcclSyncEnforcePopular);
  }));
  EXPECT_EQ(refused[a].result, qcclInvalidUsage) << refused[a];
  EXPECT_TRUE(mentions(refused[a].error, "in flight")) << refused[a];
  EXPECT_EQ(refused[a].tx + refused[a].rx, 0u);
  for (size_t i : c.peers()) {
    EXPECT_EQ(reduce[i], qcclSuccess) << "slot " << i;
    for (size_t k = 0; k < buf[i].size(); ++k) {
      ASSERT_EQ(buf[i][k], static_cast<float>(2 * (k % 7) + 1)) << "slot " << i << " [" << k << "]";
    }
  }
  // Both at revision 0, 1 : 1, so slot 0 (peer 1) wins.
  expect_success(out, c.peers(), 0);
  EXPECT_EQ(out[1].rx, st[0].bytes({"bias"})) << out[1];
  EXPECT_EQ(out[0].tx, st[0].bytes({"bias"})) << out[0];
  EXPECT_TRUE(same(st[0], st[1]));
  EXPECT_TRUE(same(st[0], State(mixed_specs(), 1, 0)));
}

// ---- dtypes and sizes ------------------------------------------------------------------------

TEST(SharedState, AllDataTypes) {
  Cluster c;
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(c.grow(3));
  const char* names[qcclNumDataTypes] = {"u8",  "i8",  "u16",  "i16", "u32", "i32",
                                         "u64", "i64", "fp16", "bf16", "f32", "f64"};
  std::vector<Spec> specs;
  for (int t = 0; t < qcclNumDataTypes; ++t) {
    specs.push_back({names[t], static_cast<qcclDataType_t>(t), 1001 + 37 * static_cast<size_t>(t)});
  }
  const State truth(specs, 1, 0);
  std::vector<State> st(c.slots(), truth);
  st[2].set_all(2);  // every tensor differs
  std::vector<Outcome> out(c.slots());
  ASSERT_TRUE(c.run([&](size_t i, qcclComm_t* comm) { out[i] = st[i].sync(comm, qcclSyncEnforcePopular); }));
  expect_success(out, c.peers(), 0);
  EXPECT_EQ(out[2].rx, truth.total_bytes()) << out[2];
  EXPECT_EQ(out[0].tx + out[1].tx, truth.total_bytes());
  for (size_t i : c.peers()) EXPECT_TRUE(same(st[i], truth)) << "slot " << i;

  // The 16-bit types that PCCL silently sized 0: one element each differs on slot 1.
  st[1].flip("fp16");
  st[1].flip("bf16", 0);
  st[1].flip("i16", 1001);
  ASSERT_TRUE(c.run([&](size_t i, qcclComm_t* comm) {
    st[i].revision = 1;
    out[i] = st[i].sync(comm, qcclSyncEnforcePopular);
  }));
  expect_success(out, c.peers(), 1);
  const uint64_t want = truth.bytes({"fp16", "bf16", "i16"});
  EXPECT_EQ(want, 2u * (1001 + 37 * 8 + 1001 + 37 * 9 + 1001 + 37 * 3));
  EXPECT_EQ(out[1].rx, want) << out[1];
  EXPECT_EQ(out[0].tx + out[2].tx, want);
  for (size_t i : c.peers()) EXPECT_TRUE(same(st[i], truth)) << "slot " << i;

  // One dtype at a time, on a rotating peer.
  for (int t = 0; t < qcclNumDataTypes; ++t) {
    SCOPED_TRACE(names[t]);
    const size_t odd = static_cast<size_t>(t) % 3;
    st[odd].flip(names[t], static_cast<size_t>(t) * 13);
    ASSERT_TRUE(c.run([&](size_t i, qcclComm_t* comm) {
      st[i].revision = 2 + static_cast<uint64_t>(t);
      out[i] = st[i].sync(comm, qcclSyncEnforcePopular);
    }));
    expect_success(out, c.peers(), 2 + static_cast<uint64_t>(t));
    EXPECT_EQ(out[odd].rx, truth.bytes({names[t]})) << out[odd];
    EXPECT_EQ(sum_tx(out, c.peers()), truth.bytes({names[t]}));
    for (size_t i : c.peers()) EXPECT_TRUE(same(st[i], truth)) << "slot " << i;
  }
}

TEST(SharedState, EdgeSizes) {
  Cluster c;
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(c.grow(3));
  const std::vector<Spec> specs = {
      {"one_u8", qcclUint8, 1},
      {"one_f64", qcclFloat64, 1},
      {"empty", qcclFloat32, 0},
      {"piece", qcclUint8, kMiB},
      {"piece_plus_1", qcclUint8, kMiB + 1},
      {"piece_minus_2", qcclUint16, kMiB / 2 - 1},
      {"odd_f32", qcclFloat32, 3 * kMiB / 4 + 1},  // 3 MiB + 4 bytes
      {"odd_bf16", qcclBFloat16, 5 * kMiB / 2 + 3},  // 5 MiB + 6 bytes
  };
  const State truth(specs, 1, 0);
  std::vector<State> st(c.slots(), truth);
  std::vector<std::string> nonempty;
  for (const Spec& s : specs) {
    if (s.count > 0) {
      st[1].flip(s.name);  // the last byte
      nonempty.push_back(s.name);
    }
  }
  std::vector<Outcome> out(c.slots());
  ASSERT_TRUE(c.run([&](size_t i, qcclComm_t* comm) { out[i] = st[i].sync(comm, qcclSyncEnforcePopular); }));
  expect_success(out, c.peers(), 0);
  EXPECT_EQ(out[1].rx, truth.total_bytes()) << out[1];
  EXPECT_EQ(out[1].rx, truth.bytes(nonempty));
  EXPECT_EQ(out[0].tx + out[2].tx, truth.total_bytes());
  for (size_t i : c.peers()) EXPECT_TRUE(same(st[i], truth)) << "slot " << i;

  // First byte of one odd-sized tensor, then the single element ones.
  st[2].flip("odd_bf16", 0);
  ASSERT_TRUE(c.run([&](size_t i, qcclComm_t* comm) {
    st[i].revision = 1;
    out[i] = st[i].sync(comm, qcclSyncEnforcePopular);
  }));
  expect_success(out, c.peers(), 1);
  EXPECT_EQ(out[2].rx, truth.bytes({"odd_bf16"})) << out[2];
  EXPECT_EQ(out[0].tx + out[1].tx, truth.bytes({"odd_bf16"}));
  st[0].flip("one_u8");
  st[0].flip("one_f64", 3);
  ASSERT_TRUE(c.run([&](size_t i, qcclComm_t* comm) {
    st[i].revision = 2;
    out[i] = st[i].sync(comm, qcclSyncEnforcePopular);
  }));
  expect_success(out, c.peers(), 2);
  EXPECT_EQ(out[0].rx, 9u) << out[0];
  EXPECT_EQ(out[1].tx + out[2].tx, 9u);
  for (size_t i : c.peers()) EXPECT_TRUE(same(st[i], truth)) << "slot " << i;
}

// One 256 MiB tensor; one peer differs in the last byte only and gets the whole tensor back.
TEST(SharedState, Tensor256MiBDivergedInLastByte) {
  ClusterOptions opt;
  opt.vote_timeout_ms = 120000;  // hashing 256 MiB three times on 2 cores (slow under ASan)
  opt.peer_timeout_ms = 30000;
  opt.step_timeout = std::chrono::milliseconds(180000);
  Cluster c(opt);
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(c.grow(3));
  constexpr size_t kBytes = 256 * kMiB;
  std::vector<std::vector<uint8_t>> buf(c.slots());
  buf[0].resize(kBytes);
  fill(buf[0].data(), kBytes, 77);
  buf[1] = buf[0];
  buf[2] = buf[0];
  buf[2][kBytes - 1] ^= 1;
  std::vector<Outcome> out(c.slots());
  ASSERT_TRUE(c.run([&](size_t i, qcclComm_t* comm) {
    qcclTensorInfo_t t = {"big", buf[i].data(), kBytes / 4, qcclFloat32, 0};
    qcclSharedState_t st{1, 1, &t};
    qcclSyncInfo_t info{};
    out[i].result = qcclSyncSharedState(comm, &st, qcclSyncEnforcePopular, &info);
    out[i].error = qcclGetLastError();
    out[i].tx = info.tx_bytes;
    out[i].rx = info.rx_bytes;
    out[i].revision = st.revision;
    out[i].ran = true;
  }));
  expect_success(out, c.peers(), 1);
  EXPECT_EQ(out[2].rx, kBytes) << out[2];
  EXPECT_EQ(out[2].tx, 0u);
  EXPECT_EQ(out[0].rx + out[1].rx, 0u);
  EXPECT_EQ(out[0].tx + out[1].tx, kBytes) << out[0] << out[1];
  EXPECT_EQ(std::memcmp(buf[0].data(), buf[1].data(), kBytes), 0);
  EXPECT_EQ(std::memcmp(buf[0].data(), buf[2].data(), kBytes), 0);
}

// ---- joining a running group ---------------------------------------------------------------

// `existing` peers sync three steps, then a peer joins with zeroed state at revision 0 and
// syncs with `strategy`: it gets the whole state, from the existing peers, and the next step
// moves nothing.
void join_running_group(size_t existing, qcclSyncStrategy_t strategy,
                        const std::vector<Spec>& specs) {
  Cluster c;
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(c.grow(existing));
  std::vector<State> st(existing, State(specs, 0, 0));
  std::vector<Outcome> out(existing + 1);
  auto advance = [&](State& s, uint64_t step) {
    s.set(specs[step % specs.size()].name, step);
    s.revision = step;
  };
  for (uint64_t step = 1; step <= 3; ++step) {
    ASSERT_TRUE(c.run([&](size_t i, qcclComm_t* comm) {
      advance(st[i], step);
      out[i] = st[i].sync(comm, qcclSyncEnforcePopular);
    }));
    expect_success(out, c.peers(), step);
    EXPECT_EQ(sum_rx(out, c.peers()), 0u);
  }

  size_t joiner = 0;
  ASSERT_TRUE(c.add_peer(0, &joiner));
  ASSERT_EQ(joiner, existing);
  State zero(specs, 0, 0);
  for (const Spec& s : specs) std::memset(zero[s.name].data(), 0, s.bytes());
  st.push_back(zero);
  ASSERT_TRUE(c.run([&](size_t i, qcclComm_t* comm) {
    if (i == joiner) {
      out[i] = st[i].sync(comm, strategy);
    } else {
      advance(st[i], 4);
      out[i] = st[i].sync(comm, qcclSyncEnforcePopular);
    }
  }));
  expect_success(out, c.peers(), 4);
  const uint64_t total = st[0].total_bytes();
  EXPECT_EQ(out[joiner].rx, total) << out[joiner];
  EXPECT_EQ(out[joiner].tx, 0u);
  std::vector<size_t> donors;
  for (size_t i = 0; i < existing; ++i) donors.push_back(i);
  EXPECT_EQ(sum_rx(out, donors), 0u);
  EXPECT_EQ(sum_tx(out, donors), total);
  if (existing >= 3) {
    size_t serving = 0;
    for (size_t i : donors) serving += out[i].tx > 0 ? 1 : 0;
    EXPECT_GE(serving, 2u) << "the download was not striped over the donors: " << out[0]
                           << out[1] << out[2];
  }
  for (size_t i : c.peers()) EXPECT_TRUE(same(st[i], st[0])) << "slot " << i;

  // Next step: everybody advances together, nothing moves.
  ASSERT_TRUE(c.run([&](size_t i, qcclComm_t* comm) {
    advance(st[i], 5);
    out[i] = st[i].sync(comm, qcclSyncEnforcePopular);
  }));
  expect_success(out, c.peers(), 5);
  EXPECT_EQ(sum_rx(out, c.peers()) + sum_tx(out, c.peers()), 0u);
  for (size_t i : c.peers()) EXPECT_TRUE(same(st[i], st[0])) << "slot " << i;
}

TEST(SharedState, PeerJoinsRunningGroupReceiveOnly) {
  join_running_group(2, qcclSyncReceiveOnly, mixed_specs());
}

TEST(SharedState, PeerJoinsRunningGroupEnforcePopular) {
  join_running_group(2, qcclSyncEnforcePopular, mixed_specs());
}

// Three donors and 40 MiB: the joiner's download is striped over at least two of them.
TEST(SharedState, PeerJoinsThreePeersDownloadIsStriped) {
  join_running_group(3, qcclSyncReceiveOnly,
                     {{"emb", qcclFloat32, 6 * kMiB},
                      {"head", qcclBFloat16, 4 * kMiB + 1},
                      {"opt", qcclUint8, 8 * kMiB + 3}});
}

}  // namespace
}  // namespace qccl::test
