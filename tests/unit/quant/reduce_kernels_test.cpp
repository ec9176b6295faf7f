// Named edge cases of the quant/reduce_kernels contract, with hand-computed expected values:
// integer wrap-around, truncating integer averages, the float Max/Min NaN and +-0 policy,
// canonical NaN outputs, float averages computed in float32 for fp16/bf16, empty spans, and
// that the vectorized body and the scalar tail give the same bits for the same inputs. The
// exhaustive differential tests are in reduce_kernels_reference_test.cpp.
#include "quant/reduce_kernels.hpp"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "support/watchdog.hpp"

QCCL_TEST_WATCHDOG(60);

namespace qccl::quant {
namespace {

template <typename T>
std::vector<T> reduced(DataType dtype, ReduceOp op, const std::vector<T>& a,
                       const std::vector<T>& b) {
  std::vector<T> out(a.size());
  reduce(dtype, op, out.data(), a.data(), b.data(), a.size());
  return out;
}

template <typename T>
std::vector<T> averaged(DataType dtype, const std::vector<T>& a, const std::vector<T>& b,
                        uint32_t divisor) {
  std::vector<T> out(a.size());
  reduce_and_divide(dtype, out.data(), a.data(), b.data(), a.size(), divisor);
  return out;
}

template <typename T>
std::vector<T> divided(DataType dtype, std::vector<T> v, uint32_t divisor) {
  divide(dtype, v.data(), v.data(), v.size(), divisor);  // in place
  return v;
}

template <typename T>
using Lim = std::numeric_limits<T>;

TEST(ReduceKernelsTest, IntegerSumWraps) {
  EXPECT_EQ(reduced<uint8_t>(DataType::kUint8, ReduceOp::kSum, {200, 255}, {100, 1}),
            (std::vector<uint8_t>{44, 0}));
  EXPECT_EQ(reduced<int8_t>(DataType::kInt8, ReduceOp::kSum, {127, -128}, {1, -1}),
            (std::vector<int8_t>{-128, 127}));
  EXPECT_EQ(reduced<uint16_t>(DataType::kUint16, ReduceOp::kSum, {65535}, {1}),
            (std::vector<uint16_t>{0}));
  EXPECT_EQ(reduced<int16_t>(DataType::kInt16, ReduceOp::kSum, {32767}, {32767}),
            (std::vector<int16_t>{-2}));
  EXPECT_EQ(reduced<uint32_t>(DataType::kUint32, ReduceOp::kSum, {0xffffffffu}, {2}),
            (std::vector<uint32_t>{1}));
  EXPECT_EQ(reduced<int32_t>(DataType::kInt32, ReduceOp::kSum, {Lim<int32_t>::max()}, {1}),
            (std::vector<int32_t>{Lim<int32_t>::min()}));
  EXPECT_EQ(reduced<uint64_t>(DataType::kUint64, ReduceOp::kSum, {Lim<uint64_t>::max()}, {1}),
            (std::vector<uint64_t>{0}));
  EXPECT_EQ(reduced<int64_t>(DataType::kInt64, ReduceOp::kAvg, {Lim<int64_t>::min()}, {-1}),
            (std::vector<int64_t>{Lim<int64_t>::max()}));
}

TEST(ReduceKernelsTest, IntegerProdWraps) {
  EXPECT_EQ(reduced<uint8_t>(DataType::kUint8, ReduceOp::kProd, {16, 15}, {16, 17}),
            (std::vector<uint8_t>{0, 255}));
  EXPECT_EQ(reduced<int8_t>(DataType::kInt8, ReduceOp::kProd, {-128, 64}, {-1, 2}),
            (std::vector<int8_t>{-128, -128}));
  // 65535 * 65535 would overflow int after integer promotion; must wrap to 1.
  EXPECT_EQ(reduced<uint16_t>(DataType::kUint16, ReduceOp::kProd, {65535}, {65535}),
            (std::vector<uint16_t>{1}));
  EXPECT_EQ(reduced<int16_t>(DataType::kInt16, ReduceOp::kProd, {-32768, 300}, {-1, 300}),
            (std::vector<int16_t>{-32768, 24464}));
  EXPECT_EQ(reduced<int32_t>(DataType::kInt32, ReduceOp::kProd, {65536, Lim<int32_t>::min()},
                             {65536, -1}),
            (std::vector<int32_t>{0, Lim<int32_t>::min()}));
  EXPECT_EQ(reduced<uint32_t>(DataType::kUint32, ReduceOp::kProd, {0xffffffffu}, {0xffffffffu}),
            (std::vector<uint32_t>{1}));
  EXPECT_EQ(reduced<int64_t>(DataType::kInt64, ReduceOp::kProd, {Lim<int64_t>::max()}, {2}),
            (std::vector<int64_t>{-2}));
  EXPECT_EQ(reduced<uint64_t>(DataType::kUint64, ReduceOp::kProd,
                              {uint64_t{1} << 32, Lim<uint64_t>::max()},
                              {uint64_t{1} << 32, Lim<uint64_t>::max()}),
            (std::vector<uint64_t>{0, 1}));
}

TEST(ReduceKernelsTest, IntegerMaxMinRespectSignedness) {
  EXPECT_EQ(reduced<int8_t>(DataType::kInt8, ReduceOp::kMax, {-1, -128}, {1, 127}),
            (std::vector<int8_t>{1, 127}));
  EXPECT_EQ(reduced<uint8_t>(DataType::kUint8, ReduceOp::kMax, {255, 128}, {1, 127}),
            (std::vector<uint8_t>{255, 128}));
  EXPECT_EQ(reduced<int64_t>(DataType::kInt64, ReduceOp::kMin, {-1, Lim<int64_t>::min()}, {1, 0}),
            (std::vector<int64_t>{-1, Lim<int64_t>::min()}));
  EXPECT_EQ(reduced<uint64_t>(DataType::kUint64, ReduceOp::kMin, {Lim<uint64_t>::max()}, {1}),
            (std::vector<uint64_t>{1}));
}

TEST(ReduceKernelsTest, IntegerAverageTruncatesTowardZero) {
  EXPECT_EQ(averaged<int32_t>(DataType::kInt32, {-4, 4, -1, 2, -5}, {-3, 3, 0, 2, 0}, 2),
            (std::vector<int32_t>{-3, 3, 0, 2, -2}));
  // The sum wraps first (100 + 100 == -56 in int8), then -56 / 3 truncates to -18.
  EXPECT_EQ(averaged<int8_t>(DataType::kInt8, {100, -7}, {100, 0}, 3),
            (std::vector<int8_t>{-18, -2}));
  EXPECT_EQ(averaged<uint8_t>(DataType::kUint8, {200}, {100}, 3), (std::vector<uint8_t>{14}));
  EXPECT_EQ(divided<int16_t>(DataType::kInt16, {-32768, -7, 7, 32767}, 2),
            (std::vector<int16_t>{-16384, -3, 3, 16383}));
  EXPECT_EQ(divided<int64_t>(DataType::kInt64, {Lim<int64_t>::min(), -1}, 3),
            (std::vector<int64_t>{-3074457345618258602, 0}));
  EXPECT_EQ(divided<uint32_t>(DataType::kUint32, {0xffffffffu}, 2),
            (std::vector<uint32_t>{0x7fffffffu}));
  EXPECT_EQ(divided<uint64_t>(DataType::kUint64, {Lim<uint64_t>::max()}, 0xffffffffu),
            (std::vector<uint64_t>{0x100000001ull}));
  EXPECT_EQ(divided<int32_t>(DataType::kInt32, {-5, Lim<int32_t>::min()}, 0xffffffffu),
            (std::vector<int32_t>{0, 0}));
  EXPECT_EQ(divided<int32_t>(DataType::kInt32, {-5, 9}, 1), (std::vector<int32_t>{-5, 9}));
}

// Bit patterns of one value in each float type, so the tests below can be written once.
struct FloatType {
  DataType dtype;
  size_t size;
  uint64_t pos_zero, neg_zero, one, neg_one, inf, neg_inf, canonical_nan, nan_payload, neg_nan;
};

constexpr FloatType kFloatTypes[] = {
    {DataType::kFloat16, 2, 0x0000, 0x8000, 0x3c00, 0xbc00, 0x7c00, 0xfc00, 0x7e00, 0x7d23, 0xfe01},
    {DataType::kBFloat16, 2, 0x0000, 0x8000, 0x3f80, 0xbf80, 0x7f80, 0xff80, 0x7fc0, 0x7f93,
     0xffc1},
    {DataType::kFloat32, 4, 0x00000000, 0x80000000, 0x3f800000, 0xbf800000, 0x7f800000, 0xff800000,
     0x7fc00000, 0x7f812345, 0xffc00001},
    {DataType::kFloat64, 8, 0, 0x8000000000000000, 0x3ff0000000000000, 0xbff0000000000000,
     0x7ff0000000000000, 0xfff0000000000000, 0x7ff8000000000000, 0x7ff0000000012345,
     0xfff8000000000001},
};

// Applies `op` to (a[i], b[i]) for bit patterns of the given float type; returns result bits.
std::vector<uint64_t> float_op(const FloatType& t, ReduceOp op, const std::vector<uint64_t>& a,
                               const std::vector<uint64_t>& b) {
  std::vector<unsigned char> x(a.size() * t.size), y(b.size() * t.size), out(a.size() * t.size);
  for (size_t i = 0; i < a.size(); ++i) {
    std::memcpy(&x[i * t.size], &a[i], t.size);  // little-endian: low bytes hold the pattern
    std::memcpy(&y[i * t.size], &b[i], t.size);
  }
  reduce(t.dtype, op, out.data(), x.data(), y.data(), a.size());
  std::vector<uint64_t> bits(a.size(), 0);
  for (size_t i = 0; i < a.size(); ++i) std::memcpy(&bits[i], &out[i * t.size], t.size);
  return bits;
}

TEST(ReduceKernelsTest, FloatMaxMinOrderSignedZerosRegardlessOfOperandOrder) {
  for (const FloatType& t : kFloatTypes) {
    SCOPED_TRACE(std::string(dtype_name(t.dtype)));
    const std::vector<uint64_t> a = {t.pos_zero, t.neg_zero, t.neg_zero, t.pos_zero};
    const std::vector<uint64_t> b = {t.neg_zero, t.pos_zero, t.neg_zero, t.pos_zero};
    EXPECT_EQ(float_op(t, ReduceOp::kMax, a, b),
              (std::vector<uint64_t>{t.pos_zero, t.pos_zero, t.neg_zero, t.pos_zero}));
    EXPECT_EQ(float_op(t, ReduceOp::kMin, a, b),
              (std::vector<uint64_t>{t.neg_zero, t.neg_zero, t.neg_zero, t.pos_zero}));
  }
}

TEST(ReduceKernelsTest, FloatMaxMinPropagateNaNAndOrderInfinities) {
  for (const FloatType& t : kFloatTypes) {
    SCOPED_TRACE(std::string(dtype_name(t.dtype)));
    const std::vector<uint64_t> a = {t.nan_payload, t.one, t.neg_nan, t.inf, t.inf, t.neg_inf};
    const std::vector<uint64_t> b = {t.one, t.nan_payload, t.neg_inf, t.neg_nan, t.one, t.neg_one};
    const uint64_t nan = t.canonical_nan;
    EXPECT_EQ(float_op(t, ReduceOp::kMax, a, b),
              (std::vector<uint64_t>{nan, nan, nan, nan, t.inf, t.neg_one}));
    EXPECT_EQ(float_op(t, ReduceOp::kMin, a, b),
              (std::vector<uint64_t>{nan, nan, nan, nan, t.one, t.neg_inf}));
  }
}

TEST(ReduceKernelsTest, FloatNaNResultsAreCanonical) {
  for (const FloatType& t : kFloatTypes) {
    SCOPED_TRACE(std::string(dtype_name(t.dtype)));
    const uint64_t nan = t.canonical_nan;
    // inf + -inf, NaN with payload + 1, negative NaN + NaN, 1 + 1 (a control).
    const std::vector<uint64_t> a = {t.inf, t.nan_payload, t.neg_nan, t.one};
    const std::vector<uint64_t> b = {t.neg_inf, t.one, t.nan_payload, t.neg_one};
    EXPECT_EQ(float_op(t, ReduceOp::kSum, a, b),
              (std::vector<uint64_t>{nan, nan, nan, t.pos_zero}));
    // 0 * inf, NaN * 1, -NaN * -1, 1 * -1.
    EXPECT_EQ(float_op(t, ReduceOp::kProd, {t.pos_zero, t.nan_payload, t.neg_nan, t.one},
                       {t.inf, t.one, t.neg_one, t.neg_one}),
              (std::vector<uint64_t>{nan, nan, nan, t.neg_one}));
  }
}

TEST(ReduceKernelsTest, FloatAveragesComputeInTheDocumentedPrecision) {
  // float32: the sum is rounded before the division: 1e8 + 1 == 1e8.
  EXPECT_EQ(averaged<float>(DataType::kFloat32, {1.0f, 1e8f, -1.0f}, {2.0f, 1.0f, 0.0f}, 2),
            (std::vector<float>{1.5f, 5e7f, -0.5f}));
  EXPECT_EQ(divided<double>(DataType::kFloat64, {1.0, -6.0}, 3),
            (std::vector<double>{1.0 / 3.0, -2.0}));
  // fp16: 65504 + 65504 overflows fp16 but not the float32 intermediate; 2/3 rounds once.
  EXPECT_EQ(averaged<uint16_t>(DataType::kFloat16, {0x7bff, 0x3c00}, {0x7bff, 0x3c00}, 2),
            (std::vector<uint16_t>{0x7bff, 0x3c00}));
  EXPECT_EQ(averaged<uint16_t>(DataType::kFloat16, {0x3c00}, {0x3c00}, 3),
            (std::vector<uint16_t>{0x3955}));
  EXPECT_EQ(reduced<uint16_t>(DataType::kFloat16, ReduceOp::kAvg, {0x7bff}, {0x7bff}),
            (std::vector<uint16_t>{0x7c00}))
      << "reduce() treats Avg as Sum, so the 16-bit sum overflows";
  EXPECT_EQ(averaged<uint16_t>(DataType::kBFloat16, {0x3f80}, {0x3f80}, 3),
            (std::vector<uint16_t>{0x3f2b}));
  // Division by 1 still canonicalizes NaN.
  EXPECT_EQ(divided<uint16_t>(DataType::kFloat16, {0x7d23, 0xbc00}, 1),
            (std::vector<uint16_t>{0x7e00, 0xbc00}));
  EXPECT_EQ(divided<uint16_t>(DataType::kBFloat16, {0x3f80, 0xffc1}, 2),
            (std::vector<uint16_t>{0x3f00, 0x7fc0}));
}

TEST(ReduceKernelsTest, EmptySpansTouchNothing) {
  for (int t = 0; t < static_cast<int>(DataType::kNumTypes); ++t) {
    const auto dtype = static_cast<DataType>(t);
    reduce(dtype, ReduceOp::kSum, nullptr, nullptr, nullptr, 0);
    reduce_and_divide(dtype, nullptr, nullptr, nullptr, 0, 3);
    divide(dtype, nullptr, nullptr, 0, 3);
    std::vector<unsigned char> dst(8, 0x5a), src(8, 0x11);
    reduce(dtype, ReduceOp::kMax, dst.data(), src.data(), src.data(), 0);
    divide(dtype, dst.data(), src.data(), 0, 1);
    EXPECT_EQ(dst, std::vector<unsigned char>(8, 0x5a));
  }
}

// Random bit patterns (every NaN/inf/subnormal flavour for floats): the full-array call, which
// runs the vector body, must give the same bytes as element-by-element calls, which run the
// scalar tail, and as calls starting at every offset (other alignments, other tail lengths).
TEST(ReduceKernelsTest, VectorBodyAndScalarTailAgreeForAllTypes) {
  std::mt19937_64 rng(42);
  constexpr size_t kCount = 67;
  for (int t = 0; t < static_cast<int>(DataType::kNumTypes); ++t) {
    const auto dtype = static_cast<DataType>(t);
    const size_t size = dtype_size(dtype);
    std::vector<unsigned char> a(kCount * size), b(kCount * size);
    for (auto& byte : a) byte = static_cast<unsigned char>(rng());
    for (auto& byte : b) byte = static_cast<unsigned char>(rng());
    // op index 5 = reduce_and_divide by 3, 6 = divide by 7.
    for (int op = 0; op < 7; ++op) {
      SCOPED_TRACE(::testing::Message() << dtype_name(dtype) << " op " << op);
      auto run = [&](unsigned char* out, size_t first, size_t n) {
        const unsigned char* x = a.data() + first * size;
        const unsigned char* y = b.data() + first * size;
        if (op < 5) {
          reduce(dtype, static_cast<ReduceOp>(op), out, x, y, n);
        } else if (op == 5) {
          reduce_and_divide(dtype, out, x, y, n, 3);
        } else {
          divide(dtype, out, x, n, 7);
        }
      };
      std::vector<unsigned char> whole(kCount * size);
      run(whole.data(), 0, kCount);
      for (size_t first = 0; first < kCount; ++first) {
        std::vector<unsigned char> single(size), suffix((kCount - first) * size);
        run(single.data(), first, 1);
        run(suffix.data(), first, kCount - first);
        ASSERT_EQ(std::memcmp(single.data(), &whole[first * size], size), 0) << "at " << first;
        ASSERT_EQ(std::memcmp(suffix.data(), &whole[first * size], suffix.size()), 0)
            << "from " << first;
      }
    }
  }
}

}  // namespace
}  // namespace qccl::quant
