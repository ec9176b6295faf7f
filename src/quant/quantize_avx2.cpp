// The AVX2 + F16C build of the quantization kernels (quantize_kernels.hpp), chosen at run time
// by quantize.cpp when the CPU has both.
//
// Only the functions' target attribute differs from the portable build (plus F16C for the
// fp16 conversions, which convert exactly as half.hpp does once NaNs are canonical), so the
// output bytes are the same; the tests run both builds against each other. The instruction set
// is selected per function rather than with -mavx2 for the file, so that no inline function this
// file instantiates (std::, half.hpp) can be emitted with AVX2 instructions and then picked by
// the linker for a caller on a CPU without them.
//
// Thread-safety: pure functions over caller memory.
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>

#include "quant/half.hpp"
#include "quant/quantize_isa.hpp"

#if defined(__x86_64__) || defined(__i386__)

#include <immintrin.h>

#define QCCL_QUANT_ISA_NAMESPACE avx2
#define QCCL_QUANT_TARGET __attribute__((target("avx2,f16c")))
#define QCCL_QUANT_F16C 1
#include "quant/quantize_kernels.hpp"
#undef QCCL_QUANT_ISA_NAMESPACE
#undef QCCL_QUANT_TARGET
#undef QCCL_QUANT_F16C

namespace qccl::quant::avx2 {

bool supported() {
  static const bool has = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c");
  }();
  return has;
}

}  // namespace qccl::quant::avx2

#else  // not x86: the portable build is the only one

namespace qccl::quant::avx2 {

bool supported() { return false; }
void encode_blocks(const WireCodec&, const void*, size_t, uint8_t*, uint8_t*, void*) {}
void decode_blocks(const WireCodec&, const uint8_t*, const uint8_t*, size_t, void*) {}

}  // namespace qccl::quant::avx2

#endif
