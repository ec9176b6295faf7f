// Text helpers of the peer programs that tests start (qccl_test_peer, qccl_chaos_peer): printf
// into a std::string, and a result code's enumerator name, which the event lines carry and the
// drivers parse (e.g. "retry plain 4 qcclPeerLost").
#pragma once

#include <cstdarg>
#include <cstdio>
#include <string>

#include "qccl/qccl.h"

namespace qccl::test {

inline std::string strf(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
inline std::string strf(const char* fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  return buf;
}

inline const char* result_name(qcclResult_t r) {
  switch (r) {
    case qcclSuccess: return "qcclSuccess";
    case qcclInvalidArgument: return "qcclInvalidArgument";
    case qcclInvalidUsage: return "qcclInvalidUsage";
    case qcclMasterUnreachable: return "qcclMasterUnreachable";
    case qcclPeerLost: return "qcclPeerLost";
    case qcclTooFewPeers: return "qcclTooFewPeers";
    case qcclTimeout: return "qcclTimeout";
    case qcclKicked: return "qcclKicked";
    case qcclMismatch: return "qcclMismatch";
    case qcclAuthFailed: return "qcclAuthFailed";
    case qcclAborted: return "qcclAborted";
    case qcclInternalError: return "qcclInternalError";
    default: return "unknown";
  }
}

}  // namespace qccl::test
