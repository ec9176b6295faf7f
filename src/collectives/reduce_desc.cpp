#include "collectives/reduce_desc.hpp"

#include <xxhash.h>

namespace qccl::collectives {

quant::WireCodec wire_codec(const ReduceDesc& d) {
  bool downcast = d.quant_algorithm == QuantAlgorithm::kNone && is_floating(d.dtype) &&
                  is_valid(d.quant_dtype) && is_floating(d.quant_dtype) &&
                  d.quant_dtype != d.dtype;
  bool coded = d.quant_algorithm != QuantAlgorithm::kNone || downcast;
  return {d.dtype, d.quant_algorithm, coded ? d.quant_dtype : d.dtype};
}

uint64_t desc_hash(const ReduceDesc& d) {
  // Fixed-width little-endian fields, so the hash is the same on every machine.
  quant::WireCodec codec = wire_codec(d);
  uint8_t bytes[12] = {};
  uint64_t count = d.count;
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<uint8_t>(count >> (8 * i));
  bytes[8] = static_cast<uint8_t>(d.dtype);
  bytes[9] = static_cast<uint8_t>(d.op);
  bytes[10] = static_cast<uint8_t>(codec.algorithm);
  bytes[11] = codec.identity() ? 0 : static_cast<uint8_t>(codec.wire);  // never uint8 (0) then
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
  if (d.quant_algorithm != QuantAlgorithm::kNone && !is_valid(d.quant_dtype)) {
    return make_status(StatusCode::kInvalidArgument, "unknown quantized dtype {}",
                       static_cast<int>(d.quant_dtype));
  }
  quant::WireCodec codec = wire_codec(d);
  QCCL_RETURN_IF_ERROR(quant::check_codec(codec));
  if (codec.algorithm != QuantAlgorithm::kNone && d.op == ReduceOp::kProd) {
    return make_status(StatusCode::kInvalidArgument,
                       "Prod with {} quantization is not supported: each hop's error would be "
                       "multiplied into the product (use qcclQuantNone, or a down-cast)",
                       quant_algorithm_name(codec.algorithm));
  }
  if (d.count > (size_t{1} << 62) / dtype_size(d.dtype)) {
    return make_status(StatusCode::kInvalidArgument, "count {} is too large", d.count);
  }
  return Status::ok();
}

}  // namespace qccl::collectives
