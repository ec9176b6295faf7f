// Quantization wire codecs (quantize.hpp): validation, sizes, the per-block parameters, the
// portable kernel build and the run-time choice between it and the AVX2 build.
//
// Numeric contract, per block of up to kQuantBlockElems elements, in the compute type C
// (double for fp64 sources, float otherwise; fp16/bf16 are widened to float exactly):
//
//   Range    lo/hi are the block's minimum and maximum, each `+ C(0)` so that -0 reads as +0
//            whichever zero the vector lanes met first. A NaN or an infinity anywhere makes the
//            block non-finite.
//   Scale    scale = (hi/2 - lo/2) / (L/2), L = qmax - qmin (the halves keep a range as wide as
//            -FLT_MAX..FLT_MAX from overflowing); when scale is 0 or 1/scale is not finite
//            (a constant block, or a range of a few subnormals) scale = inv = 0, otherwise
//            inv = 1/scale.
//   MinMax   meta (lo, scale); code = qmin + clamp(rne((x - lo) * inv), 0, L);
//            decoded = lo + C(code - qmin) * scale, rounded twice (never fused).
//            Non-finite block: meta (NaN, 0), every code qmin. Scale 0: every code qmin,
//            decodes to lo exactly.
//   ZeroPointScale  lo = min(lo, 0), hi = max(hi, 0); scale and inv as above;
//            zp = clamp(qmin - rne(lo * inv), qmin, qmax), travelling as a C holding that
//            integer; code = clamp(rne(x * inv) + zp, qmin, qmax); decoded = C(code - zp) *
//            scale, so 0 decodes to exactly 0. Non-finite block: meta (NaN, 0), every code
//            clamp(0, qmin, qmax). Scale 0: zp = 0, the same codes, decodes to 0.
//   Overflow The formulas above are used exactly as written wherever they are finite. In a block
//            wider than the largest finite C (hi - lo overflows; only possible for lo < 0 < hi
//            with values near +-max) MinMax's x - lo and C(code - qmin) * scale can overflow,
//            which as written would give every x above lo + max the top code and decode the
//            upper codes to +inf. There, and only there, the same values are computed on halves,
//            where the halving is exact: t = ((x/2 - lo/2) * inv) * 2 and decoded =
//            (lo/2 + C(code - qmin) * (scale/2)) * 2. Finally a decoded value of a finite block
//            saturates to +-(the source type's largest finite value) instead of rounding past
//            it to +-inf: the top code of a block whose maximum is that value can land just
//            above it, and ZeroPointScale's grid reaches half a step beyond lo or hi (the zero
//            point is rounded), e.g. -65504 in fp16 decodes from -65760 before saturation.
//   rne      round to nearest, ties to even.
//   Decode   the C result is narrowed once to the source type (round to nearest even, NaN ->
//            the canonical NaN: fp16 0x7e00, bf16 0x7fc0, fp32 0x7fc00000,
//            fp64 0x7ff8000000000000).
//   Down-casts  fp32 -> bf16 and fp32 -> fp16 round to nearest even (as half.hpp), fp64 -> fp32
//            is the C++ conversion (also nearest even); NaN becomes the canonical NaN of the wire
//            type before rounding, so no NaN payload can round up into an infinity.
//            fp64 -> fp16/bf16 goes through fp32: two roundings, which can differ from a direct
//            rounding when the first lands exactly on a 16-bit halfway point (e.g. a double just
//            above a bf16 tie). We accept that: it is what every framework's fp64 -> fp32 ->
//            16-bit path does, and the error stays within one 16-bit ulp.
//            Decoding widens exactly (to fp32, then to fp64 for fp64 sources).
//
// Error bounds, per element (before the final narrowing to fp16/bf16, which adds half a 16-bit
// ulp): MinMax |decoded - x| <= scale/2 plus a few ulps of max(|lo|, |hi|). ZeroPointScale
// the same scale/2 (what the tests check): rounding the zero point shifts the whole grid by
// less than half a step, so the clamped top code still decodes within half a step of hi.
//
// Thread-safety: pure functions over caller memory, plus the force-portable switch (an atomic).
#include "quant/quantize.hpp"

#include <algorithm>
#include <atomic>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <string_view>
#include <type_traits>

#include "quant/canonical_nan.hpp"
#include "quant/half.hpp"
#include "quant/quantize_isa.hpp"
#include "quant/reduce_kernels.hpp"

// The portable kernel build.
#define QCCL_QUANT_ISA_NAMESPACE portable
#define QCCL_QUANT_TARGET
#define QCCL_QUANT_F16C 0
#include "quant/quantize_kernels.hpp"
#undef QCCL_QUANT_ISA_NAMESPACE
#undef QCCL_QUANT_TARGET
#undef QCCL_QUANT_F16C

