#include "net/record_cipher.hpp"

#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>

#include <algorithm>
#include <string>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#elif defined(__aarch64__) && defined(__linux__)
#include <asm/hwcap.h>
#include <sys/auxv.h>
#endif

#include "wire/byte_io.hpp"

namespace qccl::net {
namespace {

constexpr std::string_view kKeyLabel = "qccl record keys v1";

const EVP_CIPHER* evp_cipher(CipherSuite suite) {
  switch (suite) {
    case CipherSuite::kAes256Gcm: return EVP_aes_256_gcm();
    case CipherSuite::kChaCha20Poly1305: return EVP_chacha20_poly1305();
    case CipherSuite::kNone: break;
  }
  return nullptr;
}

bool cpu_has_aes() {
#if defined(__x86_64__) || defined(__i386__)
  unsigned a = 0, b = 0, c = 0, d = 0;
  return __get_cpuid(1, &a, &b, &c, &d) != 0 && (c & bit_AES) != 0;
#elif defined(__aarch64__) && defined(__linux__)
  return (getauxval(AT_HWCAP) & HWCAP_AES) != 0;
#else
  return false;
#endif
}

// The record's nonce: the IV with the sequence number XORed into its last 8 bytes.
std::array<uint8_t, kIvSize> record_nonce(const std::array<uint8_t, kIvSize>& iv, uint64_t seq) {
  std::array<uint8_t, kIvSize> n = iv;
  for (int i = 0; i < 8; ++i) n[kIvSize - 1 - i] ^= static_cast<uint8_t>(seq >> (8 * i));
  return n;
}

// One EVP context, keyed once; each record only sets its nonce.
struct CipherCtx {
  CipherCtx(CipherSuite suite, const DirectionKeys& keys, bool encrypt)
      : ctx(EVP_CIPHER_CTX_new()), iv(keys.iv) {
    const EVP_CIPHER* cipher = evp_cipher(suite);
    ok = ctx != nullptr && cipher != nullptr &&
         EVP_CipherInit_ex(ctx, cipher, nullptr, nullptr, nullptr, encrypt ? 1 : 0) == 1 &&
         EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_IVLEN, static_cast<int>(kIvSize), nullptr) == 1 &&
         EVP_CipherInit_ex(ctx, nullptr, nullptr, keys.key.data(), nullptr, -1) == 1;
  }
  ~CipherCtx() { EVP_CIPHER_CTX_free(ctx); }
  CipherCtx(const CipherCtx&) = delete;
  CipherCtx& operator=(const CipherCtx&) = delete;

  // Starts record `seq` with its header as associated data.
  bool begin(uint64_t seq, const uint8_t* header) {
    auto nonce = record_nonce(iv, seq);
    int len = 0;
    return ok && EVP_CipherInit_ex(ctx, nullptr, nullptr, nullptr, nonce.data(), -1) == 1 &&
           EVP_CipherUpdate(ctx, nullptr, &len, header, static_cast<int>(kRecordHeaderSize)) == 1;
  }
  bool update(const uint8_t* in, size_t n, uint8_t* out) {
    int len = 0;
    return EVP_CipherUpdate(ctx, out, &len, in, static_cast<int>(n)) == 1 &&
           static_cast<size_t>(len) == n;
  }

  EVP_CIPHER_CTX* ctx;
  std::array<uint8_t, kIvSize> iv;
  bool ok = false;
};

}  // namespace

std::string_view suite_name(CipherSuite suite) {
  switch (suite) {
    case CipherSuite::kAes256Gcm: return "AES-256-GCM";
    case CipherSuite::kChaCha20Poly1305: return "ChaCha20-Poly1305";
    case CipherSuite::kNone: break;
  }
  return "none";
}

CipherSuite preferred_suite() {
  static const CipherSuite suite =
      cpu_has_aes() ? CipherSuite::kAes256Gcm : CipherSuite::kChaCha20Poly1305;
  return suite;
}

CipherSuite agree_suite(CipherSuite client, CipherSuite server) {
  return client == CipherSuite::kAes256Gcm && server == CipherSuite::kAes256Gcm
             ? CipherSuite::kAes256Gcm
             : CipherSuite::kChaCha20Poly1305;
}

std::vector<uint8_t> hkdf_sha256(std::span<const uint8_t> ikm, std::span<const uint8_t> salt,
                                 std::span<const uint8_t> info, size_t length) {
  std::vector<uint8_t> out(length);
  EVP_KDF* kdf = EVP_KDF_fetch(nullptr, "HKDF", nullptr);
  EVP_KDF_CTX* ctx = kdf != nullptr ? EVP_KDF_CTX_new(kdf) : nullptr;
  char digest[] = "SHA256";
  // OSSL_PARAM takes non-const pointers; HKDF only reads them. OpenSSL 3.0 refuses a null
  // octet string even of size 0, so an empty input (say the empty salt of RFC 5869 test
  // case 3) points at a dummy byte instead.
  uint8_t none = 0;
  auto param_data = [&](std::span<const uint8_t> s) {
    return s.empty() ? &none : const_cast<uint8_t*>(s.data());
  };
  auto* ikm_p = param_data(ikm);
  auto* salt_p = param_data(salt);
  auto* info_p = param_data(info);
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string("digest", digest, 0),
      OSSL_PARAM_construct_octet_string("key", ikm_p, ikm.size()),
      OSSL_PARAM_construct_octet_string("salt", salt_p, salt.size()),
      OSSL_PARAM_construct_octet_string("info", info_p, info.size()),
      OSSL_PARAM_construct_end(),
  };
  bool ok = ctx != nullptr && EVP_KDF_derive(ctx, out.data(), out.size(), params) == 1;
  EVP_KDF_CTX_free(ctx);
  EVP_KDF_free(kdf);
  if (!ok) out.clear();  // callers check the size (only an OpenSSL without HKDF gets here)
  return out;
}

