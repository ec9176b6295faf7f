// Every exported function of include/qccl/qccl.h: validate -> call the core -> map Status to
// qcclResult_t, storing the message for qcclGetLastError(). The only extern "C" code; no
// exception crosses it (QCCL_CAPI_GUARD turns one into qcclInternalError).
#include "qccl/qccl.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

#include "capi/handles.hpp"
#include "capi/last_error.hpp"
#include "common/address.hpp"
#include "common/secret_file.hpp"
#include "core/admission.hpp"
#include "core/multi_reduce.hpp"

namespace {

using qccl::Status;
using qccl::StatusCode;

static_assert(static_cast<int>(StatusCode::kInternal) == qcclInternalError);
static_assert(static_cast<int>(StatusCode::kNumCodes) == qcclNumResults);
static_assert(static_cast<int>(qccl::DataType::kNumTypes) == qcclNumDataTypes);
static_assert(static_cast<int>(qccl::DataType::kBFloat16) == qcclBFloat16);
static_assert(static_cast<int>(qccl::ReduceOp::kNumOps) == qcclNumRedOps);
static_assert(static_cast<int>(qccl::QuantAlgorithm::kZeroPointScale) == qcclQuantZeroPointScale);
static_assert(static_cast<int>(qccl::core::SyncStrategy::kSendOnly) == qcclSyncSendOnly);
static_assert(static_cast<int>(qccl::core::SyncStrategy::kReceiveOnly) == qcclSyncReceiveOnly);

qcclResult_t fail(qcclResult_t code, std::string message) {
  qccl::capi::set_last_error(std::move(message));
  return code;
}

// "fn: message", naming the call once: the core names the call it ran ("qcclAllReduce: ..."),
// which is replaced by the public one that the user called.
qcclResult_t to_result(const Status& st, const char* fn) {
  if (st.is_ok()) return qcclSuccess;
  return fail(static_cast<qcclResult_t>(st.code()),
              std::string(fn) + ": " + std::string(qccl::strip_call_name(st.message())));
}

template <typename F>
qcclResult_t guarded(const char* fn, F&& body) {
  try {
    return body();
  } catch (const std::exception& e) {
    return fail(qcclInternalError, std::string(fn) + ": unexpected exception: " + e.what());
  } catch (...) {
    return fail(qcclInternalError, std::string(fn) + ": unexpected exception");
  }
}

#define QCCL_REQUIRE(cond, fn, what)                                  \
  do {                                                                \
    if (!(cond)) return fail(qcclInvalidArgument, std::string(fn) + ": " + (what)); \
  } while (0)

// The raw value of an enum a caller passed. Loading an out-of-range value as the enum type is
// undefined behaviour in C++, and callers (from C) may pass anything: read the bits instead.
template <typename E>
unsigned raw_enum(const E& e) {
  static_assert(sizeof(E) == sizeof(unsigned));
  unsigned v;
  std::memcpy(&v, &e, sizeof v);
  return v;
}

bool valid(const qcclMaster* m) { return m != nullptr && m->magic == qcclMaster::kMagic; }
bool valid(const qcclComm* c) { return c != nullptr && c->magic == qcclComm::kMagic && c->rep; }
bool valid(const qcclOp* o) { return o != nullptr && o->magic == qcclOp::kMagic && o->rep; }

// Converts and checks a public descriptor.
qcclResult_t to_desc(const qcclReduceDesc_t* d, qccl::collectives::ReduceDesc* out, const char* fn) {
  out->count = d->count;
  unsigned dtype = raw_enum(d->dtype), op = raw_enum(d->op);
  unsigned algorithm = raw_enum(d->quantization.algorithm);
  unsigned quant_dtype = raw_enum(d->quantization.quantized_dtype);
  if (dtype >= qcclNumDataTypes || op >= qcclNumRedOps || algorithm > qcclQuantZeroPointScale) {
    return fail(qcclInvalidArgument, std::string(fn) + ": desc has an unknown dtype, op or "
                                                       "quantization algorithm");
  }
  out->dtype = static_cast<qccl::DataType>(dtype);
  out->op = static_cast<qccl::ReduceOp>(op);
  out->tag = d->tag;
  out->quant_algorithm = static_cast<qccl::QuantAlgorithm>(algorithm);
  if (algorithm != qcclQuantNone && quant_dtype >= qcclNumDataTypes) {
    return fail(qcclInvalidArgument, std::string(fn) + ": desc has an unknown quantized_dtype");
  }
  // With qcclQuantNone an out-of-range quantized_dtype is ignored, like any non-float one.
  out->quant_dtype = quant_dtype < qcclNumDataTypes ? static_cast<qccl::DataType>(quant_dtype)
                                                    : out->dtype;
  return to_result(qccl::collectives::validate(*out), fn);
}

qcclResult_t check_buffers(const void* sendbuf, const void* recvbuf, const qcclReduceDesc_t* d,
                           const char* fn) {
  if (d->count == 0) return qcclSuccess;
  QCCL_REQUIRE(sendbuf != nullptr && recvbuf != nullptr, fn, "sendbuf or recvbuf is NULL");
  size_t bytes = d->count * qccl::dtype_size(static_cast<qccl::DataType>(raw_enum(d->dtype)));
  auto s = static_cast<const char*>(sendbuf);
  auto r = static_cast<const char*>(recvbuf);
  bool overlap = s != r && s < r + bytes && r < s + bytes;
  QCCL_REQUIRE(!overlap, fn, "sendbuf and recvbuf overlap partially (use the same pointer for "
                             "in place)");
  return qcclSuccess;
}

}  // namespace

