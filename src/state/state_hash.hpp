// Content hashes of shared-state tensors (pure; XXH3-64 from libxxhash).
//
// A tensor's bytes are cut into pieces of kPieceBytes (the last one shorter; an empty tensor
// is one empty piece). Each piece is hashed with XXH3-64, and the tensor's hash is XXH3-64 of
// the little-endian array of piece hashes, seeded with the byte length. Two consequences:
//   - hashing runs on several threads at once, even for a single large tensor;
//   - a receiver checks every downloaded piece on arrival (the donor sends the piece hash)
//     and gets the tensor hash from the piece hashes it already computed, with no second pass.
// The scheme is part of the protocol: every peer must cut and combine the same way.
//
// Thread-safety: pure functions; hash_tensors() runs its own short-lived worker threads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace qccl::state {

inline constexpr size_t kPieceBytes = size_t{1} << 20;

// Number of pieces of a tensor of `bytes` bytes (at least 1).
size_t piece_count(size_t bytes);
// Byte range of piece `i` of a tensor of `bytes` bytes. REQUIRES: i < piece_count(bytes).
size_t piece_offset(size_t i);
size_t piece_size(size_t bytes, size_t i);

uint64_t hash_piece(const void* data, size_t bytes);
uint64_t combine_piece_hashes(std::span<const uint64_t> piece_hashes, size_t tensor_bytes);

struct TensorBytes {
  const void* data = nullptr;
  size_t bytes = 0;
};
struct TensorHash {
  uint64_t hash = 0;
  std::vector<uint64_t> pieces;
};

// Hashes every tensor, splitting the pieces of all tensors over up to `max_threads` threads
// (0 = the hardware concurrency).
std::vector<TensorHash> hash_tensors(std::span<const TensorBytes> tensors, unsigned max_threads = 0);

}  // namespace qccl::state
