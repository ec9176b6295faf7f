// Logging: thin wrapper over spdlog with one named logger per component ("master", "peer",
// "net", ...). The level comes from QCCL_LOG_LEVEL (trace, debug, info, warn, error, off;
// default warn for the library, info for qccl-master) and can be changed with set_log_level.
//
// Thread-safety: all functions may be called from any thread.
#pragma once

#include <memory>
#include <string_view>

#include <spdlog/spdlog.h>

namespace qccl::log {

// Returns the logger of a component, creating it on first use (stderr, colour if a tty).
std::shared_ptr<spdlog::logger> get(std::string_view component);

// Sets the level of every existing and future qccl logger. Unknown names leave it unchanged
// and return false.
bool set_level(std::string_view level_name);

}  // namespace qccl::log
