// Element-wise reduction kernels (see reduce_kernels.hpp for the numeric contract).
//
// Structure: each DataType is described by a Format (storage type, compute type, exact widen,
// rounding narrow), each op by a small function on the compute type, and one loop template
// applies `narrow(op(widen(a[i]), widen(b[i])))`. Everything is inlined into one plain loop per
// (type, op) that GCC/Clang auto-vectorize at -O3 for the x86-64 baseline (SSE2). This file is
// compiled with -O3 -ffp-contract=off -fno-trapping-math (src/quant/CMakeLists.txt): no FMA
// contraction, and permission to speculate float ops into selects (values are unchanged; qccl
// never unmasks FP exceptions). Without the latter GCC 12 keeps the fp16 division loops scalar.
//
// Not vectorized on SSE2, for lack of instructions: 64-bit integer Prod/Max/Min, and integer
// division for uint32/(u)int64 (8/16-bit and int32 divide through double, see Divider).
//
// Why results do not depend on the vector width: every op is written branch-free on one element
// with no cross-element state, the float ops never reassociate or contract, and NaN outputs are
// canonicalized, so the vector body and the scalar tail compute the same bits.
//
// Thread-safety: pure functions over caller memory.
#include "quant/reduce_kernels.hpp"

#include <bit>
#include <cstring>
#include <type_traits>

#include "quant/canonical_nan.hpp"
#include "quant/fp16_f16c.hpp"
#include "quant/half.hpp"

// dst may alias a or b exactly. That creates no dependence between iterations (iteration i reads
// index i before writing it), so we let the compiler drop its runtime overlap check. GCC 12's
// check already accepts exact aliasing (in-place runs measured as fast as 3-buffer runs), but a
// plain range-overlap check would send the in-place case, the most common one, to the scalar
// loop; the pragma keeps that from depending on the compiler.
#if defined(__clang__)
#define QCCL_ELEMENTWISE_LOOP _Pragma("clang loop vectorize(assume_safety)")
#elif defined(__GNUC__)
#define QCCL_ELEMENTWISE_LOOP _Pragma("GCC ivdep")
#else
#define QCCL_ELEMENTWISE_LOOP
#endif

// One out-of-line function per (type, op) loop. Inlined into the big dispatch switch, the loops
// exhaust the inliner's per-function budget, the fp16 conversions stay calls and the loops no
// longer vectorize.
#if defined(__GNUC__)
#define QCCL_KERNEL_NOINLINE __attribute__((noinline))
#else
#define QCCL_KERNEL_NOINLINE
#endif

