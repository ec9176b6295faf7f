#include "quant/fp16_f16c.hpp"

#include <immintrin.h>

namespace qccl::quant {
namespace {

bool cpu_has_f16c() {
  static const bool has = __builtin_cpu_supports("avx") && __builtin_cpu_supports("f16c");
  return has;
}

template <bool kMul>
__attribute__((target("avx,f16c"))) size_t loop(uint16_t* dst, const uint16_t* a,
                                                const uint16_t* b, size_t count) {
  const __m256 canonical_nan = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fc00000));
  size_t i = 0;
  for (; i + 8 <= count; i += 8) {
    __m256 x = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a + i)));
    __m256 y = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b + i)));
    __m256 r = kMul ? _mm256_mul_ps(x, y) : _mm256_add_ps(x, y);
    r = _mm256_blendv_ps(r, canonical_nan, _mm256_cmp_ps(r, r, _CMP_UNORD_Q));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i),
                     _mm256_cvtps_ph(r, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  }
  return i;
}

}  // namespace

size_t fp16_binary_f16c(ReduceOp op, uint16_t* dst, const uint16_t* a, const uint16_t* b,
                        size_t count) {
  if (!cpu_has_f16c()) return 0;
  switch (op) {
    case ReduceOp::kSum:
    case ReduceOp::kAvg:
      return loop<false>(dst, a, b, count);
    case ReduceOp::kProd:
      return loop<true>(dst, a, b, count);
    default:
      return 0;
  }
}

}  // namespace qccl::quant
