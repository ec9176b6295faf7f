// The record layer (net/record_cipher.hpp) without sockets: HKDF-SHA256 against RFC 5869, the
// session keys and one sealed record per suite against vectors computed outside qccl, round
// trips, and the refusals the header promises (altered, injected, replayed, reordered and
// dropped records all fail authentication, and so does everything after a failure).
//
// The expected bytes below were computed independently of qccl and of OpenSSL's HKDF: with
// Python 3's hmac/hashlib (RFC 5869 written out: PRK = HMAC(salt, IKM), T(i) = HMAC(PRK,
// T(i-1) | info | i)) and the `cryptography` package's AESGCM / ChaCha20Poly1305 for the
// records; the session keys were cross-checked with `openssl kdf ... HKDF`.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <fstream>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "net/record_cipher.hpp"
#include "wire/byte_io.hpp"
#include "wire/frame.hpp"

namespace qccl::net {
namespace {

using Bytes = std::vector<uint8_t>;
constexpr CipherSuite kAes = CipherSuite::kAes256Gcm;
constexpr CipherSuite kChaCha = CipherSuite::kChaCha20Poly1305;

std::string hex(std::span<const uint8_t> bytes) {
  std::string s;
  for (uint8_t b : bytes) s += fmt::format("{:02x}", b);
  return s;
}

Bytes iota_bytes(uint8_t first, size_t n) {
  Bytes b(n);
  for (size_t i = 0; i < n; ++i) b[i] = static_cast<uint8_t>(first + i);
  return b;
}

std::span<const uint8_t> as_bytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

Bytes random_bytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  Bytes b(n);
  for (auto& x : b) x = static_cast<uint8_t>(rng());
  return b;
}

// The keys of the record vectors: key = 00..1f, iv = a0..ab.
DirectionKeys fixed_keys() {
  DirectionKeys k;
  for (size_t i = 0; i < kKeySize; ++i) k.key[i] = static_cast<uint8_t>(i);
  for (size_t i = 0; i < kIvSize; ++i) k.iv[i] = static_cast<uint8_t>(0xa0 + i);
  return k;
}

Bytes seal_parts(RecordSealer& s, std::span<const std::span<const uint8_t>> parts) {
  size_t total = 0;
  for (auto p : parts) total += p.size();
  Bytes out(total + kRecordOverhead);
  auto n = s.seal(parts, out.data());
  EXPECT_TRUE(n.is_ok()) << n.status().to_string();
  if (n.is_ok()) {
    EXPECT_EQ(*n, out.size());
  }
  return out;
}

Bytes seal(RecordSealer& s, std::span<const uint8_t> plain) {
  const std::span<const uint8_t> parts[] = {plain};
  return seal_parts(s, parts);
}

// Opens `record` (header | ciphertext | tag) from a copy; the plaintext goes to `*plain`.
Status open(RecordOpener& o, const Bytes& record, Bytes* plain = nullptr) {
  Bytes data(record.begin() + kRecordHeaderSize, record.end() - kTagSize);
  const std::span<const uint8_t> r(record);
  Status s = o.open(r.first<kRecordHeaderSize>(), data, r.last<kTagSize>());
  if (plain != nullptr) *plain = std::move(data);
  return s;
}

std::array<uint8_t, kRecordHeaderSize> header_of(uint32_t length) {
  std::array<uint8_t, kRecordHeaderSize> h{};
  wire::store_le<uint32_t>(h.data(), length);
  return h;
}

// ---- HKDF and session keys

TEST(Hkdf, Rfc5869TestCase1) {
  const Bytes ikm(22, 0x0b), salt = iota_bytes(0x00, 13), info = iota_bytes(0xf0, 10);
  EXPECT_EQ(hex(hkdf_sha256(ikm, salt, info, 42)),
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865");
}

TEST(Hkdf, Rfc5869TestCase2) {
  const Bytes ikm = iota_bytes(0x00, 80), salt = iota_bytes(0x60, 80),
              info = iota_bytes(0xb0, 80);
  EXPECT_EQ(hex(hkdf_sha256(ikm, salt, info, 82)),
            "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c"
            "59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71"
            "cc30c58179ec3e87c14c01d5c1f3434f1d87");
}

TEST(Hkdf, Rfc5869TestCase3EmptySaltAndInfo) {
  const Bytes ikm(22, 0x0b);
  EXPECT_EQ(hex(hkdf_sha256(ikm, {}, {}, 42)),
            "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8");
}

std::string hex(const SessionKeys& k) {
  return hex(k.client_to_server.key) + hex(k.client_to_server.iv) + hex(k.server_to_client.key) +
         hex(k.server_to_client.iv);
}

SessionKeys test_session_keys(CipherSuite suite, uint8_t client_fill = 0x11,
                              uint8_t server_fill = 0x22) {
  const Bytes preamble = iota_bytes(0, wire::kPreambleSize);
  const Bytes client(32, client_fill), server(32, server_fill);
  return derive_session_keys("qccl-test-secret", suite,
                             std::span<const uint8_t, wire::kPreambleSize>(preamble.data(),
                                                                           preamble.size()),
                             client, server);
}

TEST(SessionKeys, MatchIndependentHkdf) {
  // HKDF-SHA256(IKM "qccl-test-secret", salt 11*32 | 22*32,
  //             info "qccl record keys v1" | suite | 00..1f), 88 bytes (see the file comment).
  EXPECT_EQ(hex(test_session_keys(kAes)),
            "cc09b4c0f0491dfdd727d491bc853de2f952fb273d5a5be4f73baf4c570afe0a"  // c2s key
            "f0ee798b91ed0675816efa0b"                                          // c2s iv
            "aafce3354b244dff17bf562bc4d314ba2f0dd09d0231c97f734f9c2f795a9f0e"  // s2c key
            "d1b40a6a9c9e37c3fec72478");                                        // s2c iv
  EXPECT_EQ(hex(test_session_keys(kChaCha)),
            "607286e21f7b129ab49af8479bf9625ff971430ff65c602453291653446ab6b1"
            "8a62307ef609e97746f8eafc"
            "947cb13002b88634df4e2b445786fe92fcb7f7e6d36d0b3865543ba9ff11eb34"
            "0defb07b41e93a9931010995");
}

TEST(SessionKeys, DependOnSuiteDirectionAndNonceOrder) {
  const SessionKeys aes = test_session_keys(kAes);
  EXPECT_NE(aes.client_to_server.key, aes.server_to_client.key);
  EXPECT_NE(aes.client_to_server.iv, aes.server_to_client.iv);
  EXPECT_NE(hex(aes), hex(test_session_keys(kChaCha)));
  EXPECT_NE(hex(aes), hex(test_session_keys(kAes, 0x22, 0x11)));  // salt is client | server
}

// ---- suites

// Whether /proc/cpuinfo lists the AES flag (x86 "flags", ARM "Features"); nullopt if it
// lists neither line, so the test has nothing to compare against.
std::optional<bool> cpuinfo_has_aes() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("flags", 0) != 0 && line.rfind("Features", 0) != 0) continue;
    return (line + " ").find(" aes ") != std::string::npos;
  }
  return std::nullopt;
}

