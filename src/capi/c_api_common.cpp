// The shared helpers of c_api_common.hpp, and the checks that the C header's enums number
// their values as the core does (every c_api*.cpp casts between the two).
#include "capi/c_api_common.hpp"

#include "capi/last_error.hpp"

namespace qccl::capi {

static_assert(static_cast<int>(StatusCode::kInternal) == qcclInternalError);
static_assert(static_cast<int>(StatusCode::kNumCodes) == qcclNumResults);
static_assert(static_cast<int>(qccl::DataType::kNumTypes) == qcclNumDataTypes);
static_assert(static_cast<int>(qccl::DataType::kBFloat16) == qcclBFloat16);
static_assert(static_cast<int>(qccl::ReduceOp::kNumOps) == qcclNumRedOps);
static_assert(static_cast<int>(qccl::QuantAlgorithm::kZeroPointScale) == qcclQuantZeroPointScale);
static_assert(static_cast<int>(qccl::core::SyncStrategy::kSendOnly) == qcclSyncSendOnly);
static_assert(static_cast<int>(qccl::core::SyncStrategy::kReceiveOnly) == qcclSyncReceiveOnly);

qcclResult_t fail(qcclResult_t code, std::string message) {
  qccl::capi::set_last_error(std::move(message));
  return code;
}

qcclResult_t to_result(const Status& st, const char* fn) {
  if (st.is_ok()) return qcclSuccess;
  return fail(static_cast<qcclResult_t>(st.code()),
              std::string(fn) + ": " + std::string(qccl::strip_call_name(st.message())));
}

qcclResult_t to_reduce_desc(const qcclReduceDesc_t* d, qccl::collectives::ReduceDesc* out,
                            const char* fn) {
  out->count = d->count;
  unsigned dtype = raw_enum(d->dtype), op = raw_enum(d->op);
  unsigned algorithm = raw_enum(d->quantization.algorithm);
  unsigned quant_dtype = raw_enum(d->quantization.quantized_dtype);
  if (dtype >= qcclNumDataTypes || op >= qcclNumRedOps || algorithm > qcclQuantZeroPointScale) {
    return fail(qcclInvalidArgument, std::string(fn) + ": desc has an unknown dtype, op or "
                                                       "quantization algorithm");
  }
  out->dtype = static_cast<qccl::DataType>(dtype);
  out->op = static_cast<qccl::ReduceOp>(op);
  out->tag = d->tag;
  out->quant_algorithm = static_cast<qccl::QuantAlgorithm>(algorithm);
  if (algorithm != qcclQuantNone && quant_dtype >= qcclNumDataTypes) {
    return fail(qcclInvalidArgument, std::string(fn) + ": desc has an unknown quantized_dtype");
  }
  // With qcclQuantNone an out-of-range quantized_dtype is ignored, like any non-float one.
  out->quant_dtype = quant_dtype < qcclNumDataTypes ? static_cast<qccl::DataType>(quant_dtype)
                                                    : out->dtype;
  return to_result(qccl::collectives::validate(*out), fn);
}

Result<bool> encryption_setting(uint64_t encryption) {
  if (encryption == QCCL_ENCRYPTION_ON || encryption == QCCL_ENCRYPTION_OFF) {
    return encryption == QCCL_ENCRYPTION_ON;
  }
  if (encryption != QCCL_ENCRYPTION_DEFAULT) {
    return make_status(StatusCode::kInvalidArgument,
                       "encryption must be QCCL_ENCRYPTION_DEFAULT, _ON or _OFF, not {}",
                       encryption);
  }
  const char* env = std::getenv("QCCL_ENCRYPTION");
  const std::string value = env != nullptr ? env : "";
  if (!value.empty() && value != "on" && value != "off") {
    return make_status(StatusCode::kInvalidArgument, "$QCCL_ENCRYPTION = '{}': say on or off",
                       value);
  }
  return value != "off";
}

void fill_info(const qccl::core::ReduceInfo& info, qcclOpInfo_t* out) {
  if (!out) return;
  out->world_size = info.world_size;
  out->epoch = info.epoch;
  out->tx_bytes = info.tx_bytes;
  out->rx_bytes = info.rx_bytes;
  if (!out->peer_ids) return;
  for (size_t i = 0; i < info.peers.size() && i < out->peer_ids_capacity; ++i) {
    out->peer_ids[i] = info.peers[i];
  }
}

}  // namespace qccl::capi
