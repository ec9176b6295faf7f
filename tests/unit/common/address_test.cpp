// Address parsing and the loopback test behind the automatic lane count.
#include "common/address.hpp"

#include <gtest/gtest.h>

namespace qccl {
namespace {

TEST(Address, ParsesAndFormatsHostPort) {
  auto v4 = parse_host_port("10.0.0.1:48148");
  ASSERT_TRUE(v4.is_ok());
  EXPECT_EQ(v4->host, "10.0.0.1");
  EXPECT_EQ(v4->port, 48148);
  auto v6 = parse_host_port("[::1]:7");
  ASSERT_TRUE(v6.is_ok());
  EXPECT_EQ(v6->host, "::1");
  EXPECT_EQ(format_host_port(*v6), "[::1]:7");
  EXPECT_EQ(parse_host_port("host:65536").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(parse_host_port("[::1:5").status().code(), StatusCode::kInvalidArgument);
}

TEST(Address, ListenAddressesWithPortsAndRanges) {
  auto one = parse_listen_address("0.0.0.0:29500");
  ASSERT_TRUE(one.is_ok());
  EXPECT_EQ(one->host, "0.0.0.0");
  EXPECT_EQ(one->port_lo, 29500);
  EXPECT_EQ(one->port_hi, 29500);
  auto range = parse_listen_address("[::]:29500-29563");
  ASSERT_TRUE(range.is_ok()) << range.status().message();
  EXPECT_EQ(range->host, "::");
  EXPECT_EQ(range->port_lo, 29500);
  EXPECT_EQ(range->port_hi, 29563);
  auto any = parse_listen_address("10.1.2.3:0");
  ASSERT_TRUE(any.is_ok());
  EXPECT_EQ(any->port_lo, 0);
  EXPECT_EQ(any->port_hi, 0);
  for (const char* bad : {"0.0.0.0", "0.0.0.0:", "0.0.0.0:9-8", "0.0.0.0:0-5", "0.0.0.0:1-70000",
                          "[::]", "::1:5", "0.0.0.0:a-b", ":5"}) {
    auto r = parse_listen_address(bad);
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << bad;
    if (!r.is_ok()) {
      EXPECT_NE(r.status().message().find(bad), std::string::npos) << bad;
    }
  }
}

TEST(Address, AdvertiseAddressesWithOrWithoutPort) {
  auto host = parse_advertise_address("203.0.113.7");
  ASSERT_TRUE(host.is_ok());
  EXPECT_EQ(host->host, "203.0.113.7");
  EXPECT_EQ(host->port, 0);
  auto with_port = parse_advertise_address("nat.example.org:29501");
  ASSERT_TRUE(with_port.is_ok());
  EXPECT_EQ(with_port->host, "nat.example.org");
  EXPECT_EQ(with_port->port, 29501);
  auto v6 = parse_advertise_address("[2001:db8::7]");
  ASSERT_TRUE(v6.is_ok());
  EXPECT_EQ(v6->host, "2001:db8::7");
  auto v6_port = parse_advertise_address("[2001:db8::7]:5");
  ASSERT_TRUE(v6_port.is_ok());
  EXPECT_EQ(v6_port->port, 5);
  for (const char* bad : {"", "2001:db8::7", "[::1", "h:99999"}) {
    EXPECT_EQ(parse_advertise_address(bad).status().code(), StatusCode::kInvalidArgument) << bad;
  }
}

TEST(Address, LoopbackHosts) {
  for (const char* h : {"127.0.0.1", "127.3.2.1", "::1", "::ffff:127.0.0.1", "localhost"}) {
    EXPECT_TRUE(is_loopback_host(h)) << h;
  }
  for (const char* h : {"10.77.0.11", "128.0.0.1", "::2", "::ffff:10.0.0.1", "example.org", "",
                        "127.0.0.1:80"}) {
    EXPECT_FALSE(is_loopback_host(h)) << h;
  }
}

}  // namespace
}  // namespace qccl
