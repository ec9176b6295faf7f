// qccl._qccl: the thin pybind11 binding of the public C API (include/qccl/qccl.h).
//
// Only the C API is called; the Pythonic surface (tensors, dtypes, enums, exception classes)
// lives in python/qccl/*.py. Here we own the C handles and make them safe to use from Python:
//
//  - Every blocking C call (connect, votes, topology optimisation, all-reduce, wait,
//    shared-state sync, master wait/stop/destroy, communicator destroy) runs with the GIL
//    released.
//  - A communicator is never destroyed while another Python thread is inside a call on it
//    (qcclCommDestroy frees the handle, so that would be a use after free): each call holds a
//    "use" of the handle, and close() waits for the uses to end, then destroys; abort()
//    (qcclCommAbort, not a use) ends the calls in progress so that close() need not wait. Async
//    operations are not uses: destroying the communicator ends them with qcclAborted, and
//    their qcclOp_t handles stay valid until qcclWait.
//  - An Op keeps Python references to its buffers (keepalive) until its qcclWait returned, so
//    a buffer can never be freed while the library still reads or writes it, even if the
//    caller drops every other reference, or drops the op without waiting (the destructor
//    then waits).
//  - Errors raise the exception class the Python layer registered for the result code
//    (set_error_classes), with the message of qcclGetLastError() read right after the call
//    on the same thread.
//
// Buffers arrive as raw addresses (Python ints) computed by the Python layer from torch's
// data_ptr() or from a BufferView (the buffer protocol, held open for the op's lifetime).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "qccl/qccl.h"

namespace py = pybind11;

namespace {

// code -> exception class, registered by qccl/_errors.py. Leaked on purpose: a static
// py::object would be decref'd after the interpreter is gone.
PyObject* g_error_classes = nullptr;

bool interpreter_finalizing() {
#if PY_VERSION_HEX >= 0x030D0000
  return Py_IsFinalizing() != 0;
#else
  return _Py_IsFinalizing() != 0;
#endif
}

// Runs f() without the GIL, unless the interpreter is shutting down (releasing and retaking
// the GIL then is not safe on every Python version; the call is short in that case).
template <typename F>
auto without_gil(F&& f) {
  if (interpreter_finalizing()) return f();
  py::gil_scoped_release nogil;
  return f();
}

[[noreturn]] void raise_result(qcclResult_t r, std::string message) {
  if (message.empty()) message = qcclGetErrorString(r);
  py::object cls;
  if (g_error_classes != nullptr) {
    py::dict classes = py::reinterpret_borrow<py::dict>(g_error_classes);
    py::int_ key(static_cast<int>(r));
    if (classes.contains(key)) cls = classes[key];
  }
  if (!cls) {
    throw std::runtime_error("qccl error " + std::to_string(static_cast<int>(r)) + ": " +
                             message);
  }
  py::object exc = cls(py::str(message));
  PyErr_SetObject(cls.ptr(), exc.ptr());
  throw py::error_already_set();
}

// Call right after a C call, on the same thread, before any other qccl call.
void check(qcclResult_t r) {
  if (r == qcclSuccess) return;
  raise_result(r, qcclGetLastError());
}

// Closed handle: the same error the C API gives for calls that are not legal now.
[[noreturn]] void raise_closed(const char* what) {
  raise_result(qcclInvalidUsage, std::string(what) + " is closed");
}

py::tuple reduce_info(const qcclReduceInfo_t& info) {
  return py::make_tuple(info.world_size, info.tx_bytes, info.rx_bytes, 0, py::list());
}

// Room for what an operation covered (qcclOpInfo_t): the participants' peer ids.
struct OpInfo {
  explicit OpInfo(size_t capacity) : peers(capacity) {
    c.peer_ids = peers.data();
    c.peer_ids_capacity = peers.size();
  }
  qcclOpInfo_t c{};
  std::vector<uint64_t> peers;
};

// (world_size, tx_bytes, rx_bytes, epoch, [peer ids in ring order]).
py::tuple op_info(const OpInfo& info) {
  py::list peers;
  for (size_t i = 0; i < info.c.world_size && i < info.peers.size(); ++i) {
    peers.append(info.peers[i]);
  }
  return py::make_tuple(info.c.world_size, info.c.tx_bytes, info.c.rx_bytes, info.c.epoch,
                        peers);
}

// Counts the calls in progress on a handle so that it is destroyed only when none is.
class UseGate {
 public:
  // Returns false if the gate is closed. Never blocks for long (the mutex is only held for
  // bookkeeping), so it may be called with the GIL held.
  bool enter() {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_) return false;
    ++active_;
    return true;
  }
  void leave() {
    std::lock_guard<std::mutex> lock(mu_);
    if (--active_ == 0) cv_.notify_all();
  }
  // Closes the gate (no new call may enter). Returns true for the first caller only: that
  // caller owns the destruction of the handle. With only_if_idle, closes only if no call is
  // in progress (else returns false and leaves the gate open).
  bool close(bool only_if_idle = false) {
    std::lock_guard<std::mutex> lock(mu_);
    if (only_if_idle && active_ != 0) return false;
    bool first = !closed_;
    closed_ = true;
    return first;
  }
  // Waits for the calls in progress to end.
  // REQUIRES: the GIL is not held (the calls in progress may need it to return).
  void drain() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return active_ == 0; });
  }
  bool closed() const {
    std::lock_guard<std::mutex> lock(mu_);
    return closed_;
  }
  int active() const {
    std::lock_guard<std::mutex> lock(mu_);
    return active_;
  }

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  int active_ = 0;
  bool closed_ = false;
};

