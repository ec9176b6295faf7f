// What every c_api*.cpp shares (internal, never installed): storing an error for
// qcclGetLastError() and returning its code (fail, to_result), the exception barrier (guarded),
// argument checks (QCCL_REQUIRE, raw_enum) and handle checks (valid).
#pragma once

#include <cstring>
#include <exception>
#include <string>

#include "capi/handles.hpp"
#include "collectives/reduce_desc.hpp"
#include "common/status.hpp"
#include "qccl/qccl.h"

namespace qccl::capi {

// Stores `message` for qcclGetLastError() and returns `code`.
qcclResult_t fail(qcclResult_t code, std::string message);

// "fn: message", naming the call once: the core names the call it ran ("qcclAllReduce: ..."),
// which is replaced by the public one that the user called.
qcclResult_t to_result(const Status& st, const char* fn);

template <typename F>
qcclResult_t guarded(const char* fn, F&& body) {
  try {
    return body();
  } catch (const std::exception& e) {
    return fail(qcclInternalError, std::string(fn) + ": unexpected exception: " + e.what());
  } catch (...) {
    return fail(qcclInternalError, std::string(fn) + ": unexpected exception");
  }
}

#define QCCL_REQUIRE(cond, fn, what)                                                    \
  do {                                                                                  \
    if (!(cond)) {                                                                      \
      return ::qccl::capi::fail(qcclInvalidArgument, std::string(fn) + ": " + (what)); \
    }                                                                                   \
  } while (0)

// The raw value of an enum a caller passed. Loading an out-of-range value as the enum type is
// undefined behaviour in C++, and callers (from C) may pass anything: read the bits instead.
template <typename E>
unsigned raw_enum(const E& e) {
  static_assert(sizeof(E) == sizeof(unsigned));
  unsigned v;
  std::memcpy(&v, &e, sizeof v);
  return v;
}

// Converts and checks a public reduce descriptor (qcclInvalidArgument with a message naming
// `fn` if it is bad).
qcclResult_t to_reduce_desc(const qcclReduceDesc_t* d, qccl::collectives::ReduceDesc* out,
                            const char* fn);

// Fills a caller's info (NULLABLE) from what an operation covered.
void fill_info(const qccl::core::ReduceInfo& info, qcclOpInfo_t* out);

// Whether connections with a secret are encrypted: a config's `encryption` field
// (QCCL_ENCRYPTION_DEFAULT reads $QCCL_ENCRYPTION, "on" or "off"). kInvalidArgument for any
// other value of either.
Result<bool> encryption_setting(uint64_t encryption);

inline bool valid(const qcclMaster* m) { return m != nullptr && m->magic == qcclMaster::kMagic; }
inline bool valid(const qcclComm* c) {
  return c != nullptr && c->magic == qcclComm::kMagic && c->rep;
}
inline bool valid(const qcclOp* o) { return o != nullptr && o->magic == qcclOp::kMagic && o->rep; }

}  // namespace qccl::capi
