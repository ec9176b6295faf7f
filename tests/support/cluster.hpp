// In-process test cluster over the public C API: one master and N peers (communicators) in
// this process, on 127.0.0.1 with ephemeral ports and short timeouts.
//
// Joining. The first peer of a run is admitted at once; every later peer waits in qcclConnect
// until ALL accepted peers (all groups) vote qcclUpdateTopology. add_peer() therefore admits
// one peer at a time, in lock step:
//   1. the newcomer's qcclConnect starts on its own thread;
//   2. every accepted peer calls qcclArePeersPending, together, until the (shared) answer is 1:
//      the master has the newcomer's registration, so the next update will admit it;
//   3. every accepted peer calls qcclUpdateTopology, together; the master admits the newcomer;
//   4. the newcomer's qcclConnect returns once its ring links are up.
// All accepted peers take part in every vote round, and they all see the same answers, so none
// is ever left alone in a vote (which would block the others until the master's vote timeout).
// The steps are public, so tests can observe the states in between (e.g. "pending" answers).
//
// Deadlines. Every wait has one (ClusterOptions::step_timeout). When peers miss it the helper
// records a gtest failure and stops the master, which makes every blocked qccl call return
// (qcclMasterUnreachable); if even that does not unblock them within the grace period, it
// prints which peers hang and aborts, since a stuck thread cannot be cancelled. No sleeps.
//
// Thread-safety: a Cluster is driven from the test's main thread. run() calls the given
// function concurrently, once per peer, each on its own thread; gtest assertions may be used
// in it (a fatal ASSERT ends only that peer's function).
#pragma once

#include <qccl/qccl.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace qccl::test {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// "qcclTimeout (qcclConnect: ...)". Call on the thread that got `r`: the last error is
// thread-local.
inline std::string describe(qcclResult_t r) {
  return std::string(qcclGetErrorString(r)) + " [" + std::to_string(static_cast<int>(r)) + "] (" +
         qcclGetLastError() + ")";
}

inline int64_t elapsed_ms(Clock::time_point since) {
  return std::chrono::duration_cast<milliseconds>(Clock::now() - since).count();
}

// A function running on its own thread, whose end can be awaited with a deadline.
class Task {
 public:
  explicit Task(std::function<void()> fn) : state_(std::make_shared<State>()) {
    thread_ = std::thread([s = state_, fn = std::move(fn)] {
      fn();
      {
        std::lock_guard<std::mutex> lock(s->mu);
        s->done = true;
      }
      s->cv.notify_all();
    });
  }
  Task(const Task&) = delete;
  Task& operator=(const Task&) = delete;
  // Joins: callers make sure the function ends (see Cluster::await_all).
  ~Task() { join(); }

  bool wait_until(Clock::time_point deadline) {
    std::unique_lock<std::mutex> lock(state_->mu);
    return state_->cv.wait_until(lock, deadline, [&] { return state_->done; });
  }
  bool done() const {
    std::lock_guard<std::mutex> lock(state_->mu);
    return state_->done;
  }
  void join() {
    if (thread_.joinable()) thread_.join();
  }

 private:
  struct State {
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
  };
  std::shared_ptr<State> state_;
  std::thread thread_;
};

struct ClusterOptions {
  uint32_t heartbeat_interval_ms = 100;
  uint32_t peer_timeout_ms = 4000;
  uint32_t vote_timeout_ms = 4000;
  uint32_t probe_ms = 60;             // qcclOptimizeTopology's measured time per link
  std::string auth_token;             // shared secret of the master and every peer; "" = none
  uint32_t encryption = QCCL_ENCRYPTION_DEFAULT;  // of the master and every peer
  uint32_t master_reconnect_ms = 0;                // every peer's; 0 = the library's default
  uint32_t connections_per_peer = 2;  // fewer sockets than the default: 2 shared cores
  uint32_t connect_timeout_ms = 15000;
  milliseconds step_timeout{20000};  // deadline of each join step and of run()
  milliseconds grace{10000};         // after a missed deadline, for the master stop to work
};

// The attributes of one peer, as read by qcclGetAttribute.
struct PeerView {
  int64_t global_world_size = -1;
  int64_t group_world_size = -1;
  int64_t num_groups = -1;
  int64_t largest_group_size = -1;
  int64_t ring_rank = -1;
  int64_t epoch = -1;
};

class Cluster {
 public:
  using PeerFn = std::function<void(size_t index, qcclComm_t* comm)>;