class Use {
 public:
  Use(UseGate& gate, const char* what) : gate_(gate) {
    if (!gate_.enter()) raise_closed(what);
  }
  ~Use() { gate_.leave(); }
  Use(const Use&) = delete;
  Use& operator=(const Use&) = delete;

 private:
  UseGate& gate_;
};

qcclQuantization_t quantization(int algorithm, int dtype) {
  qcclQuantization_t q;
  q.algorithm = static_cast<qcclQuantAlgorithm_t>(algorithm);
  q.quantized_dtype = static_cast<qcclDataType_t>(dtype);
  return q;
}

qcclReduceDesc_t make_desc(size_t count, int dtype, int op, uint64_t tag, int q_algorithm,
                           int q_dtype) {
  qcclReduceDesc_t d;
  d.count = count;
  d.dtype = static_cast<qcclDataType_t>(dtype);
  d.op = static_cast<qcclRedOp_t>(op);
  d.tag = tag;
  d.quantization = quantization(q_algorithm, q_dtype);
  return d;
}

// ---- buffers --------------------------------------------------------------------------------

// A buffer-protocol export held open: the exporter (bytearray, numpy array, mmap, ...) cannot
// resize or free the memory while this object lives.
class BufferView {
 public:
  BufferView(const py::buffer& b, bool writable) : info_(b.request(writable)) {}
  uintptr_t ptr() const { return reinterpret_cast<uintptr_t>(info_.ptr); }
  py::ssize_t itemsize() const { return info_.itemsize; }
  py::ssize_t size() const { return info_.size; }
  py::ssize_t nbytes() const { return info_.size * info_.itemsize; }
  const std::string& format() const { return info_.format; }
  bool readonly() const { return info_.readonly; }
  std::vector<py::ssize_t> shape() const { return info_.shape; }
  std::vector<py::ssize_t> strides() const { return info_.strides; }
  bool c_contiguous() const {
    py::ssize_t expected = info_.itemsize;
    for (size_t i = info_.shape.size(); i-- > 0;) {
      if (info_.shape[i] == 1) continue;
      if (info_.strides[i] != expected) return false;
      expected *= info_.shape[i];
    }
    return true;
  }

 private:
  py::buffer_info info_;
};

// ---- master ---------------------------------------------------------------------------------

class Master {
 public:
  Master(const std::string& listen, uint32_t heartbeat_ms, uint32_t peer_timeout_ms,
         uint32_t vote_timeout_ms, std::optional<std::string> auth_token, uint32_t probe_ms,
         uint32_t probe_max_age_ms, uint32_t encryption) {
    qcclMasterConfig_t cfg = QCCL_MASTER_CONFIG_INIT;
    cfg.encryption = encryption;
    cfg.listen_address = listen.c_str();
    cfg.heartbeat_interval_ms = heartbeat_ms;
    cfg.peer_timeout_ms = peer_timeout_ms;
    cfg.vote_timeout_ms = vote_timeout_ms;
    cfg.probe_ms = probe_ms;
    cfg.probe_max_age_ms = probe_max_age_ms;
    cfg.auth_token = auth_token ? auth_token->c_str() : nullptr;
    check(qcclMasterCreate(&cfg, &master_));
  }
  ~Master() {
    try {
      close();
    } catch (...) {
    }
  }
  Master(const Master&) = delete;
  Master& operator=(const Master&) = delete;

  void start() {
    Use use(gate_, "master");
    check(without_gil([&] { return qcclMasterStart(master_); }));
  }
  uint16_t port() {
    Use use(gate_, "master");
    uint16_t port = 0;
    check(qcclMasterGetPort(master_, &port));
    return port;
  }
  void stop() {
    Use use(gate_, "master");
    check(without_gil([&] { return qcclMasterStop(master_); }));
  }
  void wait() {
    Use use(gate_, "master");
    check(without_gil([&] { return qcclMasterWait(master_); }));
  }
  // Stops the master (which ends a wait() in progress), then frees it. Idempotent.
  bool close(bool wait = true) {
    if (!gate_.close(!wait)) return gate_.closed();
    if (master_ == nullptr) return true;
    qcclResult_t r = without_gil([&] {
      qcclMasterStop(master_);  // ends a wait() in progress on another thread
      gate_.drain();
      return qcclMasterDestroy(std::exchange(master_, nullptr));
    });
    check(r);
    return true;
  }
  bool closed() const { return gate_.closed(); }
  int active_calls() const { return gate_.active(); }

 private:

  qcclMaster_t* master_ = nullptr;
  UseGate gate_;
};

// ---- asynchronous operation ----------------------------------------------------------------

class Op {
 public:
  // `peers_capacity`: room for the participants' ids; `counts`: an all-gather-v's per-peer
  // counts, written by the library when the op completes (so owned here until then).
  Op(qcclOp_t* op, py::object keepalive, size_t peers_capacity,
     std::unique_ptr<std::vector<size_t>> counts = nullptr)
      : op_(op), keepalive_(std::move(keepalive)), info_(peers_capacity),
        counts_(std::move(counts)) {}
  ~Op() {
    // Never raise from a destructor; an unwaited op is waited for here, without the GIL, so
    // that the buffers it uses outlive it. keepalive_ is released after this body, with the
    // GIL held (pybind11 destroys the instance with the GIL held).
    try {
      finish();
    } catch (...) {
    }
  }
  Op(const Op&) = delete;
  Op& operator=(const Op&) = delete;

