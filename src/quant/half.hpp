// IEEE 754 binary16 (fp16) and bfloat16 (bf16) <-> float32 conversions, in portable integer and
// float32 arithmetic.
//
// Why not F16C or compiler _Float16: the library's results must be bit-identical on every
// machine, including plain x86-64 baseline builds and other ISAs, so the conversions are spelled
// out here. They are written branch-free (every path computed, then selected) so that loops over
// them auto-vectorize with baseline SSE2.
//
// Contract (all four functions):
//   - 16 -> 32 is exact (every fp16/bf16 value, subnormals included, is a float32).
//   - 32 -> 16 rounds to nearest, ties to even; finite values that round beyond the largest
//     finite 16-bit value become +-inf; subnormal results are produced exactly (no flush).
//   - NaN stays NaN in both directions, keeps its sign and the top bits of its payload, and always
//     comes out quiet (a signaling NaN gets its quiet bit set, as hardware converters do).
//   - Only the two fp16 subnormal paths use the FPU, on operands and results that are normal
//     float32 numbers (or a float32 subnormal that rounds to zero either way), so the results do
//     not change under FTZ/DAZ. They do assume the default round-to-nearest mode, as does all
//     float arithmetic in qccl.
//
// Thread-safety: pure functions.
#pragma once

#include <bit>
#include <cstdint>

namespace qccl::quant {

namespace half_detail {

inline uint32_t select_u32(bool cond, uint32_t if_true, uint32_t if_false) {
  // Mask arithmetic instead of ?: so the vectorizer sees a blend, never a branch.
  const uint32_t mask = 0u - static_cast<uint32_t>(cond);
  return (if_true & mask) | (if_false & ~mask);
}

}  // namespace half_detail

// fp16 bits -> float32, exact.
inline float fp16_to_float(uint16_t h) {
  using half_detail::select_u32;
  const uint32_t bits = h;
  const uint32_t sign = (bits & 0x8000u) << 16;
  // Exponent and mantissa moved to float32 positions; rebias 15 -> 127.
  const uint32_t shifted = (bits & 0x7fffu) << 13;
  const uint32_t exp = shifted & 0x0f800000u;
  const uint32_t normal = shifted + 0x38000000u;  // (127 - 15) << 23
  // Inf/NaN: exponent 31 must become 255, i.e. another (128 - 16) << 23; quiet any NaN.
  const bool is_nan = (bits & 0x7fffu) > 0x7c00u;
  const uint32_t inf_nan = (normal + 0x38000000u) | select_u32(is_nan, 0x00400000u, 0);
  // Subnormal m * 2^-24: build the float 2^-14 * (1 + m / 1024) and subtract 2^-14. Both are
  // normal float32 numbers and the difference is exact, so neither rounding nor FTZ can bite.
  const float sub = std::bit_cast<float>(normal + 0x00800000u) - std::bit_cast<float>(0x38800000u);
  uint32_t out = select_u32(exp == 0x0f800000u, inf_nan, normal);
  out = select_u32(exp == 0, std::bit_cast<uint32_t>(sub), out);
  return std::bit_cast<float>(out | sign);
}

// float32 -> fp16 bits, round to nearest even.
inline uint16_t float_to_fp16(float f) {
  using half_detail::select_u32;
  const uint32_t bits = std::bit_cast<uint32_t>(f);
  const uint32_t sign = (bits & 0x80000000u) >> 16;
  const uint32_t mag = bits & 0x7fffffffu;

  // Normal fp16 result: rebias, then round the 13 dropped bits to nearest even by adding
  // 0xfff + (lowest kept bit); a carry out of the mantissa correctly bumps the exponent, all the
  // way to inf (0x7c00) for values >= 65520.
  const uint32_t odd = (mag >> 13) & 1u;
  const uint32_t normal = (mag - 0x38000000u + 0xfffu + odd) >> 13;  // (127 - 15) << 23

  // Subnormal or zero fp16 result (|f| < 2^-14): adding 0.5 (exponent 126) aligns the float's
  // mantissa so that its last bit has weight 2^-24, the fp16 subnormal step; the FPU's
  // round-to-nearest-even addition performs exactly the fp16 rounding. Subtracting 0.5's bits
  // leaves the fp16 mantissa (and 0x400, the smallest normal, if it rounded up).
  const float magic = std::bit_cast<float>(0x3f000000u);
  const uint32_t subnormal =
      std::bit_cast<uint32_t>(std::bit_cast<float>(mag) + magic) - 0x3f000000u;

  // Inf stays inf; NaN keeps its top 10 payload bits and is made quiet.
  const uint32_t nan = 0x7e00u | ((mag >> 13) & 0x3ffu);

  uint32_t out = select_u32(mag < 0x38800000u, subnormal, normal);
  out = select_u32(mag >= 0x47800000u, 0x7c00u, out);  // >= 65536: inf even before rounding
  out = select_u32(mag > 0x7f800000u, nan, out);
  return static_cast<uint16_t>(out | sign);
}

// bf16 bits -> float32, exact (bf16 is the top half of a float32).
inline float bf16_to_float(uint16_t h) {
  using half_detail::select_u32;
  const uint32_t bits = static_cast<uint32_t>(h) << 16;
  const bool is_nan = (bits & 0x7fffffffu) > 0x7f800000u;
  return std::bit_cast<float>(bits | select_u32(is_nan, 0x00400000u, 0));
}

// float32 -> bf16 bits, round to nearest even. Same exponent range as float32, so subnormals
// round like any other value and overflow carries into the inf encoding on its own.
inline uint16_t float_to_bf16(float f) {
  using half_detail::select_u32;
  const uint32_t bits = std::bit_cast<uint32_t>(f);
  const uint32_t rounded = (bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16;
  const uint32_t nan = (bits >> 16) | 0x0040u;
  const bool is_nan = (bits & 0x7fffffffu) > 0x7f800000u;
  return static_cast<uint16_t>(select_u32(is_nan, nan, rounded));
}

}  // namespace qccl::quant
