// The toy training job of the chaos harness (tests/chaos/): what a peer contributes to each
// all-reduce, the shared model, its update, and the hashes. chaos_peer runs it; chaos_driver
// replays it to know the exact result of every all-reduce and the exact model of every step.
//
// Step s of the run (every peer in lock step, see chaos_peer.cpp):
//   1. qcclSyncSharedState of the model at revision s. The model after the sync must equal
//      expected(s), the model that s updates produce from initial(); revision = step.
//   2. A plain all-reduce (uint64 Sum) of kPlainWords words. Peer `slot` contributes
//        words [0, kMaskWords):           2^slot * (s+1)
//        words [kMaskWords, kPlainWords): grad(s, j), the same on every peer
//      so the result is mask * (s+1) in the first section, where mask (the OR of 2^slot of the
//      participants) names exactly who took part, and popcount(mask) * grad(s, j) after it.
//   3. A quantized all-reduce (float64 Sum sent as MinMax uint8 codes) of kQuantCount
//      elements, all 2^slot * (s+1): every quantization block is constant, which MinMax
//      decodes exactly, so the result is exactly mask * (s+1) (below 2^53) everywhere.
//   4. The update: model = update(model, s, grad_avg, scale) with grad_avg[j] = the plain
//      result's second section / popcount(mask) and scale = quant result / its mask; both are
//      independent of who took part (grad(s, j) and s+1), so expected(s+1) is a pure function
//      of s, whatever the churn.
//
// Exactness: integers in uint64 and float64 below 2^53 add exactly in any order; the float
// update is the same sequence of IEEE operations in the peer and in the driver (both are
// built with -ffp-contract=off, so no fused multiply-add can differ between them).
//
// Hashes: XXH3-64 (libxxhash) over the bytes, chained through the seed (model_hash,
// bytes_hash); equal on every platform for the same bytes.
#pragma once

#include <xxhash.h>

#include <bit>
#include <cstdint>
#include <cstring>
#include <vector>

namespace qccl::chaos {

constexpr int kMaxSlots = 16;  // peer slots: masks fit in 16 bits
constexpr size_t kMaskWords = 64;
constexpr size_t kGradWords = size_t{1} << 15;
constexpr size_t kPlainWords = kMaskWords + kGradWords;  // 256.5 KiB per all-reduce
constexpr size_t kQuantCount = size_t{1} << 14;          // 128 KiB of float64, 16 KiB on the wire
constexpr size_t kWeights = (size_t{1} << 19) + 5;       // float32: 2 MiB + 20 bytes, 3 pieces
constexpr size_t kBias = 1024;                           // float64
constexpr size_t kLocalWords = 1024;                     // uint32, allow_content_inequality

constexpr uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// The gradient word j of step s, identical on every peer (20 bits: a sum over 16 peers fits).
constexpr uint64_t grad(uint64_t s, size_t j) {
  return splitmix64(s * 0x100000001B3ull + j) & 0xFFFFF;
}

inline uint64_t bytes_hash(const void* p, size_t n, uint64_t seed) {
  return XXH3_64bits_withSeed(p, n, seed ^ n);
}

// The plain all-reduce input of peer `slot` at step s.
inline void plain_input(int slot, uint64_t s, std::vector<uint64_t>& out) {
  out.resize(kPlainWords);
  const uint64_t mine = (uint64_t{1} << slot) * (s + 1);
  for (size_t j = 0; j < kMaskWords; ++j) out[j] = mine;
  for (size_t j = 0; j < kGradWords; ++j) out[kMaskWords + j] = grad(s, j);
}

// The exact plain result for the participants `mask` at step s.
inline void plain_expected(uint64_t mask, uint64_t s, std::vector<uint64_t>& out) {
  out.resize(kPlainWords);
  const uint64_t world = static_cast<uint64_t>(std::popcount(mask));
  for (size_t j = 0; j < kMaskWords; ++j) out[j] = mask * (s + 1);
  for (size_t j = 0; j < kGradWords; ++j) out[kMaskWords + j] = world * grad(s, j);
}

inline void quant_input(int slot, uint64_t s, std::vector<double>& out) {
  out.assign(kQuantCount, static_cast<double>((uint64_t{1} << slot) * (s + 1)));
}

inline void quant_expected(uint64_t mask, uint64_t s, std::vector<double>& out) {
  out.assign(kQuantCount, static_cast<double>(mask * (s + 1)));
}

// The shared model. Tensors are listed in name order (the library sorts them anyway).
struct Model {
  std::vector<float> w;        // "model.w"
  std::vector<double> b;       // "model.b"
  int64_t step = 0;            // "train.step"
  std::vector<uint32_t> local; // "z.local": this peer's own bytes, allow_content_inequality

  // expected(0): the same on every peer; `local` is filled from `local_seed`.
  static Model initial(uint64_t local_seed) {
    Model m;
    m.w.resize(kWeights);
    for (size_t j = 0; j < kWeights; ++j) {
      m.w[j] = static_cast<float>(splitmix64(j) >> 40) * 0x1p-24f;
    }
    m.b.assign(kBias, 0.0);
    m.step = 0;
    m.local.resize(kLocalWords);
    for (size_t j = 0; j < kLocalWords; ++j) {
      m.local[j] = static_cast<uint32_t>(splitmix64(local_seed * 7919 + j));
    }
    return m;
  }

  // expected(s) -> expected(s+1). grad_avg has kGradWords words; scale is s+1 when the
  // all-reduces were right.
  void update(uint64_t s, const uint64_t* grad_avg, double scale) {
    for (size_t j = 0; j < w.size(); ++j) {
      const float g = static_cast<float>(grad_avg[j % kGradWords] & 0xFFFF) * 0x1p-20f;
      w[j] = w[j] * 0.9990234375f + g;
    }
    for (size_t j = 0; j < b.size(); ++j) {
      b[j] = b[j] * 0.5 + scale * static_cast<double>(j + 1);
    }
    step = static_cast<int64_t>(s + 1);
  }

  // The hash of every compared tensor (not `local`), in name order.
  uint64_t hash() const {
    uint64_t h = bytes_hash(w.data(), w.size() * sizeof(float), 1);
    h = bytes_hash(b.data(), b.size() * sizeof(double), h);
    return bytes_hash(&step, sizeof step, h);
  }
};

// expected(s) for s = 0, 1, 2, ...: the driver's replay of the model, one update per step.
class ExpectedModel {
 public:
  ExpectedModel() : model_(Model::initial(0)) { hashes_.push_back(model_.hash()); }

  // The hash of expected(s); replays up to s first.
  uint64_t hash_at(uint64_t s) {
    std::vector<uint64_t> g(kGradWords);
    while (hashes_.size() <= s) {
      const uint64_t t = hashes_.size() - 1;
      for (size_t j = 0; j < kGradWords; ++j) g[j] = grad(t, j);
      model_.update(t, g.data(), static_cast<double>(t + 1));
      hashes_.push_back(model_.hash());
    }
    return hashes_[s];
  }

 private:
  Model model_;
  std::vector<uint64_t> hashes_;
};

}  // namespace qccl::chaos
