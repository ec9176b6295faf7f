// ReduceDesc: what every peer must agree on for one all-reduce, and its fingerprint.
#pragma once

#include <cstddef>
#include <cstdint>

#include "common/ids.hpp"
#include "common/status.hpp"
#include "quant/dtype.hpp"

namespace qccl::collectives {

struct ReduceDesc {
  size_t count = 0;
  DataType dtype = DataType::kFloat32;
  ReduceOp op = ReduceOp::kSum;
  OpTag tag = 0;
  QuantAlgorithm quant_algorithm = QuantAlgorithm::kNone;
  DataType quant_dtype = DataType::kFloat32;
};

// Hash of (count, dtype, op, quantization) — not the tag. Equal descriptors give equal hashes
// on every machine; peers compare it to detect mismatched calls.
uint64_t desc_hash(const ReduceDesc& d);

// kInvalidArgument with a message for an unknown enum or an unsupported combination.
Status validate(const ReduceDesc& d);

}  // namespace qccl::collectives
