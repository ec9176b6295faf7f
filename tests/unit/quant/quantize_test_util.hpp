// Shared by the quant/quantize tests: the codec lists, a switch between the two kernel builds,
// and source values of any floating type read and written as doubles (fp16/bf16 through the
// independent codecs of half_reference.hpp). Tests only.
#pragma once

#include <gtest/gtest.h>

#include <bit>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "half_reference.hpp"
#include "quant/quantize.hpp"
#include "quant/quantize_isa.hpp"

namespace qccl::quant::test {

static_assert(std::endian::native == std::endian::little, "the wire format is little-endian");

constexpr DataType kAllTypes[] = {
    DataType::kUint8,   DataType::kInt8,     DataType::kUint16,  DataType::kInt16,
    DataType::kUint32,  DataType::kInt32,    DataType::kUint64,  DataType::kInt64,
    DataType::kFloat16, DataType::kBFloat16, DataType::kFloat32, DataType::kFloat64};
constexpr QuantAlgorithm kAllAlgorithms[] = {QuantAlgorithm::kNone, QuantAlgorithm::kMinMax,
                                             QuantAlgorithm::kZeroPointScale};
constexpr DataType kFloatSources[] = {DataType::kFloat32, DataType::kFloat64, DataType::kFloat16,
                                      DataType::kBFloat16};
constexpr DataType kCodeTypes[] = {DataType::kUint8, DataType::kInt8, DataType::kUint16,
                                   DataType::kInt16};
constexpr QuantAlgorithm kQuantAlgorithms[] = {QuantAlgorithm::kMinMax,
                                               QuantAlgorithm::kZeroPointScale};

inline const Fp16Reference& fp16_ref() {
  static const Fp16Reference r;
  return r;
}
inline const Bf16Reference& bf16_ref() {
  static const Bf16Reference r;
  return r;
}

inline std::string describe(const WireCodec& c) {
  const char* algo = c.algorithm == QuantAlgorithm::kNone     ? "None"
                     : c.algorithm == QuantAlgorithm::kMinMax ? "MinMax"
                                                              : "ZPS";
  return std::string(dtype_name(c.source)) + " -" + algo + "-> " + std::string(dtype_name(c.wire));
}

// Every non-identity codec the library supports: 32 quantizing ones and 5 down-casts.
inline std::vector<WireCodec> all_codecs() {
  std::vector<WireCodec> out;
  for (QuantAlgorithm a : kQuantAlgorithms) {
    for (DataType s : kFloatSources) {
      for (DataType w : kCodeTypes) out.push_back({s, a, w});
    }
  }
  out.push_back({DataType::kFloat32, QuantAlgorithm::kNone, DataType::kFloat16});
  out.push_back({DataType::kFloat32, QuantAlgorithm::kNone, DataType::kBFloat16});
  out.push_back({DataType::kFloat64, QuantAlgorithm::kNone, DataType::kFloat32});
  out.push_back({DataType::kFloat64, QuantAlgorithm::kNone, DataType::kFloat16});
  out.push_back({DataType::kFloat64, QuantAlgorithm::kNone, DataType::kBFloat16});
  return out;
}

// Runs the body with the dispatched kernels, then with the portable ones forced.
class IsaGuard {
 public:
  explicit IsaGuard(bool portable) { force_portable_quant_kernels(portable); }
  ~IsaGuard() { force_portable_quant_kernels(false); }
};
constexpr bool kIsaModes[] = {false, true};
inline std::string isa_name(bool portable) {
  return portable ? "forced portable"
                  : (active_quant_isa() == QuantIsa::kAvx2 ? "dispatched (AVX2)"
                                                           : "dispatched (portable: no AVX2)");
}

// ---- Source values: stored in the source type, seen as doubles -------------------------------

inline size_t ssize(DataType s) { return dtype_size(s); }

// Stores v (rounded to nearest even if it is not representable; NaN as the canonical NaN).
inline void put(DataType s, uint8_t* base, size_t i, double v) {
  uint8_t* p = base + i * ssize(s);
  if (s == DataType::kFloat32) {
    const float f = std::isnan(v) ? std::bit_cast<float>(0x7fc00000u) : static_cast<float>(v);
    std::memcpy(p, &f, 4);
  } else if (s == DataType::kFloat64) {
    std::memcpy(p, &v, 8);
  } else {
    const bool f16 = s == DataType::kFloat16;
    const uint16_t h = std::isnan(v) ? (f16 ? 0x7e00 : 0x7fc0)
                                     : (f16 ? fp16_ref().encode(v) : bf16_ref().encode(v));
    std::memcpy(p, &h, 2);
  }
}

inline void put_bits(DataType s, uint8_t* base, size_t i, uint64_t bits) {
  std::memcpy(base + i * ssize(s), &bits, ssize(s));  // little-endian: the low bytes
}

inline uint64_t get_bits(DataType s, const uint8_t* base, size_t i) {
  uint64_t bits = 0;
  std::memcpy(&bits, base + i * ssize(s), ssize(s));
  return bits;
}

inline double get(DataType s, const uint8_t* base, size_t i) {
  const uint8_t* p = base + i * ssize(s);
  if (s == DataType::kFloat32) {
    float f;
    std::memcpy(&f, p, 4);
    return f;
  }
  if (s == DataType::kFloat64) {
    double d;
    std::memcpy(&d, p, 8);
    return d;
  }
  uint16_t h;
  std::memcpy(&h, p, 2);
  return s == DataType::kFloat16 ? Fp16Reference::decode(h) : Bf16Reference::decode(h);
}

inline uint64_t canonical_nan_bits(DataType s) {
  switch (s) {
    case DataType::kFloat16: return 0x7e00;
    case DataType::kBFloat16: return 0x7fc0;
    case DataType::kFloat32: return 0x7fc00000;
    default: return 0x7ff8000000000000;
  }
}

inline double max_finite(DataType s) {
  switch (s) {
    case DataType::kFloat16: return 65504.0;
    case DataType::kBFloat16: return Bf16Reference::decode(0x7f7f);
    case DataType::kFloat32: return FLT_MAX;
    default: return DBL_MAX;
  }
}

inline double min_subnormal(DataType s) {
  switch (s) {
    case DataType::kFloat16: return std::ldexp(1.0, -24);
    case DataType::kBFloat16: return std::ldexp(1.0, -133);
    case DataType::kFloat32: return std::numeric_limits<float>::denorm_min();
    default: return std::numeric_limits<double>::denorm_min();
  }
}

// Code range of an integer wire type, written out independently of the library.
struct Range {
  int64_t qmin;
  int64_t qmax;
};

inline Range ref_range(DataType w) {
  switch (w) {
    case DataType::kUint8: return {0, 255};
    case DataType::kInt8: return {-128, 127};
    case DataType::kUint16: return {0, 65535};
    default: return {-32768, 32767};
  }
}

// n values f(0), f(1), ... stored as type s.
inline std::vector<uint8_t> family(DataType s, size_t n,
                                   const std::function<double(size_t)>& f) {
  std::vector<uint8_t> buf(n * ssize(s));
  for (size_t i = 0; i < n; ++i) put(s, buf.data(), i, f(i));
  return buf;
}

}  // namespace qccl::quant::test
