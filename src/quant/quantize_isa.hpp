// Internal plumbing of the quantization codecs (quantize.hpp): the per-instruction-set kernel
// entry points, the scalar per-block parameter math they all share, and the switch that picks
// an instruction set at run time.
//
// Why two kernel builds: the x86-64 baseline (SSE2) runs everywhere, AVX2 + F16C roughly
// doubles the throughput where the CPU has them. Both are compiled from the same source
// (quantize_kernels.hpp) and differ only in the instructions the compiler may use, and every
// per-block decision (range, scale, zero point) is made here, once, in scalar code; so the bytes
// are identical whichever runs. The tests force each path and compare.
//
// Not part of the module's interface: only quantize*.cpp, the quant tests and the kernel
// benchmark include this. Thread-safety: pure functions, plus one process-wide atomic switch.
#pragma once

#include <cstddef>
#include <cstdint>

#include "quant/quantize.hpp"

namespace qccl::quant {

// ---- Instruction-set dispatch ---------------------------------------------------------------

enum class QuantIsa : uint8_t { kPortable = 0, kAvx2 };

// The kernels that encode()/decode()/decode_reduce() run now: kAvx2 when the CPU supports AVX2
// and F16C and the portable path is not forced.
QuantIsa active_quant_isa();

// Testing and benchmarking hook: true forces the portable kernels, false returns to CPU
// dispatch. Process-wide (a relaxed atomic); the output bytes are the same either way.
void force_portable_quant_kernels(bool force);

// ---- Code ranges ----------------------------------------------------------------------------

struct CodeRange {
  int32_t qmin;
  int32_t qmax;
};

// REQUIRES: wire is one of uint8, int8, uint16, int16.
constexpr CodeRange code_range(DataType wire) {
  switch (wire) {
    case DataType::kUint8: return {0, 255};
    case DataType::kInt8: return {-128, 127};
    case DataType::kUint16: return {0, 65535};
    case DataType::kInt16: return {-32768, 32767};
    default: return {0, 0};
  }
}

// ---- Per-block parameters (scalar, shared by every kernel build) ----------------------------

// Range of one block as the statistics kernel measures it: lo/hi with -0 already turned into
// +0, and whether every element was finite (lo/hi are meaningless otherwise).
template <typename C>
struct BlockRange {
  C lo;
  C hi;
  bool finite;
};

// What a block's encoder needs: the two meta values that travel (MinMax: lo, scale;
// ZeroPointScale: scale, zp) and the values the code loop uses.
template <typename C>
struct BlockParams {
  C meta[2];
  bool finite;   // false: every code is `fill`, the block decodes to NaN
  int32_t fill;  // the code of every element of a non-finite block
  C lo;          // MinMax: the origin of the codes
  C inv;         // 1 / scale, or 0 when the scale is 0 (constant or too narrow a block)
  int32_t zp;    // ZeroPointScale: the zero point (an integer code)
  bool wide;     // MinMax: hi - lo overflows C, so x - lo may too (see quantize.cpp)
};

BlockParams<float> block_params(QuantAlgorithm algorithm, CodeRange q, BlockRange<float> r);
BlockParams<double> block_params(QuantAlgorithm algorithm, CodeRange q, BlockRange<double> r);

// True when every code of a block with this meta (as read from the wire) decodes, by the plain
// formula, to a finite value within [-limit, limit] (limit: the source type's largest finite
// value), with a safety margin; so the decoder may skip the overflow handling for it. False
// for NaN or infinite metas too.
bool decode_in_range(QuantAlgorithm algorithm, CodeRange q, float m0, float m1, float limit);
bool decode_in_range(QuantAlgorithm algorithm, CodeRange q, double m0, double m1, double limit);

// ---- Kernel builds --------------------------------------------------------------------------
//
// Both entry points work on whole blocks: `count` elements starting at a block boundary,
// `meta` pointing at the first block's meta, `codes` at the first element's code. The wire
// pointers have no alignment requirement; the source-typed pointers (src, decoded, dst) are
// element-aligned and do not overlap the wire buffer (decoded may be exactly src).
// REQUIRES: check_codec(c) ok, !c.identity().

namespace portable {
void encode_blocks(const WireCodec& c, const void* src, size_t count, uint8_t* meta,
                   uint8_t* codes, void* decoded);
void decode_blocks(const WireCodec& c, const uint8_t* meta, const uint8_t* codes, size_t count,
                   void* dst);
}  // namespace portable

namespace avx2 {
// False on CPUs without AVX2 + F16C (and on non-x86 builds, where the functions below are
// never called).
bool supported();
void encode_blocks(const WireCodec& c, const void* src, size_t count, uint8_t* meta,
                   uint8_t* codes, void* decoded);
void decode_blocks(const WireCodec& c, const uint8_t* meta, const uint8_t* codes, size_t count,
                   void* dst);
}  // namespace avx2

}  // namespace qccl::quant
