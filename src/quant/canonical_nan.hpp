// The canonical quiet NaN of float and double: sign clear, only the quiet bit of the mantissa
// set (0x7fc00000 / 0x7ff8000000000000). The reduction and quantization kernels replace every
// NaN they produce by it, so that their results are the same bits whatever the vector width or
// instruction set; fp16/bf16 results inherit it through their narrowing (0x7e00 / 0x7fc0).
//
// Thread-safety: constants.
#pragma once

#include <bit>
#include <cstdint>
#include <type_traits>

namespace qccl::quant {

template <typename F>
  requires std::is_same_v<F, float> || std::is_same_v<F, double>
constexpr F kCanonicalNaN = std::bit_cast<F>(
    std::conditional_t<sizeof(F) == 4, uint32_t, uint64_t>{
        sizeof(F) == 4 ? 0x7fc00000ull : 0x7ff8000000000000ull});

}  // namespace qccl::quant
