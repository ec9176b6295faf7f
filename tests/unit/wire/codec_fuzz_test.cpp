// Randomized robustness test of the wire decoders (fixed seed, so failures reproduce).
//
// Valid frames of every control message, and data frames, are mutated (bit flips, byte
// changes, truncation, extension, insertion/deletion, length-field corruption) and decoded.
// Each outcome must be either a kInvalidArgument Status, or a message that re-encodes to a
// frame decoding to the same message. Since the encoding is canonical (one byte string per
// message), an accepted frame with flags 0 must re-encode to exactly its own bytes. Run under
// ASan/UBSan in CI, this also shows the decoders never read out of bounds.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <random>
#include <span>
#include <tuple>
#include <vector>

#include "wire/codec.hpp"
#include "wire_test_util.hpp"

namespace qccl::wire {
namespace {

constexpr uint64_t kSeed = 0x5143434C57495245ull;  // "QCCLWIRE"
constexpr int kMutations = 30000;

class Mutator {
 public:
  explicit Mutator(uint64_t seed) : rng_(seed) {}

  size_t below(size_t n) { return std::uniform_int_distribution<size_t>(0, n - 1)(rng_); }
  uint8_t byte() { return static_cast<uint8_t>(below(256)); }

  void mutate(std::vector<uint8_t>& b) {
    switch (below(7)) {
      case 0:  // flip 1..4 bits
        for (size_t i = 0, n = 1 + below(4); i < n && !b.empty(); ++i) {
          b[below(b.size())] ^= static_cast<uint8_t>(1u << below(8));
        }
        break;
      case 1:  // overwrite a byte
        if (!b.empty()) b[below(b.size())] = byte();
        break;
      case 2:  // truncate
        b.resize(below(b.size() + 1));
        break;
      case 3:  // extend with random bytes
        for (size_t i = 0, n = 1 + below(16); i < n; ++i) b.push_back(byte());
        break;
      case 4:  // insert or delete one byte inside
        if (!b.empty() && below(2) == 0) {
          b.erase(b.begin() + static_cast<std::ptrdiff_t>(below(b.size())));
        } else {
          b.insert(b.begin() + static_cast<std::ptrdiff_t>(below(b.size() + 1)), byte());
        }
        break;
      case 5:  // corrupt the frame header's payload_len
        if (b.size() >= 4) put_u32(b, 0, interesting_u32(b));
        break;
      default:  // corrupt a u32 anywhere: hits string lengths and ring counts
        if (b.size() >= 4) put_u32(b, below(b.size() - 3), interesting_u32(b));
        break;
    }
  }

 private:
  uint32_t interesting_u32(const std::vector<uint8_t>& b) {
    const uint32_t size = static_cast<uint32_t>(b.size());
    const std::array<uint32_t, 14> values = {0,
                                             1,
                                             2,
                                             kMaxStringBytes,
                                             kMaxStringBytes + 1,
                                             kMaxRingMembers,
                                             kMaxRingMembers + 1,
                                             kMaxControlPayload,
                                             kMaxControlPayload + 1,
                                             0x7FFFFFFFu,
                                             0xFFFFFFFFu,
                                             size,
                                             size - static_cast<uint32_t>(kFrameHeaderSize),
                                             static_cast<uint32_t>(rng_())};
    uint32_t v = values[below(values.size())];
    if (below(4) == 0) v += static_cast<uint32_t>(below(5)) - 2;  // off by -2..+2
    return v;
  }
  static void put_u32(std::vector<uint8_t>& b, size_t at, uint32_t v) {
    for (int i = 0; i < 4; ++i) b[at + i] = static_cast<uint8_t>(v >> (8 * i));
  }

