#include "core/fingerprint.hpp"

#include <xxhash.h>

#include <vector>

namespace qccl::core {

uint64_t op_fingerprint(std::string_view kind, std::initializer_list<uint64_t> fields) {
  std::vector<uint8_t> bytes(kind.begin(), kind.end());
  for (uint64_t f : fields) {
    for (int i = 0; i < 8; ++i) bytes.push_back(static_cast<uint8_t>(f >> (8 * i)));
  }
  return XXH3_64bits(bytes.data(), bytes.size());
}

}  // namespace qccl::core
