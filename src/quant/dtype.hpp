// Element types, reduction operations and quantization algorithms of the core.
//
// The enumerators have the same values as the public qcclDataType_t / qcclRedOp_t /
// qcclQuantAlgorithm_t (checked by static_asserts in capi/), so the C layer converts by cast.
// Pure: no I/O, no threads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace qccl {

enum class DataType : uint8_t {
  kUint8 = 0, kInt8, kUint16, kInt16, kUint32, kInt32,
  kUint64, kInt64, kFloat16, kBFloat16, kFloat32, kFloat64,
  kNumTypes
};

enum class ReduceOp : uint8_t { kSum = 0, kAvg, kProd, kMax, kMin, kNumOps };

enum class QuantAlgorithm : uint8_t { kNone = 0, kMinMax, kZeroPointScale, kNumAlgorithms };

constexpr bool is_valid(DataType t) { return static_cast<uint8_t>(t) < static_cast<uint8_t>(DataType::kNumTypes); }
constexpr bool is_valid(ReduceOp op) { return static_cast<uint8_t>(op) < static_cast<uint8_t>(ReduceOp::kNumOps); }
constexpr bool is_valid(QuantAlgorithm a) {
  return static_cast<uint8_t>(a) < static_cast<uint8_t>(QuantAlgorithm::kNumAlgorithms);
}

// Bytes per element. REQUIRES: is_valid(t).
constexpr size_t dtype_size(DataType t) {
  switch (t) {
    case DataType::kUint8: case DataType::kInt8: return 1;
    case DataType::kUint16: case DataType::kInt16: case DataType::kFloat16: case DataType::kBFloat16: return 2;
    case DataType::kUint32: case DataType::kInt32: case DataType::kFloat32: return 4;
    case DataType::kUint64: case DataType::kInt64: case DataType::kFloat64: return 8;
    case DataType::kNumTypes: break;
  }
  return 0;
}

constexpr bool is_floating(DataType t) {
  return t == DataType::kFloat16 || t == DataType::kBFloat16 || t == DataType::kFloat32 ||
         t == DataType::kFloat64;
}

std::string_view dtype_name(DataType t);
std::string_view reduce_op_name(ReduceOp op);
std::string_view quant_algorithm_name(QuantAlgorithm a);  // "None", "MinMax", "ZeroPointScale"

}  // namespace qccl
