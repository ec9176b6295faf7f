// The loops of the quantization codecs (quantize.hpp), written once and compiled once per
// instruction set: quantize.cpp includes this file for the portable build (x86-64 baseline,
// SSE2), quantize_avx2.cpp for AVX2 + F16C. See quantize_isa.hpp for why, quantize.cpp for the
// numeric contract in full.
//
// The including file defines, before including it (no include guard on purpose):
//   QCCL_QUANT_ISA_NAMESPACE  the namespace of this build inside qccl::quant (portable, avx2)
//   QCCL_QUANT_TARGET         the function attribute selecting the instruction set, e.g.
//                             __attribute__((target("avx2,f16c"))), or nothing
//   QCCL_QUANT_F16C           1 to convert fp16 with F16C intrinsics (needs <immintrin.h>)
// and includes <algorithm>, <bit>, <cmath>, <cstring>, <limits>, <type_traits>, quant/half.hpp
// and quant/quantize_isa.hpp first.
//
// Why each build gives the same bytes: every loop computes each element independently with
// plain IEEE operations in a fixed type (no FMA: the files build with -ffp-contract=off; no
// reassociation), NaNs are replaced by the canonical NaN, the block minimum and maximum are
// taken on integer keys (exact, so the order the vector lanes see the elements in cannot
// matter), and the per-block parameters come from scalar code shared by both builds
// (block_params in quantize.cpp). Rounding to an integer is the magic-number addition
// (t + 1.5 * 2^23 in float, 1.5 * 2^52 in double, then subtracting the bit patterns), which is
// round-to-nearest-even for |t| <= 2^22 in either type; t is clamped to [-L, L] first, so it is
// never NaN, infinite or out of range.
//
// The overflow handling near the largest finite value (quantize.cpp, "Overflow") lives in
// separate instantiations (kWide, kCareful) that a block only takes when the scalar per-block
// code says it may need them; every other block runs the plain loops, which then give the same
// bits.
//
// One noinline function per loop: inlined into the dispatch code, the loops exceed the
// inliner's budget and stop vectorizing (see reduce_kernels.cpp). A loop's output never
// overlaps its input (the wire buffer and the source-side buffers are distinct, and `decoded`
// is written from the codes), so QCCL_QUANT_LOOP lets the vectorizer skip overlap checks.
#if !defined(QCCL_QUANT_ISA_NAMESPACE) || !defined(QCCL_QUANT_TARGET) || \
    !defined(QCCL_QUANT_F16C)
#error "define QCCL_QUANT_ISA_NAMESPACE, QCCL_QUANT_TARGET and QCCL_QUANT_F16C first"
#endif

#include "quant/canonical_nan.hpp"

// The code loops take their clamp bounds as run-time arguments and must not be specialized
// for them (noipa: no inlining, no constant-propagating clones). With constant bounds GCC 12
// notices that a clamped element's code is a constant and rewrites each clamp as compare masks
// applied after the rounding, 2.5x slower than the minps/maxps it emits otherwise.
#if defined(__clang__)
#define QCCL_QUANT_KERNEL __attribute__((noinline)) QCCL_QUANT_TARGET
#define QCCL_QUANT_OPAQUE_KERNEL __attribute__((noinline)) QCCL_QUANT_TARGET
#define QCCL_QUANT_INLINE inline __attribute__((always_inline)) QCCL_QUANT_TARGET
#define QCCL_QUANT_LOOP _Pragma("clang loop vectorize(assume_safety)")
#elif defined(__GNUC__)
#define QCCL_QUANT_KERNEL __attribute__((noinline)) QCCL_QUANT_TARGET
#define QCCL_QUANT_OPAQUE_KERNEL __attribute__((noipa)) QCCL_QUANT_TARGET
#define QCCL_QUANT_INLINE inline __attribute__((always_inline)) QCCL_QUANT_TARGET
#define QCCL_QUANT_LOOP _Pragma("GCC ivdep")
#else
#define QCCL_QUANT_KERNEL QCCL_QUANT_TARGET
#define QCCL_QUANT_OPAQUE_KERNEL QCCL_QUANT_TARGET
#define QCCL_QUANT_INLINE inline QCCL_QUANT_TARGET
#define QCCL_QUANT_LOOP
#endif

