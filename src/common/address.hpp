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

// A data listener's address: "host:port" or "host:lo-hi" (a range to bind the first free port
// of, e.g. "0.0.0.0:29500-29563" or "[::]:29500-29563"). Port 0 (or "0-0") = ephemeral.
struct ListenAddress {
  std::string host;  // without brackets
  uint16_t port_lo = 0;
  uint16_t port_hi = 0;  // >= port_lo
};
Result<ListenAddress> parse_listen_address(std::string_view text);

// An advertised address: "host" or "host:port" ("[v6]" or "[v6]:port"); port 0 = none given.
Result<HostPort> parse_advertise_address(std::string_view text);

// True for "localhost" and loopback literals (127.0.0.0/8, ::1, ::ffff:127.x.y.z); names are
// not resolved, so any other name is false.
bool is_loopback_host(std::string_view host);

}  // namespace qccl
