// Differential tests for quant/reduce_kernels: every DataType x ReduceOp, reduce_and_divide and
// divide, for counts 0/1/7/1023/100000 and every allowed aliasing, against a plain scalar
// reference written from the documented contract with different code: 128-bit integer math with
// explicit wrapping, float32 ops evaluated in double and rounded once (exact for +, *, / of
// float32 operands since 53 >= 2 * 24 + 2), table-search fp16/bf16 codecs, and an explicit
// IEEE maximum/minimum. Outputs are compared bit for bit, guard elements around dst must stay
// untouched, and every fp16/bf16 bit pattern goes through each operation.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "half_reference.hpp"
#include "quant/reduce_kernels.hpp"

namespace qccl::quant {
namespace {

__extension__ typedef __int128 Int128;
__extension__ typedef unsigned __int128 Uint128;

constexpr ReduceOp kAllOps[] = {ReduceOp::kSum, ReduceOp::kAvg, ReduceOp::kProd, ReduceOp::kMax,
                                ReduceOp::kMin};
constexpr size_t kCounts[] = {0, 1, 7, 1023, 100000};
constexpr uint32_t kDivisors[] = {1, 2, 3, 7, 64, 1000, 0xffffffffu};

// IEEE 754-2019 maximum/minimum on non-NaN values, spelled out case by case.
template <typename F>
F ref_extremum(bool is_max, F a, F b) {
  if (a == b) {
    if (a != 0) return a;
    const bool negative =
        is_max ? (std::signbit(a) && std::signbit(b)) : (std::signbit(a) || std::signbit(b));
    return negative ? -F(0) : F(0);
  }
  if (is_max) return a > b ? a : b;
  return a < b ? a : b;
}

// ---- Codecs: one per DataType family, each with a reference and a value generator ----------

template <typename T>
struct IntCodec {
  using Storage = T;
  using Wide = std::conditional_t<std::is_signed_v<T>, Int128, Uint128>;
  static constexpr int kBits = 8 * sizeof(T);

