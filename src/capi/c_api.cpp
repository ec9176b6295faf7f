// The C API's library-wide calls: qcclGetVersion, qcclGetErrorString, qcclGetLastError.
//
// The exported functions of include/qccl/qccl.h live in capi/, one file per section of the
// header (c_api_master.cpp, c_api_comm.cpp, c_api_ops.cpp, c_api_state.cpp), each
// validate -> call the core -> map Status to qcclResult_t, storing the message for
// qcclGetLastError(). They are the only extern "C" code; no exception crosses them (guarded()
// in c_api_common.hpp turns one into qcclInternalError).
#include "qccl/qccl.h"

#include <algorithm>

#include "capi/c_api_common.hpp"
#include "capi/last_error.hpp"

using qccl::capi::raw_enum;

extern "C" {

qcclResult_t qcclGetVersion(int* version_code) {
  QCCL_REQUIRE(version_code != nullptr, "qcclGetVersion", "version_code is NULL");
  *version_code = QCCL_VERSION_CODE;
  return qcclSuccess;
}

const char* qcclGetErrorString(qcclResult_t result) {
  switch (static_cast<qcclResult_t>(std::min(raw_enum(result), unsigned{qcclNumResults}))) {
    case qcclSuccess: return "success";
    case qcclInvalidArgument: return "invalid argument";
    case qcclInvalidUsage: return "invalid usage";
    case qcclMasterUnreachable: return "master unreachable";
    case qcclPeerLost: return "peer lost";
    case qcclTooFewPeers: return "too few peers";
    case qcclTimeout: return "timeout";
    case qcclKicked: return "kicked by the master";
    case qcclMismatch: return "operation mismatch between peers";
    case qcclAuthFailed: return "authentication failed";
    case qcclAborted: return "aborted";
    case qcclInternalError: return "internal error";
    case qcclNumResults: break;
  }
  return "unknown result";
}

const char* qcclGetLastError(void) { return qccl::capi::last_error(); }

}  // extern "C"