namespace qccl::quant::QCCL_QUANT_ISA_NAMESPACE {
namespace {

// ---- Scalar helpers -------------------------------------------------------------------------

// Signed integer of a float type's width: the bit patterns, and the ordering keys.
template <typename C>
using KeyOf = std::conditional_t<sizeof(C) == 4, int32_t, int64_t>;

template <typename C>
constexpr KeyOf<C> kMagnitudeMask = static_cast<KeyOf<C>>(sizeof(C) == 4 ? 0x7fffffffll
                                                                         : 0x7fffffffffffffffll);

// 1.5 * 2^23 (float) / 1.5 * 2^52 (double): t + kMagic has its units digit in the last
// mantissa bit for |t| <= 2^22, so the addition rounds t to an integer, ties to even.
template <typename C>
constexpr C kMagic = sizeof(C) == 4 ? C(12582912.0) : C(6755399441055744.0);

template <typename C>
QCCL_QUANT_INLINE C canonicalize(C x) {
  return x != x ? kCanonicalNaN<C> : x;
}

// Sign-magnitude encoding -> two's-complement key ordered like the values (-0 just below +0,
// NaNs beyond the infinities). The map is its own inverse.
template <typename C>
QCCL_QUANT_INLINE KeyOf<C> order_key(KeyOf<C> bits) {
  return bits ^ ((bits >> (8 * sizeof(C) - 1)) & kMagnitudeMask<C>);
}

// rne(t) for |t| <= 2^22 (see kMagic).
template <typename C>
QCCL_QUANT_INLINE int32_t round_small(C t) {
  return static_cast<int32_t>(std::bit_cast<KeyOf<C>>(t + kMagic<C>) -
                              std::bit_cast<KeyOf<C>>(kMagic<C>));
}

template <typename Code>
QCCL_QUANT_INLINE void store_code(uint8_t* out, size_t i, int32_t v) {
  const Code c = static_cast<Code>(v);
  std::memcpy(out + i * sizeof(Code), &c, sizeof(Code));
}

template <typename Code>
QCCL_QUANT_INLINE int32_t load_code(const uint8_t* in, size_t i) {
  Code c;
  std::memcpy(&c, in + i * sizeof(Code), sizeof(Code));
  return c;
}

template <typename Code>
constexpr CodeRange kRangeOf = {std::is_signed_v<Code> ? -(1 << (8 * sizeof(Code) - 1)) : 0,
                                std::is_signed_v<Code> ? (1 << (8 * sizeof(Code) - 1)) - 1
                                                       : (1 << (8 * sizeof(Code))) - 1};

// ---- Block statistics -----------------------------------------------------------------------

// Minimum and maximum of x[0..n) and whether all are finite, in one pass over integer keys:
// a NaN or infinity shows up as a key at or beyond an infinity's key. REQUIRES: n >= 1.
template <typename C>
QCCL_QUANT_KERNEL BlockRange<C> block_range(const C* x, size_t n) {
  using K = KeyOf<C>;
  K lo = std::numeric_limits<K>::max();
  K hi = std::numeric_limits<K>::min();
  for (size_t i = 0; i < n; ++i) {
    const K k = order_key<C>(std::bit_cast<K>(x[i]));
    lo = k < lo ? k : lo;
    hi = k > hi ? k : hi;
  }
  const K pos_inf = std::bit_cast<K>(std::numeric_limits<C>::infinity());
  const K neg_inf = order_key<C>(std::bit_cast<K>(-std::numeric_limits<C>::infinity()));
  // `+ C(0)` turns -0 into +0.
  return {std::bit_cast<C>(order_key<C>(lo)) + C(0), std::bit_cast<C>(order_key<C>(hi)) + C(0),
          lo > neg_inf && hi < pos_inf};
}

// ---- Integer codes --------------------------------------------------------------------------

// The clamp bounds of a code type, passed to the code loops at run time (see
// QCCL_QUANT_OPAQUE_KERNEL for why).
template <typename C>
struct ClampBounds {
  C span;      // L
  C neg_span;  // -L
  C zero;
  int32_t qmin;
  int32_t qmax;
};

template <typename C, typename Code>
QCCL_QUANT_INLINE ClampBounds<C> clamp_bounds() {
  constexpr CodeRange q = kRangeOf<Code>;
  return {C(q.qmax - q.qmin), -C(q.qmax - q.qmin), C(0), q.qmin, q.qmax};
}

// code = qmin + clamp(rne((x - lo) * inv), 0, L). The clamps are written NaN-free
// (`t < L ? t : L` is minps). kWide: a block wider than the largest finite value, where x - lo
// can overflow; those elements use ((x/2 - lo/2) * inv) * 2 instead (the halving is exact and
// nothing overflows), the others get exactly the formula's t. A separate instantiation because
// the extra select costs a quarter of the loop's speed and only such blocks need it.
template <typename C, typename Code, bool kWide>
QCCL_QUANT_OPAQUE_KERNEL void minmax_encode(const C* x, size_t n, C lo, C inv,
                                            const ClampBounds<C>& b, uint8_t* out) {
  constexpr C max = std::numeric_limits<C>::max();
  const C span = b.span;
  const C zero = b.zero;
  const int32_t qmin = b.qmin;
  const C half_lo = lo * C(0.5);
  QCCL_QUANT_LOOP
  for (size_t i = 0; i < n; ++i) {
    C t = (x[i] - lo) * inv;
    if constexpr (kWide) {
      const C t_wide = ((x[i] * C(0.5) - half_lo) * inv) * C(2);
      t = t <= max ? t : t_wide;
    }
    t = t < span ? t : span;
    t = t > zero ? t : zero;
    store_code<Code>(out, i, round_small(t) + qmin);
  }
}

// code = clamp(rne(x * inv) + zp, qmin, qmax). |x * inv| is at most about L; clamping t to
// [-L, L] first changes nothing (zp is within [qmin, qmax]) but keeps the rounding in range.
template <typename C, typename Code>
QCCL_QUANT_OPAQUE_KERNEL void zps_encode(const C* x, size_t n, C inv, int32_t zp,
                                         const ClampBounds<C>& b, uint8_t* out) {
  const C span = b.span;
  const C neg_span = b.neg_span;
  const int32_t qmin = b.qmin;
  const int32_t qmax = b.qmax;
  QCCL_QUANT_LOOP
  for (size_t i = 0; i < n; ++i) {
    C t = x[i] * inv;
    t = t < span ? t : span;
    t = t > neg_span ? t : neg_span;
    int32_t v = round_small(t) + zp;
    v = v < qmax ? v : qmax;
    v = v > qmin ? v : qmin;
    store_code<Code>(out, i, v);
  }
}

template <typename Code>
QCCL_QUANT_KERNEL void fill_codes(uint8_t* out, size_t n, int32_t v) {
  for (size_t i = 0; i < n; ++i) store_code<Code>(out, i, v);
}

// Decoded values of a finite block stay finite in the source type: a value rounded just past
// its largest finite value `limit` (the top code of a block whose maximum is near it, or half a
// step beyond the range after ZeroPointScale's zero-point rounding) saturates there instead of
// becoming inf. NaN passes through.
template <typename C>
QCCL_QUANT_INLINE C saturate(C y, C limit) {
  y = limit < y ? limit : y;       // minps(limit, y): y when NaN
  return y < -limit ? -limit : y;  // maxps(-limit, y)
}

// decoded = lo + C(code - qmin) * scale: two roundings. kCareful (a block whose results may
// leave [-limit, limit], see decode_in_range(), or a malformed meta): where that overflows, (lo/2
// + C(code - qmin) * (scale/2)) * 2 instead, then saturate(). Without kCareful every result is
// finite and within the limit, so both instantiations give the same bits there.
template <typename C, typename Code, bool kCareful>
QCCL_QUANT_KERNEL void minmax_decode(const uint8_t* in, size_t n, C lo, C scale, C limit,
                                     C* out) {
  constexpr CodeRange q = kRangeOf<Code>;
  constexpr C max = std::numeric_limits<C>::max();
  const C half_lo = lo * C(0.5);
  const C half_scale = scale * C(0.5);
  QCCL_QUANT_LOOP
  for (size_t i = 0; i < n; ++i) {
    const C k = static_cast<C>(load_code<Code>(in, i) - q.qmin);
    C y = lo + k * scale;
    if constexpr (kCareful) {
      const C y_wide = (half_lo + k * half_scale) * C(2);
      y = saturate(std::fabs(y) <= max ? y : y_wide, limit);
    }
    out[i] = canonicalize(y);
  }
}

// decoded = (C(code) - zp) * scale, which is C(code - zp) * scale exactly for any zero point an
// encoder wrote (both are integers of at most 17 bits), and needs no float -> int conversion of
// a value read from the wire. kCareful as for minmax_decode.
template <typename C, typename Code, bool kCareful>
QCCL_QUANT_KERNEL void zps_decode(const uint8_t* in, size_t n, C zp, C scale, C limit,
                                  C* out) {
  QCCL_QUANT_LOOP
  for (size_t i = 0; i < n; ++i) {
    C y = (static_cast<C>(load_code<Code>(in, i)) - zp) * scale;
    if constexpr (kCareful) y = saturate(y, limit);
    out[i] = canonicalize(y);
  }
}

// ---- Floating conversions -------------------------------------------------------------------
// Narrowing rounds to nearest even and makes every NaN the canonical one (canonicalizing first
// also keeps a NaN whose payload would round up from becoming inf); widening is exact.

QCCL_QUANT_KERNEL void narrow_f32_to_bf16(const float* x, size_t n, uint8_t* out) {
  QCCL_QUANT_LOOP
  for (size_t i = 0; i < n; ++i) {
    const uint32_t bits = std::bit_cast<uint32_t>(canonicalize(x[i]));
    const auto h = static_cast<uint16_t>((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
    std::memcpy(out + 2 * i, &h, 2);
  }
}

QCCL_QUANT_KERNEL void narrow_f32_to_f16(const float* x, size_t n, uint8_t* out) {
  size_t i = 0;
#if QCCL_QUANT_F16C
  const __m256 nan = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fc00000));
  for (; i + 8 <= n; i += 8) {
    __m256 v = _mm256_loadu_ps(x + i);
    v = _mm256_blendv_ps(v, nan, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 2 * i),
                     _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  }
#endif
  QCCL_QUANT_LOOP
  for (; i < n; ++i) {
    const uint16_t h = float_to_fp16(canonicalize(x[i]));
    std::memcpy(out + 2 * i, &h, 2);
  }
}

QCCL_QUANT_KERNEL void narrow_f64_to_f32(const double* x, size_t n, uint8_t* out) {
  QCCL_QUANT_LOOP
  for (size_t i = 0; i < n; ++i) {
    const float f = canonicalize(static_cast<float>(x[i]));
    std::memcpy(out + 4 * i, &f, 4);
  }
}

QCCL_QUANT_KERNEL void widen_bf16(const uint8_t* in, size_t n, float* out) {
  QCCL_QUANT_LOOP
  for (size_t i = 0; i < n; ++i) {
    uint16_t h;
    std::memcpy(&h, in + 2 * i, 2);
    out[i] = canonicalize(std::bit_cast<float>(static_cast<uint32_t>(h) << 16));
  }
}

QCCL_QUANT_KERNEL void widen_f16(const uint8_t* in, size_t n, float* out) {
  size_t i = 0;
#if QCCL_QUANT_F16C
  const __m256 nan = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fc00000));
  for (; i + 8 <= n; i += 8) {
    __m256 v = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(in + 2 * i)));
    _mm256_storeu_ps(out + i, _mm256_blendv_ps(v, nan, _mm256_cmp_ps(v, v, _CMP_UNORD_Q)));
  }
