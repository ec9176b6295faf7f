// Status and Result<T>: errors as values throughout the core.
//
// A Status is a code plus a human-readable message saying what failed and why. The codes
// mirror the public qcclResult_t (the C layer maps them one to one) so that no information is
// lost on the way out. Result<T> holds either a value or a non-ok Status.
//
// Thread-safety: plain values; copy freely.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

#include <fmt/format.h>

namespace qccl {

// Same order as qcclResult_t (checked by a static_assert in capi/).
enum class StatusCode : uint8_t {
  kOk = 0,
  kInvalidArgument,
  kInvalidUsage,
  kMasterUnreachable,
  kPeerLost,
  kTooFewPeers,
  kTimeout,
  kKicked,
  kMismatch,
  kAuthFailed,
  kAborted,
  kInternal,
  kNumCodes
};

std::string_view status_code_name(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;  // ok
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status ok() { return Status(); }
  bool is_ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // "PeerLost: neighbour 3 closed the connection"
  std::string to_string() const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

// `message` without a leading "qcclSomeCall: " (the public call a core message names), so
// that the layer that knows which call the user made can name it once.
std::string_view strip_call_name(std::string_view message);

// Builds a Status with an fmt-formatted message.
template <typename... Args>
Status make_status(StatusCode code, fmt::format_string<Args...> f, Args&&... args) {
  return Status(code, fmt::format(f, std::forward<Args>(args)...));
}

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) {}  // NOLINT: REQUIRES: !status.is_ok()

  bool is_ok() const { return v_.index() == 0; }
  const Status& status() const {
    static const Status kOk;
    return is_ok() ? kOk : std::get<1>(v_);
  }
  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace qccl

#define QCCL_STATUS_CONCAT_INNER_(a, b) a##b
#define QCCL_STATUS_CONCAT_(a, b) QCCL_STATUS_CONCAT_INNER_(a, b)

#define QCCL_RETURN_IF_ERROR(expr)            \
  do {                                        \
    ::qccl::Status qccl_status_ = (expr);     \
    if (!qccl_status_.is_ok()) return qccl_status_; \
  } while (0)

// QCCL_ASSIGN_OR_RETURN(auto x, f()): returns f()'s Status on error, else binds the value.
#define QCCL_ASSIGN_OR_RETURN(lhs, expr) \
  QCCL_ASSIGN_OR_RETURN_IMPL_(QCCL_STATUS_CONCAT_(qccl_result_, __LINE__), lhs, expr)
#define QCCL_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                \
  if (!tmp.is_ok()) return tmp.status();            \
  lhs = std::move(tmp).value()

// Coroutine flavour of QCCL_RETURN_IF_ERROR.
#define QCCL_CO_RETURN_IF_ERROR(expr)                     \
  do {                                                    \
    ::qccl::Status qccl_status_ = (expr);                 \
    if (!qccl_status_.is_ok()) co_return qccl_status_;    \
  } while (0)