TEST(Suites, PreferredFollowsTheCpusAesFlag) {
  const auto aes = cpuinfo_has_aes();
  if (!aes) GTEST_SKIP() << "/proc/cpuinfo has no flags line";
  EXPECT_EQ(preferred_suite(), *aes ? kAes : kChaCha) << suite_name(preferred_suite());
}

TEST(Suites, AgreeOnAesOnlyWhenBothPreferIt) {
  EXPECT_EQ(agree_suite(kAes, kAes), kAes);
  EXPECT_EQ(agree_suite(kAes, kChaCha), kChaCha);
  EXPECT_EQ(agree_suite(kChaCha, kAes), kChaCha);
  EXPECT_EQ(agree_suite(kChaCha, kChaCha), kChaCha);
  EXPECT_EQ(suite_name(kAes), "AES-256-GCM");
  EXPECT_EQ(suite_name(kChaCha), "ChaCha20-Poly1305");
  EXPECT_EQ(suite_name(CipherSuite::kNone), "none");
}

// ---- known records

// Records 0, 1 and 258 of "qccl record" under fixed_keys(): header | ciphertext | tag, from
// `cryptography`'s AEADs with nonce = iv XOR seq (big-endian, last 8 bytes) and the header as
// associated data. Record 258 (0x0102) pins the byte order of the sequence number.
struct KnownRecord {
  CipherSuite suite;
  uint64_t seq;
  const char* hex;
};
const KnownRecord kKnownRecords[] = {
    {kAes, 0, "0b000000977b1f4165b967dc0d17e3d7f38cb5b64ea28994ca7fd5407fda8e"},
    {kAes, 1, "0b00000024fda00bf09d78fa89a5b9f642fa33d6dbccaf2874af124789c06f"},
    {kAes, 258, "0b0000009c4b43d4f0adcf3fb61a63e72c4f5159ef150b90a29c71e6483e7b"},
    {kChaCha, 0, "0b0000007dc81b336d94a7cecf7d976f7aec9d038a42bb75423476d340ac02"},
    {kChaCha, 1, "0b0000000316af9fcf0f268e7be20d895f8eeafd585aada578c924b7dd4900"},
    {kChaCha, 258, "0b000000bae8d182a42cfcd25b6c2384940c4f9c49b9f4213f8bb7404c30a5"},
};