  bool test() {
    std::lock_guard<std::mutex> lock(mu_);
    if (state_ == State::kDone) return true;
    if (state_ == State::kWaiting) return false;  // another thread is in wait()
    int done = 0;
    check(qcclTest(op_, &done));
    return done != 0;
  }

  py::tuple wait() {
    finish();
    if (result_ != qcclSuccess) raise_result(result_, message_);
    return op_info(info_);
  }
  // An all-gather-v's per-peer counts (after a successful wait()).
  std::vector<size_t> counts() {
    finish();
    if (!counts_ || result_ != qcclSuccess) return {};
    return std::vector<size_t>(counts_->begin(),
                               counts_->begin() + std::min<size_t>(info_.c.world_size,
                                                                   counts_->size()));
  }

  bool waited() {
    std::lock_guard<std::mutex> lock(mu_);
    return state_ == State::kDone;
  }

 private:
  enum class State { kPending, kWaiting, kDone };

  // Runs qcclWait once (whichever thread comes first); the others wait for its result.
  void finish() {
    without_gil([&] {
      std::unique_lock<std::mutex> lock(mu_);
      if (state_ == State::kPending) {
        state_ = State::kWaiting;
        qcclOp_t* op = std::exchange(op_, nullptr);
        lock.unlock();
        qcclResult_t r = qcclWaitInfo(op, &info_.c);
        std::string message = r == qcclSuccess ? std::string() : qcclGetLastError();
        lock.lock();
        result_ = r;
        message_ = std::move(message);
        state_ = State::kDone;
        cv_.notify_all();
      } else {
        cv_.wait(lock, [&] { return state_ == State::kDone; });
      }
      return 0;
    });
    keepalive_ = py::object();  // the library no longer touches the buffers
  }

  std::mutex mu_;
  std::condition_variable cv_;
  State state_ = State::kPending;
  qcclOp_t* op_;
  qcclResult_t result_ = qcclSuccess;
  std::string message_;
  py::object keepalive_;
  OpInfo info_;
  std::unique_ptr<std::vector<size_t>> counts_;
};

// ---- communicator ---------------------------------------------------------------------------

using DescTuple = std::tuple<uintptr_t, uintptr_t, size_t, int, int, uint64_t, int, int>;
using TensorTuple = std::tuple<std::string, uintptr_t, size_t, int, bool>;
using BatchTuple = std::tuple<int, uintptr_t, uintptr_t, size_t, size_t, size_t, int, int,
                              uint64_t, int, int, uint64_t>;

class Comm {
 public:
  Comm(const std::string& master_address, uint32_t peer_group, uint32_t connections_per_peer,
       uint32_t connect_timeout_ms, std::optional<std::string> auth_token,
       std::optional<std::string> listen_address, std::optional<std::string> advertise_address,
       std::optional<std::string> auth_token_file, uint32_t op_timeout_ms,
       uint32_t master_reconnect_ms, uint32_t encryption) {
    qcclCommConfig_t cfg = QCCL_COMM_CONFIG_INIT;
    cfg.encryption = encryption;
    cfg.op_timeout_ms = op_timeout_ms;
    cfg.master_reconnect_ms = master_reconnect_ms;
    cfg.master_address = master_address.c_str();
    cfg.peer_group = peer_group;
    cfg.connections_per_peer = connections_per_peer;
    cfg.connect_timeout_ms = connect_timeout_ms;
    cfg.auth_token = auth_token ? auth_token->c_str() : nullptr;
    cfg.listen_address = listen_address ? listen_address->c_str() : nullptr;
    cfg.advertise_address = advertise_address ? advertise_address->c_str() : nullptr;
    cfg.auth_token_file = auth_token_file ? auth_token_file->c_str() : nullptr;
    check(without_gil([&] { return qcclCommCreate(&cfg, &comm_); }));
  }
  ~Comm() {
    try {
      close();
    } catch (...) {
    }
  }
  Comm(const Comm&) = delete;
  Comm& operator=(const Comm&) = delete;

  void connect() {
    Use use(gate_, "communicator");
    check(without_gil([&] { return qcclConnect(comm_); }));
  }
  void update_topology() {
    Use use(gate_, "communicator");
    check(without_gil([&] { return qcclUpdateTopology(comm_); }));
  }
  bool are_peers_pending() {
    Use use(gate_, "communicator");
    int pending = 0;
    check(without_gil([&] { return qcclArePeersPending(comm_, &pending); }));
    return pending != 0;
  }
  // [(peer_id, ring_rank, address), ...] in ring order.
  std::vector<std::tuple<uint64_t, uint32_t, std::string>> peers() {
    Use use(gate_, "communicator");
    size_t n = 0;
    check(qcclGetPeers(comm_, nullptr, 0, &n));
    std::vector<qcclPeerInfo_t> infos(n);
    check(qcclGetPeers(comm_, infos.data(), infos.size(), &n));
    std::vector<std::tuple<uint64_t, uint32_t, std::string>> out;
    for (size_t i = 0; i < std::min(n, infos.size()); ++i) {
      out.emplace_back(infos[i].peer_id, infos[i].ring_rank, infos[i].address);
    }
    return out;
  }
  bool admit_pending() {
    Use use(gate_, "communicator");
    int admitted = 0;
    check(without_gil([&] { return qcclAdmitPending(comm_, &admitted); }));
    return admitted != 0;
  }
  void wait_for_world(int64_t min_size, uint32_t timeout_ms) {
    Use use(gate_, "communicator");
    check(without_gil([&] { return qcclWaitForWorld(comm_, min_size, timeout_ms); }));
  }
  void optimize_topology() {
    Use use(gate_, "communicator");
    check(without_gil([&] { return qcclOptimizeTopology(comm_); }));
  }
  int64_t get_attribute(int attr) {
    Use use(gate_, "communicator");
    int64_t value = 0;
    check(qcclGetAttribute(comm_, static_cast<qcclAttribute_t>(attr), &value));
    return value;
  }