extern "C" {

qcclResult_t qcclGetVersion(int* version_code) {
  QCCL_REQUIRE(version_code != nullptr, "qcclGetVersion", "version_code is NULL");
  *version_code = QCCL_VERSION_CODE;
  return qcclSuccess;
}

const char* qcclGetErrorString(qcclResult_t result) {
  switch (static_cast<qcclResult_t>(std::min(raw_enum(result), unsigned{qcclNumResults}))) {
    case qcclSuccess: return "success";
    case qcclInvalidArgument: return "invalid argument";
    case qcclInvalidUsage: return "invalid usage";
    case qcclMasterUnreachable: return "master unreachable";
    case qcclPeerLost: return "peer lost";
    case qcclTooFewPeers: return "too few peers";
    case qcclTimeout: return "timeout";
    case qcclKicked: return "kicked by the master";
    case qcclMismatch: return "operation mismatch between peers";
    case qcclAuthFailed: return "authentication failed";
    case qcclAborted: return "aborted";
    case qcclInternalError: return "internal error";
    case qcclNumResults: break;
  }
  return "unknown result";
}

const char* qcclGetLastError(void) { return qccl::capi::last_error(); }

// ---- master ----

qcclResult_t qcclMasterCreate(const qcclMasterConfig_t* config, qcclMaster_t** master_out) {
  const char* fn = "qcclMasterCreate";
  return guarded(fn, [&] {
    QCCL_REQUIRE(config != nullptr && master_out != nullptr, fn, "config or master_out is NULL");
    QCCL_REQUIRE(config->struct_size >= offsetof(qcclMasterConfig_t, vote_timeout_ms) &&
                     config->struct_size <= sizeof(qcclMasterConfig_t),
                 fn, "config->struct_size is wrong (initialise with QCCL_MASTER_CONFIG_INIT)");
    QCCL_REQUIRE(config->listen_address != nullptr, fn, "config->listen_address is NULL");
    qccl::master::MasterOptions o;
    o.listen_address = config->listen_address;
    if (config->heartbeat_interval_ms) o.heartbeat_interval_ms = config->heartbeat_interval_ms;
    if (config->peer_timeout_ms) o.peer_timeout_ms = config->peer_timeout_ms;
    // Fields appended after the first version count only if the caller's struct has them.
#define QCCL_HAS_FIELD_(field) \
  (config->struct_size >= offsetof(qcclMasterConfig_t, field) + sizeof(config->field))
    if (QCCL_HAS_FIELD_(vote_timeout_ms) && config->vote_timeout_ms) {
      o.vote_timeout_ms = config->vote_timeout_ms;
    }
    // probe_ms may sit in the tail padding of the previous layout (which ended with
    // vote_timeout_ms), so the two probe fields count only together.
    if (QCCL_HAS_FIELD_(probe_max_age_ms)) {
      if (config->probe_ms) o.probe_ms = config->probe_ms;
      if (config->probe_max_age_ms) o.probe_max_age_ms = config->probe_max_age_ms;
    }
#undef QCCL_HAS_FIELD_
    QCCL_REQUIRE(o.probe_ms <= qccl::master::kMaxProbeMs, fn,
                 "probe_ms must be at most 60000 (it is the measured time per probed link)");
    QCCL_REQUIRE(config->auth_token == nullptr || config->auth_token[0] != '\0', fn,
                 "auth_token is empty; pass NULL for no authentication");
    if (config->auth_token) o.auth_token = config->auth_token;
    QCCL_REQUIRE(o.heartbeat_interval_ms < o.peer_timeout_ms, fn,
                 "heartbeat_interval_ms must be shorter than peer_timeout_ms");
    auto addr = qccl::parse_host_port(o.listen_address);
    if (!addr.is_ok()) return to_result(addr.status(), fn);
    auto m = std::make_unique<qcclMaster>();
    m->rep = std::make_unique<qccl::master::MasterServer>(std::move(o));
    *master_out = m.release();
    return qcclSuccess;
  });
}

qcclResult_t qcclMasterStart(qcclMaster_t* master) {
  const char* fn = "qcclMasterStart";
  return guarded(fn, [&] {
    QCCL_REQUIRE(valid(master), fn, "master is NULL or not a master");
    qcclResult_t r = to_result(master->rep->start(), fn);
    if (r == qcclSuccess) master->started = true;
    return r;
  });
}

qcclResult_t qcclMasterGetPort(const qcclMaster_t* master, uint16_t* port_out) {
  const char* fn = "qcclMasterGetPort";
  QCCL_REQUIRE(valid(master) && port_out != nullptr, fn, "master or port_out is NULL");
  if (!master->started) return fail(qcclInvalidUsage, "qcclMasterGetPort: the master is not started");
  *port_out = master->rep->port();
  return qcclSuccess;
}

qcclResult_t qcclMasterStop(qcclMaster_t* master) {
  const char* fn = "qcclMasterStop";
  return guarded(fn, [&] {
    QCCL_REQUIRE(valid(master), fn, "master is NULL or not a master");
    master->rep->stop();
    return qcclSuccess;
  });
}

qcclResult_t qcclMasterWait(qcclMaster_t* master) {
  const char* fn = "qcclMasterWait";
  return guarded(fn, [&] {
    QCCL_REQUIRE(valid(master), fn, "master is NULL or not a master");
    master->rep->wait();
    return qcclSuccess;
  });
}

qcclResult_t qcclMasterDestroy(qcclMaster_t* master) {
  const char* fn = "qcclMasterDestroy";
  return guarded(fn, [&] {
    QCCL_REQUIRE(valid(master), fn, "master is NULL or not a master");
    master->rep->stop();
    master->rep->wait();
    master->magic = 0;
    delete master;
    return qcclSuccess;
  });
}

// ---- communicator ----

namespace {

// The communicator config as first published (qccl.h 0.1.0) ended with auth_token: every
// caller's struct has at least these bytes. A program compiled against an older header passes
// its smaller struct_size; fields appended since are read only when the caller's struct covers
// them (comm_config_has), and otherwise keep their defaults. A field appended into the tail
// padding of the previous layout would count as present in a struct_size of that layout (and
// hold whatever the padding held): read such a field only together with a later field that
// lies past that padding, as qcclMasterCreate does for probe_ms.
constexpr size_t kCommConfigFirstSize =
    offsetof(qcclCommConfig_t, auth_token) + sizeof(qcclCommConfig_t::auth_token);

// Whether the caller's struct (of config->struct_size bytes) holds the field at `offset`.
constexpr bool comm_config_has(const qcclCommConfig_t& config, size_t offset, size_t size) {
  return config.struct_size >= offset + size;
}
#define QCCL_COMM_CONFIG_HAS_(config, field) \
  comm_config_has((config), offsetof(qcclCommConfig_t, field), sizeof(qcclCommConfig_t::field))

// A setting: the caller's value if given, else the environment variable's if set, else "".
std::string setting(const char* explicit_value, const char* env_name) {
  if (explicit_value != nullptr) return explicit_value;
  const char* env = std::getenv(env_name);
  return env != nullptr ? env : "";
}

}  // namespace

qcclResult_t qcclCommCreate(const qcclCommConfig_t* config, qcclComm_t** comm_out) {
  const char* fn = "qcclCommCreate";
  return guarded(fn, [&] {
    QCCL_REQUIRE(config != nullptr && comm_out != nullptr, fn, "config or comm_out is NULL");
    // Read struct_size alone first: nothing past it is known to exist yet.
    QCCL_REQUIRE(config->struct_size >= kCommConfigFirstSize &&
                     config->struct_size <= sizeof(qcclCommConfig_t),
                 fn,
                 "config->struct_size is " + std::to_string(config->struct_size) +
                     ", not a qcclCommConfig_t size this library knows (" +
                     std::to_string(kCommConfigFirstSize) + " to " +
                     std::to_string(sizeof(qcclCommConfig_t)) +
                     " bytes): initialise the config with QCCL_COMM_CONFIG_INIT");
    QCCL_REQUIRE(config->master_address != nullptr, fn, "config->master_address is NULL");
    // The fields of the first layout; those appended later only if the caller's struct has
    // them (QCCL_COMM_CONFIG_HAS_), else NULL: the environment or the default.
    qccl::core::CommOptions o;
    o.master_address = config->master_address;
    o.peer_group = config->peer_group;
    o.connections_per_peer = config->connections_per_peer;
    o.connect_timeout_ms = config->connect_timeout_ms;
    if (config->auth_token) o.auth_token = config->auth_token;
    const bool addressing = QCCL_COMM_CONFIG_HAS_(*config, auth_token_file);
    o.listen_address = setting(addressing ? config->listen_address : nullptr,
                               "QCCL_LISTEN_ADDRESS");
    o.advertise_address = setting(addressing ? config->advertise_address : nullptr,
                                  "QCCL_ADVERTISE_ADDRESS");
    // An explicit auth_token wins over $QCCL_AUTH_TOKEN_FILE, like every explicit setting;
    // only the two explicit fields together are a contradiction.
    const char* file_field = addressing ? config->auth_token_file : nullptr;
    std::string token_file =
        config->auth_token && !file_field ? "" : setting(file_field, "QCCL_AUTH_TOKEN_FILE");
    if (!token_file.empty()) {
      QCCL_REQUIRE(!config->auth_token, fn,
                   "auth_token and auth_token_file are both set: give the secret one way");
      auto token = qccl::read_secret_file(token_file);
      if (!token.is_ok()) return to_result(token.status(), fn);
      o.auth_token = std::move(token).value();
    }
    auto comm = qccl::core::Communicator::create(std::move(o));
    if (!comm.is_ok()) return to_result(comm.status(), fn);
    auto c = std::make_unique<qcclComm>();
    c->rep = std::move(comm).value();
    *comm_out = c.release();
    return qcclSuccess;
  });
}

qcclResult_t qcclConnect(qcclComm_t* comm) {
  const char* fn = "qcclConnect";
  return guarded(fn, [&] {
    QCCL_REQUIRE(valid(comm), fn, "comm is NULL or not a communicator");
    return to_result(comm->rep->connect(), fn);
  });
}

qcclResult_t qcclCommDestroy(qcclComm_t* comm) {
  const char* fn = "qcclCommDestroy";
  return guarded(fn, [&] {
    QCCL_REQUIRE(valid(comm), fn, "comm is NULL or not a communicator");
    comm->rep.reset();
    comm->magic = 0;
    delete comm;
    return qcclSuccess;
  });
}

qcclResult_t qcclUpdateTopology(qcclComm_t* comm) {
  const char* fn = "qcclUpdateTopology";
  return guarded(fn, [&] {
    QCCL_REQUIRE(valid(comm), fn, "comm is NULL or not a communicator");
    return to_result(comm->rep->update_topology(), fn);
  });
}

qcclResult_t qcclOptimizeTopology(qcclComm_t* comm) {
  const char* fn = "qcclOptimizeTopology";
  return guarded(fn, [&] {
    QCCL_REQUIRE(valid(comm), fn, "comm is NULL or not a communicator");
    return to_result(comm->rep->optimize_topology(), fn);
  });
}

qcclResult_t qcclArePeersPending(qcclComm_t* comm, int* pending_out) {
  const char* fn = "qcclArePeersPending";
  return guarded(fn, [&] {
    QCCL_REQUIRE(valid(comm) && pending_out != nullptr, fn, "comm or pending_out is NULL");
    auto r = comm->rep->are_peers_pending();
    if (!r.is_ok()) return to_result(r.status(), fn);
    *pending_out = *r ? 1 : 0;
    return qcclSuccess;
  });
}

qcclResult_t qcclAdmitPending(qcclComm_t* comm, int* admitted_out) {
  const char* fn = "qcclAdmitPending";
  return guarded(fn, [&] {
    QCCL_REQUIRE(valid(comm), fn, "comm is NULL or not a communicator");
    auto r = qccl::core::admit_pending(*comm->rep);
    if (!r.is_ok()) return to_result(r.status(), fn);
    if (admitted_out != nullptr) *admitted_out = *r ? 1 : 0;
    return qcclSuccess;
  });
}

qcclResult_t qcclWaitForWorld(qcclComm_t* comm, int64_t min_size, uint32_t timeout_ms) {
  const char* fn = "qcclWaitForWorld";
  return guarded(fn, [&] {
    QCCL_REQUIRE(valid(comm), fn, "comm is NULL or not a communicator");
    QCCL_REQUIRE(min_size >= 1, fn, "min_size must be at least 1");
    return to_result(qccl::core::wait_for_world(*comm->rep, min_size,
                                                std::chrono::milliseconds(timeout_ms)),
                     fn);
  });
}

qcclResult_t qcclGetPeers(const qcclComm_t* comm, qcclPeerInfo_t* peers, size_t capacity,
                          size_t* count_out) {
  const char* fn = "qcclGetPeers";
  return guarded(fn, [&] {
    QCCL_REQUIRE(valid(comm) && count_out != nullptr, fn, "comm or count_out is NULL");
    QCCL_REQUIRE(peers != nullptr || capacity == 0, fn, "peers is NULL but capacity is not 0");
    auto r = comm->rep->peers();
    if (!r.is_ok()) return to_result(r.status(), fn);
    *count_out = r->size();
    for (size_t i = 0; i < r->size() && i < capacity; ++i) {
      qcclPeerInfo_t& out = peers[i];
      out.peer_id = (*r)[i].id;
      out.ring_rank = static_cast<uint32_t>(i);
      const std::string& a = (*r)[i].address;
      size_t n = std::min(a.size(), sizeof out.address - 1);
      std::memcpy(out.address, a.data(), n);
      out.address[n] = '\0';
    }
    return qcclSuccess;
  });
}

qcclResult_t qcclGetAttribute(const qcclComm_t* comm, qcclAttribute_t attr, int64_t* value_out) {
  const char* fn = "qcclGetAttribute";
  return guarded(fn, [&] {
    QCCL_REQUIRE(valid(comm) && value_out != nullptr, fn, "comm or value_out is NULL");
    unsigned raw = raw_enum(attr);
    QCCL_REQUIRE(raw >= QCCL_ATTR_GLOBAL_WORLD_SIZE && raw <= QCCL_ATTR_PEER_ID, fn,
                 "unknown attribute " + std::to_string(static_cast<int>(raw)));
    auto r = comm->rep->attribute(static_cast<qccl::core::Attribute>(raw));
    if (!r.is_ok()) return to_result(r.status(), fn);
    *value_out = *r;
    return qcclSuccess;
  });
}

}  // extern "C"

