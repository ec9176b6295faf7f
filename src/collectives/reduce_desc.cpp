#include "collectives/reduce_desc.hpp"

#include <xxhash.h>

namespace qccl::collectives {

uint64_t desc_hash(const ReduceDesc& d) {
  // Fixed-width little-endian fields, so the hash is the same on every machine.
  uint8_t bytes[12] = {};
  uint64_t count = d.count;
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<uint8_t>(count >> (8 * i));
  bytes[8] = static_cast<uint8_t>(d.dtype);
  bytes[9] = static_cast<uint8_t>(d.op);
  bytes[10] = static_cast<uint8_t>(d.quant_algorithm);
  bytes[11] = d.quant_algorithm == QuantAlgorithm::kNone ? 0 : static_cast<uint8_t>(d.quant_dtype);
  return XXH3_64bits(bytes, sizeof(bytes));
}

Status validate(const ReduceDesc& d) {
  if (!is_valid(d.dtype)) {
    return make_status(StatusCode::kInvalidArgument, "unknown data type {}", static_cast<int>(d.dtype));
  }
  if (!is_valid(d.op)) {
    return make_status(StatusCode::kInvalidArgument, "unknown reduction op {}", static_cast<int>(d.op));
  }
  if (!is_valid(d.quant_algorithm)) {
    return make_status(StatusCode::kInvalidArgument, "unknown quantization algorithm {}",
                       static_cast<int>(d.quant_algorithm));
  }
  if (d.quant_algorithm != QuantAlgorithm::kNone) {
    return make_status(StatusCode::kInvalidArgument,
                       "quantized all-reduce is not supported by this version yet (use qcclQuantNone)");
  }
  if (d.count > (size_t{1} << 62) / dtype_size(d.dtype)) {
    return make_status(StatusCode::kInvalidArgument, "count {} is too large", d.count);
  }
  return Status::ok();
}

}  // namespace qccl::collectives