TEST(KnownRecords, SealToTheIndependentBytes) {
  for (CipherSuite suite : {kAes, kChaCha}) {
    RecordSealer sealer(suite, fixed_keys());
    RecordOpener opener(suite, fixed_keys());
    for (uint64_t seq = 0; seq <= 258; ++seq) {
      const Bytes record = seal(sealer, as_bytes("qccl record"));
      Bytes plain;
      ASSERT_TRUE(open(opener, record, &plain).is_ok()) << seq;
      for (const KnownRecord& k : kKnownRecords) {
        if (k.suite == suite && k.seq == seq) {
          EXPECT_EQ(hex(record), k.hex) << suite_name(suite) << " record " << seq;
        }
      }
    }
    EXPECT_EQ(sealer.records(), 259u);
    EXPECT_EQ(opener.records(), 259u);
  }
}

// ---- per suite: round trips and refusals

class RecordCipher : public ::testing::TestWithParam<CipherSuite> {
 protected:
  RecordSealer sealer_{GetParam(), fixed_keys()};
  RecordOpener opener_{GetParam(), fixed_keys()};

  // Records 0..n-1 of distinct 100-byte plaintexts.
  std::vector<Bytes> seal_records(int n) {
    std::vector<Bytes> out;
    for (int i = 0; i < n; ++i) out.push_back(seal(sealer_, random_bytes(100, i)));
    return out;
  }
};

TEST_P(RecordCipher, RoundTripsEverySize) {
  const size_t sizes[] = {1, 2, 15, 16, 17, 4096, kMaxRecordPayload - 1, kMaxRecordPayload};
  uint32_t seed = 0;
  for (int round = 0; round < 20; ++round) {
    for (size_t n : sizes) {
      const Bytes plain = random_bytes(n, ++seed);
      const Bytes record = seal(sealer_, plain);
      ASSERT_EQ(record.size(), n + kRecordOverhead);
      auto len = RecordOpener::payload_length(std::span(record).first<kRecordHeaderSize>());
      ASSERT_TRUE(len.is_ok());
      EXPECT_EQ(*len, n);
      Bytes opened;
      ASSERT_TRUE(open(opener_, record, &opened).is_ok()) << n;
      ASSERT_EQ(opened, plain);
    }
  }
  EXPECT_EQ(opener_.records(), sealer_.records());
}

TEST_P(RecordCipher, GatherEqualsOneContiguousPart) {
  const Bytes plain = random_bytes(5000, 7);
  const std::span<const uint8_t> p(plain);
  // Uneven pieces, an empty one among them.
  const std::span<const uint8_t> parts[] = {p.subspan(0, 1), p.subspan(1, 999), p.subspan(1000, 0),
                                            p.subspan(1000, 3000), p.subspan(4000)};
  RecordSealer contiguous(GetParam(), fixed_keys());
  for (int i = 0; i < 3; ++i) {  // at several sequence numbers
    const Bytes gathered = seal_parts(sealer_, parts);
    EXPECT_EQ(gathered, seal(contiguous, plain));
    Bytes opened;
    ASSERT_TRUE(open(opener_, gathered, &opened).is_ok());
    EXPECT_EQ(opened, plain);
  }
}

TEST_P(RecordCipher, SealRefusesEmptyAndOversizedRecords) {
  const Bytes big(kMaxRecordPayload, 1), one(1, 2);
  Bytes buf(kMaxRecordPayload + 1 + kRecordOverhead);
  uint8_t* out = buf.data();
  const std::span<const uint8_t> empty_part[] = {std::span<const uint8_t>()};
  const std::span<const uint8_t> too_big[] = {big, one};
  EXPECT_EQ(sealer_.seal({}, out).status().code(), StatusCode::kInternal);
  EXPECT_EQ(sealer_.seal(empty_part, out).status().code(), StatusCode::kInternal);
  EXPECT_EQ(sealer_.seal(too_big, out).status().code(), StatusCode::kInternal);
  // A refused record uses no sequence number: the next one is record 0.
  EXPECT_EQ(sealer_.records(), 0u);
  EXPECT_TRUE(open(opener_, seal(sealer_, one)).is_ok());
}

TEST(RecordOpener, PayloadLengthAcceptsOnly1To64KiB) {
  for (uint32_t bad : {0u, 65537u, 0xFFFFFFFFu}) {
    EXPECT_EQ(RecordOpener::payload_length(header_of(bad)).status().code(),
              StatusCode::kInvalidArgument) << bad;
  }
  for (uint32_t good : {1u, 65536u}) {
    auto n = RecordOpener::payload_length(header_of(good));
    ASSERT_TRUE(n.is_ok());
    EXPECT_EQ(*n, good);
  }
}