#endif
  QCCL_QUANT_LOOP
  for (; i < n; ++i) {
    uint16_t h;
    std::memcpy(&h, in + 2 * i, 2);
    out[i] = canonicalize(fp16_to_float(h));
  }
}

QCCL_QUANT_KERNEL void widen_f32_to_f64(const uint8_t* in, size_t n, double* out) {
  QCCL_QUANT_LOOP
  for (size_t i = 0; i < n; ++i) {
    float f;
    std::memcpy(&f, in + 4 * i, 4);
    out[i] = canonicalize(static_cast<double>(f));
  }
}

// ---- Blocks ---------------------------------------------------------------------------------

// The source formats: fp32/fp64 are used in place, fp16/bf16 are widened to a float block
// first and their decoded float block narrowed once at the end.
enum class Src { kF32, kF64, kF16, kBf16 };

template <Src S>
using ComputeOf = std::conditional_t<S == Src::kF64, double, float>;

template <Src S>
constexpr size_t kSrcBytes = S == Src::kF32 ? 4 : S == Src::kF64 ? 8 : 2;

// The largest finite value of the source type, in the compute type.
template <Src S>
constexpr ComputeOf<S> kSrcMax = S == Src::kF16    ? 65504.0f
                                 : S == Src::kBf16 ? std::bit_cast<float>(0x7f7f0000u)
                                                   : std::numeric_limits<ComputeOf<S>>::max();

