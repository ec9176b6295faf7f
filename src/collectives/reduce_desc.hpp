// ReduceDesc: what every peer must agree on for one all-reduce, and its fingerprint.
#pragma once

#include <cstddef>
#include <cstdint>

#include "common/ids.hpp"
#include "common/status.hpp"
#include "quant/dtype.hpp"
#include "quant/quantize.hpp"

namespace qccl::collectives {

struct ReduceDesc {
  size_t count = 0;
  DataType dtype = DataType::kFloat32;
  ReduceOp op = ReduceOp::kSum;
  OpTag tag = 0;
  QuantAlgorithm quant_algorithm = QuantAlgorithm::kNone;
  DataType quant_dtype = DataType::kFloat32;
};

// How the elements travel. With kNone, quant_dtype counts only when dtype and quant_dtype are
// two different floating types (a down-cast, e.g. fp32 sent as bf16; validate() refuses one
// that is not narrower); any other value is ignored, so that a zero-initialized quantization
// field means "send the source type".
quant::WireCodec wire_codec(const ReduceDesc& d);

// Hash of (count, dtype, op, wire codec) — not the tag. Equal descriptors give equal hashes
// on every machine; peers compare it to detect mismatched calls.
uint64_t desc_hash(const ReduceDesc& d);

// kInvalidArgument with a message for an unknown enum or an unsupported combination.
Status validate(const ReduceDesc& d);

}  // namespace qccl::collectives