  // qcclGetStats as (ops, wait_ring_ns, data_ns, commit_ns, frame_work_ns, thread_cpu_ns,
  // tx_bytes, rx_bytes): the order of qccl.Stats.
  py::tuple stats() {
    Use use(gate_, "communicator");
    qcclStats_t s{};
    check(qcclGetStats(comm_, &s));
    return py::make_tuple(s.ops, s.wait_ring_ns, s.data_ns, s.commit_ns, s.frame_work_ns,
                          s.thread_cpu_ns, s.tx_bytes, s.rx_bytes);
  }

  py::tuple all_reduce(uintptr_t send, uintptr_t recv, size_t count, int dtype, int op,
                       uint64_t tag, int q_algorithm, int q_dtype) {
    Use use(gate_, "communicator");
    qcclReduceDesc_t d = make_desc(count, dtype, op, tag, q_algorithm, q_dtype);
    return blocking([&](qcclOp_t** h) {
      return qcclAllReduceAsync(reinterpret_cast<const void*>(send),
                                reinterpret_cast<void*>(recv), &d, comm_, h);
    });
  }

  // ---- the other collectives: each blocking (returns op_info) and async (returns an Op) ----

  py::tuple broadcast(uintptr_t buf, size_t count, int dtype, uint64_t root, uint64_t tag) {
    Use use(gate_, "communicator");
    return blocking(broadcast_start(buf, count, dtype, root, tag));
  }
  std::unique_ptr<Op> broadcast_async(uintptr_t buf, size_t count, int dtype, uint64_t root,
                                      uint64_t tag, py::object keepalive) {
    Use use(gate_, "communicator");
    return async(broadcast_start(buf, count, dtype, root, tag), std::move(keepalive));
  }
  py::tuple all_gather(uintptr_t send, uintptr_t recv, size_t count, size_t recv_count,
                       int dtype, uint64_t tag) {
    Use use(gate_, "communicator");
    return blocking(all_gather_start(send, recv, count, recv_count, dtype, tag));
  }
  std::unique_ptr<Op> all_gather_async(uintptr_t send, uintptr_t recv, size_t count,
                                       size_t recv_count, int dtype, uint64_t tag,
                                       py::object keepalive) {
    Use use(gate_, "communicator");
    return async(all_gather_start(send, recv, count, recv_count, dtype, tag),
                 std::move(keepalive));
  }
  // The counts come back through the Op (Op.counts()), blocking or not.
  std::unique_ptr<Op> all_gather_v_async(uintptr_t send, size_t count, uintptr_t recv,
                                         size_t recv_count, int dtype, uint64_t tag,
                                         py::object keepalive) {
    Use use(gate_, "communicator");
    auto counts = std::make_unique<std::vector<size_t>>(peers_capacity());
    size_t* out = counts->data();
    size_t cap = counts->size();
    return async(
        [=, this](qcclOp_t** h) {
          return qcclAllGatherVAsync(reinterpret_cast<const void*>(send), count,
                                     reinterpret_cast<void*>(recv), recv_count,
                                     static_cast<qcclDataType_t>(dtype), out, cap, tag, comm_, h);
        },
        std::move(keepalive), std::move(counts));
  }
  py::tuple reduce_scatter(uintptr_t send, uintptr_t recv, size_t recv_count, size_t count,
                           int dtype, int op, uint64_t tag, int q_algorithm, int q_dtype) {
    Use use(gate_, "communicator");
    qcclReduceDesc_t d = make_desc(count, dtype, op, tag, q_algorithm, q_dtype);
    return blocking(reduce_scatter_start(send, recv, recv_count, d));
  }
  std::unique_ptr<Op> reduce_scatter_async(uintptr_t send, uintptr_t recv, size_t recv_count,
                                           size_t count, int dtype, int op, uint64_t tag,
                                           int q_algorithm, int q_dtype, py::object keepalive) {
    Use use(gate_, "communicator");
    qcclReduceDesc_t d = make_desc(count, dtype, op, tag, q_algorithm, q_dtype);
    return async(reduce_scatter_start(send, recv, recv_count, d), std::move(keepalive));
  }
  py::tuple barrier(uint64_t tag) {
    Use use(gate_, "communicator");
    return blocking([=, this](qcclOp_t** h) { return qcclBarrierAsync(tag, comm_, h); });
  }
  std::unique_ptr<Op> barrier_async(uint64_t tag) {
    Use use(gate_, "communicator");
    return async([=, this](qcclOp_t** h) { return qcclBarrierAsync(tag, comm_, h); },
                 py::none());
  }

