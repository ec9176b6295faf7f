#include "common/secret_file.hpp"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>

namespace qccl {

Result<std::string> read_secret_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return make_status(StatusCode::kInvalidArgument, "cannot read {}: {}", path,
                       std::strerror(errno));
  }
  std::string token((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) {
    return make_status(StatusCode::kInvalidArgument, "cannot read {}: {}", path,
                       std::strerror(errno));
  }
  if (!token.empty() && token.back() == '\n') token.pop_back();
  if (!token.empty() && token.back() == '\r') token.pop_back();
  if (token.empty()) return make_status(StatusCode::kInvalidArgument, "{} is empty", path);
  return token;
}

}  // namespace qccl
