// The caller's side of a shared-state sync, as the facade takes it (docs/shared-state.md).
//
// Thread-safety: plain data.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "quant/dtype.hpp"

namespace qccl::core {

// One tensor of the caller's shared state.
struct StateTensor {
  std::string_view name;
  void* data = nullptr;
  size_t count = 0;
  DataType dtype = DataType::kFloat32;
  bool allow_inequality = false;
};

// Values equal qcclSyncStrategy_t and the wire's SyncStrategy.
enum class SyncStrategy : uint8_t { kEnforcePopular = 0, kReceiveOnly = 1, kSendOnly = 2 };

}  // namespace qccl::core