  std::unique_ptr<Op> all_reduce_async(uintptr_t send, uintptr_t recv, size_t count, int dtype,
                                       int op, uint64_t tag, int q_algorithm, int q_dtype,
                                       py::object keepalive) {
    Use use(gate_, "communicator");
    qcclReduceDesc_t d = make_desc(count, dtype, op, tag, q_algorithm, q_dtype);
    qcclOp_t* handle = nullptr;
    check(without_gil([&] {
      return qcclAllReduceAsync(reinterpret_cast<const void*>(send),
                                reinterpret_cast<void*>(recv), &d, comm_, &handle);
    }));
    return std::make_unique<Op>(handle, std::move(keepalive), peers_capacity());
  }

  py::tuple all_reduce_multiple_with_retry(const std::vector<DescTuple>& ops, int max_in_flight) {
    Use use(gate_, "communicator");
    std::vector<qcclReduceOp_t> c_ops(ops.size());
    for (size_t i = 0; i < ops.size(); ++i) {
      const auto& [send, recv, count, dtype, op, tag, q_algorithm, q_dtype] = ops[i];
      c_ops[i].sendbuf = reinterpret_cast<const void*>(send);
      c_ops[i].recvbuf = reinterpret_cast<void*>(recv);
      c_ops[i].desc = make_desc(count, dtype, op, tag, q_algorithm, q_dtype);
    }
    qcclReduceInfo_t info{};
    check(without_gil([&] {
      return qcclAllReduceMultipleWithRetry(c_ops.data(), c_ops.size(), comm_, max_in_flight,
                                            &info);
    }));
    return reduce_info(info);
  }

  // qcclRunMultipleWithRetry. Each op: (kind, send, recv, sendcount, recvcount, count, dtype,
  // op, tag, q_algorithm, q_dtype, root). Returns (world, tx, rx, [counts of each op: the
  // per-peer counts of an all-gather-v, else empty]).
  py::tuple run_multiple_with_retry(const std::vector<BatchTuple>& ops, int max_in_flight) {
    Use use(gate_, "communicator");
    std::vector<qcclCollectiveOp_t> c_ops(ops.size());
    std::vector<std::vector<size_t>> counts(ops.size());
    size_t room = peers_capacity();
    for (size_t i = 0; i < ops.size(); ++i) {
      const auto& [kind, send, recv, sendcount, recvcount, count, dtype, op, tag, q_algorithm,
                   q_dtype, root] = ops[i];
      qcclCollectiveOp_t& o = c_ops[i];
      o.kind = static_cast<qcclOpKind_t>(kind);
      o.sendbuf = reinterpret_cast<const void*>(send);
      o.recvbuf = reinterpret_cast<void*>(recv);
      o.sendcount = sendcount;
      o.recvcount = recvcount;
      o.desc = make_desc(count, dtype, op, tag, q_algorithm, q_dtype);
      o.root_peer_id = root;
      if (o.kind == qcclOpAllGatherV) {
        counts[i].assign(room, 0);
        o.counts = counts[i].data();
        o.counts_capacity = room;
      }
    }
    qcclReduceInfo_t info{};
    check(without_gil([&] {
      return qcclRunMultipleWithRetry(c_ops.data(), c_ops.size(), comm_, max_in_flight, &info);
    }));
    py::list per_op;
    for (auto& c : counts) {
      c.resize(std::min<size_t>(c.size(), info.world_size));
      per_op.append(py::cast(c));
    }
    return py::make_tuple(info.world_size, info.tx_bytes, info.rx_bytes, per_op);
  }

  // Returns (elected revision, tx_bytes, rx_bytes).
  py::tuple sync_shared_state(uint64_t revision, const std::vector<TensorTuple>& tensors,
                              int strategy) {
    Use use(gate_, "communicator");
    std::vector<qcclTensorInfo_t> infos(tensors.size());
    for (size_t i = 0; i < tensors.size(); ++i) {
      const auto& [name, ptr, count, dtype, allow] = tensors[i];
      infos[i].name = name.c_str();
      infos[i].data = reinterpret_cast<void*>(ptr);
      infos[i].count = count;
      infos[i].dtype = static_cast<qcclDataType_t>(dtype);
      infos[i].allow_content_inequality = allow ? 1 : 0;
    }
    qcclSharedState_t state;
    state.revision = revision;
    state.num_tensors = infos.size();
    state.tensors = infos.data();
    qcclSyncInfo_t info{};
    check(without_gil([&] {
      return qcclSyncSharedState(comm_, &state, static_cast<qcclSyncStrategy_t>(strategy),
                                 &info);
    }));
    return py::make_tuple(state.revision, info.tx_bytes, info.rx_bytes);
  }

  // qcclCommAbort: ends the calls in progress on other threads (they raise AbortedError and
  // leave their uses, so a close() waiting for them returns) and every later one. Not a use:
  // it must work while close() waits for the uses to drain; ptr_mu_ keeps the handle alive
  // meanwhile. A no-op once closed.
  void abort() {
    std::lock_guard<std::mutex> lock(ptr_mu_);
    if (comm_ == nullptr) return;
    check(qcclCommAbort(comm_));
  }
  void set_op_timeout(uint32_t timeout_ms) {
    Use use(gate_, "communicator");
    check(qcclCommSetOpTimeout(comm_, timeout_ms));
  }
  uint32_t op_timeout() {
    Use use(gate_, "communicator");
    uint32_t ms = 0;
    check(qcclCommGetOpTimeout(comm_, &ms));
    return ms;
  }

