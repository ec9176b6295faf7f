// fp16 Sum/Prod through the CPU's F16C conversions, when it has them.
//
// F16C converts exactly as half.hpp does (widening is exact; narrowing rounds to nearest
// even, overflows to inf, keeps subnormals), and NaN results are made canonical before
// narrowing, so the bytes are identical to the portable loop on every machine; only the speed
// differs (the portable conversions run at ~1.5 GB/s with SSE2 alone).
//
// Thread-safety: pure functions.
#pragma once

#include <cstddef>
#include <cstdint>

#include "quant/dtype.hpp"

namespace qccl::quant {

// Reduces a prefix of the arrays with F16C and returns how many elements it did (a multiple
// of 8; 0 when the CPU lacks F16C/AVX or op is not Sum/Avg/Prod). The caller does the rest.
size_t fp16_binary_f16c(ReduceOp op, uint16_t* dst, const uint16_t* a, const uint16_t* b,
                        size_t count);

}  // namespace qccl::quant
