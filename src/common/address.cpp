#include "common/address.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <string>

namespace qccl {

Result<HostPort> parse_host_port(std::string_view text) {
  auto bad = [&](std::string_view why) {
    return make_status(StatusCode::kInvalidArgument, "malformed address '{}': {}", text, why);
  };
  HostPort hp;
  std::string_view port_text;
  if (!text.empty() && text.front() == '[') {
    auto close = text.find(']');
    if (close == std::string_view::npos) return bad("missing ']'");
    hp.host = std::string(text.substr(1, close - 1));
    if (close + 1 >= text.size() || text[close + 1] != ':') return bad("expected ':port' after ']'");
    port_text = text.substr(close + 2);
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string_view::npos) return bad("expected host:port");
    hp.host = std::string(text.substr(0, colon));
    if (hp.host.find(':') != std::string::npos) return bad("IPv6 hosts need brackets, e.g. [::1]:port");
    port_text = text.substr(colon + 1);
  }
  if (hp.host.empty()) return bad("empty host");
  if (port_text.empty()) return bad("empty port");
  unsigned value = 0;
  auto [ptr, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), value);
  if (ec != std::errc() || ptr != port_text.data() + port_text.size() || value > 65535) {
    return bad("port must be a number from 0 to 65535");
  }
  hp.port = static_cast<uint16_t>(value);
  return hp;
}

namespace {

Result<uint16_t> parse_port(std::string_view text) {
  unsigned value = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc() || ptr != text.data() + text.size() || value > 65535) {
    return make_status(StatusCode::kInvalidArgument, "port must be a number from 0 to 65535");
  }
  return static_cast<uint16_t>(value);
}

}  // namespace

Result<ListenAddress> parse_listen_address(std::string_view text) {
  auto bad = [&](std::string_view why) {
    return make_status(StatusCode::kInvalidArgument, "malformed listen address '{}': {}", text,
                       why);
  };
  // The port part is after the last ':' (outside brackets); a '-' there makes it a range.
  size_t colon = text.rfind(':');
  size_t close = text.rfind(']');
  if (colon == std::string_view::npos || (close != std::string_view::npos && colon < close)) {
    return bad("expected host:port or host:first-last");
  }
  std::string_view ports = text.substr(colon + 1);
  size_t dash = ports.find('-');
  std::string_view lo_text = ports.substr(0, dash);
  std::string_view hi_text = dash == std::string_view::npos ? lo_text : ports.substr(dash + 1);
  auto hp = parse_host_port(std::string(text.substr(0, colon + 1)) + std::string(lo_text));
  if (!hp.is_ok()) return bad(hp.status().message());
  auto hi = parse_port(hi_text);
  if (!hi.is_ok()) return bad(hi.status().message());
  if (*hi < hp->port) return bad("the range's last port is below its first");
  if (hp->port == 0 && *hi != 0) return bad("a range cannot start at port 0");
  return ListenAddress{hp->host, hp->port, *hi};
}

Result<HostPort> parse_advertise_address(std::string_view text) {
  auto bad = [&](std::string_view why) {
    return make_status(StatusCode::kInvalidArgument, "malformed advertise address '{}': {}",
                       text, why);
  };
  if (text.empty()) return bad("empty");
  if (text.front() == '[') {
    size_t close = text.find(']');
    if (close == std::string_view::npos) return bad("missing ']'");
    if (close + 1 == text.size()) return HostPort{std::string(text.substr(1, close - 1)), 0};
  } else {
    size_t colons = static_cast<size_t>(std::count(text.begin(), text.end(), ':'));
    if (colons == 0) return HostPort{std::string(text), 0};
    if (colons > 1) return bad("IPv6 hosts need brackets, e.g. [2001:db8::1]");
  }
  auto hp = parse_host_port(text);
  if (!hp.is_ok()) return bad(hp.status().message());
  return hp;
}

std::string format_host_port(const HostPort& hp) {
  if (hp.host.find(':') != std::string::npos) return fmt::format("[{}]:{}", hp.host, hp.port);
  return fmt::format("{}:{}", hp.host, hp.port);
}

bool is_loopback_host(std::string_view host) {
  if (host == "localhost") return true;
  std::string h(host);
  in_addr v4{};
  if (::inet_pton(AF_INET, h.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6{};
  if (::inet_pton(AF_INET6, h.c_str(), &v6) != 1) return false;
  if (IN6_IS_ADDR_LOOPBACK(&v6)) return true;
  return IN6_IS_ADDR_V4MAPPED(&v6) && v6.s6_addr[12] == 127;
}

}  // namespace qccl
