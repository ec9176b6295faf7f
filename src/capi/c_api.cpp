// Every exported function of include/qccl/qccl.h: validate -> call the core -> map Status to
// qcclResult_t, storing the message for qcclGetLastError(). The only extern "C" code; no
// exception crosses it.
#include "qccl/qccl.h"

#include "capi/last_error.hpp"

extern "C" {

qcclResult_t qcclGetVersion(int* version_code) {
  if (version_code == nullptr) {
    qccl::capi::set_last_error("qcclGetVersion: version_code is NULL");
    return qcclInvalidArgument;
  }
  *version_code = QCCL_VERSION_CODE;
  return qcclSuccess;
}

const char* qcclGetErrorString(qcclResult_t result) {
  switch (result) {
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
