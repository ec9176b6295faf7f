// Little-endian byte helpers for the wire codec (private to src/wire; not installed).
//
// ByteWriter appends fixed-width integers and length-prefixed strings to a vector.
// ByteReader is the only way the codec reads untrusted bytes: every read checks the remaining
// length first and fails with a kInvalidArgument Status naming the message, the field, the
// offset and the sizes, so a malformed frame is rejected with a reason instead of being read out
// of bounds. Nothing here allocates based on a length it has not checked against both a limit
// and the bytes actually present.
//
// Thread-safety: plain values over caller-owned buffers; one thread per instance.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "common/status.hpp"

namespace qccl::wire {

// Stores `v` at `p` as little-endian, independent of the host byte order.
// REQUIRES: p points to at least sizeof(T) writable bytes.
template <typename T>
inline void store_le(uint8_t* p, T v) {
  static_assert(std::is_unsigned_v<T>);
  for (size_t i = 0; i < sizeof(T); ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}

// REQUIRES: p points to at least sizeof(T) readable bytes.
template <typename T>
inline T load_le(const uint8_t* p) {
  static_assert(std::is_unsigned_v<T>);
  T v = 0;
  for (size_t i = 0; i < sizeof(T); ++i) v = static_cast<T>(v | (static_cast<T>(p[i]) << (8 * i)));
  return v;
}

class ByteWriter {
 public:
  explicit ByteWriter(std::vector<uint8_t>* out) : out_(out) {}

  void u8(uint8_t v) { out_->push_back(v); }
  void u16(uint16_t v) { put(v); }
  void u32(uint32_t v) { put(v); }
  void u64(uint64_t v) { put(v); }
  void boolean(bool v) { out_->push_back(v ? 1 : 0); }
  // u32 length + bytes. REQUIRES: s.size() fits in u32 (the codec clamps strings first).
  void string(std::string_view s) {
    u32(static_cast<uint32_t>(s.size()));
    out_->insert(out_->end(), s.begin(), s.end());
  }

 private:
  template <typename T>
  void put(T v) {
    uint8_t b[sizeof(T)];
    store_le(b, v);
    out_->insert(out_->end(), b, b + sizeof(T));
  }

  std::vector<uint8_t>* out_;  // caller owns
};

class ByteReader {
 public:
  // `what` names the message in error texts (e.g. "C2MOpDone"); must outlive the reader.
  ByteReader(std::span<const uint8_t> bytes, std::string_view what) : bytes_(bytes), what_(what) {}

  std::string_view what() const { return what_; }
  size_t position() const { return pos_; }
  size_t remaining() const { return bytes_.size() - pos_; }

  Status u8(uint8_t* out, std::string_view field) { return get(out, field); }
  Status u16(uint16_t* out, std::string_view field) { return get(out, field); }
  Status u32(uint32_t* out, std::string_view field) { return get(out, field); }
  Status u64(uint64_t* out, std::string_view field) { return get(out, field); }

  // One byte that must be 0 or 1.
  Status boolean(bool* out, std::string_view field) {
    const size_t at = pos_;
    uint8_t b = 0;
    QCCL_RETURN_IF_ERROR(get(&b, field));
    if (b > 1) {
      return make_status(StatusCode::kInvalidArgument,
                         "{}: {} at byte {} is {}, a bool must be 0 or 1", what_, field, at, b);
    }
    *out = b == 1;
    return Status::ok();
  }

  // u32 length + bytes; rejects length > max_len before looking at the bytes.
  Status string(std::string* out, std::string_view field, uint32_t max_len) {
    const size_t at = pos_;
    uint32_t len = 0;
    QCCL_RETURN_IF_ERROR(get(&len, field));
    if (len > max_len) {
      return make_status(StatusCode::kInvalidArgument,
                         "{}: {} at byte {} has length {}, limit {}", what_, field, at, len,
                         max_len);
    }
    QCCL_RETURN_IF_ERROR(need(len, field));
    out->assign(reinterpret_cast<const char*>(bytes_.data() + pos_), len);
    pos_ += len;
    return Status::ok();
  }

  // The u32 item count of a vector. Rejects count > max_count, and a count whose items cannot
  // fit in the remaining bytes (each item takes at least min_item_bytes), so the caller may
  // reserve `*out` items safely.
  Status count(uint32_t* out, std::string_view field, uint32_t max_count, size_t min_item_bytes) {
    const size_t at = pos_;
    uint32_t n = 0;
    QCCL_RETURN_IF_ERROR(get(&n, field));
    if (n > max_count) {
      return make_status(StatusCode::kInvalidArgument, "{}: {} at byte {} has {} entries, limit {}",
                         what_, field, at, n, max_count);
    }
    if (static_cast<uint64_t>(n) * min_item_bytes > remaining()) {
      return make_status(StatusCode::kInvalidArgument,
                         "{}: truncated: {} at byte {} claims {} entries (at least {} bytes), "
                         "only {} bytes left",
                         what_, field, at, n, static_cast<uint64_t>(n) * min_item_bytes,
                         remaining());
    }
    *out = n;
    return Status::ok();
  }

  // A message must use its payload exactly.
  Status expect_end() const {
    if (remaining() != 0) {
      return make_status(StatusCode::kInvalidArgument,
                         "{}: {} trailing bytes after the message (payload {} bytes, message ends "
                         "at byte {})",
                         what_, remaining(), bytes_.size(), pos_);
    }
    return Status::ok();
  }

 private:
  Status need(size_t n, std::string_view field) const {
    if (n > remaining()) {
      return make_status(StatusCode::kInvalidArgument,
                         "{}: truncated reading {} at byte {}: needs {} bytes, payload has {}",
                         what_, field, pos_, n, bytes_.size());
    }
    return Status::ok();
  }

  template <typename T>
  Status get(T* out, std::string_view field) {
    QCCL_RETURN_IF_ERROR(need(sizeof(T), field));
    *out = load_le<T>(bytes_.data() + pos_);
    pos_ += sizeof(T);
    return Status::ok();
  }

  std::span<const uint8_t> bytes_;
  std::string_view what_;
  size_t pos_ = 0;
};

}  // namespace qccl::wire