// Points at the block's values in the compute type: in place, or widened into `tmp`.
template <Src S>
QCCL_QUANT_INLINE const ComputeOf<S>* compute_view(const void* src, size_t n, float* tmp) {
  if constexpr (S == Src::kF16) {
    widen_f16(static_cast<const uint8_t*>(src), n, tmp);
    return tmp;
  } else if constexpr (S == Src::kBf16) {
    widen_bf16(static_cast<const uint8_t*>(src), n, tmp);
    return tmp;
  } else {
    return static_cast<const ComputeOf<S>*>(src);
  }
}

// Where decoded compute values go: straight to dst (fp32/fp64), or to `tmp` and then
// narrowed by finish_decoded().
template <Src S>
QCCL_QUANT_INLINE ComputeOf<S>* decode_target(void* dst, float* tmp) {
  if constexpr (S == Src::kF16 || S == Src::kBf16) {
    return tmp;
  } else {
    return static_cast<ComputeOf<S>*>(dst);
  }
}

template <Src S>
QCCL_QUANT_INLINE void finish_decoded(const float* tmp, size_t n, void* dst) {
  if constexpr (S == Src::kF16) {
    narrow_f32_to_f16(tmp, n, static_cast<uint8_t*>(dst));
  } else if constexpr (S == Src::kBf16) {
    narrow_f32_to_bf16(tmp, n, static_cast<uint8_t*>(dst));
  }
}

