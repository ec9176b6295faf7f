// Wire codecs of the all-reduce: how a run of elements travels between two peers when the
// caller asked for quantization (qcclReduceDesc_t.quantization), and the kernels that encode
// and decode it. Numeric contract in docs/quantization.md; summary:
//
//   Identity       kNone with wire == source: the raw bytes (the ring never calls the
//                  kernels for it).
//   Down-cast      kNone with a narrower floating wire type (fp64 -> fp32/fp16/bf16,
//                  fp32 -> fp16/bf16). encode rounds to nearest even (fp64 -> fp16/bf16 goes
//                  through fp32), overflow gives +-inf, NaN gives the canonical NaN; decode
//                  widens exactly.
//   MinMax         kMinMax from fp32/fp64/fp16/bf16 to uint8/int8/uint16/int16. Per block of
//                  kQuantBlockElems elements: lo = min, hi = max, L = qmax - qmin,
//                  scale = (hi/2 - lo/2) / (L/2), code = qmin + clamp(rne((x - lo) / scale),
//                  0, L), decoded = lo + (code - qmin) * scale. Error <= scale/2 (+ rounding).
//                  A constant block decodes exactly.
//   ZeroPointScale kZeroPointScale, same types. The range is widened to contain 0,
//                  zp = qmin - rne(lo / scale) (an integer code), code = clamp(rne(x / scale)
//                  + zp, qmin, qmax), decoded = (code - zp) * scale: 0 decodes exactly.
//                  Error <= scale/2 (+ rounding).
//                  Where these formulas would overflow (ranges near the largest finite
//                  value), they are computed on halves, and a finite block never decodes to
//                  an infinity (quantize.cpp).
//
// Statistics are computed in the compute type C (fp64 for fp64 sources, fp32 otherwise) and
// travel as block metadata. A block that holds a NaN or an infinity decodes to NaN everywhere
// (so an overflow in one peer's gradient shows up in the result, as it would unquantized).
//
// Encoded layout of a run of `count` elements (little-endian, no alignment requirement):
//   [meta of block 0][meta of block 1]...[codes of all elements, in order]
// where a block's meta is two C values (MinMax: lo, scale; ZeroPointScale: scale, zp) and
// down-casts have no meta. Blocks start at element 0 of the run; the last one may be short.
//
// Determinism: the output bytes depend only on the input bytes (not on SIMD width, alignment,
// thread count or CPU features): no FMA contraction, no reassociation, signed zeros and NaNs
// normalized in the statistics.
//
// Thread-safety: pure functions over caller memory.
#pragma once

#include <cstddef>
#include <cstdint>

#include "common/status.hpp"
#include "quant/dtype.hpp"

namespace qccl::quant {

// Elements per statistics block (a few thousand: one outlier only coarsens its own block).
inline constexpr size_t kQuantBlockElems = 2048;

struct WireCodec {
  DataType source = DataType::kFloat32;
  QuantAlgorithm algorithm = QuantAlgorithm::kNone;
  DataType wire = DataType::kFloat32;  // the type of the codes on the wire

  bool identity() const { return algorithm == QuantAlgorithm::kNone && wire == source; }
  bool operator==(const WireCodec&) const = default;
};

// kInvalidArgument with a message naming the supported combinations when `c` is not one of
// the above; ok otherwise (identity is always ok for a valid type).
Status check_codec(const WireCodec& c);

// Bytes of one block's metadata (0 for identity and down-casts).
size_t meta_bytes(const WireCodec& c);

// Bytes that `count` encoded elements take: count * dtype_size(wire) + meta for each block.
size_t encoded_bytes(const WireCodec& c, size_t count);

// Encodes `count` source elements at `src` into `out` (encoded_bytes(c, count) bytes). When
// `decoded` is not null, also writes decode(encode(src)) there (count source elements): what
// every receiver will decode. `decoded` may be exactly `src`. REQUIRES: check_codec(c) ok.
void encode(const WireCodec& c, const void* src, size_t count, uint8_t* out, void* decoded);

// Writes the `count` source elements that `in` (encoded_bytes(c, count) bytes) encodes.
void decode(const WireCodec& c, const uint8_t* in, size_t count, void* dst);

// dst = own op decode(in), element-wise, as reduce() (reduce_kernels.hpp) computes it; with
// divisor > 1 (the last hop of an average) as reduce_and_divide(). Bit for bit the same as
// decode() into a temporary followed by that call. dst may be exactly own.
void decode_reduce(const WireCodec& c, ReduceOp op, void* dst, const void* own, const uint8_t* in,
                   size_t count, uint32_t divisor);

}  // namespace qccl::quant
