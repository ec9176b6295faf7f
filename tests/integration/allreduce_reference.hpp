// Reference data for all-reduce tests: fp16/bf16 <-> float conversions (round to nearest
// even), deterministic per-peer inputs for every dtype x op whose reduction does not depend on
// the ring order, the expected result, and run_case(), which runs one all-reduce on a peer and
// compares with it. Used by the integration tests only; independent of the library's code.
//
// Inputs are chosen so that the result does not depend on the (internal) ring order:
//   integers   Sum/Avg: no overflow (|value| <= max / 2N); Prod: factors in {-2..3};
//              Max/Min: any values. Avg truncates the sum toward zero.
//   floats     Sum/Avg: multiples of 1/4 small enough that every partial sum is exact in the
//              type; Prod: factors in {+-2, +-1, +-0.5, 1.5} (exact); Max/Min: any values.
//              Avg is the exact sum divided by N once in the compute type (float32 for
//              fp16/bf16, then rounded to nearest even), as src/quant/reduce_kernels.hpp says.
#pragma once

#include <qccl/qccl.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "support/cluster.hpp"

namespace qccl::test {

// ---- fp16 / bf16 <-> float (round to nearest even) ----------------------------------------

inline float f16_to_f32(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f;
  uint32_t man = h & 0x3ff;
  if (exp == 0) {  // zero or subnormal: man * 2^-24
    float v = std::ldexp(static_cast<float>(man), -24);
    return sign ? -v : v;
  }
  if (exp == 31) return std::bit_cast<float>(sign | 0x7f800000u | (man << 13));
  return std::bit_cast<float>(sign | ((exp + 127 - 15) << 23) | (man << 13));
}

inline uint16_t f32_to_f16(float f) {
  uint32_t x = std::bit_cast<uint32_t>(f);
  uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000);
  uint32_t ax = x & 0x7fffffffu;
  if (ax > 0x7f800000u) return sign | 0x7e00;                // NaN
  if (ax >= 0x477ff000u) return sign | 0x7c00;               // >= 65520 rounds to inf
  if (ax < 0x38800000u) {                                    // below 2^-14: subnormal half
    float v = std::bit_cast<float>(ax) * 16777216.0f;        // exact: * 2^24
    return sign | static_cast<uint16_t>(std::nearbyint(v));  // ties to even
  }
  uint32_t h = (((ax >> 23) - 127 + 15) << 10) | ((ax & 0x7fffff) >> 13);
  uint32_t rem = ax & 0x1fff;
  if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) ++h;  // may carry into the exponent: right
  return sign | static_cast<uint16_t>(h);
}

inline float bf16_to_f32(uint16_t b) {
  return std::bit_cast<float>(static_cast<uint32_t>(b) << 16);
}