template <typename C>
QCCL_QUANT_INLINE void store_meta(uint8_t* meta, C m0, C m1) {
  std::memcpy(meta, &m0, sizeof(C));
  std::memcpy(meta + sizeof(C), &m1, sizeof(C));
}

template <Src S, typename Code>
QCCL_QUANT_INLINE void decode_quant_block(QuantAlgorithm algorithm, const uint8_t* meta,
                                          const uint8_t* codes, size_t n, void* dst,
                                          float* tmp) {
  using C = ComputeOf<S>;
  C m[2];
  std::memcpy(m, meta, sizeof m);
  C* values = decode_target<S>(dst, tmp);
  const bool careful = !decode_in_range(algorithm, kRangeOf<Code>, m[0], m[1], kSrcMax<S>);
  if (algorithm == QuantAlgorithm::kMinMax) {
    if (careful) {
      minmax_decode<C, Code, true>(codes, n, m[0], m[1], kSrcMax<S>, values);
    } else {
      minmax_decode<C, Code, false>(codes, n, m[0], m[1], kSrcMax<S>, values);
    }
  } else if (careful) {
    zps_decode<C, Code, true>(codes, n, m[1], m[0], kSrcMax<S>, values);
  } else {
    zps_decode<C, Code, false>(codes, n, m[1], m[0], kSrcMax<S>, values);
  }
  finish_decoded<S>(tmp, n, dst);
}

