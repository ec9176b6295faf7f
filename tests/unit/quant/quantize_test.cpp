// Named cases of the quantization wire codecs (quant/quantize.hpp): which codecs check_codec
// accepts (every one of the 12 x 3 x 12 triples against an independent list), encoded sizes,
// hand-computed golden bytes of the wire format, round-trip error bounds on named data families
// (random, outliers, constant, zeros, +-0, subnormal ranges, values near the largest finite
// number, blocks holding NaN or infinities, odd sizes), exact values (constant MinMax blocks,
// ZeroPointScale zeros), empty runs. The differential tests against a scalar reference are in
// quantize_reference_test.cpp.
#include "quant/quantize.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "quantize_test_util.hpp"
#include "support/watchdog.hpp"

QCCL_TEST_WATCHDOG(120);

namespace qccl::quant {
namespace {

using namespace qccl::quant::test;  // NOLINT: the shared test helpers

// ---- check_codec, sizes -----------------------------------------------------------------------

bool expected_supported(DataType s, QuantAlgorithm a, DataType w) {
  const std::vector<DataType> floats = {DataType::kFloat16, DataType::kBFloat16,
                                        DataType::kFloat32, DataType::kFloat64};
  const auto is_float = [&](DataType t) {
    return std::find(floats.begin(), floats.end(), t) != floats.end();
  };
  if (a == QuantAlgorithm::kNone) {
    if (s == w) return true;
    if (s == DataType::kFloat64) {
      return w == DataType::kFloat32 || w == DataType::kFloat16 || w == DataType::kBFloat16;
    }
    if (s == DataType::kFloat32) return w == DataType::kFloat16 || w == DataType::kBFloat16;
    return false;
  }
  const bool code = w == DataType::kUint8 || w == DataType::kInt8 || w == DataType::kUint16 ||
                    w == DataType::kInt16;
  return is_float(s) && code;
}

TEST(QuantizeTest, CheckCodecAcceptsExactlyTheSupportedSet) {
  int accepted = 0;
  for (DataType s : kAllTypes) {
    for (QuantAlgorithm a : kAllAlgorithms) {
      for (DataType w : kAllTypes) {
        const WireCodec c{s, a, w};
        const Status st = check_codec(c);
        SCOPED_TRACE(describe(c));
        if (expected_supported(s, a, w)) {
          EXPECT_TRUE(st.is_ok()) << st.message();
          ++accepted;
        } else {
          EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
          EXPECT_FALSE(st.message().empty());
        }
      }
    }
  }
  EXPECT_EQ(accepted, 12 + 5 + 2 * 4 * 4);  // identities, down-casts, quantizers
}

TEST(QuantizeTest, CheckCodecMessagesNameTheProblem) {
  Status st = check_codec({DataType::kInt32, QuantAlgorithm::kMinMax, DataType::kUint8});
  EXPECT_NE(st.message().find("MinMax from int32"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("float32, float64, float16 or bfloat16"), std::string::npos);
  st = check_codec({DataType::kFloat32, QuantAlgorithm::kZeroPointScale, DataType::kFloat16});
  EXPECT_NE(st.message().find("uint8, int8, uint16 or int16"), std::string::npos);
  st = check_codec({DataType::kFloat16, QuantAlgorithm::kNone, DataType::kBFloat16});
  EXPECT_NE(st.message().find("float16 to bfloat16"), std::string::npos) << st.message();
}

TEST(QuantizeTest, CheckCodecRejectsInvalidEnums) {
  const auto bad_type = static_cast<DataType>(12);
  const auto bad_algo = static_cast<QuantAlgorithm>(3);
  for (const WireCodec& c : {WireCodec{bad_type, QuantAlgorithm::kNone, bad_type},
                             WireCodec{bad_type, QuantAlgorithm::kMinMax, DataType::kUint8},
                             WireCodec{DataType::kFloat32, QuantAlgorithm::kMinMax, bad_type},
                             WireCodec{DataType::kFloat32, bad_algo, DataType::kUint8},
                             WireCodec{static_cast<DataType>(200), QuantAlgorithm::kNone,
                                       DataType::kFloat32}}) {
    const Status st = check_codec(c);
    EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
    EXPECT_FALSE(st.message().empty());
  }
}

TEST(QuantizeTest, EncodedBytesGolden) {
  struct Golden {
    WireCodec c;
    size_t meta;
    size_t bytes[6];  // for n = 0, 1, 2047, 2048, 2049, 10000
  };
  const Golden goldens[] = {
      {{DataType::kFloat32, QuantAlgorithm::kMinMax, DataType::kUint8},
       8, {0, 9, 2055, 2056, 2065, 10040}},
      {{DataType::kFloat64, QuantAlgorithm::kZeroPointScale, DataType::kInt16},
       16, {0, 18, 4110, 4112, 4130, 20080}},
      {{DataType::kFloat16, QuantAlgorithm::kMinMax, DataType::kUint16},
       8, {0, 10, 4102, 4104, 4114, 20040}},
      {{DataType::kBFloat16, QuantAlgorithm::kZeroPointScale, DataType::kInt8},
       8, {0, 9, 2055, 2056, 2065, 10040}},
      {{DataType::kFloat32, QuantAlgorithm::kNone, DataType::kBFloat16},
       0, {0, 2, 4094, 4096, 4098, 20000}},
      {{DataType::kFloat64, QuantAlgorithm::kNone, DataType::kFloat32},
       0, {0, 4, 8188, 8192, 8196, 40000}},
      {{DataType::kFloat32, QuantAlgorithm::kNone, DataType::kFloat32},
       0, {0, 4, 8188, 8192, 8196, 40000}},
  };
  const size_t counts[] = {0, 1, 2047, 2048, 2049, 10000};
  for (const Golden& g : goldens) {
    SCOPED_TRACE(describe(g.c));
    EXPECT_EQ(meta_bytes(g.c), g.meta);
    for (int i = 0; i < 6; ++i) EXPECT_EQ(encoded_bytes(g.c, counts[i]), g.bytes[i]) << counts[i];
  }
}

// ---- Golden wire bytes ------------------------------------------------------------------------

std::vector<uint8_t> encode_floats(const WireCodec& c, const std::vector<float>& x) {
  std::vector<uint8_t> out(encoded_bytes(c, x.size()));
  encode(c, x.data(), x.size(), out.data(), nullptr);
  return out;
}

TEST(QuantizeTest, GoldenMinMaxUint8Block) {
  // lo = -1, hi = 254: scale = (127 + 0.5) / 127.5 = 1 and inv = 1, so code = rne(x + 1):
  //   -1 -> 0, 0 -> 1, 0.5 -> rne(1.5) = 2, 1.5 -> rne(2.5) = 2 (ties to even), 254 -> 255,
  //   -0 -> 1, 100.25 -> rne(101.25) = 101 = 0x65.
  // Wire: lo = -1.0f (0xbf800000), scale = 1.0f (0x3f800000), little-endian, then the codes.
  const WireCodec c{DataType::kFloat32, QuantAlgorithm::kMinMax, DataType::kUint8};
  const std::vector<float> x = {-1.f, 0.f, 0.5f, 1.5f, 254.f, -0.f, 100.25f};
  const std::vector<uint8_t> golden = {0x00, 0x00, 0x80, 0xbf, 0x00, 0x00, 0x80, 0x3f,
                                       0x00, 0x01, 0x02, 0x02, 0xff, 0x01, 0x65};
  for (bool portable : kIsaModes) {
    IsaGuard isa(portable);
    EXPECT_EQ(encode_floats(c, x), golden) << isa_name(portable);
    std::vector<float> y(x.size());
    decode(c, golden.data(), x.size(), y.data());
    EXPECT_EQ(y, (std::vector<float>{-1.f, 0.f, 1.f, 1.f, 254.f, 0.f, 100.f}));
  }
}

TEST(QuantizeTest, GoldenZeroPointScaleInt8Block) {
  // lo = -55, hi = 200: scale = (100 + 27.5) / 127.5 = 1, inv = 1, zp = -128 - rne(-55) = -73
  // (travels as -73.0f = 0xc2920000). code = clamp(rne(x) - 73, -128, 127):
  //   -55 -> -128 (0x80), 0 -> -73 (0xb7), 200 -> 127 (0x7f), 2.5 -> rne 2 -> -71 (0xb9),
  //   -3.5 -> rne -4 -> -77 (0xb3), 1 -> -72 (0xb8); decoded = code + 73.
  const WireCodec c{DataType::kFloat32, QuantAlgorithm::kZeroPointScale, DataType::kInt8};
  const std::vector<float> x = {-55.f, 0.f, 200.f, 2.5f, -3.5f, 1.f};
  const std::vector<uint8_t> golden = {0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x92, 0xc2,
                                       0x80, 0xb7, 0x7f, 0xb9, 0xb3, 0xb8};
  for (bool portable : kIsaModes) {
    IsaGuard isa(portable);
    EXPECT_EQ(encode_floats(c, x), golden) << isa_name(portable);
    std::vector<float> y(x.size());
    decode(c, golden.data(), x.size(), y.data());
    EXPECT_EQ(y, (std::vector<float>{-55.f, 0.f, 200.f, 2.f, -4.f, 1.f}));
  }
}

TEST(QuantizeTest, GoldenLayoutMetasFirst) {
  // 2049 elements: block 0 constant 1.0 (lo 1, scale 0), block 1 the single value 5.0.
  // Layout: meta 0, meta 1, then the 2049 codes, all 0.
  const WireCodec c{DataType::kFloat32, QuantAlgorithm::kMinMax, DataType::kUint8};
  std::vector<float> x(2049, 1.f);
  x[2048] = 5.f;
  const std::vector<uint8_t> out = encode_floats(c, x);
  ASSERT_EQ(out.size(), 16u + 2049u);
  const std::vector<uint8_t> metas = {0x00, 0x00, 0x80, 0x3f, 0, 0, 0, 0,
                                      0x00, 0x00, 0xa0, 0x40, 0, 0, 0, 0};
  EXPECT_EQ(std::vector<uint8_t>(out.begin(), out.begin() + 16), metas);
  EXPECT_TRUE(std::all_of(out.begin() + 16, out.end(), [](uint8_t b) { return b == 0; }));
}

TEST(QuantizeTest, GoldenDownCasts) {
  for (bool portable : kIsaModes) {
    IsaGuard isa(portable);
    SCOPED_TRACE(isa_name(portable));
    // fp32 -> bf16: 1.0, ties to even both ways, NaNs whose payload would round to inf or carry
    // into the sign, a negative NaN -> all canonical 0x7fc0; overflow to inf.
    const std::vector<uint32_t> f32 = {0x3f800000, 0x3f808000, 0x3f818000, 0x7f800001,
                                       0x7fffffff, 0xffc00001, 0x7f7fffff, 0x00000001};
    const std::vector<uint16_t> bf16 = {0x3f80, 0x3f80, 0x3f82, 0x7fc0,
                                        0x7fc0, 0x7fc0, 0x7f80, 0x0000};
    std::vector<uint16_t> out(f32.size());
    encode({DataType::kFloat32, QuantAlgorithm::kNone, DataType::kBFloat16}, f32.data(),
           f32.size(), reinterpret_cast<uint8_t*>(out.data()), nullptr);
    EXPECT_EQ(out, bf16);
    // fp32 -> fp16: 1.0, 65519 -> 65504, 65520 -> inf, NaNs -> 0x7e00, smallest subnormal.
    const std::vector<float> f = {1.f, 65519.f, 65520.f, std::bit_cast<float>(0xff800001u),
                                  std::bit_cast<float>(0x7fffffffu), 0x1p-24f, -0x1p-25f};
    const std::vector<uint16_t> f16 = {0x3c00, 0x7bff, 0x7c00, 0x7e00, 0x7e00, 0x0001, 0x8000};
    out.resize(f.size());
    encode({DataType::kFloat32, QuantAlgorithm::kNone, DataType::kFloat16}, f.data(), f.size(),
           reinterpret_cast<uint8_t*>(out.data()), nullptr);
    EXPECT_EQ(out, f16);
    // fp64 -> fp32: negative NaN with payload -> 0x7fc00000; overflow -> inf.
    const std::vector<double> d = {std::bit_cast<double>(0xfff0000000000001ull), 1e300, 0.1};
    std::vector<uint32_t> out32(d.size());
    encode({DataType::kFloat64, QuantAlgorithm::kNone, DataType::kFloat32}, d.data(), d.size(),
           reinterpret_cast<uint8_t*>(out32.data()), nullptr);
    EXPECT_EQ(out32, (std::vector<uint32_t>{0x7fc00000, 0x7f800000, 0x3dcccccd}));
  }
}

// ---- Round-trip error bounds ------------------------------------------------------------------

// |decoded - x| allowed for an element of a finite block with range [lo, hi] (see the error
// bounds in quantize.cpp): half a step plus the compute type's rounding, plus half an ulp of the
// 16-bit source type for the final narrowing.
double tolerance(const WireCodec& c, double lo, double hi, double x) {
  const Range q = ref_range(c.wire);
  const double span = static_cast<double>(q.qmax - q.qmin);
  if (c.algorithm == QuantAlgorithm::kZeroPointScale) {
    lo = std::min(lo, 0.0);
    hi = std::max(hi, 0.0);
  }
  const bool f64 = c.source == DataType::kFloat64;
  const double eps = f64 ? DBL_EPSILON : FLT_EPSILON;
  const double smallest = f64 ? DBL_MIN : FLT_MIN;
  const double scale = (hi / 2 - lo / 2) / (span / 2);  // no overflow for fp64 near the max
  double tol = scale * (0.5 + 16 * span * eps) + 8 * eps * std::max(std::fabs(lo), std::fabs(hi)) +
               4 * span * smallest;
  if (c.source == DataType::kFloat16) tol += (std::fabs(x) + tol) * 0x1p-11 + 0x1p-25;
  if (c.source == DataType::kBFloat16) tol += (std::fabs(x) + tol) * 0x1p-8 + 0x1p-134;
  return tol;
}

// Encodes and decodes `src` and checks every element: within tolerance() of its block's range
// for finite blocks, the canonical NaN for blocks holding a NaN or an infinity.
void check_round_trip(const WireCodec& c, const std::vector<uint8_t>& src) {
  const size_t n = src.size() / ssize(c.source);
  std::vector<uint8_t> wire(encoded_bytes(c, n));
  std::vector<uint8_t> back(src.size());
  encode(c, src.data(), n, wire.data(), nullptr);
  decode(c, wire.data(), n, back.data());
  for (size_t first = 0; first < n; first += kQuantBlockElems) {
    const size_t count = std::min(kQuantBlockElems, n - first);
    double lo = INFINITY;
    double hi = -INFINITY;
    bool finite = true;
    for (size_t i = first; i < first + count; ++i) {
      const double v = get(c.source, src.data(), i);
      finite = finite && std::isfinite(v);
      lo = std::min(lo, v);
      hi = std::max(hi, v);
    }
    for (size_t i = first; i < first + count; ++i) {
      if (!finite) {
        ASSERT_EQ(get_bits(c.source, back.data(), i), canonical_nan_bits(c.source))
            << "element " << i << " of a non-finite block";
        continue;
      }
      const double x = get(c.source, src.data(), i);
      const double y = get(c.source, back.data(), i);
      ASSERT_LE(std::fabs(y - x), tolerance(c, lo, hi, x))
          << "element " << i << ": " << x << " decoded as " << y << ", block [" << lo << ", "
          << hi << "]";
    }
  }
}

TEST(QuantizeTest, RoundTripWithinBounds) {
  for (QuantAlgorithm a : kQuantAlgorithms) {
    for (DataType s : kFloatSources) {
      for (DataType w : kCodeTypes) {
        const WireCodec c{s, a, w};
        SCOPED_TRACE(describe(c));
        std::mt19937 rng(static_cast<uint32_t>(a) * 100 + static_cast<uint32_t>(s) * 10 +
                         static_cast<uint32_t>(w));
        std::normal_distribution<double> normal(0.0, 1.0);
        std::uniform_real_distribution<double> uniform(-2.0, 5.0);
        const double big = max_finite(s);
        const double tiny = min_subnormal(s);
        std::uniform_real_distribution<double> unit(0.0, 1.0);
        const double ulp1 = s == DataType::kFloat16    ? 0x1p-10
                            : s == DataType::kBFloat16 ? 0x1p-7
                            : s == DataType::kFloat32  ? 0x1p-23
                                                       : 0x1p-52;
        const size_t n = 5000;  // two full blocks and a short one
        const std::vector<std::pair<const char*, std::vector<uint8_t>>> families = {
            {"normal", family(s, n, [&](size_t) { return normal(rng); })},
            {"uniform", family(s, n, [&](size_t) { return uniform(rng); })},
            {"outliers", family(s, n, [&](size_t i) {
               return i % 1000 == 7 ? 1e4 * (s == DataType::kFloat16 ? 3 : 1) : normal(rng);
             })},
            {"constant", family(s, n, [](size_t) { return -3.25; })},
            {"zeros", family(s, n, [](size_t) { return 0.0; })},
            {"signed zeros", family(s, n, [](size_t i) { return i % 3 ? 0.0 : -0.0; })},
            {"subnormal range", family(s, n, [&](size_t i) { return double(i % 37) * tiny; })},
            {"one-ulp steps", family(s, n, [&](size_t i) { return 1.0 + double(i % 5) * ulp1; })},
            {"near max", family(s, n, [&](size_t i) {
               return i % 500 == 0 ? big : big * (0.5 + 0.5 * unit(rng));
             })},
            {"wide, near max", family(s, n, [&](size_t i) {
               const double v = std::clamp(big / 16 * normal(rng), -big / 4, big / 4);
               return i % 700 == 0 ? -big / 4 : v;
             })},
            {"full range", family(s, n, [&](size_t i) {
               return i % 1000 == 0 ? (i % 2000 ? big : -big) : big * (2 * unit(rng) - 1);
             })},
        };
        for (const auto& [name, data] : families) {
          SCOPED_TRACE(name);
          check_round_trip(c, data);
          if (HasFatalFailure()) return;
        }
        for (size_t odd : {1, 2, 3, 2047, 2049, 4097}) {
          SCOPED_TRACE(odd);
          check_round_trip(c, family(s, odd, [&](size_t) { return normal(rng); }));
          if (HasFatalFailure()) return;
        }
      }
    }
  }
}

TEST(QuantizeTest, NonFiniteElementPoisonsOnlyItsBlock) {
  for (const WireCodec& c : all_codecs()) {
    if (c.algorithm == QuantAlgorithm::kNone) continue;
    SCOPED_TRACE(describe(c));
    for (double bad : {NAN, INFINITY, -INFINITY}) {
      std::mt19937 rng(7);
      std::normal_distribution<double> normal(0.0, 1.0);
      std::vector<uint8_t> src = family(c.source, 3 * kQuantBlockElems - 100,
                                        [&](size_t) { return normal(rng); });
      put(c.source, src.data(), kQuantBlockElems + 5, bad);
      check_round_trip(c, src);  // block 1 all NaN, blocks 0 and 2 within bounds
      if (HasFatalFailure()) return;
    }
  }
}

TEST(QuantizeTest, ExactValues) {
  for (DataType s : kFloatSources) {
    for (DataType w : kCodeTypes) {
      // MinMax: a constant block decodes exactly, -0 as +0.
      for (double v : {-3.25, 0.0, -0.0, 1e-3, 1000.0}) {
        const WireCodec c{s, QuantAlgorithm::kMinMax, w};
        SCOPED_TRACE(describe(c) + " constant " + std::to_string(v));
        const std::vector<uint8_t> src = family(s, 3000, [&](size_t) { return v; });
        std::vector<uint8_t> wire(encoded_bytes(c, 3000));
        std::vector<uint8_t> back(src.size());
        encode(c, src.data(), 3000, wire.data(), nullptr);
        decode(c, wire.data(), 3000, back.data());
        for (size_t i = 0; i < 3000; ++i) {
          ASSERT_EQ(get(s, back.data(), i), get(s, src.data(), i));
          ASSERT_FALSE(std::signbit(get(s, back.data(), i)) && get(s, src.data(), i) == 0);
        }
      }
      // ZeroPointScale: 0 decodes to exactly +0 whatever the rest of the block holds.
      const WireCodec c{s, QuantAlgorithm::kZeroPointScale, w};
      SCOPED_TRACE(describe(c));
      std::mt19937 rng(3);
      std::uniform_real_distribution<double> uniform(-1.0, 7.0);
      const std::vector<uint8_t> src = family(s, 5000, [&](size_t i) {
        return i % 4 == 0 ? (i % 8 ? 0.0 : -0.0) : uniform(rng) + (i / 2048) * 50.0;
      });
      std::vector<uint8_t> wire(encoded_bytes(c, 5000));
      std::vector<uint8_t> back(src.size());
      encode(c, src.data(), 5000, wire.data(), nullptr);
      decode(c, wire.data(), 5000, back.data());
      for (size_t i = 0; i < 5000; i += 4) {
        ASSERT_EQ(get_bits(s, back.data(), i), 0u) << "element " << i;
      }
    }
  }
}

TEST(QuantizeTest, EmptyRunsTouchNothing) {
  for (const WireCodec& c : all_codecs()) {
    encode(c, nullptr, 0, nullptr, nullptr);
    decode(c, nullptr, 0, nullptr);
    decode_reduce(c, ReduceOp::kSum, nullptr, nullptr, nullptr, 0, 1);
    EXPECT_EQ(encoded_bytes(c, 0), 0u);
  }
}

TEST(QuantizeTest, IdentityCopies) {
  const WireCodec c{DataType::kFloat32, QuantAlgorithm::kNone, DataType::kFloat32};
  const std::vector<float> x = {1.f, -2.f, std::bit_cast<float>(0x7f800001u)};
  std::vector<uint8_t> wire(encoded_bytes(c, 3));
  std::vector<float> dec(3);
  encode(c, x.data(), 3, wire.data(), dec.data());
  EXPECT_EQ(std::memcmp(wire.data(), x.data(), 12), 0);
  EXPECT_EQ(std::memcmp(dec.data(), x.data(), 12), 0);
  std::vector<float> back(3);
  decode(c, wire.data(), 3, back.data());
  EXPECT_EQ(std::memcmp(back.data(), x.data(), 12), 0);
}

}  // namespace
}  // namespace qccl::quant
