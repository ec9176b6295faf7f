// Tests for quant/half.hpp: every fp16/bf16 bit pattern decoded and round-tripped, float ->
// 16-bit rounding checked against an independent table-search reference (half_reference.hpp)
// at every midpoint and over a sweep of float bit patterns, plus the named edge cases: ties to
// even, overflow to inf, subnormals, NaN sign/quietness.
#include "quant/half.hpp"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>

#include "half_reference.hpp"
#include "support/watchdog.hpp"

QCCL_TEST_WATCHDOG(60);

namespace qccl::quant {
namespace {

using test::Bf16Reference;
using test::Fp16Reference;

uint32_t bits_of(float f) { return std::bit_cast<uint32_t>(f); }
float float_of(uint32_t u) { return std::bit_cast<float>(u); }

// Compares a decoded float with the reference value, zeros by sign and NaNs by class.
template <typename Ref>
void expect_decodes(uint16_t h, float got) {
  SCOPED_TRACE(::testing::Message() << "h=0x" << std::hex << h);
  if (Ref::is_nan(h)) {
    EXPECT_TRUE(std::isnan(got));
    EXPECT_EQ(std::signbit(got), (h & 0x8000) != 0);
    EXPECT_NE(bits_of(got) & 0x00400000u, 0u) << "NaN must come out quiet";
  } else {
    EXPECT_EQ(static_cast<double>(got), Ref::decode(h));
    EXPECT_EQ(std::signbit(got), (h & 0x8000) != 0);
  }
}

TEST(HalfTest, Fp16ToFloatIsExactForAllPatterns) {
  for (uint32_t h = 0; h <= 0xffff; ++h) {
    expect_decodes<Fp16Reference>(static_cast<uint16_t>(h),
                                  fp16_to_float(static_cast<uint16_t>(h)));
  }
}

TEST(HalfTest, Bf16ToFloatIsExactForAllPatterns) {
  for (uint32_t h = 0; h <= 0xffff; ++h) {
    expect_decodes<Bf16Reference>(static_cast<uint16_t>(h),
                                  bf16_to_float(static_cast<uint16_t>(h)));
  }
}

TEST(HalfTest, Fp16RoundTripsAllPatterns) {
  for (uint32_t i = 0; i <= 0xffff; ++i) {
    const auto h = static_cast<uint16_t>(i);
    const uint16_t back = float_to_fp16(fp16_to_float(h));
    if (Fp16Reference::is_nan(h)) {
      // Payload kept, quiet bit set (a signaling NaN becomes the matching quiet one).
      EXPECT_EQ(back, h | 0x0200) << std::hex << h;
    } else {
      EXPECT_EQ(back, h) << std::hex << h;
    }
  }
}

TEST(HalfTest, Bf16RoundTripsAllPatterns) {
  for (uint32_t i = 0; i <= 0xffff; ++i) {
    const auto h = static_cast<uint16_t>(i);
    const uint16_t back = float_to_bf16(bf16_to_float(h));
    if (Bf16Reference::is_nan(h)) {
      EXPECT_EQ(back, h | 0x0040) << std::hex << h;
    } else {
      EXPECT_EQ(back, h) << std::hex << h;
    }
  }
}

// For every positive encoding h: the value itself, the midpoint to h + 1 (a tie), and the floats
// just below and above that midpoint, both signs, against the reference rounding.
template <typename Ref, typename Encode>
void check_midpoints(const Ref& ref, Encode encode) {
  for (uint32_t h = 0; h < Ref::kInf; ++h) {
    const auto mid = static_cast<float>(ref.midpoint(static_cast<uint16_t>(h)));
    ASSERT_EQ(static_cast<double>(mid), ref.midpoint(static_cast<uint16_t>(h)))
        << "midpoints of 16-bit values are float32 values";
    const float probes[] = {static_cast<float>(Ref::decode(static_cast<uint16_t>(h))), mid,
                            std::nextafter(mid, 0.0f), std::nextafter(mid, INFINITY)};
    for (float p : probes) {
      for (float v : {p, -p}) {
        ASSERT_EQ(encode(v), ref.encode(v)) << "v=" << v << " bits=0x" << std::hex << bits_of(v);
      }
    }
  }
}

TEST(HalfTest, FloatToFp16MatchesReferenceAtEveryMidpoint) {
  const Fp16Reference ref;
  check_midpoints(ref, float_to_fp16);
}

TEST(HalfTest, FloatToBf16MatchesReferenceAtEveryMidpoint) {
  const Bf16Reference ref;
  check_midpoints(ref, float_to_bf16);
}

// ~4.2M float bit patterns spread over the whole space, all exponents and both signs.
TEST(HalfTest, FloatToHalfMatchesReferenceOnBitPatternSweep) {
  const Fp16Reference fp16;
  const Bf16Reference bf16;
  for (uint64_t u = 0; u <= 0xffffffffull; u += 1021) {
    const float f = float_of(static_cast<uint32_t>(u));
    if (std::isnan(f)) continue;
    ASSERT_EQ(float_to_fp16(f), fp16.encode(f)) << std::hex << u;
    ASSERT_EQ(float_to_bf16(f), bf16.encode(f)) << std::hex << u;
  }
}

TEST(HalfTest, Fp16RoundsTiesToEven) {
  EXPECT_EQ(float_to_fp16(1.0f + 0x1p-11f), 0x3c00);             // 1 | 1+2^-10: keep even 1.0
  EXPECT_EQ(float_to_fp16(1.0f + 3 * 0x1p-11f), 0x3c02);         // 1+2^-10 | 1+2^-9: go to even
  EXPECT_EQ(float_to_fp16(1.0f + 0x1p-11f + 0x1p-23f), 0x3c01);  // just above the tie
  EXPECT_EQ(float_to_fp16(-(1.0f + 0x1p-11f)), 0xbc00);
  EXPECT_EQ(float_to_fp16(2049.0f), 0x6800);  // 2048 | 2050
  EXPECT_EQ(float_to_fp16(2051.0f), 0x6802);  // 2050 | 2052
}

TEST(HalfTest, Bf16RoundsTiesToEven) {
  EXPECT_EQ(float_to_bf16(1.0f + 0x1p-8f), 0x3f80);
  EXPECT_EQ(float_to_bf16(1.0f + 3 * 0x1p-8f), 0x3f82);
  EXPECT_EQ(float_to_bf16(1.0f + 0x1p-8f + 0x1p-23f), 0x3f81);
  EXPECT_EQ(float_to_bf16(-(1.0f + 0x1p-8f)), 0xbf80);
}

TEST(HalfTest, Fp16OverflowsToInf) {
  EXPECT_EQ(float_to_fp16(65504.0f), 0x7bff);  // largest finite
  EXPECT_EQ(float_to_fp16(65519.0f), 0x7bff);  // below the 65520 tie
  EXPECT_EQ(float_to_fp16(65520.0f), 0x7c00);  // tie with odd 0x7bff: rounds up, to inf
  EXPECT_EQ(float_to_fp16(65536.0f), 0x7c00);
  EXPECT_EQ(float_to_fp16(1e10f), 0x7c00);
  EXPECT_EQ(float_to_fp16(-1e10f), 0xfc00);
  EXPECT_EQ(float_to_fp16(std::numeric_limits<float>::max()), 0x7c00);
  EXPECT_EQ(float_to_fp16(INFINITY), 0x7c00);
  EXPECT_EQ(float_to_fp16(-INFINITY), 0xfc00);
}

TEST(HalfTest, Bf16OverflowsToInf) {
  EXPECT_EQ(float_to_bf16(float_of(0x7f7f0000u)), 0x7f7f);  // largest finite bf16
  EXPECT_EQ(float_to_bf16(float_of(0x7f7f7fffu)), 0x7f7f);
  EXPECT_EQ(float_to_bf16(float_of(0x7f7f8000u)), 0x7f80);  // tie with odd 0x7f7f: inf
  EXPECT_EQ(float_to_bf16(std::numeric_limits<float>::max()), 0x7f80);
  EXPECT_EQ(float_to_bf16(-std::numeric_limits<float>::max()), 0xff80);
  EXPECT_EQ(float_to_bf16(INFINITY), 0x7f80);
  EXPECT_EQ(float_to_bf16(-INFINITY), 0xff80);
}

TEST(HalfTest, Fp16Subnormals) {
  EXPECT_EQ(fp16_to_float(0x0001), 0x1p-24f);    // smallest subnormal
  EXPECT_EQ(fp16_to_float(0x03ff), 0x3ffp-24f);  // largest subnormal
  EXPECT_EQ(fp16_to_float(0x8001), -0x1p-24f);
  EXPECT_EQ(float_to_fp16(0x1p-24f), 0x0001);
  EXPECT_EQ(float_to_fp16(0x1p-25f), 0x0000);  // tie 0 | 2^-24: even is 0
  EXPECT_EQ(float_to_fp16(0x1p-25f + 0x1p-40f), 0x0001);
  EXPECT_EQ(float_to_fp16(3 * 0x1p-25f), 0x0002);         // tie 1 | 2: even
  EXPECT_EQ(float_to_fp16(0x1p-14f - 0x1p-25f), 0x0400);  // tie 0x3ff | 0x400 -> smallest normal
  EXPECT_EQ(float_to_fp16(0x1p-14f), 0x0400);
  EXPECT_EQ(float_to_fp16(-0x1p-24f), 0x8001);
  EXPECT_EQ(float_to_fp16(0x1p-30f), 0x0000);
  EXPECT_EQ(float_to_fp16(-0x1p-30f), 0x8000);              // underflow keeps the sign
  EXPECT_EQ(float_to_fp16(float_of(0x00000001u)), 0x0000);  // float subnormal
  EXPECT_EQ(float_to_fp16(float_of(0x80000001u)), 0x8000);
  EXPECT_EQ(float_to_fp16(0.0f), 0x0000);
  EXPECT_EQ(float_to_fp16(-0.0f), 0x8000);
}

TEST(HalfTest, Bf16Subnormals) {
  EXPECT_EQ(bits_of(bf16_to_float(0x0001)), 0x00010000u);
  EXPECT_EQ(float_to_bf16(float_of(0x00010000u)), 0x0001);
  EXPECT_EQ(float_to_bf16(float_of(0x00008000u)), 0x0000);  // tie 0 | 1: even
  EXPECT_EQ(float_to_bf16(float_of(0x00018000u)), 0x0002);  // tie 1 | 2: even
  EXPECT_EQ(float_to_bf16(float_of(0x00008001u)), 0x0001);
  EXPECT_EQ(float_to_bf16(float_of(0x007fffffu)), 0x0080);  // rounds up to the smallest normal
  EXPECT_EQ(float_to_bf16(float_of(0x80000001u)), 0x8000);
}

TEST(HalfTest, NaNStaysNaNWithSign) {
  const float qnan = std::numeric_limits<float>::quiet_NaN();
  const float snan = float_of(0x7f800001u);  // payload only in bits fp16/bf16 cannot hold
  for (float nan : {qnan, -qnan, snan, -snan, float_of(0x7fffffffu), float_of(0xffc12345u)}) {
    const bool negative = std::signbit(nan);
    const uint16_t h = float_to_fp16(nan);
    EXPECT_TRUE(Fp16Reference::is_nan(h)) << std::hex << h;
    EXPECT_EQ((h & 0x8000) != 0, negative);
    EXPECT_NE(h & 0x0200, 0) << "quiet";
    const uint16_t b = float_to_bf16(nan);
    EXPECT_TRUE(Bf16Reference::is_nan(b)) << std::hex << b;
    EXPECT_EQ((b & 0x8000) != 0, negative);
    EXPECT_NE(b & 0x0040, 0) << "quiet";
  }
  EXPECT_EQ(float_to_fp16(qnan), 0x7e00);
  EXPECT_EQ(float_to_fp16(snan), 0x7e00);
  EXPECT_EQ(float_to_fp16(float_of(0xffc12345u)), 0xfe09);  // top payload bits kept
  EXPECT_EQ(float_to_bf16(qnan), 0x7fc0);
  EXPECT_EQ(float_to_bf16(float_of(0xff812345u)), 0xffc1);
  EXPECT_EQ(bits_of(fp16_to_float(0x7c01)), 0x7fc02000u);  // signaling in, quiet out
  EXPECT_EQ(bits_of(bf16_to_float(0xff81)), 0xffc10000u);
}

}  // namespace
}  // namespace qccl::quant