  // Waits for the calls in progress on other threads, then leaves the run and frees the
  // handle; async ops in flight end with qcclAborted. Idempotent. With wait == false, does
  // nothing if a call is in progress (used at interpreter exit, where a daemon thread may
  // be blocked in connect() forever) and returns false.
  bool close(bool wait = true) {
    if (!gate_.close(!wait)) return gate_.closed();
    if (comm_ == nullptr) return true;
    qcclResult_t r = without_gil([&] {
      gate_.drain();
      qcclComm_t* comm = nullptr;
      {
        std::lock_guard<std::mutex> lock(ptr_mu_);  // not while an abort() uses the handle
        comm = std::exchange(comm_, nullptr);
      }
      return qcclCommDestroy(comm);
    });
    check(r);
    return true;
  }
  bool closed() const { return gate_.closed(); }
  int active_calls() const { return gate_.active(); }

 private:
  // Starts an op: start(&handle), a qccl*Async call.
  using Starter = std::function<qcclResult_t(qcclOp_t**)>;
  // Room for the participants of an op: the group as last seen, with margin for joiners.
  size_t peers_capacity() const {
    int64_t n = 0;
    if (qcclGetAttribute(comm_, QCCL_ATTR_GROUP_WORLD_SIZE, &n) != qcclSuccess) n = 0;
    return static_cast<size_t>(std::max<int64_t>(n, 0)) + 256;
  }
  // Starts an op with start(&handle) and returns it as an Op.
  template <typename Start>
  std::unique_ptr<Op> async(Start&& start, py::object keepalive,
                            std::unique_ptr<std::vector<size_t>> counts = nullptr) {
    qcclOp_t* handle = nullptr;
    check(without_gil([&] { return start(&handle); }));
    return std::make_unique<Op>(handle, std::move(keepalive), peers_capacity(),
                                std::move(counts));
  }
  // Starts an op and waits for it (without the GIL); returns op_info or raises.
  template <typename Start>
  py::tuple blocking(Start&& start) {
    auto op = async(std::forward<Start>(start), py::none());
    return op->wait();
  }
  Starter broadcast_start(uintptr_t buf, size_t count, int dtype, uint64_t root, uint64_t tag) {
    return [=, this](qcclOp_t** h) {
      return qcclBroadcastAsync(reinterpret_cast<void*>(buf), count,
                                static_cast<qcclDataType_t>(dtype), root, tag, comm_, h);
    };
  }
  Starter all_gather_start(uintptr_t send, uintptr_t recv, size_t count, size_t recv_count,
                        int dtype, uint64_t tag) {
    return [=, this](qcclOp_t** h) {
      return qcclAllGatherAsync(reinterpret_cast<const void*>(send), reinterpret_cast<void*>(recv),
                                count, recv_count, static_cast<qcclDataType_t>(dtype), tag, comm_,
                                h);
    };
  }
  Starter reduce_scatter_start(uintptr_t send, uintptr_t recv, size_t recv_count,
                            qcclReduceDesc_t d) {
    return [=, this](qcclOp_t** h) {
      return qcclReduceScatterAsync(reinterpret_cast<const void*>(send),
                                    reinterpret_cast<void*>(recv), recv_count, &d, comm_, h);
    };
  }

  qcclComm_t* comm_ = nullptr;
  std::mutex ptr_mu_;  // comm_ between abort() and the destruction in close()
  UseGate gate_;
};

std::string version_string(int code) {
  return std::to_string(code / 10000) + "." + std::to_string(code / 100 % 100) + "." +
         std::to_string(code % 100);
}

}  // namespace

