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
