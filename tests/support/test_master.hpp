// A master inside the test process (through the C API, on 127.0.0.1:0), for the multi-process
// tests whose peers are child processes (proc_cluster.hpp), with small deadlines so that a test
// sees expulsions within about a second.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <string>

#include "qccl/qccl.h"

namespace qccl::test {

struct MasterTimes {
  uint32_t heartbeat_ms = 100;
  uint32_t peer_timeout_ms = 1000;
  uint32_t vote_timeout_ms = 5000;
};

class TestMaster {
 public:
  explicit TestMaster(MasterTimes c = MasterTimes{}) : config_(c) {
    qcclMasterConfig_t mc = QCCL_MASTER_CONFIG_INIT;
    mc.listen_address = "127.0.0.1:0";
    mc.heartbeat_interval_ms = c.heartbeat_ms;
    mc.peer_timeout_ms = c.peer_timeout_ms;
    mc.vote_timeout_ms = c.vote_timeout_ms;
    // QCCL_FAULT_VOTE_TIMEOUT_MS=<n> overrides it, e.g. to keep a hung op from ending in
    // straggler expulsions before QCCL_FAULT_HOLD_S stops the peers for gdb.
    if (const char* v = std::getenv("QCCL_FAULT_VOTE_TIMEOUT_MS")) {
      mc.vote_timeout_ms = static_cast<uint32_t>(std::strtoul(v, nullptr, 10));
    }
    ok_ = qcclMasterCreate(&mc, &master_) == qcclSuccess && qcclMasterStart(master_) == qcclSuccess &&
          qcclMasterGetPort(master_, &port_) == qcclSuccess;
    if (!ok_) error_ = qcclGetLastError();
  }
  ~TestMaster() {
    if (master_ != nullptr) qcclMasterDestroy(master_);
  }
  TestMaster(const TestMaster&) = delete;
  TestMaster& operator=(const TestMaster&) = delete;

  bool ok() const { return ok_; }
  const std::string& error() const { return error_; }
  const MasterTimes& config() const { return config_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

 private:
  MasterTimes config_;
  qcclMaster_t* master_ = nullptr;
  uint16_t port_ = 0;
  bool ok_ = false;
  std::string error_;
};

}  // namespace qccl::test