  // Starts the master. Check ok() (or use ASSERT_TRUE(cluster.ok())) before going on.
  explicit Cluster(ClusterOptions options = {}) : options_(options) {
    qcclMasterConfig_t mc = QCCL_MASTER_CONFIG_INIT;
    mc.listen_address = "127.0.0.1:0";
    mc.heartbeat_interval_ms = options_.heartbeat_interval_ms;
    mc.peer_timeout_ms = options_.peer_timeout_ms;
    mc.vote_timeout_ms = options_.vote_timeout_ms;
    mc.probe_ms = options_.probe_ms;
    mc.auth_token = options_.auth_token.empty() ? nullptr : options_.auth_token.c_str();
    mc.encryption = options_.encryption;
    qcclResult_t r = qcclMasterCreate(&mc, &master_);
    if (r != qcclSuccess) {
      ADD_FAILURE() << "qcclMasterCreate: " << describe(r);
      master_ = nullptr;
      return;
    }
    r = qcclMasterStart(master_);
    if (r == qcclSuccess) r = qcclMasterGetPort(master_, &port_);
    if (r != qcclSuccess) {
      ADD_FAILURE() << "starting the master: " << describe(r);
      return;
    }
    address_ = "127.0.0.1:" + std::to_string(port_);
    ok_ = true;
  }

  // Destroys every communicator (graceful leave), then the master.
  ~Cluster() {
    // A qcclConnect still waiting for admission ends when the master goes away.
    bool connecting = false;
    for (const auto& p : peers_) connecting |= p->connect_task && !p->connect_task->done();
    if (connecting && master_) qcclMasterStop(master_);
    for (size_t i = 0; i < peers_.size(); ++i) {
      if (peers_[i]->connect_task) peers_[i]->connect_task->join();  // bounded by connect timeout
      if (peers_[i]->comm) destroy(i);
    }
    if (master_) {
      qcclResult_t r = qcclMasterDestroy(master_);
      EXPECT_EQ(r, qcclSuccess) << "qcclMasterDestroy: " << describe(r);
    }
  }

  Cluster(const Cluster&) = delete;
  Cluster& operator=(const Cluster&) = delete;

  bool ok() const { return ok_; }
  const ClusterOptions& options() const { return options_; }
  uint16_t master_port() const { return port_; }
  const std::string& master_address() const { return address_; }
  qcclMaster_t* master() const { return master_; }

  // Number of peer slots ever created (destroyed ones included); indices are stable.
  size_t slots() const { return peers_.size(); }
  qcclComm_t* comm(size_t i) const { return peers_.at(i)->comm; }
  uint32_t group_of(size_t i) const { return peers_.at(i)->group; }
  bool accepted(size_t i) const { return peers_.at(i)->accepted && peers_.at(i)->comm; }

  // Indices of the accepted, not destroyed peers (optionally of one group only).
  std::vector<size_t> peers() const {
    std::vector<size_t> out;
    for (size_t i = 0; i < peers_.size(); ++i) {
      if (accepted(i)) out.push_back(i);
    }
    return out;
  }
  std::vector<size_t> peers_in_group(uint32_t group) const {
    std::vector<size_t> out;
    for (size_t i : peers()) {
      if (peers_[i]->group == group) out.push_back(i);
    }
    return out;
  }
  size_t size() const { return peers().size(); }

  // A fresh tag for tests that share a cluster.
  uint64_t next_tag() { return next_tag_++; }

  // ---- joining ----------------------------------------------------------------------------

  // Adds and admits `n` peers of `group`, one at a time.
  ::testing::AssertionResult grow(size_t n, uint32_t group = 0) {
    for (size_t k = 0; k < n; ++k) {
      auto r = add_peer(group);
      if (!r) return r;
    }
    return ::testing::AssertionSuccess();
  }

  // Adds one peer and admits it (steps 1-4 above). Returns its index via `index_out`.
  ::testing::AssertionResult add_peer(uint32_t group = 0, size_t* index_out = nullptr) {
    return add_peer_with(nullptr, group, index_out);
  }

  // add_peer() with a communicator the test created (e.g. from comm_config() with addresses of
  // its own; the cluster takes ownership of it), or a new one if `comm` is null.
  ::testing::AssertionResult add_peer_with(qcclComm_t* comm, uint32_t group = 0,
                                           size_t* index_out = nullptr) {
    bool first = peers().empty();
    size_t idx = 0;
    auto r = comm ? begin_join_existing(comm, group, &idx) : begin_join(group, &idx);
    if (!r) return r;
    if (index_out) *index_out = idx;
    if (!first) {
      r = wait_until_pending();
      if (!r) return r;
      r = update_topology_all();
      if (!r) return r;
    }
    return finish_join(idx);
  }

  // The configuration of this cluster's peers (its strings live as long as the cluster).
  qcclCommConfig_t comm_config(uint32_t group = 0) const {
    qcclCommConfig_t cc = QCCL_COMM_CONFIG_INIT;
    cc.master_address = address_.c_str();
    cc.peer_group = group;
    cc.connections_per_peer = options_.connections_per_peer;
    cc.connect_timeout_ms = options_.connect_timeout_ms;
    cc.auth_token = options_.auth_token.empty() ? nullptr : options_.auth_token.c_str();
    cc.encryption = options_.encryption;
    cc.master_reconnect_ms = options_.master_reconnect_ms;
    return cc;
  }