  std::mt19937_64 rng_;
};

std::vector<uint8_t> data_frame(const P2PDataHeader& h, size_t segment_bytes, Epoch epoch) {
  const auto dh = encode_data_header(h);
  FrameHeader fh;
  fh.payload_len = static_cast<uint32_t>(kP2PDataHeaderSize + segment_bytes);
  fh.type = static_cast<uint16_t>(MsgType::kP2PData);
  fh.epoch = epoch;
  const auto hb = encode_frame_header(fh);
  std::vector<uint8_t> out(kFrameHeaderSize + kP2PDataHeaderSize + segment_bytes);
  std::copy(hb.begin(), hb.end(), out.begin());
  std::copy(dh.begin(), dh.end(), out.begin() + kFrameHeaderSize);
  for (size_t i = 0; i < segment_bytes; ++i) {
    out[kFrameHeaderSize + kP2PDataHeaderSize + i] = static_cast<uint8_t>(i * 7);
  }
  return out;
}

struct Tally {
  int accepted = 0;
  int rejected = 0;
  int bad_headers = 0;  // payload_len over the limit (counted in addition to the above)
};

// The bytes after a kP2PData header: every 32 bytes are a valid data header.
void check_data_payload(std::span<const uint8_t> payload, Tally& t) {
  if (payload.size() < kP2PDataHeaderSize) {
    ++t.rejected;
    return;
  }
  auto d = decode_data_header(payload.first<kP2PDataHeaderSize>());
  ASSERT_TRUE(d.is_ok()) << d.status().to_string();
  const auto again = encode_data_header(*d);
  ASSERT_TRUE(std::equal(again.begin(), again.end(), payload.begin()));
  auto d2 = decode_data_header(again);
  ASSERT_TRUE(d2.is_ok());
  EXPECT_EQ(std::tie(d->tag, d->seq, d->desc_hash, d->step, d->segment),
            std::tie(d2->tag, d2->seq, d2->desc_hash, d2->step, d2->segment));
  ++t.accepted;
}

// Checks the header, then decodes the bytes after it as the payload whatever payload_len says,
// so truncated and extended payloads reach the message decoder too.
void check_frame(std::span<const uint8_t> frame, Tally& t) {
  if (frame.size() < kFrameHeaderSize) {
    ++t.rejected;
    return;
  }
  const auto header_bytes = frame.first<kFrameHeaderSize>();
  auto checked = decode_frame_header(header_bytes, kMaxDataPayload);
  if (!checked.is_ok()) {
    ASSERT_EQ(checked.status().code(), StatusCode::kInvalidArgument);
    ++t.bad_headers;
  }
  auto raw = decode_frame_header(header_bytes, 0xFFFFFFFFu);  // no limit: cannot fail
  ASSERT_TRUE(raw.is_ok());
  const FrameHeader h = *raw;
  const std::span<const uint8_t> payload = frame.subspan(kFrameHeaderSize);
  if (h.type == static_cast<uint16_t>(MsgType::kP2PData)) {
    check_data_payload(payload, t);
    return;
  }
  auto m = decode_control(h.type, payload);
  if (!m.is_ok()) {
    ASSERT_EQ(m.status().code(), StatusCode::kInvalidArgument);
    ASSERT_FALSE(m.status().message().empty());
    ++t.rejected;
    return;
  }
  const std::vector<uint8_t> again = encode_frame(*m, h.epoch);
  auto m2 = test::decode_whole_frame(again);
  ASSERT_TRUE(m2.is_ok()) << m2.status().to_string();
  ASSERT_TRUE(test::same_message(*m, m2->message)) << "type " << h.type;
  EXPECT_EQ(m2->header.epoch, h.epoch);
  ASSERT_TRUE(std::equal(again.begin() + kFrameHeaderSize, again.end(), payload.begin(),
                         payload.end()))
      << "accepted payload of type " << h.type << " is not canonical";
  if (checked.is_ok() && h.payload_len == payload.size() && h.flags == 0) {
    ASSERT_TRUE(std::equal(again.begin(), again.end(), frame.begin(), frame.end()));
  }
  ++t.accepted;
}

TEST(WireCodecFuzz, MutatedFramesDecodeConsistentlyOrFail) {
  std::vector<std::vector<uint8_t>> seeds;
  for (const ControlMessage& m : test::sample_messages()) seeds.push_back(encode_frame(m, 77));
  seeds.push_back(data_frame(P2PDataHeader{1, 2, 3, 4, 5}, 0, 9));
  seeds.push_back(data_frame(P2PDataHeader{~0ull, 0, 0xABCDEF, 6, 1}, 40, 9));
  for (const auto& s : seeds) {  // the unmutated seeds are all accepted
    Tally t;
    check_frame(s, t);
    ASSERT_EQ(t.accepted, 1);
  }

  Mutator mut(kSeed);
  Tally tally;
  for (int i = 0; i < kMutations; ++i) {
    std::vector<uint8_t> frame = seeds[static_cast<size_t>(i) % seeds.size()];
    for (size_t n = 1 + mut.below(3); n > 0; --n) mut.mutate(frame);
    check_frame(frame, tally);
    if (::testing::Test::HasFatalFailure()) {
      FAIL() << "mutation " << i << " (seed " << kSeed << ")";
    }
  }
  EXPECT_EQ(tally.accepted + tally.rejected, kMutations);
  // Both paths must really be exercised, not just the early rejections.
  EXPECT_GT(tally.accepted, kMutations / 20);
  EXPECT_GT(tally.rejected, kMutations / 4);
  EXPECT_GT(tally.bad_headers, 0);
  std::printf("wire fuzz: %d accepted, %d rejected, %d oversized headers\n", tally.accepted,
              tally.rejected, tally.bad_headers);
}

// Pure random payloads under every type number in use (and some that are not).
TEST(WireCodecFuzz, RandomPayloadsNeverCrash) {
  std::mt19937_64 rng(kSeed + 1);
  int accepted = 0;
  for (int i = 0; i < 20000; ++i) {
    const uint16_t type = static_cast<uint16_t>(rng() % 70);
    std::vector<uint8_t> payload(rng() % 48);
    for (uint8_t& b : payload) b = static_cast<uint8_t>(rng() % 4 == 0 ? rng() : rng() % 3);
    auto m = decode_control(type, payload);
    if (!m.is_ok()) {
      ASSERT_EQ(m.status().code(), StatusCode::kInvalidArgument);
      continue;
    }
    ++accepted;
    const std::vector<uint8_t> again = encode_frame(*m, 0);
    ASSERT_TRUE(std::equal(again.begin() + kFrameHeaderSize, again.end(), payload.begin(),
                           payload.end()));
  }
  EXPECT_GT(accepted, 0);
}

}  // namespace
}  // namespace qccl::wire