PYBIND11_MODULE(_qccl, m) {
  m.doc() = "Thin binding of the qccl C API (include/qccl/qccl.h); use the `qccl` package.";

  // ---- constants, straight from the header ----
  py::dict results;
  results["SUCCESS"] = static_cast<int>(qcclSuccess);
  results["INVALID_ARGUMENT"] = static_cast<int>(qcclInvalidArgument);
  results["INVALID_USAGE"] = static_cast<int>(qcclInvalidUsage);
  results["MASTER_UNREACHABLE"] = static_cast<int>(qcclMasterUnreachable);
  results["PEER_LOST"] = static_cast<int>(qcclPeerLost);
  results["TOO_FEW_PEERS"] = static_cast<int>(qcclTooFewPeers);
  results["TIMEOUT"] = static_cast<int>(qcclTimeout);
  results["KICKED"] = static_cast<int>(qcclKicked);
  results["MISMATCH"] = static_cast<int>(qcclMismatch);
  results["AUTH_FAILED"] = static_cast<int>(qcclAuthFailed);
  results["ABORTED"] = static_cast<int>(qcclAborted);
  results["INTERNAL_ERROR"] = static_cast<int>(qcclInternalError);
  m.attr("RESULTS") = results;
  m.attr("NUM_RESULTS") = static_cast<int>(qcclNumResults);

  py::dict dtypes;
  dtypes["UINT8"] = static_cast<int>(qcclUint8);
  dtypes["INT8"] = static_cast<int>(qcclInt8);
  dtypes["UINT16"] = static_cast<int>(qcclUint16);
  dtypes["INT16"] = static_cast<int>(qcclInt16);
  dtypes["UINT32"] = static_cast<int>(qcclUint32);
  dtypes["INT32"] = static_cast<int>(qcclInt32);
  dtypes["UINT64"] = static_cast<int>(qcclUint64);
  dtypes["INT64"] = static_cast<int>(qcclInt64);
  dtypes["FLOAT16"] = static_cast<int>(qcclFloat16);
  dtypes["BFLOAT16"] = static_cast<int>(qcclBFloat16);
  dtypes["FLOAT32"] = static_cast<int>(qcclFloat32);
  dtypes["FLOAT64"] = static_cast<int>(qcclFloat64);
  m.attr("DATA_TYPES") = dtypes;

  py::dict ops;
  ops["SUM"] = static_cast<int>(qcclSum);
  ops["AVG"] = static_cast<int>(qcclAvg);
  ops["PROD"] = static_cast<int>(qcclProd);
  ops["MAX"] = static_cast<int>(qcclMax);
  ops["MIN"] = static_cast<int>(qcclMin);
  m.attr("REDUCE_OPS") = ops;

  py::dict quant;
  quant["NONE"] = static_cast<int>(qcclQuantNone);
  quant["MIN_MAX"] = static_cast<int>(qcclQuantMinMax);
  quant["ZERO_POINT_SCALE"] = static_cast<int>(qcclQuantZeroPointScale);
  m.attr("QUANT_ALGORITHMS") = quant;

  py::dict strategies;
  strategies["ENFORCE_POPULAR"] = static_cast<int>(qcclSyncEnforcePopular);
  strategies["RECEIVE_ONLY"] = static_cast<int>(qcclSyncReceiveOnly);
  strategies["SEND_ONLY"] = static_cast<int>(qcclSyncSendOnly);
  m.attr("SYNC_STRATEGIES") = strategies;

  py::dict kinds;
  kinds["all_reduce"] = static_cast<int>(qcclOpAllReduce);
  kinds["broadcast"] = static_cast<int>(qcclOpBroadcast);
  kinds["all_gather"] = static_cast<int>(qcclOpAllGather);
  kinds["all_gather_v"] = static_cast<int>(qcclOpAllGatherV);
  kinds["reduce_scatter"] = static_cast<int>(qcclOpReduceScatter);
  kinds["barrier"] = static_cast<int>(qcclOpBarrier);
  m.attr("OP_KINDS") = kinds;

  py::dict attrs;
  attrs["GLOBAL_WORLD_SIZE"] = static_cast<int>(QCCL_ATTR_GLOBAL_WORLD_SIZE);
  attrs["GROUP_WORLD_SIZE"] = static_cast<int>(QCCL_ATTR_GROUP_WORLD_SIZE);
  attrs["NUM_GROUPS"] = static_cast<int>(QCCL_ATTR_NUM_GROUPS);
  attrs["LARGEST_GROUP_SIZE"] = static_cast<int>(QCCL_ATTR_LARGEST_GROUP_SIZE);
  attrs["RING_RANK"] = static_cast<int>(QCCL_ATTR_RING_RANK);
  attrs["EPOCH"] = static_cast<int>(QCCL_ATTR_EPOCH);
  attrs["PEER_ID"] = static_cast<int>(QCCL_ATTR_PEER_ID);
  m.attr("ATTRIBUTES") = attrs;

  m.attr("HEADER_VERSION_CODE") = static_cast<int>(QCCL_VERSION_CODE);

  // ---- functions ----
  m.def("version_code", [] {
    int code = 0;
    check(qcclGetVersion(&code));
    return code;
  }, "QCCL_VERSION_CODE of the linked library (qcclGetVersion).");
  m.def("version_string", [] {
    int code = 0;
    check(qcclGetVersion(&code));
    return version_string(code);
  }, "The linked library's version as 'MAJOR.MINOR.PATCH'.");
  m.def("error_string", [](int code) {
    return std::string(qcclGetErrorString(static_cast<qcclResult_t>(code)));
  }, py::arg("code"), "qcclGetErrorString: static text for a result code.");
  m.def("set_error_classes", [](py::dict classes) {
    Py_XDECREF(g_error_classes);
    g_error_classes = classes.release().ptr();
  }, py::arg("classes"), "Registers {result code: exception class} (done by qccl/_errors.py).");

  py::class_<BufferView>(m, "BufferView", "A buffer-protocol export held open.")
      .def(py::init<const py::buffer&, bool>(), py::arg("obj"), py::arg("writable"))
      .def_property_readonly("ptr", &BufferView::ptr)
      .def_property_readonly("itemsize", &BufferView::itemsize)
      .def_property_readonly("size", &BufferView::size)
      .def_property_readonly("nbytes", &BufferView::nbytes)
      .def_property_readonly("format", &BufferView::format)
      .def_property_readonly("readonly", &BufferView::readonly)
      .def_property_readonly("shape", &BufferView::shape)
      .def_property_readonly("strides", &BufferView::strides)
      .def_property_readonly("c_contiguous", &BufferView::c_contiguous);

  py::class_<Master>(m, "Master", "qcclMaster_t: an embedded master.")
      .def(py::init<const std::string&, uint32_t, uint32_t, uint32_t, std::optional<std::string>,
                    uint32_t, uint32_t, uint32_t>(),
           py::arg("listen_address"), py::arg("heartbeat_interval_ms"),
           py::arg("peer_timeout_ms"), py::arg("vote_timeout_ms"), py::arg("auth_token"),
           py::arg("probe_ms") = 0, py::arg("probe_max_age_ms") = 0, py::arg("encryption") = 0)
      .def("start", &Master::start)
      .def_property_readonly("port", &Master::port)
      .def("stop", &Master::stop)
      .def("wait", &Master::wait)
      .def("close", &Master::close, py::arg("wait") = true)
      .def_property_readonly("closed", &Master::closed)
      .def_property_readonly("active_calls", &Master::active_calls);

  py::class_<Op>(m, "Op", "qcclOp_t: an asynchronous collective operation.")
      .def("test", &Op::test)
      .def("wait", &Op::wait)
      .def("counts", &Op::counts)
      .def_property_readonly("waited", &Op::waited);

  py::class_<Comm>(m, "Comm", "qcclComm_t: one peer.")
      .def(py::init<const std::string&, uint32_t, uint32_t, uint32_t, std::optional<std::string>,
                    std::optional<std::string>, std::optional<std::string>,
                    std::optional<std::string>, uint32_t, uint32_t, uint32_t>(),
           py::arg("master_address"), py::arg("peer_group"), py::arg("connections_per_peer"),
           py::arg("connect_timeout_ms"), py::arg("auth_token"), py::arg("listen_address"),
           py::arg("advertise_address"), py::arg("auth_token_file"),
           py::arg("op_timeout_ms") = 0, py::arg("master_reconnect_ms") = 0,
           py::arg("encryption") = 0)
      .def("abort", &Comm::abort, "qcclCommAbort: ends every call in progress, any thread.")
      .def("set_op_timeout", &Comm::set_op_timeout, py::arg("timeout_ms"))
      .def_property_readonly("op_timeout_ms", &Comm::op_timeout)
      .def("peers", &Comm::peers)
      .def("connect", &Comm::connect)
      .def("update_topology", &Comm::update_topology)
      .def("are_peers_pending", &Comm::are_peers_pending)
      .def("admit_pending", &Comm::admit_pending)
      .def("wait_for_world", &Comm::wait_for_world, py::arg("min_size"), py::arg("timeout_ms"))
      .def("optimize_topology", &Comm::optimize_topology)
      .def("get_attribute", &Comm::get_attribute, py::arg("attribute"))
      .def("stats", &Comm::stats)
      .def("all_reduce", &Comm::all_reduce, py::arg("send"), py::arg("recv"), py::arg("count"),
           py::arg("dtype"), py::arg("op"), py::arg("tag"), py::arg("q_algorithm"),
           py::arg("q_dtype"))
      .def("all_reduce_async", &Comm::all_reduce_async, py::arg("send"), py::arg("recv"),
           py::arg("count"), py::arg("dtype"), py::arg("op"), py::arg("tag"),
           py::arg("q_algorithm"), py::arg("q_dtype"), py::arg("keepalive"))
      .def("broadcast", &Comm::broadcast, py::arg("buf"), py::arg("count"), py::arg("dtype"),
           py::arg("root"), py::arg("tag"))
      .def("broadcast_async", &Comm::broadcast_async, py::arg("buf"), py::arg("count"),
           py::arg("dtype"), py::arg("root"), py::arg("tag"), py::arg("keepalive"))
      .def("all_gather", &Comm::all_gather, py::arg("send"), py::arg("recv"), py::arg("count"),
           py::arg("recv_count"), py::arg("dtype"), py::arg("tag"))
      .def("all_gather_async", &Comm::all_gather_async, py::arg("send"), py::arg("recv"),
           py::arg("count"), py::arg("recv_count"), py::arg("dtype"), py::arg("tag"),
           py::arg("keepalive"))
      .def("all_gather_v_async", &Comm::all_gather_v_async, py::arg("send"), py::arg("count"),
           py::arg("recv"), py::arg("recv_count"), py::arg("dtype"), py::arg("tag"),
           py::arg("keepalive"))
      .def("reduce_scatter", &Comm::reduce_scatter, py::arg("send"), py::arg("recv"),
           py::arg("recv_count"), py::arg("count"), py::arg("dtype"), py::arg("op"),
           py::arg("tag"), py::arg("q_algorithm"), py::arg("q_dtype"))
      .def("reduce_scatter_async", &Comm::reduce_scatter_async, py::arg("send"),
           py::arg("recv"), py::arg("recv_count"), py::arg("count"), py::arg("dtype"),
           py::arg("op"), py::arg("tag"), py::arg("q_algorithm"), py::arg("q_dtype"),
           py::arg("keepalive"))
      .def("barrier", &Comm::barrier, py::arg("tag"))
      .def("barrier_async", &Comm::barrier_async, py::arg("tag"))
      .def("run_multiple_with_retry", &Comm::run_multiple_with_retry, py::arg("ops"),
           py::arg("max_in_flight"))
      .def("all_reduce_multiple_with_retry", &Comm::all_reduce_multiple_with_retry,
           py::arg("ops"), py::arg("max_in_flight"))
      .def("sync_shared_state", &Comm::sync_shared_state, py::arg("revision"),
           py::arg("tensors"), py::arg("strategy"))
      .def("close", &Comm::close, py::arg("wait") = true)
      .def_property_readonly("closed", &Comm::closed)
      .def_property_readonly("active_calls", &Comm::active_calls,
                             "Calls in progress on this handle (other threads); for tests.");
}