  // Reduce a 128-bit exact result modulo 2^bits into T's range.
  static T wrap(Wide v) {
    const Uint128 low = static_cast<Uint128>(v) & ((Uint128{1} << kBits) - 1);
    if (std::is_signed_v<T> && (low >> (kBits - 1)) != 0) {
      return static_cast<T>(static_cast<Int128>(low) - (Int128{1} << kBits));
    }
    return static_cast<T>(low);
  }
  static T reduce(ReduceOp op, T a, T b) {
    switch (op) {
      case ReduceOp::kProd:
        return wrap(static_cast<Wide>(a) * static_cast<Wide>(b));
      case ReduceOp::kMax:
        return std::max(a, b);
      case ReduceOp::kMin:
        return std::min(a, b);
      default:
        return wrap(static_cast<Wide>(a) + static_cast<Wide>(b));
    }
  }
  // Truncation toward zero via the magnitude, so it does not lean on C++ division of negatives.
  static T divide(T s, uint32_t d) {
    if constexpr (std::is_signed_v<T>) {
      if (s < 0) return static_cast<T>(-static_cast<Int128>(Uint128(-Int128{s}) / d));
    }
    return static_cast<T>(static_cast<Uint128>(s) / d);
  }
  static T sum_divide(T a, T b, uint32_t d) { return divide(reduce(ReduceOp::kSum, a, b), d); }
  static T generate(std::mt19937_64& rng) {
    const uint64_t r = rng();
    switch (r % 4) {
      case 0:
        return static_cast<T>(static_cast<int>(rng() % 201) - 100);
      case 1: {
        const T specials[] = {std::numeric_limits<T>::min(), std::numeric_limits<T>::max(), T(0),
                              T(1), static_cast<T>(-1)};
        return specials[rng() % 5];
      }
      default:
        return static_cast<T>(rng());
    }
  }
};

template <typename F>
struct FloatCodec {
  using Storage = F;
  using Bits = std::conditional_t<sizeof(F) == 4, uint32_t, uint64_t>;
  static F canonical_nan() {
    return std::bit_cast<F>(sizeof(F) == 4 ? Bits(0x7fc00000u) : Bits(0x7ff8000000000000ull));
  }
  static F finish(F v) { return std::isnan(v) ? canonical_nan() : v; }
  static F reduce(ReduceOp op, F a, F b) {
    if ((op == ReduceOp::kMax || op == ReduceOp::kMin) && (std::isnan(a) || std::isnan(b))) {
      return canonical_nan();
    }
    switch (op) {
      case ReduceOp::kProd:
        return finish(mul(a, b));
      case ReduceOp::kMax:
        return ref_extremum(true, a, b);
      case ReduceOp::kMin:
        return ref_extremum(false, a, b);
      default:
        return finish(add(a, b));
    }
  }
  static F divide(F s, uint32_t d) {
    const F divisor = static_cast<F>(d);  // float32: rounded, per the contract
    if constexpr (sizeof(F) == 4) {
      return finish(static_cast<F>(static_cast<double>(s) / static_cast<double>(divisor)));
    } else {
      return finish(s / divisor);
    }
  }
  static F sum_divide(F a, F b, uint32_t d) { return divide(reduce(ReduceOp::kSum, a, b), d); }
  static F add(F a, F b) {
    if constexpr (sizeof(F) == 4) {
      return static_cast<F>(static_cast<double>(a) + static_cast<double>(b));
    } else {
      return a + b;
    }
  }
  static F mul(F a, F b) {
    if constexpr (sizeof(F) == 4) {
      return static_cast<F>(static_cast<double>(a) * static_cast<double>(b));
    } else {
      return a * b;
    }
  }
  static F generate(std::mt19937_64& rng) {
    const F specials[] = {F(0),
                          -F(0),
                          std::numeric_limits<F>::infinity(),
                          -std::numeric_limits<F>::infinity(),
                          std::numeric_limits<F>::quiet_NaN(),
                          -std::numeric_limits<F>::quiet_NaN(),
                          std::numeric_limits<F>::signaling_NaN(),
                          std::numeric_limits<F>::denorm_min(),
                          -std::numeric_limits<F>::denorm_min(),
                          std::numeric_limits<F>::max(),
                          std::numeric_limits<F>::lowest(),
                          std::numeric_limits<F>::min(),
                          F(1),
                          F(-1),
                          F(0.5)};
    switch (rng() % 4) {
      case 0:
        return specials[rng() % (sizeof(specials) / sizeof(specials[0]))];
      case 1:
        return std::bit_cast<F>(static_cast<Bits>(rng()));
      default:
        return std::uniform_real_distribution<F>(F(-1000), F(1000))(rng);
    }
  }
};

template <typename Ref>
struct HalfCodec {
  using Storage = uint16_t;
  static const Ref& ref() {
    static const Ref instance;
    return instance;
  }
  static float to_float(uint16_t h) { return static_cast<float>(Ref::decode(h)); }
  static uint16_t from_float(float v) {
    // Canonical NaN: sign clear, quiet bit only.
    return std::isnan(v) ? static_cast<uint16_t>(Ref::kInf | ((Ref::kManMask + 1) >> 1))
                         : ref().encode(v);
  }
  static uint16_t reduce(ReduceOp op, uint16_t a, uint16_t b) {
    const float fa = to_float(a);
    const float fb = to_float(b);
    switch (op) {
      case ReduceOp::kProd:
        return from_float(fa * fb);
      case ReduceOp::kMax:
      case ReduceOp::kMin:
        if (std::isnan(fa) || std::isnan(fb)) return from_float(NAN);
        return from_float(ref_extremum(op == ReduceOp::kMax, fa, fb));
      default:
        return from_float(fa + fb);
    }
  }
  static uint16_t divide(uint16_t s, uint32_t d) {
    return from_float(to_float(s) / static_cast<float>(d));
  }
  // Divides the float32 sum, not the sum rounded to 16 bits.
  static uint16_t sum_divide(uint16_t a, uint16_t b, uint32_t d) {
    return from_float((to_float(a) + to_float(b)) / static_cast<float>(d));
  }
  static uint16_t generate(std::mt19937_64& rng) {
    const uint64_t r = rng();
    switch (r % 4) {
      case 0: {  // moderate exponents: sums and products stay mostly finite
        const uint16_t exp = static_cast<uint16_t>(Ref::kBias - 6 + (rng() % 13));
        const uint16_t man = static_cast<uint16_t>(rng() & Ref::kManMask);
        const uint16_t sign = (rng() & 1) ? 0x8000 : 0;
        return static_cast<uint16_t>(sign | (exp << Ref::kMantissaBits) | man);
      }
      case 1: {
        const uint16_t specials[] = {0x0000,
                                     0x8000,
                                     Ref::kInf,
                                     static_cast<uint16_t>(Ref::kInf | 0x8000),
                                     static_cast<uint16_t>(Ref::kInf | 1),
                                     static_cast<uint16_t>(Ref::kInf | Ref::kManMask | 0x8000),
                                     0x0001,
                                     0x8001,
                                     static_cast<uint16_t>(Ref::kInf - 1)};
        return specials[rng() % (sizeof(specials) / sizeof(specials[0]))];
      }
      default:
        return static_cast<uint16_t>(rng());
    }
  }
};

// ---- Harness ---------------------------------------------------------------------------------

enum class Alias { kSeparate, kDstIsA, kDstIsB, kAllSame };
constexpr Alias kAllAliases[] = {Alias::kSeparate, Alias::kDstIsA, Alias::kDstIsB, Alias::kAllSame};

// `count` elements with one guard element on each side, filled with a fixed byte pattern.
template <typename S>
struct Guarded {
  explicit Guarded(size_t count) : storage(count + 2) {
    std::memset(storage.data(), 0xa5, storage.size() * sizeof(S));
  }
  S* data() { return storage.data() + 1; }
  bool guards_intact() const {
    const auto* first = reinterpret_cast<const unsigned char*>(&storage.front());
    const auto* last = reinterpret_cast<const unsigned char*>(&storage.back());
    for (size_t i = 0; i < sizeof(S); ++i) {
      if (first[i] != 0xa5 || last[i] != 0xa5) return false;
    }
    return true;
  }
  std::vector<S> storage;
};

template <typename S>
void expect_bits_equal(const S* got, const std::vector<S>& want, size_t count, const S* a,
                       const S* b, const std::string& what) {
  for (size_t i = 0; i < count; ++i) {
    if (std::memcmp(&got[i], &want[i], sizeof(S)) != 0) {
      ADD_FAILURE() << what << " mismatch at " << i << ": a=" << +a[i] << " b=" << +b[i]
                    << " got=" << +got[i] << " want=" << +want[i];
      return;  // one report per case is enough
    }
  }
}

// Runs `call(dst, a, b)` for each aliasing mode and compares with `want(a_i, b_i)`.
template <typename Codec, typename Call, typename Want>
void check_binary(size_t count, uint64_t seed, const std::string& what, Call call, Want want) {
  using S = typename Codec::Storage;
  std::mt19937_64 rng(seed);
  std::vector<S> a(count), b(count);
  for (size_t i = 0; i < count; ++i) {
    a[i] = Codec::generate(rng);
    b[i] = Codec::generate(rng);
  }
  for (Alias alias : kAllAliases) {
    const std::vector<S>& second = alias == Alias::kAllSame ? a : b;
    std::vector<S> expected(count);
    for (size_t i = 0; i < count; ++i) expected[i] = want(a[i], second[i]);
    Guarded<S> dst(count), in_a(count), in_b(count);
    if (count != 0) {
      std::memcpy(in_a.data(), a.data(), count * sizeof(S));
      std::memcpy(in_b.data(), second.data(), count * sizeof(S));
    }
    switch (alias) {
      case Alias::kSeparate:
        call(dst.data(), in_a.data(), in_b.data());
        break;
      case Alias::kDstIsA:
        call(in_a.data(), in_a.data(), in_b.data());
        break;
      case Alias::kDstIsB:
        call(in_b.data(), in_a.data(), in_b.data());
        break;
      case Alias::kAllSame:
        call(in_a.data(), in_a.data(), in_a.data());
        break;
    }
    const S* out = alias == Alias::kSeparate ? dst.data()
                   : alias == Alias::kDstIsB ? in_b.data()
                                             : in_a.data();
    const std::string label = what + " count=" + std::to_string(count) +
                              " alias=" + std::to_string(static_cast<int>(alias));
    expect_bits_equal(out, expected, count, a.data(), second.data(), label);
    EXPECT_TRUE(dst.guards_intact() && in_a.guards_intact() && in_b.guards_intact()) << label;
  }
}

template <typename Codec>
void check_everything(DataType dtype) {
  using S = typename Codec::Storage;
  uint64_t seed = 1;
  for (size_t count : kCounts) {
    for (ReduceOp op : kAllOps) {
      check_binary<Codec>(
          count, seed++, std::string(reduce_op_name(op)),
          [&](S* d, const S* x, const S* y) { reduce(dtype, op, d, x, y, count); },
          [&](S x, S y) { return Codec::reduce(op, x, y); });
    }
    for (uint32_t divisor : kDivisors) {
      check_binary<Codec>(
          count, seed++, "reduce_and_divide/" + std::to_string(divisor),
          [&](S* d, const S* x, const S* y) { reduce_and_divide(dtype, d, x, y, count, divisor); },
          [&](S x, S y) { return Codec::sum_divide(x, y, divisor); });
      // divide() is unary: feed it `a` and ignore `b` (dst may be a, or separate).
      check_binary<Codec>(
          count, seed++, "divide/" + std::to_string(divisor),
          [&](S* d, const S* x, const S*) { divide(dtype, d, x, count, divisor); },
          [&](S x, S) { return Codec::divide(x, divisor); });
    }
  }
}

class ReduceKernelsReferenceTest : public ::testing::TestWithParam<DataType> {};

TEST_P(ReduceKernelsReferenceTest, AllOpsCountsAndAliasingMatchReference) {
  switch (GetParam()) {
    case DataType::kUint8:
      return check_everything<IntCodec<uint8_t>>(GetParam());
    case DataType::kInt8:
      return check_everything<IntCodec<int8_t>>(GetParam());
    case DataType::kUint16:
      return check_everything<IntCodec<uint16_t>>(GetParam());
    case DataType::kInt16:
      return check_everything<IntCodec<int16_t>>(GetParam());
    case DataType::kUint32:
      return check_everything<IntCodec<uint32_t>>(GetParam());
    case DataType::kInt32:
      return check_everything<IntCodec<int32_t>>(GetParam());
    case DataType::kUint64:
      return check_everything<IntCodec<uint64_t>>(GetParam());
    case DataType::kInt64:
      return check_everything<IntCodec<int64_t>>(GetParam());
    case DataType::kFloat16:
      return check_everything<HalfCodec<test::Fp16Reference>>(GetParam());
    case DataType::kBFloat16:
      return check_everything<HalfCodec<test::Bf16Reference>>(GetParam());
    case DataType::kFloat32:
      return check_everything<FloatCodec<float>>(GetParam());
    case DataType::kFloat64:
      return check_everything<FloatCodec<double>>(GetParam());
    case DataType::kNumTypes:
      break;
  }
  FAIL() << "unexpected dtype";
}

INSTANTIATE_TEST_SUITE_P(AllTypes, ReduceKernelsReferenceTest,
                         ::testing::Values(DataType::kUint8, DataType::kInt8, DataType::kUint16,
                                           DataType::kInt16, DataType::kUint32, DataType::kInt32,
                                           DataType::kUint64, DataType::kInt64, DataType::kFloat16,
                                           DataType::kBFloat16, DataType::kFloat32,
                                           DataType::kFloat64),
                         [](const ::testing::TestParamInfo<DataType>& param) {
                           return std::string(dtype_name(param.param));
                         });

// Every 16-bit pattern as `a` against a fixed set of `b` values, through every operation.
template <typename Ref>
void check_all_half_patterns(DataType dtype) {
  using Codec = HalfCodec<Ref>;
  std::vector<uint16_t> bs = {0x0000,
                              0x8000,
                              Ref::kInf,
                              static_cast<uint16_t>(Ref::kInf | 0x8000),
                              static_cast<uint16_t>(Ref::kInf | 1),
                              0x0001,
                              0x8001};
  std::mt19937_64 rng(7);
  while (bs.size() < 24) bs.push_back(static_cast<uint16_t>(rng()));
  std::vector<uint16_t> a(65536), b(65536), out(65536), want(65536);
  for (uint32_t i = 0; i < 65536; ++i) a[i] = static_cast<uint16_t>(i);
  for (uint16_t y : bs) {
    std::fill(b.begin(), b.end(), y);
    for (ReduceOp op : kAllOps) {
      reduce(dtype, op, out.data(), a.data(), b.data(), a.size());
      for (uint32_t i = 0; i < 65536; ++i) want[i] = Codec::reduce(op, a[i], y);
      expect_bits_equal(out.data(), want, a.size(), a.data(), b.data(),
                        std::string(reduce_op_name(op)));
    }
    reduce_and_divide(dtype, out.data(), a.data(), b.data(), a.size(), 3);
    for (uint32_t i = 0; i < 65536; ++i) want[i] = Codec::sum_divide(a[i], y, 3);
    expect_bits_equal(out.data(), want, a.size(), a.data(), b.data(), "reduce_and_divide/3");
  }
  divide(dtype, out.data(), a.data(), a.size(), 3);
  for (uint32_t i = 0; i < 65536; ++i) want[i] = Codec::divide(a[i], 3);
  expect_bits_equal(out.data(), want, a.size(), a.data(), a.data(), "divide/3");
}

TEST(ReduceKernelsHalfTest, EveryFp16PatternThroughEveryOp) {
  check_all_half_patterns<test::Fp16Reference>(DataType::kFloat16);
}

TEST(ReduceKernelsHalfTest, EveryBf16PatternThroughEveryOp) {
  check_all_half_patterns<test::Bf16Reference>(DataType::kBFloat16);
}

}  // namespace
}  // namespace qccl::quant
