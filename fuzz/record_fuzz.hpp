// What fuzz_record (record_fuzz.cpp) and its seeds (make_corpus.cpp) share: the mode byte,
// the fixed keys, and the sealing of a stream, so that the genuine streams among the seeds
// open under the target's keys.
//
// Thread-safety: stateless.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "net/record_cipher.hpp"

namespace qccl::net::fuzz {

// The input's first byte. Bit 0: the rest is a wire stream to open (else plaintext chunks to
// seal); bit 1: the suite is ChaCha20-Poly1305 (else AES-256-GCM).
inline constexpr uint8_t kModeOpen = 1;
inline constexpr uint8_t kModeChaCha = 2;

inline CipherSuite suite_of(uint8_t mode) {
  return (mode & kModeChaCha) != 0 ? CipherSuite::kChaCha20Poly1305 : CipherSuite::kAes256Gcm;
}

// One direction's keys, fixed so that a sealed seed opens in every run.
inline DirectionKeys fixed_keys() {
  DirectionKeys k;
  for (size_t i = 0; i < kKeySize; ++i) k.key[i] = static_cast<uint8_t>(0x40 + i);
  for (size_t i = 0; i < kIvSize; ++i) k.iv[i] = static_cast<uint8_t>(0xc0 + i);
  return k;
}

// Records 0, 1, ... holding `chunks` (each 1..kMaxRecordPayload bytes), sealed under
// fixed_keys(). Each chunk is passed as two parts (split in the middle), so that the gathering
// path is the one exercised. Empty if a seal fails.
inline std::vector<uint8_t> seal_stream(CipherSuite suite,
                                        const std::vector<std::span<const uint8_t>>& chunks) {
  RecordSealer sealer(suite, fixed_keys());
  std::vector<uint8_t> out;
  for (auto chunk : chunks) {
    const size_t at = out.size();
    out.resize(at + chunk.size() + kRecordOverhead);
    const std::span<const uint8_t> parts[] = {chunk.first(chunk.size() / 2),
                                              chunk.subspan(chunk.size() / 2)};
    auto n = sealer.seal(parts, out.data() + at);
    if (!n.is_ok() || *n != chunk.size() + kRecordOverhead) return {};
  }
  return out;
}

}  // namespace qccl::net::fuzz