  // Step 1: creates a communicator and starts its qcclConnect on its own thread.
  ::testing::AssertionResult begin_join(uint32_t group, size_t* index_out) {
    if (!ok_) return ::testing::AssertionFailure() << "the master is not running";
    qcclCommConfig_t cc = comm_config(group);
    qcclComm_t* comm = nullptr;
    qcclResult_t r = qcclCommCreate(&cc, &comm);
    if (r != qcclSuccess) return ::testing::AssertionFailure() << "qcclCommCreate: " << describe(r);
    return begin_join_existing(comm, group, index_out);
  }

  // Step 1 for a communicator the test created (the cluster takes ownership of it).
  ::testing::AssertionResult begin_join_existing(qcclComm_t* comm, uint32_t group,
                                                 size_t* index_out) {
    auto p = std::make_unique<Peer>();
    p->comm = comm;
    p->group = group;
    Peer* raw = p.get();
    p->connect_task = std::make_unique<Task>([raw] {
      raw->connect_result = qcclConnect(raw->comm);
      if (raw->connect_result != qcclSuccess) raw->connect_error = describe(raw->connect_result);
    });
    peers_.push_back(std::move(p));
    *index_out = peers_.size() - 1;
    return ::testing::AssertionSuccess();
  }

  // Step 2: every accepted peer votes qcclArePeersPending until the answer is 1.
  ::testing::AssertionResult wait_until_pending() {
    auto deadline = Clock::now() + options_.step_timeout;
    return run_checked(peers(), [deadline](size_t, qcclComm_t* c) -> std::string {
      for (int rounds = 1;; ++rounds) {
        int pending = -1;
        qcclResult_t r = qcclArePeersPending(c, &pending);
        if (r != qcclSuccess) return "qcclArePeersPending: " + describe(r);
        if (pending == 1) return "";
        if (pending != 0) return "qcclArePeersPending gave " + std::to_string(pending);
        // Every peer sees the same answers, so they all stop in the same round; a peer past
        // its deadline stops first and the master's vote timeout then releases the others.
        if (Clock::now() > deadline) {
          return "no pending peer seen after " + std::to_string(rounds) + " votes";
        }
      }
    });
  }

  // Step 3: every accepted peer calls qcclUpdateTopology, concurrently.
  ::testing::AssertionResult update_topology_all() {
    return run_checked(peers(), [](size_t, qcclComm_t* c) -> std::string {
      qcclResult_t r = qcclUpdateTopology(c);
      return r == qcclSuccess ? "" : "qcclUpdateTopology: " + describe(r);
    });
  }

  // Whether peer `i`'s qcclConnect has returned (without waiting).
  bool connect_returned(size_t i) const {
    const auto& p = *peers_.at(i);
    return p.connect_task && p.connect_task->done();
  }

  // Waits (deadline) for peer `i`'s qcclConnect; returns its result (qcclInternalError if it
  // did not return in time, with a gtest failure).
  qcclResult_t await_connect(size_t i, std::string* error = nullptr) {
    Peer& p = *peers_.at(i);
    if (!p.connect_task) return p.connect_result;
    if (!p.connect_task->wait_until(Clock::now() + options_.step_timeout)) {
      ADD_FAILURE() << "peer " << i << ": qcclConnect did not return within "
                    << options_.step_timeout.count() << " ms";
      rescue({p.connect_task.get()});
    }
    p.connect_task.reset();  // joins
    if (error) *error = p.connect_error;
    return p.connect_result;
  }

  // Step 4: waits for the newcomer's qcclConnect, which must succeed.
  ::testing::AssertionResult finish_join(size_t i) {
    std::string error;
    qcclResult_t r = await_connect(i, &error);
    if (r != qcclSuccess) {
      return ::testing::AssertionFailure() << "peer " << i << ": qcclConnect: " << error;
    }
    peers_[i]->accepted = true;
    return ::testing::AssertionSuccess();
  }

  // qcclCommDestroy of peer `i` (graceful leave); its slot stays, empty.
  qcclResult_t destroy(size_t i) {
    Peer& p = *peers_.at(i);
    if (p.connect_task) await_connect(i);
    if (!p.comm) return qcclSuccess;
    qcclResult_t r = qcclCommDestroy(p.comm);
    EXPECT_EQ(r, qcclSuccess) << "qcclCommDestroy(peer " << i << "): " << describe(r);
    p.comm = nullptr;
    p.accepted = false;
    return r;
  }

  // ---- running code on the peers ----------------------------------------------------------