template <Src S, typename Code>
QCCL_QUANT_TARGET void encode_quant(QuantAlgorithm algorithm, const void* src, size_t count,
                                    uint8_t* meta, uint8_t* codes, void* decoded) {
  using C = ComputeOf<S>;
  alignas(64) float tmp[kQuantBlockElems];
  for (size_t first = 0; first < count; first += kQuantBlockElems) {
    const size_t n = std::min(kQuantBlockElems, count - first);
    const C* x = compute_view<S>(static_cast<const uint8_t*>(src) + first * kSrcBytes<S>, n, tmp);
    const BlockParams<C> p = block_params(algorithm, kRangeOf<Code>, block_range(x, n));
    store_meta(meta, p.meta[0], p.meta[1]);
    uint8_t* block_codes = codes + first * sizeof(Code);
    const ClampBounds<C> bounds = clamp_bounds<C, Code>();
    if (!p.finite) {
      fill_codes<Code>(block_codes, n, p.fill);
    } else if (algorithm == QuantAlgorithm::kMinMax) {
      if (p.wide) {
        minmax_encode<C, Code, true>(x, n, p.lo, p.inv, bounds, block_codes);
      } else {
        minmax_encode<C, Code, false>(x, n, p.lo, p.inv, bounds, block_codes);
      }
    } else {
      zps_encode<C, Code>(x, n, p.inv, p.zp, bounds, block_codes);
    }
    if (decoded != nullptr) {
      // From the bytes just written, so it is what decode() gives by construction.
      decode_quant_block<S, Code>(algorithm, meta, block_codes, n,
                                  static_cast<uint8_t*>(decoded) + first * kSrcBytes<S>, tmp);
    }
    meta += 2 * sizeof(C);
  }
}

template <Src S, typename Code>
QCCL_QUANT_TARGET void decode_quant(QuantAlgorithm algorithm, const uint8_t* meta,
                                    const uint8_t* codes, size_t count, void* dst) {
  using C = ComputeOf<S>;
  alignas(64) float tmp[kQuantBlockElems];
  for (size_t first = 0; first < count; first += kQuantBlockElems) {
    const size_t n = std::min(kQuantBlockElems, count - first);
    decode_quant_block<S, Code>(algorithm, meta, codes + first * sizeof(Code), n,
                                static_cast<uint8_t*>(dst) + first * kSrcBytes<S>, tmp);
    meta += 2 * sizeof(C);
  }
}

// Down-casts: fp32 -> fp16/bf16, fp64 -> fp32, fp64 -> fp16/bf16 (through fp32), per block so
// that the two-step ones stay in a cache-resident temporary.
QCCL_QUANT_TARGET void narrow_block(DataType source, DataType wire, const void* src, size_t n,
                                    uint8_t* out, float* tmp) {
  const float* f32 = static_cast<const float*>(src);
  if (source == DataType::kFloat64) {
    if (wire == DataType::kFloat32) {
      narrow_f64_to_f32(static_cast<const double*>(src), n, out);
      return;
    }
    narrow_f64_to_f32(static_cast<const double*>(src), n, reinterpret_cast<uint8_t*>(tmp));
    f32 = tmp;
  }
  if (wire == DataType::kFloat16) {
    narrow_f32_to_f16(f32, n, out);
  } else {
    narrow_f32_to_bf16(f32, n, out);
  }
}

QCCL_QUANT_TARGET void widen_block(DataType source, DataType wire, const uint8_t* in, size_t n,
                                   void* dst, float* tmp) {
  if (wire == DataType::kFloat32) {  // source fp64
    widen_f32_to_f64(in, n, static_cast<double*>(dst));
    return;
  }
  float* f32 = source == DataType::kFloat32 ? static_cast<float*>(dst) : tmp;
  if (wire == DataType::kFloat16) {
    widen_f16(in, n, f32);
  } else {
    widen_bf16(in, n, f32);
  }
  if (source == DataType::kFloat64) {
    widen_f32_to_f64(reinterpret_cast<const uint8_t*>(tmp), n, static_cast<double*>(dst));
  }
}

