// Parsing of "host:port" / "[v6]:port" addresses (pure; no resolution).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/status.hpp"

namespace qccl {

struct HostPort {
  std::string host;  // without brackets
  uint16_t port = 0;
};

// Accepts "host:port", "1.2.3.4:port", "[::1]:port". Port must be 0..65535.
Result<HostPort> parse_host_port(std::string_view text);

// Inverse of parse_host_port: brackets IPv6 literals.
std::string format_host_port(const HostPort& hp);

// True for "localhost" and loopback literals (127.0.0.0/8, ::1, ::ffff:127.x.y.z); names are
// not resolved, so any other name is false.
bool is_loopback_host(std::string_view host);

}  // namespace qccl
