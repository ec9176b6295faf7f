// The C API's shared state: qcclSyncSharedState (checks the tensor list, syncs, reports).
#include "qccl/qccl.h"

#include <string>
#include <vector>

#include "capi/c_api_common.hpp"

using qccl::Status;
using qccl::capi::guarded;
using qccl::capi::raw_enum;
using qccl::capi::to_result;
using qccl::capi::valid;

extern "C" {

qcclResult_t qcclSyncSharedState(qcclComm_t* comm, qcclSharedState_t* state,
                                 qcclSyncStrategy_t strategy, qcclSyncInfo_t* info_out) {
  const char* fn = "qcclSyncSharedState";
  return guarded(fn, [&] {
    QCCL_REQUIRE(valid(comm), fn, "comm is NULL or not a communicator");
    QCCL_REQUIRE(state != nullptr, fn, "state is NULL");
    QCCL_REQUIRE(state->num_tensors == 0 || state->tensors != nullptr, fn,
                 "state->tensors is NULL but num_tensors is " + std::to_string(state->num_tensors));
    unsigned raw_strategy = raw_enum(strategy);
    QCCL_REQUIRE(raw_strategy <= qcclSyncSendOnly, fn,
                 "unknown strategy " + std::to_string(raw_strategy));
    std::vector<qccl::core::StateTensor> tensors(state->num_tensors);
    for (size_t i = 0; i < state->num_tensors; ++i) {
      const qcclTensorInfo_t& t = state->tensors[i];
      QCCL_REQUIRE(t.name != nullptr, fn, "tensor " + std::to_string(i) + " has name == NULL");
      unsigned dtype = raw_enum(t.dtype);
      QCCL_REQUIRE(dtype < qcclNumDataTypes, fn,
                   "tensor '" + std::string(t.name) + "' has an unknown dtype " +
                       std::to_string(dtype));
      tensors[i] = {t.name, t.data, t.count, static_cast<qccl::DataType>(dtype),
                    t.allow_content_inequality != 0};
    }
    uint64_t revision = state->revision;
    qccl::core::Communicator::SyncInfo info;
    Status st = comm->rep->sync_shared_state(
        tensors, &revision, static_cast<qccl::core::SyncStrategy>(raw_strategy), &info);
    if (st.is_ok()) {
      state->revision = revision;
      if (info_out) *info_out = {info.tx_bytes, info.rx_bytes};
    } else if (info_out) {
      *info_out = {0, 0};
    }
    return to_result(st, fn);
  });
}

}  // extern "C"