// ---- all-reduce ----

namespace {

// Starts an all-reduce for qcclAllReduce and qcclAllReduceAsync; `fn` names the caller in
// error messages.
qcclResult_t start_all_reduce(const char* fn, const void* sendbuf, void* recvbuf,
                              const qcclReduceDesc_t* desc, qcclComm_t* comm,
                              std::shared_ptr<qccl::core::OpHandle>* handle) {
  QCCL_REQUIRE(valid(comm), fn, "comm is NULL or not a communicator");
  QCCL_REQUIRE(desc != nullptr, fn, "desc is NULL");
  qccl::collectives::ReduceDesc d;
  if (qcclResult_t r = to_desc(desc, &d, fn); r != qcclSuccess) return r;
  if (qcclResult_t r = check_buffers(sendbuf, recvbuf, desc, fn); r != qcclSuccess) return r;
  auto h = comm->rep->all_reduce_async(sendbuf, recvbuf, d);
  if (!h.is_ok()) return to_result(h.status(), fn);
  *handle = std::move(h).value();
  return qcclSuccess;
}

}  // namespace

extern "C" {

qcclResult_t qcclAllReduceAsync(const void* sendbuf, void* recvbuf, const qcclReduceDesc_t* desc,
                                qcclComm_t* comm, qcclOp_t** op_out) {
  const char* fn = "qcclAllReduceAsync";
  return guarded(fn, [&] {
    QCCL_REQUIRE(op_out != nullptr, fn, "op_out is NULL");
    std::shared_ptr<qccl::core::OpHandle> handle;
    qcclResult_t r = start_all_reduce(fn, sendbuf, recvbuf, desc, comm, &handle);
    if (r != qcclSuccess) return r;
    auto op = std::make_unique<qcclOp>();
    op->rep = std::move(handle);
    *op_out = op.release();
    return qcclSuccess;
  });
}

qcclResult_t qcclTest(qcclOp_t* op, int* done_out) {
  const char* fn = "qcclTest";
  QCCL_REQUIRE(valid(op) && done_out != nullptr, fn, "op or done_out is NULL");
  *done_out = op->rep->test() ? 1 : 0;
  return qcclSuccess;
}

qcclResult_t qcclWait(qcclOp_t* op, qcclReduceInfo_t* info_out) {
  const char* fn = "qcclWait";
  return guarded(fn, [&] {
    QCCL_REQUIRE(valid(op), fn, "op is NULL or not an operation handle");
    qccl::core::ReduceInfo info;
    Status st = op->rep->wait(&info);
    if (info_out) *info_out = {info.world_size, info.tx_bytes, info.rx_bytes};
    op->magic = 0;
    delete op;
    return to_result(st, fn);
  });
}

qcclResult_t qcclAllReduce(const void* sendbuf, void* recvbuf, const qcclReduceDesc_t* desc,
                           qcclComm_t* comm, qcclReduceInfo_t* info_out) {
  const char* fn = "qcclAllReduce";
  return guarded(fn, [&] {
    std::shared_ptr<qccl::core::OpHandle> handle;
    qcclResult_t r = start_all_reduce(fn, sendbuf, recvbuf, desc, comm, &handle);
    if (r != qcclSuccess) return r;
    qccl::core::ReduceInfo info;
    qccl::Status st = handle->wait(&info);
    if (info_out) *info_out = {info.world_size, info.tx_bytes, info.rx_bytes};
    return to_result(st, fn);
  });
}

qcclResult_t qcclAllReduceMultipleWithRetry(const qcclReduceOp_t* ops, size_t num_ops,
                                            qcclComm_t* comm, int max_in_flight,
                                            qcclReduceInfo_t* info_out) {
  const char* fn = "qcclAllReduceMultipleWithRetry";
  return guarded(fn, [&] {
    QCCL_REQUIRE(valid(comm), fn, "comm is NULL or not a communicator");
    QCCL_REQUIRE(num_ops == 0 || ops != nullptr, fn, "ops is NULL");
    QCCL_REQUIRE(max_in_flight >= 1, fn, "max_in_flight must be at least 1");
    std::vector<qccl::core::MultiOp> multi(num_ops);
    for (size_t i = 0; i < num_ops; ++i) {
      if (qcclResult_t r = to_desc(&ops[i].desc, &multi[i].desc, fn); r != qcclSuccess) return r;
      if (qcclResult_t r = check_buffers(ops[i].sendbuf, ops[i].recvbuf, &ops[i].desc, fn);
          r != qcclSuccess) {
        return r;
      }
      for (size_t j = 0; j < i; ++j) {
        QCCL_REQUIRE(ops[j].desc.tag != ops[i].desc.tag, fn,
                     "ops " + std::to_string(j) + " and " + std::to_string(i) + " share tag " +
                         std::to_string(ops[i].desc.tag));
      }
      multi[i].sendbuf = ops[i].sendbuf;
      multi[i].recvbuf = ops[i].recvbuf;
    }
    qccl::core::ReduceInfo info;
    Status st = qccl::core::all_reduce_multiple_with_retry(*comm->rep, multi,
                                                          static_cast<size_t>(max_in_flight), &info);
    if (info_out) *info_out = {info.world_size, info.tx_bytes, info.rx_bytes};
    return to_result(st, fn);
  });
}

}  // extern "C"

