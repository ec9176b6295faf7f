#include "common/status.hpp"

#include <cctype>

namespace qccl {

std::string_view status_code_name(StatusCode code) {
  switch (code) {
    case StatusCode::kOk: return "Ok";
    case StatusCode::kInvalidArgument: return "InvalidArgument";
    case StatusCode::kInvalidUsage: return "InvalidUsage";
    case StatusCode::kMasterUnreachable: return "MasterUnreachable";
    case StatusCode::kPeerLost: return "PeerLost";
    case StatusCode::kTooFewPeers: return "TooFewPeers";
    case StatusCode::kTimeout: return "Timeout";
    case StatusCode::kKicked: return "Kicked";
    case StatusCode::kMismatch: return "Mismatch";
    case StatusCode::kAuthFailed: return "AuthFailed";
    case StatusCode::kAborted: return "Aborted";
    case StatusCode::kInternal: return "Internal";
    case StatusCode::kNumCodes: break;
  }
  return "Unknown";
}

std::string Status::to_string() const {
  if (is_ok()) return "Ok";
  return fmt::format("{}: {}", status_code_name(code_), message_);
}

std::string_view strip_call_name(std::string_view message) {
  if (!message.starts_with("qccl")) return message;
  size_t i = 4;
  while (i < message.size() && std::isalnum(static_cast<unsigned char>(message[i]))) ++i;
  if (i == 4 || message.substr(i, 2) != ": ") return message;
  return message.substr(i + 2);
}

}  // namespace qccl
