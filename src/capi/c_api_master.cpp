// The C API of the embedded master: qcclMaster* (create from a config, start, port, stop,
// wait, destroy).
#include "qccl/qccl.h"

#include <cstddef>
#include <memory>
#include <string>

#include "capi/c_api_common.hpp"
#include "common/address.hpp"

using qccl::capi::fail;
using qccl::capi::guarded;
using qccl::capi::to_result;
using qccl::capi::valid;

extern "C" {

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
    if (QCCL_HAS_FIELD_(standby)) {
      QCCL_REQUIRE(config->standby <= 1, fn, "standby must be 0 or 1");
      o.standby = config->standby == 1;
    }
    if (QCCL_HAS_FIELD_(resume_grace_ms)) o.resume_grace_ms = config->resume_grace_ms;
    auto encrypt = qccl::capi::encryption_setting(
        QCCL_HAS_FIELD_(encryption) ? config->encryption : QCCL_ENCRYPTION_DEFAULT);
    if (!encrypt.is_ok()) return to_result(encrypt.status(), fn);
    o.encrypt = *encrypt;
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

}  // extern "C"
