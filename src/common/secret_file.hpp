// Reading a shared secret from a file (qccl-master --auth-token-file, the communicator's
// auth_token_file / QCCL_AUTH_TOKEN_FILE).
//
// Thread-safety: a pure function of the file.
#pragma once

#include <string>

#include "common/status.hpp"

namespace qccl {

// The whole file less one trailing newline ("\n" or "\r\n"). kInvalidArgument if it cannot be
// read or is empty; the message names the file, never its content.
Result<std::string> read_secret_file(const std::string& path);

}  // namespace qccl
