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

}  // namespace qccl::capi
