// Element-wise reduction kernels: the arithmetic every all-reduce hop performs on a received
// segment, for all 12 DataTypes x 5 ReduceOps.
//
// These semantics are the library's numeric contract. Results are bit-identical on every machine
// and independent of SIMD width, alignment, count and thread count, because each output element
// depends only on the two input elements at the same index, computed in a fixed type with a
// fixed rounding (no FMA contraction, no reassociation):
//
//   Integers (u)int8..(u)int64
//     Sum, Prod   wrap modulo 2^bits (computed in the unsigned type; no signed-overflow UB).
//     Max, Min    ordinary signed/unsigned comparison.
//     Avg         reduce(): same as Sum. reduce_and_divide()/divide(): the wrapped sum, read in
//                 the element type, divided by the divisor truncating toward zero (-7/2 == -3).
//   float32, float64
//     Sum, Prod   one IEEE operation in that type, round to nearest even.
//     Avg         reduce(): same as Sum. reduce_and_divide(): (a + b) rounded to the type, then
//                 divided by T(divisor), rounded again; divide(): src / T(divisor). (In float32
//                 a divisor above 2^24 is itself rounded to nearest when converted.)
//     Max, Min    IEEE 754-2019 maximum/minimum: NaN if either operand is NaN; otherwise the
//                 larger/smaller value, with max(+0, -0) == +0 and min(+0, -0) == -0 regardless
//                 of operand order (unlike std::max or x86 maxps, which return one operand by
//                 position). +-inf compare as usual. All four float types follow this rule.
//   float16, bfloat16
//     Both operands are widened to float32 exactly, the operation (including the division of
//     reduce_and_divide/divide) is done in float32 as above, and the float32 result is rounded
//     once to the 16-bit type (nearest even, overflow to inf). See half.hpp.
//
//   NaN results: every floating-point NaN output is the canonical quiet NaN with the sign bit
//   clear (float32 0x7fc00000, float64 0x7ff8000000000000, fp16 0x7e00, bf16 0x7fc0). Hardware
//   differs in which operand's payload an addition propagates, and the compiler may commute
//   operands between the vector body and the scalar tail, so payloads are not carried through.
//
//   The kernels assume the default floating-point environment of the calling thread
//   (round-to-nearest, FTZ/DAZ off); they never change it. With FTZ/DAZ on, float results that
//   involve float32/float64 subnormals may differ.
//
// Buffers are caller-owned, element-aligned, `count` elements long, in native byte order; with
// count == 0 nothing is touched and the pointers may be null.
// Thread-safety: pure functions over caller memory; concurrent calls on disjoint buffers are
// fine.
#pragma once

#include <cstddef>
#include <cstdint>

#include "quant/dtype.hpp"

namespace qccl::quant {

// dst[i] = a[i] op b[i] for i < count. dst may be exactly a or exactly b (or both equal), but
// must not partially overlap either. kAvg behaves as kSum here: the division happens once, on
// the last hop, in reduce_and_divide() or divide().
// REQUIRES: is_valid(dtype), is_valid(op).
void reduce(DataType dtype, ReduceOp op, void* dst, const void* a, const void* b, size_t count);

// Last hop of an average: dst[i] = (a[i] + b[i]) / divisor, with the sum and the division done
// as described above. Same aliasing rules as reduce().
// REQUIRES: is_valid(dtype), divisor >= 1 (0 is treated as 1 rather than trapping).
void reduce_and_divide(DataType dtype, void* dst, const void* a, const void* b, size_t count,
                       uint32_t divisor);

// dst[i] = src[i] / divisor: the average when there is nothing left to add (e.g. a single peer,
// or a reduce-scatter owner that already holds the full sum). dst may equal src.
// REQUIRES: is_valid(dtype), divisor >= 1 (0 is treated as 1 rather than trapping).
void divide(DataType dtype, void* dst, const void* src, size_t count, uint32_t divisor);

}  // namespace qccl::quant