namespace qccl::quant {
namespace {

std::atomic<bool> g_force_portable{false};

bool is_code_type(DataType t) {
  return t == DataType::kUint8 || t == DataType::kInt8 || t == DataType::kUint16 ||
         t == DataType::kInt16;
}

template <typename C>
BlockParams<C> params_for(QuantAlgorithm algorithm, CodeRange q, BlockRange<C> r) {
  BlockParams<C> p{};
  if (!r.finite) {
    p.meta[0] = kCanonicalNaN<C>;  // MinMax lo / ZeroPointScale scale
    p.meta[1] = 0;
    p.finite = false;
    p.fill = algorithm == QuantAlgorithm::kMinMax ? q.qmin : std::clamp(0, q.qmin, q.qmax);
    return p;
  }
  C lo = r.lo;
  C hi = r.hi;
  if (algorithm == QuantAlgorithm::kZeroPointScale) {
    lo = lo < 0 ? lo : C(0);
    hi = hi > 0 ? hi : C(0);
  }
  const C span = static_cast<C>(q.qmax - q.qmin);
  C scale = (hi / 2 - lo / 2) / (span / 2);
  C inv = 0;
  if (scale != 0 && std::isfinite(C(1) / scale)) {
    inv = C(1) / scale;
  } else {
    scale = 0;
  }
  p.finite = true;
  p.inv = inv;
  if (algorithm == QuantAlgorithm::kMinMax) {
    p.meta[0] = lo;
    p.meta[1] = scale;
    p.lo = lo;
    // Rounding is monotonic: when hi - lo is finite so is every x - lo of the block.
    p.wide = !std::isfinite(hi - lo);
  } else {
    // |lo * inv| <= about L, so the rounded value fits an int32 comfortably.
    const auto zp = static_cast<int32_t>(q.qmin - std::nearbyint(lo * inv));
    p.zp = scale == 0 ? 0 : std::clamp(zp, q.qmin, q.qmax);
    p.meta[0] = scale;
    p.meta[1] = static_cast<C>(p.zp);
  }
  return p;
}

// |decoded| <= |base| + steps, up to a few roundings of C, which the margin covers (2^-17
// relative for float, 2^-46 for double). Computed on halves so that it cannot overflow for any
// meta an encoder writes; NaN or inf anywhere makes it false.
template <typename C>
bool within(C base, C steps, C limit) {
  constexpr C kMargin = C(1) - C(64) * std::numeric_limits<C>::epsilon();
  return std::fabs(base) * C(0.5) + steps * C(0.5) <= limit * C(0.5) * kMargin;
}

template <typename C>
bool in_range_for(QuantAlgorithm algorithm, CodeRange q, C m0, C m1, C limit) {
  if (algorithm == QuantAlgorithm::kMinMax) {  // lo + [0, L] * scale
    return within(m0, static_cast<C>(q.qmax - q.qmin) * std::fabs(m1), limit);
  }
  // ([qmin, qmax] - zp) * scale
  const C reach = std::max(std::fabs(static_cast<C>(q.qmin) - m1),
                           std::fabs(static_cast<C>(q.qmax) - m1));
  return std::isfinite(reach) && within(C(0), reach * std::fabs(m0), limit);
}

bool use_avx2() {
  return !g_force_portable.load(std::memory_order_relaxed) && avx2::supported();
}

void encode_blocks(const WireCodec& c, const void* src, size_t count, uint8_t* meta,
                   uint8_t* codes, void* decoded) {
  if (use_avx2()) {
    avx2::encode_blocks(c, src, count, meta, codes, decoded);
  } else {
    portable::encode_blocks(c, src, count, meta, codes, decoded);
  }
}

void decode_blocks(const WireCodec& c, const uint8_t* meta, const uint8_t* codes, size_t count,
                   void* dst) {
  if (use_avx2()) {
    avx2::decode_blocks(c, meta, codes, count, dst);
  } else {
    portable::decode_blocks(c, meta, codes, count, dst);
  }
}

size_t block_count(size_t count) { return (count + kQuantBlockElems - 1) / kQuantBlockElems; }

}  // namespace

BlockParams<float> block_params(QuantAlgorithm algorithm, CodeRange q, BlockRange<float> r) {
  return params_for(algorithm, q, r);
}

BlockParams<double> block_params(QuantAlgorithm algorithm, CodeRange q, BlockRange<double> r) {
  return params_for(algorithm, q, r);
}

bool decode_in_range(QuantAlgorithm algorithm, CodeRange q, float m0, float m1, float limit) {
  return in_range_for(algorithm, q, m0, m1, limit);
}

bool decode_in_range(QuantAlgorithm algorithm, CodeRange q, double m0, double m1,
                     double limit) {
  return in_range_for(algorithm, q, m0, m1, limit);
}

QuantIsa active_quant_isa() { return use_avx2() ? QuantIsa::kAvx2 : QuantIsa::kPortable; }

void force_portable_quant_kernels(bool force) {
  g_force_portable.store(force, std::memory_order_relaxed);
}

Status check_codec(const WireCodec& c) {
  if (!is_valid(c.algorithm)) {
    return make_status(StatusCode::kInvalidArgument,
                       "invalid quantization algorithm {}: expected None, MinMax or "
                       "ZeroPointScale",
                       static_cast<int>(c.algorithm));
  }
  const std::string_view algo = quant_algorithm_name(c.algorithm);
  if (!is_valid(c.source)) {
    return make_status(StatusCode::kInvalidArgument,
                       "quantization {}: invalid source data type {}", algo,
                       static_cast<int>(c.source));
  }
  if (!is_valid(c.wire)) {
    return make_status(StatusCode::kInvalidArgument,
                       "quantization {}: invalid wire data type {}", algo,
                       static_cast<int>(c.wire));
  }
  const std::string_view from = dtype_name(c.source);
  const std::string_view to = dtype_name(c.wire);
  if (c.algorithm == QuantAlgorithm::kNone) {
    if (c.wire == c.source) return Status::ok();
    const bool narrower = is_floating(c.source) && is_floating(c.wire) &&
                          dtype_size(c.wire) < dtype_size(c.source);
    if (narrower) return Status::ok();
    return make_status(StatusCode::kInvalidArgument,
                       "quantization None from {} to {} is not supported: without an algorithm "
                       "the wire type must be the source type or a narrower floating type "
                       "(float64 -> float32, float16 or bfloat16; float32 -> float16 or "
                       "bfloat16)",
                       from, to);
  }
  if (!is_floating(c.source)) {
    return make_status(StatusCode::kInvalidArgument,
                       "quantization {} from {} is not supported: the source must be float32, "
                       "float64, float16 or bfloat16",
                       algo, from);
  }
  if (!is_code_type(c.wire)) {
    return make_status(StatusCode::kInvalidArgument,
                       "quantization {} to {} is not supported: the wire type must be uint8, "
                       "int8, uint16 or int16",
                       algo, to);
  }
  return Status::ok();
}

size_t meta_bytes(const WireCodec& c) {
  if (c.algorithm != QuantAlgorithm::kMinMax && c.algorithm != QuantAlgorithm::kZeroPointScale) {
    return 0;
  }
  return 2 * (c.source == DataType::kFloat64 ? sizeof(double) : sizeof(float));
}

size_t encoded_bytes(const WireCodec& c, size_t count) {
  return count * dtype_size(c.wire) + block_count(count) * meta_bytes(c);
}

void encode(const WireCodec& c, const void* src, size_t count, uint8_t* out, void* decoded) {
  if (count == 0) return;
  if (c.identity()) {
    // The ring sends identity runs as they are; this is here for completeness.
    const size_t bytes = count * dtype_size(c.source);
    std::memcpy(out, src, bytes);
    if (decoded != nullptr && decoded != src) std::memcpy(decoded, src, bytes);
    return;
  }
  encode_blocks(c, src, count, out, out + block_count(count) * meta_bytes(c), decoded);
}

void decode(const WireCodec& c, const uint8_t* in, size_t count, void* dst) {
  if (count == 0) return;
  if (c.identity()) {
    std::memcpy(dst, in, count * dtype_size(c.source));
    return;
  }
  decode_blocks(c, in, in + block_count(count) * meta_bytes(c), count, dst);
}

void decode_reduce(const WireCodec& c, ReduceOp op, void* dst, const void* own, const uint8_t* in,
                   size_t count, uint32_t divisor) {
  if (count == 0) return;
  // One block at a time through a cache-resident temporary, then the ordinary reduction: the
  // same bytes as decode() + reduce(), without a second pass over memory.
  alignas(64) uint8_t tmp[kQuantBlockElems * sizeof(double)];
  const size_t src_bytes = dtype_size(c.source);
  const size_t code_bytes = dtype_size(c.wire);
  const size_t meta = meta_bytes(c);
  const uint8_t* codes = in + block_count(count) * meta;
  for (size_t first = 0; first < count; first += kQuantBlockElems) {
    const size_t n = std::min(kQuantBlockElems, count - first);
    const uint8_t* block_codes = codes + first * code_bytes;
    if (c.identity()) {
      std::memcpy(tmp, block_codes, n * src_bytes);
    } else {
      decode_blocks(c, in + (first / kQuantBlockElems) * meta, block_codes, n, tmp);
    }
    void* block_dst = static_cast<uint8_t*>(dst) + first * src_bytes;
    const void* block_own = static_cast<const uint8_t*>(own) + first * src_bytes;
    if (divisor > 1) {
      reduce_and_divide(c.source, block_dst, block_own, tmp, n, divisor);
    } else {
      reduce(c.source, op, block_dst, block_own, tmp, n);
    }
  }
}

}  // namespace qccl::quant
