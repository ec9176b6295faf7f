#include "state/state_hash.hpp"

#include <xxhash.h>

#include <algorithm>
#include <atomic>
#include <system_error>
#include <thread>

namespace qccl::state {

size_t piece_count(size_t bytes) { return bytes == 0 ? 1 : (bytes + kPieceBytes - 1) / kPieceBytes; }

size_t piece_offset(size_t i) { return i * kPieceBytes; }

size_t piece_size(size_t bytes, size_t i) {
  size_t off = piece_offset(i);
  return off >= bytes ? 0 : std::min(kPieceBytes, bytes - off);
}

uint64_t hash_piece(const void* data, size_t bytes) { return XXH3_64bits(data, bytes); }

uint64_t combine_piece_hashes(std::span<const uint64_t> piece_hashes, size_t tensor_bytes) {
  std::vector<uint8_t> le(piece_hashes.size() * 8);
  for (size_t i = 0; i < piece_hashes.size(); ++i) {
    for (int b = 0; b < 8; ++b) le[i * 8 + b] = static_cast<uint8_t>(piece_hashes[i] >> (8 * b));
  }
  return XXH3_64bits_withSeed(le.data(), le.size(), tensor_bytes);
}

std::vector<TensorHash> hash_tensors(std::span<const TensorBytes> tensors, unsigned max_threads) {
  struct Job {
    size_t tensor;
    size_t piece;
  };
  std::vector<TensorHash> out(tensors.size());
  std::vector<Job> jobs;
  for (size_t t = 0; t < tensors.size(); ++t) {
    size_t n = piece_count(tensors[t].bytes);
    out[t].pieces.resize(n);
    for (size_t p = 0; p < n; ++p) jobs.push_back({t, p});
  }
  std::atomic<size_t> next{0};
  auto work = [&] {
    for (size_t j = next.fetch_add(1); j < jobs.size(); j = next.fetch_add(1)) {
      const TensorBytes& t = tensors[jobs[j].tensor];
      const auto* base = static_cast<const uint8_t*>(t.data);
      size_t p = jobs[j].piece;
      size_t len = piece_size(t.bytes, p);
      out[jobs[j].tensor].pieces[p] = hash_piece(len == 0 ? nullptr : base + piece_offset(p), len);
    }
  };
  unsigned threads = max_threads == 0 ? std::max(1u, std::thread::hardware_concurrency()) : max_threads;
  threads = static_cast<unsigned>(std::min<size_t>(threads, jobs.size()));
  // Small states are not worth a thread.
  size_t total = 0;
  for (const auto& t : tensors) total += t.bytes;
  if (total < 4 * kPieceBytes) threads = 1;
  std::vector<std::thread> pool;
  for (unsigned i = 1; i < threads; ++i) {
    try {
      pool.emplace_back(work);
    } catch (const std::system_error&) {
      break;  // out of threads: the ones we have (at least this one) do all the work
    }
  }
  work();
  for (auto& th : pool) th.join();
  for (size_t t = 0; t < tensors.size(); ++t) {
    out[t].hash = combine_piece_hashes(out[t].pieces, tensors[t].bytes);
  }
  return out;
}

}  // namespace qccl::state
