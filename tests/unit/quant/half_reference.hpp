// Slow, obviously-correct reference codecs for fp16 and bf16, written from the format definitions
// and independent of src/quant/half.hpp: decoding evaluates sign * mantissa * 2^exponent with
// std::ldexp, and encoding searches a sorted table of every finite 16-bit value for the nearest
// one (ties to the even encoding). Tests only; thread-safe after construction (read-only).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

namespace qccl::quant::test {

// A binary interchange format with `kExpBits` exponent bits and `kManBits` mantissa bits in 16.
template <int kExpBits, int kManBits>
class HalfReference {
  static_assert(1 + kExpBits + kManBits == 16);

 public:
  static constexpr int kMantissaBits = kManBits;
  static constexpr int kBias = (1 << (kExpBits - 1)) - 1;
  static constexpr uint16_t kExpMask = ((1u << kExpBits) - 1) << kManBits;
  static constexpr uint16_t kManMask = (1u << kManBits) - 1;
  static constexpr uint16_t kInf = kExpMask;

  HalfReference() {
    // Positive finite encodings are ordered like their values; append the infinity encoding as
    // the value 2^(emax+1), which is where IEEE rounding overflows to infinity.
    for (uint32_t h = 0; h < kInf; ++h) values_.push_back(decode(static_cast<uint16_t>(h)));
    values_.push_back(std::ldexp(1.0, kBias + 1));
  }

  static bool is_nan(uint16_t h) { return (h & kExpMask) == kExpMask && (h & kManMask) != 0; }

  // Exact value as a double (NaN for NaN encodings).
  static double decode(uint16_t h) {
    const bool negative = (h & 0x8000) != 0;
    const int exp = (h & kExpMask) >> kManBits;
    const int man = h & kManMask;
    double v;
    if (exp == (1 << kExpBits) - 1) {
      v = man == 0 ? std::numeric_limits<double>::infinity()
                   : std::numeric_limits<double>::quiet_NaN();
    } else if (exp == 0) {
      v = std::ldexp(static_cast<double>(man), 1 - kBias - kManBits);
    } else {
      v = std::ldexp(static_cast<double>(man + (1 << kManBits)), exp - kBias - kManBits);
    }
    return negative ? -v : v;
  }

  // Round a non-NaN value to nearest, ties to even encoding; beyond the largest finite value
  // the rounding reaches the appended 2^(emax+1) entry, i.e. infinity.
  uint16_t encode(double v) const {
    const uint16_t sign = std::signbit(v) ? 0x8000 : 0;
    const double m = std::fabs(v);
    if (std::isinf(m)) return sign | kInf;
    // First entry > m; the candidate pair is (lo, hi) = (idx - 1, idx).
    const auto it = std::upper_bound(values_.begin(), values_.end(), m);
    if (it == values_.end()) return sign | kInf;
    const size_t hi = static_cast<size_t>(it - values_.begin());
    const size_t lo = hi - 1;  // values_[0] == 0 <= m, so hi >= 1
    const double below = m - values_[lo];
    const double above = values_[hi] - m;
    size_t pick;
    if (below < above) {
      pick = lo;
    } else if (above < below) {
      pick = hi;
    } else {
      pick = (lo % 2 == 0) ? lo : hi;
    }
    return static_cast<uint16_t>(sign | pick);
  }

  // Midpoint between consecutive positive encodings h and h + 1 (h + 1 may be the inf encoding).
  double midpoint(uint16_t h) const { return (values_[h] + values_[h + 1]) / 2; }

 private:
  std::vector<double> values_;  // index = encoding, 0 .. kInf
};

using Fp16Reference = HalfReference<5, 10>;
using Bf16Reference = HalfReference<8, 7>;

}  // namespace qccl::quant::test
