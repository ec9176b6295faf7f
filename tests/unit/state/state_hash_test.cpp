// Shared-state content hashes (state/state_hash.hpp): piece geometry, the piece/combine scheme
// recomputed independently with libxxhash, thread-count independence, sensitivity to single
// bit flips and to length, and golden values (the scheme is part of the wire protocol).
#include "state/state_hash.hpp"

#include <xxhash.h>

#include <algorithm>
#include <cstdint>
#include <span>
#include <vector>

#include <gtest/gtest.h>

#include "support/watchdog.hpp"

QCCL_TEST_WATCHDOG(60);

namespace qccl::state {
namespace {

constexpr size_t P = kPieceBytes;

// Deterministic pseudo-random bytes (xorshift64*), different per seed.
std::vector<uint8_t> bytes_of(size_t n, uint64_t seed) {
  std::vector<uint8_t> v(n);
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (size_t i = 0; i < n; ++i) {
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    v[i] = static_cast<uint8_t>((x * 0x2545F4914F6CDD1Dull) >> 56);
  }
  return v;
}

// The documented scheme, written out independently of the library: XXH3-64 of each piece of
// kPieceBytes (one empty piece for an empty tensor), then XXH3-64 of the little-endian array
// of piece hashes seeded with the byte length.
struct Reference {
  uint64_t hash = 0;
  std::vector<uint64_t> pieces;
};
Reference reference_hash(const std::vector<uint8_t>& data) {
  static const uint8_t kEmpty = 0;
  Reference r;
  if (data.empty()) {
    r.pieces.push_back(XXH3_64bits(&kEmpty, 0));
  } else {
    for (size_t off = 0; off < data.size(); off += (1u << 20)) {
      size_t len = std::min<size_t>(1u << 20, data.size() - off);
      r.pieces.push_back(XXH3_64bits(data.data() + off, len));
    }
  }
  std::vector<uint8_t> le;
  for (uint64_t h : r.pieces) {
    for (int b = 0; b < 8; ++b) le.push_back(static_cast<uint8_t>(h >> (8 * b)));
  }
  r.hash = XXH3_64bits_withSeed(le.data(), le.size(), data.size());
  return r;
}

TensorHash hash_one(const std::vector<uint8_t>& data, unsigned threads = 1) {
  TensorBytes t{data.empty() ? nullptr : data.data(), data.size()};
  auto out = hash_tensors(std::span<const TensorBytes>(&t, 1), threads);
  EXPECT_EQ(out.size(), 1u);
  return out.at(0);
}

// ---------------------------------------------------------------- geometry

TEST(StateHashPieces, PieceSizeIsOneMebibyte) { EXPECT_EQ(kPieceBytes, size_t{1} << 20); }

TEST(StateHashPieces, CountOffsetAndSize) {
  struct Case {
    size_t bytes;
    std::vector<size_t> sizes;  // of every piece
  };
  // clang-format off
  const std::vector<Case> cases = {
      {0, {0}},
      {1, {1}},
      {P - 1, {P - 1}},
      {P, {P}},
      {P + 1, {P, 1}},
      {5 * P + 7, {P, P, P, P, P, 7}},
  };
  // clang-format on
  for (const Case& c : cases) {
    SCOPED_TRACE(c.bytes);
    ASSERT_EQ(piece_count(c.bytes), c.sizes.size());
    size_t covered = 0;
    for (size_t i = 0; i < c.sizes.size(); ++i) {
      EXPECT_EQ(piece_offset(i), i * P);
      EXPECT_EQ(piece_offset(i), covered);
      EXPECT_EQ(piece_size(c.bytes, i), c.sizes[i]) << "piece " << i;
      covered += piece_size(c.bytes, i);
    }
    EXPECT_EQ(covered, c.bytes);  // the pieces tile the tensor exactly
  }
}

// ---------------------------------------------------------------- the scheme

TEST(StateHashScheme, TensorHashIsCombinationOfPerPieceXxh3) {
  for (size_t n : {size_t{0}, size_t{1}, P - 1, P, P + 1, 2 * P + 3}) {
    SCOPED_TRACE(n);
    std::vector<uint8_t> data = bytes_of(n, n + 1);
    Reference ref = reference_hash(data);
    TensorHash got = hash_one(data);
    EXPECT_EQ(got.pieces, ref.pieces);
    EXPECT_EQ(got.hash, ref.hash);
    EXPECT_EQ(combine_piece_hashes(got.pieces, n), ref.hash);
    for (size_t i = 0; i < piece_count(n); ++i) {
      size_t len = piece_size(n, i);
      EXPECT_EQ(hash_piece(len == 0 ? data.data() : data.data() + piece_offset(i), len),
                ref.pieces[i]);
    }
  }
}

TEST(StateHashScheme, SameResultWithOneTwoAndEightThreads) {
  std::vector<std::vector<uint8_t>> data = {
      {},
      bytes_of(1, 2),
      bytes_of(3 * P + 5, 3),
      bytes_of(8 * P, 4),
  };
  std::vector<TensorBytes> tensors;
  for (const auto& d : data) tensors.push_back({d.empty() ? nullptr : d.data(), d.size()});

  std::vector<TensorHash> one = hash_tensors(tensors, 1);
  ASSERT_EQ(one.size(), data.size());
  for (size_t t = 0; t < data.size(); ++t) {
    SCOPED_TRACE(t);
    Reference ref = reference_hash(data[t]);
    EXPECT_EQ(one[t].hash, ref.hash);
    EXPECT_EQ(one[t].pieces, ref.pieces);
    EXPECT_EQ(one[t].pieces.size(), piece_count(data[t].size()));
  }
  for (unsigned threads : {2u, 8u, 0u}) {
    SCOPED_TRACE(threads);
    std::vector<TensorHash> many = hash_tensors(tensors, threads);
    ASSERT_EQ(many.size(), data.size());
    for (size_t t = 0; t < data.size(); ++t) {
      EXPECT_EQ(many[t].hash, one[t].hash) << "tensor " << t;
      EXPECT_EQ(many[t].pieces, one[t].pieces) << "tensor " << t;
    }
  }
  // Hashing a tensor alone or among others gives the same result.
  for (size_t t = 0; t < data.size(); ++t) EXPECT_EQ(hash_one(data[t], 8).hash, one[t].hash);
}

TEST(StateHashScheme, NoTensorsGiveNoHashes) {
  EXPECT_TRUE(hash_tensors(std::span<const TensorBytes>{}, 4).empty());
}

// ---------------------------------------------------------------- sensitivity

TEST(StateHashSensitivity, SingleBitFlipChangesTensorHashAndExactlyOnePiece) {
  const std::vector<uint8_t> base = bytes_of(3 * P + 5, 7);
  const TensorHash h0 = hash_one(base, 4);
  struct Flip {
    size_t byte;
    int bit;
    size_t piece;
  };
  const std::vector<Flip> flips = {
      {0, 0, 0},                // first byte
      {P - 1, 7, 0},            // last byte of the first piece
      {P, 0, 1},                // first byte of the second piece
      {2 * P, 3, 2},            // another boundary
      {base.size() - 1, 7, 3},  // last byte
      {base.size() - 1, 0, 3},
  };
  for (const Flip& f : flips) {
    SCOPED_TRACE(::testing::Message() << "byte " << f.byte << " bit " << f.bit);
    std::vector<uint8_t> d = base;
    d[f.byte] ^= static_cast<uint8_t>(1u << f.bit);
    TensorHash h = hash_one(d, 4);
    EXPECT_NE(h.hash, h0.hash);
    ASSERT_EQ(h.pieces.size(), h0.pieces.size());
    size_t differing = 0;
    for (size_t i = 0; i < h.pieces.size(); ++i) {
      if (h.pieces[i] != h0.pieces[i]) {
        ++differing;
        EXPECT_EQ(i, f.piece);
      }
    }
    EXPECT_EQ(differing, 1u);
  }
}

TEST(StateHashSensitivity, SameBytesDifferentLengthDiffer) {
  for (size_t n : {size_t{0}, size_t{1}, size_t{100}, P - 1, P, 2 * P}) {
    SCOPED_TRACE(n);
    std::vector<uint8_t> d = bytes_of(n, 11);
    std::vector<uint8_t> longer = d;
    longer.push_back(0);  // a trailing zero byte
    EXPECT_NE(hash_one(d).hash, hash_one(longer).hash);
  }
  // All-zero tensors of different lengths, including within one piece.
  std::vector<uint8_t> z3(3, 0), z4(4, 0);
  EXPECT_NE(hash_one(z3).hash, hash_one(z4).hash);
}

TEST(StateHashSensitivity, CombineDependsOnLengthAndOrder) {
  const std::vector<uint64_t> pieces = {1, 2};
  const std::vector<uint64_t> swapped = {2, 1};
  EXPECT_NE(combine_piece_hashes(pieces, P + 1), combine_piece_hashes(pieces, P + 2));
  EXPECT_NE(combine_piece_hashes(pieces, P + 1), combine_piece_hashes(swapped, P + 1));
}

// ---------------------------------------------------------------- golden values

// Computed once and hard-coded: if one of these changes, peers built before and after the
// change disagree on every shared-state hash (the scheme is part of the wire protocol).
TEST(StateHashGolden, FixedInputs) {
  std::vector<uint8_t> small(100);
  for (size_t i = 0; i < small.size(); ++i) small[i] = static_cast<uint8_t>(i);
  std::vector<uint8_t> two_pieces(P + 3);
  for (size_t i = 0; i < two_pieces.size(); ++i) {
    two_pieces[i] = static_cast<uint8_t>(i * 131 + 7);
  }
  const TensorHash empty = hash_one({});
  const TensorHash s = hash_one(small);
  const TensorHash t = hash_one(two_pieces);
  const std::vector<uint8_t> abc = {'a', 'b', 'c'};

  // The empty tensor: one empty piece, whose hash is XXH3-64 of nothing (the well-known
  // 0x2d06800538d394c2), combined with seed 0.
  ASSERT_EQ(empty.pieces.size(), 1u);
  EXPECT_EQ(empty.pieces[0], 0x2d06800538d394c2ull);
  EXPECT_EQ(empty.hash, 0x9f77619e37e86919ull);
  // Bytes 0, 1, ..., 99: one piece.
  ASSERT_EQ(s.pieces.size(), 1u);
  EXPECT_EQ(s.pieces[0], 0x004e4f921a64bd1cull);
  EXPECT_EQ(s.hash, 0xe2dfbad7a4f46921ull);
  // kPieceBytes + 3 bytes, byte i = (i * 131 + 7) mod 256: two pieces.
  ASSERT_EQ(t.pieces.size(), 2u);
  EXPECT_EQ(t.pieces[0], 0x6f7c82505ffbc516ull);
  EXPECT_EQ(t.pieces[1], 0x6e3e2670e61106acull);
  EXPECT_EQ(t.hash, 0xaa7f6b16eac3d8dfull);
  EXPECT_EQ(hash_one(abc).hash, 0xef1430632337fc09ull);
  // And with several threads.
  EXPECT_EQ(hash_one(two_pieces, 8).hash, 0xaa7f6b16eac3d8dfull);
}

}  // namespace
}  // namespace qccl::state
