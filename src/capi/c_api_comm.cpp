// The C API of a communicator: create (the config and its environment fallbacks), connect,
// destroy, abort, the op timeout, the topology votes, admission (qcclAdmitPending,
// qcclWaitForWorld), the peer list and attributes.
#include "qccl/qccl.h"

#include <algorithm>
#include <chrono>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include "capi/c_api_common.hpp"
#include "common/secret_file.hpp"
#include "core/admission.hpp"

using qccl::capi::guarded;
using qccl::capi::raw_enum;
using qccl::capi::to_result;
using qccl::capi::valid;

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

// A number of milliseconds from the environment: unset or empty = 0; anything but a decimal
// number below 2^32 is refused.
qccl::Result<uint32_t> env_ms(const char* env_name) {
  const char* env = std::getenv(env_name);
  if (env == nullptr || *env == '\0') return uint32_t{0};
  char* end = nullptr;
  errno = 0;
  unsigned long long v = std::strtoull(env, &end, 10);
  if (*env == '-' || *end != '\0' || errno != 0 || v > UINT32_MAX) {
    return qccl::make_status(qccl::StatusCode::kInvalidArgument,
                             "${} = '{}' is not a number of milliseconds", env_name, env);
  }
  return static_cast<uint32_t>(v);
}

}  // namespace

extern "C" {

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
    o.op_timeout_ms = QCCL_COMM_CONFIG_HAS_(*config, op_timeout_ms) ? config->op_timeout_ms : 0;
    if (o.op_timeout_ms == 0) {
      auto env = env_ms("QCCL_OP_TIMEOUT_MS");
      if (!env.is_ok()) return to_result(env.status(), fn);
      o.op_timeout_ms = *env;
    }
    // Resuming after a lost master is on by default; NEVER (or 0 in the environment) is off.
    const uint32_t reconnect =
        QCCL_COMM_CONFIG_HAS_(*config, master_reconnect_ms) ? config->master_reconnect_ms : 0;
    if (reconnect == QCCL_MASTER_RECONNECT_NEVER) {
      o.master_reconnect_ms = 0;
    } else if (reconnect != 0) {
      o.master_reconnect_ms = reconnect;
    } else if (const char* env = std::getenv("QCCL_MASTER_RECONNECT_MS"); env && *env) {
      auto ms = env_ms("QCCL_MASTER_RECONNECT_MS");
      if (!ms.is_ok()) return to_result(ms.status(), fn);
      o.master_reconnect_ms = *ms;
    } else {
      o.master_reconnect_ms = QCCL_MASTER_RECONNECT_DEFAULT_MS;
    }
    auto encrypt = qccl::capi::encryption_setting(
        QCCL_COMM_CONFIG_HAS_(*config, encryption) ? config->encryption : QCCL_ENCRYPTION_DEFAULT);
    if (!encrypt.is_ok()) return to_result(encrypt.status(), fn);
    o.encrypt = *encrypt;
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

qcclResult_t qcclCommAbort(qcclComm_t* comm) {
  const char* fn = "qcclCommAbort";
  return guarded(fn, [&] {
    QCCL_REQUIRE(valid(comm), fn, "comm is NULL or not a communicator");
    comm->rep->abort();
    return qcclSuccess;
  });
}

qcclResult_t qcclCommSetOpTimeout(qcclComm_t* comm, uint32_t timeout_ms) {
  const char* fn = "qcclCommSetOpTimeout";
  return guarded(fn, [&] {
    QCCL_REQUIRE(valid(comm), fn, "comm is NULL or not a communicator");
    return to_result(comm->rep->set_op_timeout(std::chrono::milliseconds(timeout_ms)), fn);
  });
}

qcclResult_t qcclCommGetOpTimeout(const qcclComm_t* comm, uint32_t* timeout_ms_out) {
  const char* fn = "qcclCommGetOpTimeout";
  return guarded(fn, [&] {
    QCCL_REQUIRE(valid(comm) && timeout_ms_out != nullptr, fn, "comm or timeout_ms_out is NULL");
    *timeout_ms_out = static_cast<uint32_t>(comm->rep->op_timeout().count());
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

qcclResult_t qcclGetStats(const qcclComm_t* comm, qcclStats_t* stats_out) {
  const char* fn = "qcclGetStats";
  return guarded(fn, [&] {
    QCCL_REQUIRE(valid(comm) && stats_out != nullptr, fn, "comm or stats_out is NULL");
    auto s = comm->rep->stats();
    auto ns = [](std::chrono::nanoseconds d) { return static_cast<uint64_t>(d.count()); };
    *stats_out = qcclStats_t{s.ops,          ns(s.wait_ring),  ns(s.data),
                             ns(s.commit),   ns(s.frame_work), ns(s.thread_cpu),
                             s.tx_bytes,     s.rx_bytes};
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