QCCL_QUANT_TARGET void encode_cast(const WireCodec& c, const void* src, size_t count,
                                   uint8_t* out, void* decoded) {
  alignas(64) float tmp[kQuantBlockElems];
  const size_t src_bytes = dtype_size(c.source);
  const size_t wire_bytes = dtype_size(c.wire);
  for (size_t first = 0; first < count; first += kQuantBlockElems) {
    const size_t n = std::min(kQuantBlockElems, count - first);
    uint8_t* block_out = out + first * wire_bytes;
    narrow_block(c.source, c.wire, static_cast<const uint8_t*>(src) + first * src_bytes, n,
                 block_out, tmp);
    if (decoded != nullptr) {
      widen_block(c.source, c.wire, block_out, n,
                  static_cast<uint8_t*>(decoded) + first * src_bytes, tmp);
    }
  }
}

QCCL_QUANT_TARGET void decode_cast(const WireCodec& c, const uint8_t* in, size_t count,
                                   void* dst) {
  alignas(64) float tmp[kQuantBlockElems];
  const size_t src_bytes = dtype_size(c.source);
  const size_t wire_bytes = dtype_size(c.wire);
  for (size_t first = 0; first < count; first += kQuantBlockElems) {
    const size_t n = std::min(kQuantBlockElems, count - first);
    widen_block(c.source, c.wire, in + first * wire_bytes, n,
                static_cast<uint8_t*>(dst) + first * src_bytes, tmp);
  }
}

// Calls visit.template operator()<S, Code>() for the codec's source format and code type.
template <typename Visitor>
QCCL_QUANT_INLINE void visit_quant(const WireCodec& c, Visitor&& visit) {
  auto with_code = [&]<Src S>() {
    switch (c.wire) {
      case DataType::kUint8: visit.template operator()<S, uint8_t>(); return;
      case DataType::kInt8: visit.template operator()<S, int8_t>(); return;
      case DataType::kUint16: visit.template operator()<S, uint16_t>(); return;
      case DataType::kInt16: visit.template operator()<S, int16_t>(); return;
      default: return;
    }
  };
  switch (c.source) {
    case DataType::kFloat32: with_code.template operator()<Src::kF32>(); return;
    case DataType::kFloat64: with_code.template operator()<Src::kF64>(); return;
    case DataType::kFloat16: with_code.template operator()<Src::kF16>(); return;
    case DataType::kBFloat16: with_code.template operator()<Src::kBf16>(); return;
    default: return;
  }
}

}  // namespace

QCCL_QUANT_TARGET void encode_blocks(const WireCodec& c, const void* src, size_t count,
                                     uint8_t* meta, uint8_t* codes, void* decoded) {
  if (c.algorithm == QuantAlgorithm::kNone) {
    encode_cast(c, src, count, codes, decoded);
    return;
  }
  visit_quant(c, [&]<Src S, typename Code>() {
    encode_quant<S, Code>(c.algorithm, src, count, meta, codes, decoded);
  });
}

QCCL_QUANT_TARGET void decode_blocks(const WireCodec& c, const uint8_t* meta,
                                     const uint8_t* codes, size_t count, void* dst) {
  if (c.algorithm == QuantAlgorithm::kNone) {
    decode_cast(c, codes, count, dst);
    return;
  }
  visit_quant(c, [&]<Src S, typename Code>() {
    decode_quant<S, Code>(c.algorithm, meta, codes, count, dst);
  });
}

}  // namespace qccl::quant::QCCL_QUANT_ISA_NAMESPACE

#undef QCCL_QUANT_KERNEL
#undef QCCL_QUANT_OPAQUE_KERNEL
#undef QCCL_QUANT_INLINE
#undef QCCL_QUANT_LOOP