// ---- shared state ----

extern "C" {

qcclResult_t qcclSyncSharedState(qcclComm_t* comm, qcclSharedState_t* state,
                                 qcclSyncStrategy_t strategy, qcclSyncInfo_t* info_out) {
  const char* fn = "qcclSyncSharedState";
  return guarded(fn, [&] {
    QCCL_REQUIRE(valid(comm), fn, "comm is NULL or not a communicator");
    QCCL_REQUIRE(state != nullptr, fn, "state is NULL");
    QCCL_REQUIRE(state->num_tensors == 0 || state->tensors != nullptr, fn,
                 "state->tensors is NULL but num_tensors is " + std::to_string(state->num_tensors));
    unsigned raw_strategy = raw_enum(strategy);
    QCCL_REQUIRE(raw_strategy <= qcclSyncSendOnly, fn,
                 "unknown strategy " + std::to_string(raw_strategy));
    std::vector<qccl::core::StateTensor> tensors(state->num_tensors);
    for (size_t i = 0; i < state->num_tensors; ++i) {
      const qcclTensorInfo_t& t = state->tensors[i];
      QCCL_REQUIRE(t.name != nullptr, fn, "tensor " + std::to_string(i) + " has name == NULL");
      unsigned dtype = raw_enum(t.dtype);
      QCCL_REQUIRE(dtype < qcclNumDataTypes, fn,
                   "tensor '" + std::string(t.name) + "' has an unknown dtype " +
                       std::to_string(dtype));
      tensors[i] = {t.name, t.data, t.count, static_cast<qccl::DataType>(dtype),
                    t.allow_content_inequality != 0};
    }
    uint64_t revision = state->revision;
    qccl::core::Communicator::SyncInfo info;
    Status st = comm->rep->sync_shared_state(
        tensors, &revision, static_cast<qccl::core::SyncStrategy>(raw_strategy), &info);
    if (st.is_ok()) {
      state->revision = revision;
      if (info_out) *info_out = {info.tx_bytes, info.rx_bytes};
    } else if (info_out) {
      *info_out = {0, 0};
    }
    return to_result(st, fn);
  });
}

}  // extern "C"