SessionKeys derive_session_keys(std::string_view secret, CipherSuite suite,
                                std::span<const uint8_t, wire::kPreambleSize> preamble,
                                std::span<const uint8_t> client_nonce,
                                std::span<const uint8_t> server_nonce) {
  std::vector<uint8_t> salt(client_nonce.begin(), client_nonce.end());
  salt.insert(salt.end(), server_nonce.begin(), server_nonce.end());
  std::vector<uint8_t> info(kKeyLabel.begin(), kKeyLabel.end());
  info.push_back(static_cast<uint8_t>(suite));
  info.insert(info.end(), preamble.begin(), preamble.end());
  auto ikm = std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(secret.data()),
                                      secret.size());
  auto okm = hkdf_sha256(ikm, salt, info, 2 * (kKeySize + kIvSize));
  SessionKeys keys;
  if (okm.size() != 2 * (kKeySize + kIvSize)) return keys;  // zero keys: every record fails
  auto at = okm.begin();
  for (DirectionKeys* d : {&keys.client_to_server, &keys.server_to_client}) {
    std::copy_n(at, kKeySize, d->key.begin());
    at += kKeySize;
    std::copy_n(at, kIvSize, d->iv.begin());
    at += kIvSize;
  }
  return keys;
}

// ---- sealing

struct RecordSealer::Impl {
  Impl(CipherSuite suite, const DirectionKeys& keys) : cipher(suite, keys, true) {}
  CipherCtx cipher;
};

RecordSealer::RecordSealer(CipherSuite suite, const DirectionKeys& keys)
    : impl_(std::make_unique<Impl>(suite, keys)) {}
RecordSealer::~RecordSealer() = default;

Result<size_t> RecordSealer::seal(std::span<const std::span<const uint8_t>> parts, uint8_t* out) {
  size_t total = 0;
  for (const auto& p : parts) total += p.size();
  if (total == 0 || total > kMaxRecordPayload) {
    return make_status(StatusCode::kInternal, "record of {} bytes (1..{} allowed)", total,
                       kMaxRecordPayload);
  }
  if (seq_ == UINT64_MAX) {
    return make_status(StatusCode::kInternal, "the connection sealed 2^64 - 1 records");
  }
  wire::store_le<uint32_t>(out, static_cast<uint32_t>(total));
  CipherCtx& c = impl_->cipher;
  if (!c.begin(seq_, out)) return make_status(StatusCode::kInternal, "cannot start a record");
  uint8_t* at = out + kRecordHeaderSize;
  for (const auto& p : parts) {
    if (p.empty()) continue;
    if (!c.update(p.data(), p.size(), at)) {
      return make_status(StatusCode::kInternal, "cannot encrypt a record");
    }
    at += p.size();
  }
  int len = 0;
  if (EVP_EncryptFinal_ex(c.ctx, at, &len) != 1 ||
      EVP_CIPHER_CTX_ctrl(c.ctx, EVP_CTRL_AEAD_GET_TAG, static_cast<int>(kTagSize), at) != 1) {
    return make_status(StatusCode::kInternal, "cannot finish a record");
  }
  ++seq_;
  return total + kRecordOverhead;
}

// ---- opening

struct RecordOpener::Impl {
  Impl(CipherSuite suite, const DirectionKeys& keys) : cipher(suite, keys, false) {}
  CipherCtx cipher;
};

RecordOpener::RecordOpener(CipherSuite suite, const DirectionKeys& keys)
    : impl_(std::make_unique<Impl>(suite, keys)) {}
RecordOpener::~RecordOpener() = default;

Result<size_t> RecordOpener::payload_length(std::span<const uint8_t, kRecordHeaderSize> header) {
  const size_t n = wire::load_le<uint32_t>(header.data());
  if (n == 0 || n > kMaxRecordPayload) {
    return make_status(StatusCode::kInvalidArgument,
                       "record header announces {} bytes (1..{} allowed)", n, kMaxRecordPayload);
  }
  return n;
}

Status RecordOpener::open(std::span<const uint8_t, kRecordHeaderSize> header,
                          std::span<uint8_t> data, std::span<const uint8_t, kTagSize> tag) {
  auto fail = [&] {
    failed_ = true;
    return make_status(StatusCode::kAuthFailed,
                       "record {} failed authentication (altered, injected, replayed, "
                       "reordered or dropped bytes)", seq_);
  };
  if (failed_) return fail();
  auto n = payload_length(header);
  if (!n.is_ok() || *n != data.size()) return fail();
  CipherCtx& c = impl_->cipher;
  if (!c.begin(seq_, header.data()) || !c.update(data.data(), data.size(), data.data())) {
    return fail();
  }
  std::array<uint8_t, kTagSize> expected;
  std::copy(tag.begin(), tag.end(), expected.begin());
  int len = 0;
  if (EVP_CIPHER_CTX_ctrl(c.ctx, EVP_CTRL_AEAD_SET_TAG, static_cast<int>(kTagSize),
                          expected.data()) != 1 ||
      EVP_DecryptFinal_ex(c.ctx, data.data() + data.size(), &len) != 1) {
    return fail();
  }
  ++seq_;
  return Status::ok();
}

}  // namespace qccl::net