inline uint16_t f32_to_bf16(float f) {  // finite values only (all the tests use)
  uint32_t x = std::bit_cast<uint32_t>(f);
  return static_cast<uint16_t>((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

// ---- deterministic inputs -------------------------------------------------------------------

inline uint64_t mix(uint64_t x) {  // splitmix64
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}
inline uint64_t rnd(uint64_t seed, int peer, size_t i) {
  return mix(seed ^ mix(static_cast<uint64_t>(peer) * 0x100000001b3ull + i * 0x9e37ull));
}

struct CaseData {
  std::vector<uint8_t> input;     // this peer's contribution
  std::vector<uint8_t> expected;  // the reduction over all N peers
};

template <typename T>
T int_value(qcclRedOp_t op, int n, uint64_t r) {
  using U = std::make_unsigned_t<T>;
  if (op == qcclProd) {
    if (r % 32 == 0) return T(0);
    if constexpr (std::is_signed_v<T>) {
      static const T kFactors[] = {-2, -1, 1, 2};
      return kFactors[(r >> 8) % 4];
    } else {
      return static_cast<T>(1 + (r >> 8) % 3);  // 3^5 = 243 fits uint8
    }
  }
  if (op == qcclMax || op == qcclMin) return static_cast<T>(static_cast<U>(r));
  // Sum / Avg: |sum| stays within max / 2.
  if constexpr (std::is_signed_v<T>) {
    uint64_t lim = static_cast<uint64_t>(std::numeric_limits<T>::max()) / (2 * n);
    return static_cast<T>(static_cast<int64_t>(r % (2 * lim + 1)) - static_cast<int64_t>(lim));
  } else {
    uint64_t lim = static_cast<uint64_t>(std::numeric_limits<T>::max()) / n;
    return static_cast<T>(r % (lim + 1));
  }
}

template <typename T>
CaseData make_int_case(qcclRedOp_t op, int n, int me, size_t count, uint64_t seed) {
  using W = std::conditional_t<std::is_signed_v<T>, int64_t, uint64_t>;
  CaseData c;
  c.input.resize(count * sizeof(T));
  c.expected.resize(count * sizeof(T));
  for (size_t i = 0; i < count; ++i) {
    W acc = 0;
    for (int p = 0; p < n; ++p) {
      T v = int_value<T>(op, n, rnd(seed, p, i));
      if (p == me) std::memcpy(&c.input[i * sizeof(T)], &v, sizeof(T));
      W w = static_cast<W>(v);
      if (p == 0) {
        acc = w;
      } else if (op == qcclSum || op == qcclAvg) {
        acc += w;
      } else if (op == qcclProd) {
        acc *= w;
      } else if (op == qcclMax) {
        acc = std::max(acc, w);
      } else {
        acc = std::min(acc, w);
      }
    }
    if (op == qcclAvg) acc /= static_cast<W>(n);  // truncates toward zero
    T out = static_cast<T>(acc);
    std::memcpy(&c.expected[i * sizeof(T)], &out, sizeof(T));
  }
  return c;
}

// Float formats: storage S, compute type C.
struct F32 {
  using S = float;
  using C = float;
  static C dec(S s) { return s; }
  static S enc(C c) { return c; }
  static constexpr int64_t kSumUnits = (int64_t{1} << 24) / 5;  // |sum| < 2^24 quarters
};
struct F64 {
  using S = double;
  using C = double;
  static C dec(S s) { return s; }
  static S enc(C c) { return c; }
  static constexpr int64_t kSumUnits = int64_t{1} << 40;
};
struct F16 {
  using S = uint16_t;
  using C = float;
  static C dec(S s) { return f16_to_f32(s); }
  static S enc(C c) { return f32_to_f16(c); }
  static constexpr int64_t kSumUnits = 2047 / 5;  // 11-bit significand
};
struct BF16 {
  using S = uint16_t;
  using C = float;
  static C dec(S s) { return bf16_to_f32(s); }
  static S enc(C c) { return f32_to_bf16(c); }
  static constexpr int64_t kSumUnits = 255 / 5;  // 8-bit significand
};

template <typename Fmt>
double float_value(qcclRedOp_t op, uint64_t r) {
  if (op == qcclProd) {
    static const double kFactors[] = {-2, -1, -0.5, 0.5, 1, 1.5, 2};
    return kFactors[r % 7];
  }
  int64_t units = (op == qcclMax || op == qcclMin) ? 5 * Fmt::kSumUnits : Fmt::kSumUnits;
  return 0.25 * static_cast<double>(static_cast<int64_t>(r % (2 * units + 1)) - units);
}

template <typename Fmt>
CaseData make_float_case(qcclRedOp_t op, int n, int me, size_t count, uint64_t seed) {
  using S = typename Fmt::S;
  using C = typename Fmt::C;
  CaseData c;
  c.input.resize(count * sizeof(S));
  c.expected.resize(count * sizeof(S));
  for (size_t i = 0; i < count; ++i) {
    double acc = 0;  // exact for these inputs
    for (int p = 0; p < n; ++p) {
      double v = float_value<Fmt>(op, rnd(seed, p, i));
      if (p == me) {
        S s = Fmt::enc(static_cast<C>(v));
        std::memcpy(&c.input[i * sizeof(S)], &s, sizeof(S));
      }
      if (p == 0) {
        acc = v;
      } else if (op == qcclSum || op == qcclAvg) {
        acc += v;
      } else if (op == qcclProd) {
        acc *= v;
      } else if (op == qcclMax) {
        acc = std::max(acc, v);
      } else {
        acc = std::min(acc, v);
      }
    }
    C out = static_cast<C>(acc);
    if (op == qcclAvg) out = out / static_cast<C>(n);
    S s = Fmt::enc(out);
    std::memcpy(&c.expected[i * sizeof(S)], &s, sizeof(S));
  }
  return c;
}

inline CaseData make_case(qcclDataType_t dt, qcclRedOp_t op, int n, int me, size_t count,
                          uint64_t seed) {
  switch (dt) {
    case qcclUint8:
      return make_int_case<uint8_t>(op, n, me, count, seed);
    case qcclInt8:
      return make_int_case<int8_t>(op, n, me, count, seed);
    case qcclUint16:
      return make_int_case<uint16_t>(op, n, me, count, seed);
    case qcclInt16:
      return make_int_case<int16_t>(op, n, me, count, seed);
    case qcclUint32:
      return make_int_case<uint32_t>(op, n, me, count, seed);
    case qcclInt32:
      return make_int_case<int32_t>(op, n, me, count, seed);
    case qcclUint64:
      return make_int_case<uint64_t>(op, n, me, count, seed);
    case qcclInt64:
      return make_int_case<int64_t>(op, n, me, count, seed);
    case qcclFloat16:
      return make_float_case<F16>(op, n, me, count, seed);
    case qcclBFloat16:
      return make_float_case<BF16>(op, n, me, count, seed);
    case qcclFloat32:
      return make_float_case<F32>(op, n, me, count, seed);
    case qcclFloat64:
      return make_float_case<F64>(op, n, me, count, seed);
    default:
      break;
  }
  ADD_FAILURE() << "bad dtype " << dt;
  return {};
}

inline size_t elem_size(qcclDataType_t dt) {
  static const size_t kSizes[] = {1, 1, 2, 2, 4, 4, 8, 8, 2, 2, 4, 8};
  return kSizes[dt];
}

inline const char* dtype_name(qcclDataType_t dt) {
  static const char* kNames[] = {"uint8",  "int8",  "uint16",  "int16",    "uint32",  "int32",
                                 "uint64", "int64", "float16", "bfloat16", "float32", "float64"};
  return kNames[dt];
}
inline const char* op_name(qcclRedOp_t op) {
  static const char* kNames[] = {"Sum", "Avg", "Prod", "Max", "Min"};
  return kNames[op];
}

inline std::string hex(const uint8_t* p, size_t n) {
  static const char* kDigits = "0123456789abcdef";
  std::string s;
  for (size_t k = n; k-- > 0;) {  // little-endian: most significant byte first
    s += kDigits[p[k] >> 4];
    s += kDigits[p[k] & 15];
  }
  return s;
}

// Runs one all-reduce on this peer and compares with the reference. Returns "" or the failure.
inline std::string run_case(qcclComm_t* comm, int n, int me, qcclDataType_t dt, qcclRedOp_t op,
                            size_t count, bool in_place, uint64_t tag) {
  std::string what = std::string(dtype_name(dt)) + " " + op_name(op) + " count " +
                     std::to_string(count) + (in_place ? " in place" : " out of place") + " tag " +
                     std::to_string(tag) + ": ";
  CaseData c = make_case(dt, op, n, me, count, mix(tag));
  size_t bytes = count * elem_size(dt);
  // Buffers never empty, so that count 0 passes real (unused) pointers.
  std::vector<uint8_t> send(bytes + 8, 0xa5), recv(bytes + 8, 0x5a);
  if (bytes > 0) std::memcpy(send.data(), c.input.data(), bytes);
  qcclReduceDesc_t d = {count, dt, op, tag, {qcclQuantNone, dt}};
  qcclReduceInfo_t info{};
  qcclResult_t r = in_place ? qcclAllReduce(send.data(), send.data(), &d, comm, &info)
                            : qcclAllReduce(send.data(), recv.data(), &d, comm, &info);
  if (r != qcclSuccess) return what + describe(r);
  if (info.world_size != static_cast<uint32_t>(n)) {
    return what + "info.world_size " + std::to_string(info.world_size);
  }
  const std::vector<uint8_t>& out = in_place ? send : recv;
  size_t es = elem_size(dt);
  for (size_t i = 0; i < count; ++i) {
    if (std::memcmp(&out[i * es], &c.expected[i * es], es) != 0) {
      return what + "element " + std::to_string(i) + " is 0x" + hex(&out[i * es], es) +
             ", expected 0x" + hex(&c.expected[i * es], es) + " (input 0x" +
             hex(&c.input[i * es], es) + ")";
    }
  }
  if (!in_place && bytes > 0 && std::memcmp(send.data(), c.input.data(), bytes) != 0) {
    return what + "sendbuf was modified";
  }
  for (size_t k = bytes; k < bytes + 8; ++k) {
    if (out[k] != (in_place ? 0xa5 : 0x5a)) return what + "wrote past the end of recvbuf";
  }
  return "";
}

inline uint64_t fnv1a(const void* data, size_t n) {
  auto p = static_cast<const uint8_t*>(data);
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t k = 0; k < n; ++k) h = (h ^ p[k]) * 0x100000001b3ull;
  return h;
}

}  // namespace qccl::test