  // Runs fn(i, comm(i)) for every accepted peer, each on its own thread, and waits for all of
  // them (deadline: step_timeout unless given).
  ::testing::AssertionResult run(const PeerFn& fn, milliseconds timeout = milliseconds(0)) {
    return run_on(peers(), fn, timeout);
  }

  ::testing::AssertionResult run_on(const std::vector<size_t>& ids, const PeerFn& fn,
                                    milliseconds timeout = milliseconds(0)) {
    std::vector<std::unique_ptr<Task>> tasks;
    for (size_t i : ids) {
      qcclComm_t* c = comm(i);
      tasks.push_back(std::make_unique<Task>([&fn, i, c] { fn(i, c); }));
    }
    return await_all(ids, tasks, timeout.count() > 0 ? timeout : options_.step_timeout);
  }

  // Like run_on(), for functions that return "" on success or what went wrong.
  ::testing::AssertionResult run_checked(const std::vector<size_t>& ids,
                                         const std::function<std::string(size_t, qcclComm_t*)>& fn,
                                         milliseconds timeout = milliseconds(0)) {
    std::mutex mu;
    std::vector<std::string> errors;
    auto r = run_on(
        ids,
        [&](size_t i, qcclComm_t* c) {
          std::string e = fn(i, c);
          if (!e.empty()) {
            std::lock_guard<std::mutex> lock(mu);
            errors.push_back("peer " + std::to_string(i) + ": " + e);
          }
        },
        timeout);
    if (!r) return r;
    if (errors.empty()) return ::testing::AssertionSuccess();
    auto fail = ::testing::AssertionFailure();
    for (const auto& e : errors) fail << e << "; ";
    return fail;
  }

  // ---- views --------------------------------------------------------------------------------

  // Reads every attribute of peer `i` (gtest failure on error).
  PeerView view(size_t i) const {
    PeerView v;
    auto get = [&](qcclAttribute_t a, int64_t* out) {
      qcclResult_t r = qcclGetAttribute(comm(i), a, out);
      EXPECT_EQ(r, qcclSuccess) << "qcclGetAttribute(peer " << i << ", " << static_cast<int>(a)
                                << "): " << describe(r);
    };
    get(QCCL_ATTR_GLOBAL_WORLD_SIZE, &v.global_world_size);
    get(QCCL_ATTR_GROUP_WORLD_SIZE, &v.group_world_size);
    get(QCCL_ATTR_NUM_GROUPS, &v.num_groups);
    get(QCCL_ATTR_LARGEST_GROUP_SIZE, &v.largest_group_size);
    get(QCCL_ATTR_RING_RANK, &v.ring_rank);
    get(QCCL_ATTR_EPOCH, &v.epoch);
    return v;
  }

 private:
  struct Peer {
    qcclComm_t* comm = nullptr;
    uint32_t group = 0;
    bool accepted = false;
    std::unique_ptr<Task> connect_task;
    qcclResult_t connect_result = qcclInternalError;
    std::string connect_error;
  };

  ::testing::AssertionResult await_all(const std::vector<size_t>& ids,
                                       std::vector<std::unique_ptr<Task>>& tasks,
                                       milliseconds timeout) {
    auto deadline = Clock::now() + timeout;
    std::vector<Task*> late;
    std::string late_ids;
    for (size_t k = 0; k < tasks.size(); ++k) {
      if (!tasks[k]->wait_until(deadline)) {
        late.push_back(tasks[k].get());
        late_ids += std::to_string(ids[k]) + " ";
      }
    }
    if (late.empty()) {
      tasks.clear();
      return ::testing::AssertionSuccess();
    }
    ADD_FAILURE() << "peers [ " << late_ids << "] still running after " << timeout.count() << " ms";
    rescue(late);
    tasks.clear();
    return ::testing::AssertionFailure() << "peers [ " << late_ids << "] missed the deadline";
  }

  // Stops the master so that blocked calls return; aborts if they still do not.
  void rescue(const std::vector<Task*>& late) {
    std::fprintf(stderr, "cluster: %zu peer thread(s) missed the deadline; stopping the master\n",
                 late.size());
    if (master_) qcclMasterStop(master_);
    ok_ = false;
    auto deadline = Clock::now() + options_.grace;
    for (Task* t : late) {
      if (!t->wait_until(deadline)) {
        std::fprintf(stderr,
                     "cluster: peer threads still blocked %lld ms after the master "
                     "stopped; aborting\n",
                     static_cast<long long>(options_.grace.count()));
        std::fflush(stderr);
        std::abort();
      }
    }
  }

  ClusterOptions options_;
  qcclMaster_t* master_ = nullptr;
  uint16_t port_ = 0;
  std::string address_;
  bool ok_ = false;
  std::vector<std::unique_ptr<Peer>> peers_;
  uint64_t next_tag_ = 1000;
};

}  // namespace qccl::test
