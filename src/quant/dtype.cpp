#include "quant/dtype.hpp"

namespace qccl {

std::string_view dtype_name(DataType t) {
  switch (t) {
    case DataType::kUint8: return "uint8";
    case DataType::kInt8: return "int8";
    case DataType::kUint16: return "uint16";
    case DataType::kInt16: return "int16";
    case DataType::kUint32: return "uint32";
    case DataType::kInt32: return "int32";
    case DataType::kUint64: return "uint64";
    case DataType::kInt64: return "int64";
    case DataType::kFloat16: return "float16";
    case DataType::kBFloat16: return "bfloat16";
    case DataType::kFloat32: return "float32";
    case DataType::kFloat64: return "float64";
    case DataType::kNumTypes: break;
  }
  return "invalid";
}

std::string_view reduce_op_name(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum: return "sum";
    case ReduceOp::kAvg: return "avg";
    case ReduceOp::kProd: return "prod";
    case ReduceOp::kMax: return "max";
    case ReduceOp::kMin: return "min";
    case ReduceOp::kNumOps: break;
  }
  return "invalid";
}

std::string_view quant_algorithm_name(QuantAlgorithm a) {
  switch (a) {
    case QuantAlgorithm::kNone: return "None";
    case QuantAlgorithm::kMinMax: return "MinMax";
    case QuantAlgorithm::kZeroPointScale: return "ZeroPointScale";
    case QuantAlgorithm::kNumAlgorithms: break;
  }
  return "invalid";
}

}  // namespace qccl
