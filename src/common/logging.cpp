#include "common/logging.hpp"

#include <cstdlib>
#include <mutex>
#include <string>

#include <spdlog/sinks/stdout_color_sinks.h>

namespace qccl::log {
namespace {

std::mutex g_mu;
spdlog::level::level_enum g_level = [] {
  const char* env = std::getenv("QCCL_LOG_LEVEL");
  if (env == nullptr) return spdlog::level::warn;
  auto lvl = spdlog::level::from_str(env);
  // from_str maps unknown names to "off"; only accept it when asked for.
  if (lvl == spdlog::level::off && std::string_view(env) != "off") return spdlog::level::warn;
  return lvl;
}();

}  // namespace

std::shared_ptr<spdlog::logger> get(std::string_view component) {
  std::string name = "qccl." + std::string(component);
  std::lock_guard<std::mutex> lock(g_mu);
  if (auto existing = spdlog::get(name)) return existing;
  auto logger = spdlog::stderr_color_mt(name);
  logger->set_level(g_level);
  logger->set_pattern("[%Y-%m-%d %H:%M:%S.%e] [%n] [%^%l%$] %v");
  return logger;
}

bool set_level(std::string_view level_name) {
  auto lvl = spdlog::level::from_str(std::string(level_name));
  if (lvl == spdlog::level::off && level_name != "off") return false;
  std::lock_guard<std::mutex> lock(g_mu);
  g_level = lvl;
  spdlog::apply_all([&](const std::shared_ptr<spdlog::logger>& l) {
    if (l->name().rfind("qccl.", 0) == 0) l->set_level(lvl);
  });
  return true;
}

}  // namespace qccl::log
