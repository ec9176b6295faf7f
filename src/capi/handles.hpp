// The structs behind the public opaque handles. Each carries a magic number so that a stale
// or foreign pointer is refused with qcclInvalidArgument instead of being dereferenced blindly
// (best effort: freed memory may still hold the magic).
#pragma once

#include <cstdint>
#include <memory>

#include "core/communicator.hpp"
#include "master/master_server.hpp"

struct qcclMaster {
  static constexpr uint32_t kMagic = 0x51434D53;  // "QCMS"
  uint32_t magic = kMagic;
  std::unique_ptr<qccl::master::MasterServer> rep;
  bool started = false;
};

struct qcclComm {
  static constexpr uint32_t kMagic = 0x51434343;  // "QCCC"
  uint32_t magic = kMagic;
  std::unique_ptr<qccl::core::Communicator> rep;
};

struct qcclOp {
  static constexpr uint32_t kMagic = 0x51434F50;  // "QCOP"
  uint32_t magic = kMagic;
  std::shared_ptr<qccl::core::OpHandle> rep;
};