namespace qccl::quant {
namespace {

// ---- Formats: how an element is stored and in which type it is computed -----------------------

template <typename T>
struct Native {
  using Storage = T;
  using Compute = T;
  static constexpr bool kIsHalf = false;
  static T widen(T x) { return x; }
  static T narrow(T x) { return x; }
};

// The 16-bit float formats compute in float32. fp16 uses half.hpp's converters as they are
// (NaN handling included, it is only a few of their instructions and the outputs are always
// canonical NaNs, which float_to_fp16 maps to the canonical 0x7e00).
struct Fp16 {
  using Storage = uint16_t;
  using Compute = float;
  static constexpr bool kIsHalf = true;
  static constexpr uint16_t kInfBits = 0x7c00;
  static constexpr uint16_t kNaNBits = 0x7e00;
  static float widen(uint16_t x) { return fp16_to_float(x); }
  static uint16_t narrow(float x) { return float_to_fp16(x); }
};

// bf16 skips half.hpp's NaN handling, which is most of the work of its converters (2.5x faster
// loops): a NaN operand, signaling or not, makes the float result NaN and every float op here
// canonicalizes it, and plain round-to-nearest-even maps the canonical float NaN 0x7fc00000 to
// the canonical bf16 NaN 0x7fc0. The tests run every bf16 pattern through every op.
struct Bf16 {
  using Storage = uint16_t;
  using Compute = float;
  static constexpr bool kIsHalf = true;
  static constexpr uint16_t kInfBits = 0x7f80;
  static constexpr uint16_t kNaNBits = 0x7fc0;
  static float widen(uint16_t x) { return std::bit_cast<float>(static_cast<uint32_t>(x) << 16); }
  static uint16_t narrow(float x) {
    const uint32_t bits = std::bit_cast<uint32_t>(x);
    return static_cast<uint16_t>((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
  }
};

// ---- Arithmetic on the compute type ---------------------------------------------------------

template <typename T>
using BitsOf = std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>;

// Replaces any NaN by the canonical one (canonical_nan.hpp; a blend once vectorized).
// fp16/bf16 inherit it through narrow().
template <typename F>
F canonicalize(F x) {
  return x != x ? kCanonicalNaN<F> : x;
}

// Integer Sum/Prod wrap: compute in an unsigned type at least as wide as `unsigned`, because
// uint8/uint16 operands would otherwise promote to int and 65535 * 65535 would overflow it.
template <typename T>
using WrapOf =
    std::conditional_t<(sizeof(T) < sizeof(unsigned)), unsigned, std::make_unsigned_t<T>>;

template <typename T>
T op_add(T x, T y) {
  if constexpr (std::is_floating_point_v<T>) {
    return canonicalize(x + y);
  } else {
    using W = WrapOf<T>;
    // Unsigned -> signed conversion is modular since C++20, so this is the two's-complement wrap.
    return static_cast<T>(static_cast<W>(static_cast<W>(x) + static_cast<W>(y)));
  }
}

template <typename T>
T op_mul(T x, T y) {
  if constexpr (std::is_floating_point_v<T>) {
    return canonicalize(x * y);
  } else {
    using W = WrapOf<T>;
    return static_cast<T>(static_cast<W>(static_cast<W>(x) * static_cast<W>(y)));
  }
}

// IEEE 754-2019 maximum (kMax) / minimum (!kMax) for floats. For equal operands the bitwise
// AND (max) / OR (min) of the encodings picks +0 / -0 out of {+0, -0} and is the identity
// otherwise, so the result never depends on operand order.
template <bool kMax, typename T>
T op_extremum(T x, T y) {
  if constexpr (std::is_floating_point_v<T>) {
    using B = BitsOf<T>;
    // Both operand orders of the plain select (x86 maxps/minps). They agree unless the operands
    // are equal or unordered; for equal operands, combining the encodings resolves +-0.
    const B xy = std::bit_cast<B>(kMax ? (x > y ? x : y) : (x < y ? x : y));
    const B yx = std::bit_cast<B>(kMax ? (y > x ? y : x) : (y < x ? y : x));
    const T ordered = std::bit_cast<T>(kMax ? (xy & yx) : (xy | yx));
    return (x != x) | (y != y) ? kCanonicalNaN<T> : ordered;
  } else {
    return kMax ? (x > y ? x : y) : (x < y ? x : y);
  }
}

// Max/Min of fp16/bf16 directly on the encodings, in 16-bit integer lanes instead of widening
// to float. Same result as in float32: the conversion is exact and monotonic, and mapping the
// sign-magnitude encoding to a two's-complement key (negative: flip the magnitude bits) orders
// -0 (key -1) just below +0 (key 0), which is exactly IEEE maximum/minimum's +-0 rule.
template <typename Fmt, bool kMax>
uint16_t half_extremum(uint16_t x, uint16_t y) {
  const auto sx = static_cast<int16_t>(x);
  const auto sy = static_cast<int16_t>(y);
  const auto kx = static_cast<int16_t>(sx ^ ((sx >> 15) & 0x7fff));
  const auto ky = static_cast<int16_t>(sy ^ ((sy >> 15) & 0x7fff));
  const auto mx = static_cast<int16_t>(x & 0x7fff);
  const auto my = static_cast<int16_t>(y & 0x7fff);
  const uint16_t pick = (kMax ? (kx > ky) : (kx < ky)) ? x : y;  // equal keys: equal encodings
  const bool nan =
      (mx > static_cast<int16_t>(Fmt::kInfBits)) | (my > static_cast<int16_t>(Fmt::kInfBits));
  return nan ? Fmt::kNaNBits : pick;
}

// Division by the (already validated, >= 1) divisor, in the compute type.
//
// Integers that fit in int32 (all 8/16-bit types and int32) divide in double, because SSE2 has
// a vector double division but no integer one. That is exact: s and d (< 2^32) convert exactly;
// if s/d is not an integer it lies at least 1/d away from every integer, while the rounding
// error of the double quotient is at most |s/d| * 2^-53 < 2^32/d * 2^-53 < 1/d, so truncating
// the rounded quotient gives trunc(s/d). uint32 and 64-bit types use integer division.
template <typename T>
constexpr bool kDivideViaDouble = std::is_integral_v<T> &&
                                  (sizeof(T) < 4 || std::is_same_v<T, int32_t>);

template <typename T>
struct Divider {
  using Value = std::conditional_t<
      std::is_floating_point_v<T>, T,
      std::conditional_t<kDivideViaDouble<T>, double,
                         std::conditional_t<std::is_signed_v<T>, int64_t, uint64_t>>>;

  // float32 rounds a divisor above 2^24, as documented in the header.
  explicit Divider(uint32_t divisor) : value(static_cast<Value>(divisor)) {}

  T operator()(T x) const {
    if constexpr (std::is_floating_point_v<T>) {
      return canonicalize(x / value);
    } else if constexpr (kDivideViaDouble<T>) {
      // Float -> int conversion truncates toward zero; |quotient| <= |x| fits in int32 and T.
      return static_cast<T>(static_cast<int32_t>(static_cast<double>(x) / value));
    } else {
      // In 64 bits the division is signed for signed T and truncates toward zero.
      return static_cast<T>(static_cast<Value>(x) / value);
    }
  }

  Value value;
};

// ---- Loops ----------------------------------------------------------------------------------

template <typename Fmt, typename Fn>
QCCL_KERNEL_NOINLINE void binary_loop(void* dst, const void* a, const void* b, size_t count,
                                      Fn fn) {
  using S = typename Fmt::Storage;
  S* out = static_cast<S*>(dst);
  const S* x = static_cast<const S*>(a);
  const S* y = static_cast<const S*>(b);
  QCCL_ELEMENTWISE_LOOP
  for (size_t i = 0; i < count; ++i) {
    out[i] = Fmt::narrow(fn(Fmt::widen(x[i]), Fmt::widen(y[i])));
  }
}

template <typename Fmt, typename Fn>
QCCL_KERNEL_NOINLINE void unary_loop(void* dst, const void* src, size_t count, Fn fn) {
  using S = typename Fmt::Storage;
  S* out = static_cast<S*>(dst);
  const S* x = static_cast<const S*>(src);
  QCCL_ELEMENTWISE_LOOP
  for (size_t i = 0; i < count; ++i) {
    out[i] = Fmt::narrow(fn(Fmt::widen(x[i])));
  }
}

template <typename Fmt>
void reduce_as(ReduceOp op, void* dst, const void* a, const void* b, size_t count) {
  using C = typename Fmt::Compute;
  switch (op) {
    case ReduceOp::kSum:
    case ReduceOp::kAvg:
      binary_loop<Fmt>(dst, a, b, count, [](C x, C y) { return op_add(x, y); });
      return;
    case ReduceOp::kProd:
      binary_loop<Fmt>(dst, a, b, count, [](C x, C y) { return op_mul(x, y); });
      return;
    case ReduceOp::kMax:
      if constexpr (Fmt::kIsHalf) {
        binary_loop<Native<uint16_t>>(dst, a, b, count, [](uint16_t x, uint16_t y) {
          return half_extremum<Fmt, true>(x, y);
        });
      } else {
        binary_loop<Fmt>(dst, a, b, count, [](C x, C y) { return op_extremum<true>(x, y); });
      }
      return;
    case ReduceOp::kMin:
      if constexpr (Fmt::kIsHalf) {
        binary_loop<Native<uint16_t>>(dst, a, b, count, [](uint16_t x, uint16_t y) {
          return half_extremum<Fmt, false>(x, y);
        });
      } else {
        binary_loop<Fmt>(dst, a, b, count, [](C x, C y) { return op_extremum<false>(x, y); });
      }
      return;
    case ReduceOp::kNumOps:
      return;
  }
}

template <typename Fmt>
void reduce_and_divide_as(void* dst, const void* a, const void* b, size_t count, uint32_t divisor) {
  using C = typename Fmt::Compute;
  const Divider<C> div(divisor);
  // op_add canonicalizes before the division; harmless, NaN / d is NaN and is canonicalized again.
  binary_loop<Fmt>(dst, a, b, count, [div](C x, C y) { return div(op_add(x, y)); });
}

template <typename Fmt>
void divide_as(void* dst, const void* src, size_t count, uint32_t divisor) {
  using C = typename Fmt::Compute;
  const Divider<C> div(divisor);
  unary_loop<Fmt>(dst, src, count, [div](C x) { return div(x); });
}

// Calls fn.template operator()<Fmt>() with the Format of `dtype`; keeps the three entry points
// from each repeating the 12-way switch.
template <typename Visitor>
void visit_format(DataType dtype, Visitor&& visit) {
  switch (dtype) {
    case DataType::kUint8:
      visit.template operator()<Native<uint8_t>>();
      return;
    case DataType::kInt8:
      visit.template operator()<Native<int8_t>>();
      return;
    case DataType::kUint16:
      visit.template operator()<Native<uint16_t>>();
      return;
    case DataType::kInt16:
      visit.template operator()<Native<int16_t>>();
      return;
    case DataType::kUint32:
      visit.template operator()<Native<uint32_t>>();
      return;
    case DataType::kInt32:
      visit.template operator()<Native<int32_t>>();
      return;
    case DataType::kUint64:
      visit.template operator()<Native<uint64_t>>();
      return;
    case DataType::kInt64:
      visit.template operator()<Native<int64_t>>();
      return;
    case DataType::kFloat16:
      visit.template operator()<Fp16>();
      return;
    case DataType::kBFloat16:
      visit.template operator()<Bf16>();
      return;
    case DataType::kFloat32:
      visit.template operator()<Native<float>>();
      return;
    case DataType::kFloat64:
      visit.template operator()<Native<double>>();
      return;
    case DataType::kNumTypes:
      return;
  }
}

}  // namespace

void reduce(DataType dtype, ReduceOp op, void* dst, const void* a, const void* b, size_t count) {
  if (count == 0) return;  // empty spans may carry null pointers
  if (dtype == DataType::kFloat16) {
    // Same bytes as the portable loop (fp16_f16c.hpp), about 10x faster where F16C exists.
    size_t done = fp16_binary_f16c(op, static_cast<uint16_t*>(dst),
                                   static_cast<const uint16_t*>(a),
                                   static_cast<const uint16_t*>(b), count);
    dst = static_cast<uint16_t*>(dst) + done;
    a = static_cast<const uint16_t*>(a) + done;
    b = static_cast<const uint16_t*>(b) + done;
    count -= done;
    if (count == 0) return;
  }
  visit_format(dtype, [&]<typename Fmt>() { reduce_as<Fmt>(op, dst, a, b, count); });
}

void reduce_and_divide(DataType dtype, void* dst, const void* a, const void* b, size_t count,
                       uint32_t divisor) {
  if (count == 0) return;
  if (divisor == 0) divisor = 1;
  visit_format(dtype,
               [&]<typename Fmt>() { reduce_and_divide_as<Fmt>(dst, a, b, count, divisor); });
}

void divide(DataType dtype, void* dst, const void* src, size_t count, uint32_t divisor) {
  if (count == 0) return;
  if (divisor == 0) divisor = 1;
  if (divisor == 1) {
    // x / 1 == x for every type, except that float NaNs must still come out canonical.
    if (!is_floating(dtype)) {
      if (dst != src) std::memcpy(dst, src, count * dtype_size(dtype));
      return;
    }
  }
  visit_format(dtype, [&]<typename Fmt>() { divide_as<Fmt>(dst, src, count, divisor); });
}

}  // namespace qccl::quant
