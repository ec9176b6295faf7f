// Text helpers of the peer programs that tests start (qccl_test_peer, qccl_chaos_peer,
// qccl_hosts_peer): printf into a std::string, a result code's enumerator name, which the event
// lines carry and the drivers parse (e.g. "retry plain 4 qcclPeerLost"), and emit(), which
// writes one event line (peer_events.hpp reads them).
//
// Thread-safety: emit() may be called from any thread (one line is written at a time).
#pragma once

#include <chrono>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <mutex>
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

// Microseconds of CLOCK_MONOTONIC (steady_clock on Linux): the "at" field of event lines.
inline int64_t now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Writes one event line to stdout at once: `line`, " at <now_us()>", and " msg <detail>" if
// given, with any newline in `detail` turned into a space so that the event stays one line.
inline void emit(const std::string& line, const char* detail = nullptr) {
  std::string s = line + " at " + std::to_string(now_us());
  if (detail != nullptr) {
    s += " msg ";
    for (const char* p = detail; *p != '\0'; ++p) s += (*p == '\n' ? ' ' : *p);
  }
  s += '\n';
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  std::fputs(s.c_str(), stdout);
  std::fflush(stdout);
}

}  // namespace qccl::test