// Expects `record` to fail, then the genuine `later` records to fail too (the latch).
void expect_refused(RecordOpener& o, const Bytes& record, const std::vector<Bytes>& later) {
  EXPECT_EQ(open(o, record).code(), StatusCode::kAuthFailed);
  for (const Bytes& r : later) EXPECT_EQ(open(o, r).code(), StatusCode::kAuthFailed);
  EXPECT_EQ(o.records(), 0u);
}

TEST_P(RecordCipher, AlteredCiphertextFails) {
  auto recs = seal_records(2);
  recs[0][kRecordHeaderSize + 50] ^= 0x01;
  expect_refused(opener_, recs[0], {recs[1]});
}

TEST_P(RecordCipher, AlteredTagFails) {
  auto recs = seal_records(2);
  recs[0].back() ^= 0x80;
  expect_refused(opener_, recs[0], {recs[1]});
}

TEST_P(RecordCipher, AlteredLengthFails) {
  auto recs = seal_records(2);
  // A valid length that disagrees with the data that came with it.
  Bytes wrong_size = recs[0];
  wrong_size[0] = 99;
  expect_refused(opener_, wrong_size, {recs[0], recs[1]});

  // A valid length with the data cut to match: the header is authenticated, so the tag fails.
  RecordOpener fresh(GetParam(), fixed_keys());
  Bytes cut = recs[0];
  cut.erase(cut.begin() + kRecordHeaderSize + 99);
  cut[0] = 99;
  expect_refused(fresh, cut, {recs[0], recs[1]});
}

TEST_P(RecordCipher, InjectedRecordsFail) {
  auto recs = seal_records(2);
  DirectionKeys other = fixed_keys();
  other.key[0] ^= 1;
  RecordSealer intruder(GetParam(), other);
  expect_refused(opener_, seal(intruder, random_bytes(100, 0)), {recs[0], recs[1]});

  // Random bytes under a valid header.
  RecordOpener fresh(GetParam(), fixed_keys());
  Bytes noise = random_bytes(100 + kRecordOverhead, 99);
  wire::store_le<uint32_t>(noise.data(), 100);
  expect_refused(fresh, noise, {recs[0], recs[1]});

  // The same keys under the other suite.
  RecordSealer other_suite(GetParam() == kAes ? kChaCha : kAes, fixed_keys());
  RecordOpener third(GetParam(), fixed_keys());
  expect_refused(third, seal(other_suite, random_bytes(100, 0)), {recs[0], recs[1]});
}

TEST_P(RecordCipher, ReplayedRecordFails) {
  auto recs = seal_records(3);
  ASSERT_TRUE(open(opener_, recs[0]).is_ok());
  EXPECT_EQ(open(opener_, recs[0]).code(), StatusCode::kAuthFailed);
  EXPECT_EQ(open(opener_, recs[1]).code(), StatusCode::kAuthFailed);
  EXPECT_EQ(open(opener_, recs[2]).code(), StatusCode::kAuthFailed);
  EXPECT_EQ(opener_.records(), 1u);
}

TEST_P(RecordCipher, ReorderedRecordsFail) {
  auto recs = seal_records(3);
  expect_refused(opener_, recs[1], {recs[0], recs[2]});
}

TEST_P(RecordCipher, DroppedRecordFails) {
  auto recs = seal_records(3);
  ASSERT_TRUE(open(opener_, recs[0]).is_ok());
  EXPECT_EQ(open(opener_, recs[2]).code(), StatusCode::kAuthFailed);  // record 1 never came
  EXPECT_EQ(open(opener_, recs[1]).code(), StatusCode::kAuthFailed);  // nor is it taken late
  EXPECT_EQ(opener_.records(), 1u);
}

TEST_P(RecordCipher, DirectionsDoNotOpenEachOther) {
  const SessionKeys keys = test_session_keys(GetParam());
  RecordSealer c2s(GetParam(), keys.client_to_server);
  RecordOpener s2c(GetParam(), keys.server_to_client);
  EXPECT_EQ(open(s2c, seal(c2s, random_bytes(10, 1))).code(), StatusCode::kAuthFailed);
}

INSTANTIATE_TEST_SUITE_P(Suites, RecordCipher, ::testing::Values(kAes, kChaCha),
                         [](const auto& param_info) {
                           return param_info.param == kAes ? std::string("Aes256Gcm")
                                                     : std::string("ChaCha20Poly1305");
                         });

}  // namespace
}  // namespace qccl::net
