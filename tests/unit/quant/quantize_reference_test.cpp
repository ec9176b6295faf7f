// Differential tests of the quantization wire codecs (quant/quantize.hpp) against a scalar
// reference written from the documented contract (quantize.cpp) with different code:
// std::nearbyint and std::clamp on the rounded values instead of magic-number rounding of
// clamped values, std::min_element instead of integer keys, table-search fp16/bf16 codecs from
// half_reference.hpp, little-endian code bytes assembled by hand. On mixed data (ordinary,
// constant, +-0, subnormal, near-max and non-finite blocks) the library must match it bit for
// bit with its run-time dispatched kernels and with the portable kernels forced, whatever the
// alignment of the wire buffer; encode's `decoded` output must equal decode() of what it wrote,
// in place too; both kernel builds must agree on arbitrary wire bytes; and decode_reduce must
// equal decode followed by reduce / reduce_and_divide.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "quant/quantize.hpp"
#include "quant/reduce_kernels.hpp"
#include "quantize_test_util.hpp"

namespace qccl::quant {
namespace {

using namespace qccl::quant::test;  // NOLINT: the shared test helpers

// ---- The scalar reference ---------------------------------------------------------------------

void put_code(DataType w, uint8_t* codes, size_t i, int64_t code) {
  const auto u = static_cast<uint64_t>(code);
  if (dtype_size(w) == 1) {
    codes[i] = static_cast<uint8_t>(u & 0xff);
  } else {
    codes[2 * i] = static_cast<uint8_t>(u & 0xff);
    codes[2 * i + 1] = static_cast<uint8_t>((u >> 8) & 0xff);
  }
}

int64_t get_code(DataType w, const uint8_t* codes, size_t i) {
  if (dtype_size(w) == 1) {
    const int64_t u = codes[i];
    return w == DataType::kInt8 && u >= 128 ? u - 256 : u;
  }
  const int64_t u = codes[2 * i] | (int64_t{codes[2 * i + 1]} << 8);
  return w == DataType::kInt16 && u >= 32768 ? u - 65536 : u;
}

// Narrows a decoded compute value to the source type's bytes (nearest even, canonical NaN).
void narrow_to_source(DataType s, uint8_t* base, size_t i, double v) {
  if (std::isnan(v)) {
    put_bits(s, base, i, canonical_nan_bits(s));
  } else {
    put(s, base, i, v);  // v is a C value, so float sources round once, from float
  }
}

template <typename C>
std::vector<uint8_t> ref_encode_quant(const WireCodec& c, const uint8_t* src, size_t n) {
  const Range q = ref_range(c.wire);
  const int64_t span = q.qmax - q.qmin;
  const size_t blocks = (n + kQuantBlockElems - 1) / kQuantBlockElems;
  std::vector<uint8_t> out(blocks * 2 * sizeof(C) + n * dtype_size(c.wire));
  uint8_t* codes = out.data() + blocks * 2 * sizeof(C);
  for (size_t b = 0; b < blocks; ++b) {
    const size_t first = b * kQuantBlockElems;
    const size_t count = std::min(kQuantBlockElems, n - first);
    std::vector<C> x(count);
    for (size_t i = 0; i < count; ++i) x[i] = static_cast<C>(get(c.source, src, first + i));
    C meta[2];
    const bool finite = std::all_of(x.begin(), x.end(), [](C v) { return std::isfinite(v); });
    if (!finite) {
      meta[0] = std::numeric_limits<C>::quiet_NaN();
      meta[1] = 0;
      const int64_t fill = c.algorithm == QuantAlgorithm::kMinMax
                               ? q.qmin
                               : std::clamp<int64_t>(0, q.qmin, q.qmax);
      for (size_t i = 0; i < count; ++i) put_code(c.wire, codes, first + i, fill);
    } else {
      C lo = *std::min_element(x.begin(), x.end()) + C(0);
      C hi = *std::max_element(x.begin(), x.end()) + C(0);
      if (c.algorithm == QuantAlgorithm::kZeroPointScale) {
        lo = std::min(lo, C(0));
        hi = std::max(hi, C(0));
      }
      C scale = (hi / C(2) - lo / C(2)) / (static_cast<C>(span) / C(2));
      C inv = 0;
      if (scale == 0 || !std::isfinite(C(1) / scale)) {
        scale = 0;
      } else {
        inv = C(1) / scale;
      }
      if (c.algorithm == QuantAlgorithm::kMinMax) {
        meta[0] = lo;
        meta[1] = scale;
        for (size_t i = 0; i < count; ++i) {
          // A block wider than the largest finite C: x - lo may overflow; compute on halves.
          const C d = x[i] - lo;
          const C t_real = std::isinf(d) ? ((x[i] / C(2) - lo / C(2)) * inv) * C(2) : d * inv;
          const C t = std::clamp(std::nearbyint(t_real), C(0), static_cast<C>(span));
          put_code(c.wire, codes, first + i, q.qmin + static_cast<int64_t>(t));
        }
      } else {
        int64_t zp = 0;
        if (scale != 0) {
          zp = std::clamp(q.qmin - static_cast<int64_t>(std::nearbyint(lo * inv)), q.qmin, q.qmax);
        }
        meta[0] = scale;
        meta[1] = static_cast<C>(zp);
        for (size_t i = 0; i < count; ++i) {
          const int64_t r = static_cast<int64_t>(std::nearbyint(x[i] * inv));
          put_code(c.wire, codes, first + i, std::clamp(r + zp, q.qmin, q.qmax));
        }
      }
    }
    std::memcpy(out.data() + b * 2 * sizeof(C), meta, sizeof meta);
  }
  return out;
}

template <typename C>
std::vector<uint8_t> ref_decode_quant(const WireCodec& c, const uint8_t* in, size_t n) {
  const Range q = ref_range(c.wire);
  const size_t blocks = (n + kQuantBlockElems - 1) / kQuantBlockElems;
  const uint8_t* codes = in + blocks * 2 * sizeof(C);
  std::vector<uint8_t> out(n * ssize(c.source));
  for (size_t i = 0; i < n; ++i) {
    C meta[2];
    std::memcpy(meta, in + (i / kQuantBlockElems) * 2 * sizeof(C), sizeof meta);
    const int64_t code = get_code(c.wire, codes, i);
    C v;
    if (c.algorithm == QuantAlgorithm::kMinMax) {
      const C k = static_cast<C>(code - q.qmin);
      v = meta[0] + k * meta[1];
      if (std::isinf(v)) v = (meta[0] / C(2) + k * (meta[1] / C(2))) * C(2);  // on halves
    } else {
      v = static_cast<C>(code - static_cast<int64_t>(meta[1])) * meta[0];
    }
    // A finite block decodes to finite values: saturate at the source's largest finite value.
    const C smax = static_cast<C>(max_finite(c.source));
    if (!std::isnan(v)) v = std::clamp(v, -smax, smax);
    narrow_to_source(c.source, out.data(), i, v);
  }
  return out;
}

// The wire type's bits of a down-cast source value.
uint64_t ref_cast_bits(DataType source, DataType wire, double v) {
  if (std::isnan(v)) return canonical_nan_bits(wire);
  const float f = static_cast<float>(v);  // fp64 -> fp32 first (identity for fp32 sources)
  if (wire == DataType::kFloat32) return std::bit_cast<uint32_t>(f);
  return wire == DataType::kFloat16 ? fp16_ref().encode(f) : bf16_ref().encode(f);
}

std::vector<uint8_t> ref_encode(const WireCodec& c, const uint8_t* src, size_t n) {
  if (c.algorithm != QuantAlgorithm::kNone) {
    return c.source == DataType::kFloat64 ? ref_encode_quant<double>(c, src, n)
                                          : ref_encode_quant<float>(c, src, n);
  }
  std::vector<uint8_t> out(n * dtype_size(c.wire));
  for (size_t i = 0; i < n; ++i) {
    put_bits(c.wire, out.data(), i, ref_cast_bits(c.source, c.wire, get(c.source, src, i)));
  }
  return out;
}

std::vector<uint8_t> ref_decode(const WireCodec& c, const uint8_t* in, size_t n) {
  if (c.algorithm != QuantAlgorithm::kNone) {
    return c.source == DataType::kFloat64 ? ref_decode_quant<double>(c, in, n)
                                          : ref_decode_quant<float>(c, in, n);
  }
  std::vector<uint8_t> out(n * ssize(c.source));
  for (size_t i = 0; i < n; ++i) {
    const double v = get(c.wire, in, i);  // exact
    if (std::isnan(v)) {
      put_bits(c.source, out.data(), i, canonical_nan_bits(c.source));
    } else {
      put(c.source, out.data(), i, v);
    }
  }
  return out;
}

// ---- Test data --------------------------------------------------------------------------------

// `n` values of type s, block by block of a randomly chosen kind (see the switch), so that each
// run mixes ordinary blocks with every special case.
std::vector<uint8_t> mixed_data(DataType s, size_t n, uint32_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  std::vector<uint8_t> buf(n * ssize(s));
  const double big = max_finite(s);
  const double tiny = min_subnormal(s);
  const int max_exp = s == DataType::kFloat16 ? 4 : s == DataType::kFloat64 ? 200 : 30;
  for (size_t first = 0; first < n; first += kQuantBlockElems) {
    const size_t count = std::min(kQuantBlockElems, n - first);
    const int kind = static_cast<int>(rng() % 9);
    const double mag = std::pow(10.0, std::floor(unit(rng) * 2 * max_exp) - max_exp);
    const double constant = normal(rng) * mag;
    for (size_t i = 0; i < count; ++i) {
      double v = normal(rng) * mag;
      switch (kind) {
        case 1: v = -3 * mag + 10 * mag * unit(rng); break;                  // uniform
        case 2: v = constant; break;                                          // constant
        case 3: v = (rng() & 1) ? 0.0 : -0.0; break;                          // +-0
        case 4: v = static_cast<double>(int(rng() % 41) - 20) * tiny; break;  // subnormal steps
        case 5: v = (2 * unit(rng) - 1) * big; break;                         // near the max
        case 8: if (rng() % 3 == 0) v = 0.0; break;                           // exact zeros
        default: break;
      }
      put(s, buf.data(), first + i, v);
    }
    if (kind == 5) {
      put(s, buf.data(), first, big);
      put(s, buf.data(), first + count - 1, -big);
    }
    if (kind == 6) {  // one non-finite element, with a non-canonical NaN now and then
      const size_t at = first + rng() % count;
      const int which = static_cast<int>(rng() % 4);
      if (which == 0) put(s, buf.data(), at, INFINITY);
      if (which == 1) put(s, buf.data(), at, -INFINITY);
      if (which == 2) put(s, buf.data(), at, NAN);
      if (which == 3) put_bits(s, buf.data(), at, ~uint64_t{0});  // negative NaN, full payload
    }
    if (kind == 7) put(s, buf.data(), first + rng() % count, 1e4 * mag * (rng() & 1 ? 1 : -1));
  }
  return buf;
}

// ---- Bit-exact against the reference, both kernel builds, any alignment ------------------------

TEST(QuantizeTest, MatchesReferenceBitForBit) {
  const size_t n = 5 * kQuantBlockElems + 37;
  uint32_t seed = 1;
  for (bool portable : kIsaModes) {
    IsaGuard isa(portable);
    SCOPED_TRACE(isa_name(portable));
    for (const WireCodec& c : all_codecs()) {
      SCOPED_TRACE(describe(c));
      for (size_t offset = 0; offset < 8; ++offset) {
        SCOPED_TRACE("wire offset " + std::to_string(offset));
        const std::vector<uint8_t> data = mixed_data(c.source, n, seed++);
        const size_t sb = ssize(c.source);
        const size_t wire_bytes = encoded_bytes(c, n);
        // Source-side buffers shifted by whole elements (alignment is element-only there), the
        // wire buffer by `offset` bytes.
        std::vector<uint8_t> src_store(data.size() + 8 * sb);
        uint8_t* src = src_store.data() + (offset % 4) * sb;
        std::memcpy(src, data.data(), data.size());
        std::vector<uint8_t> wire_store(wire_bytes + 8);
        uint8_t* wire = wire_store.data() + offset;
        std::vector<uint8_t> decoded_store(data.size() + 8 * sb);
        uint8_t* decoded = decoded_store.data() + ((offset + 1) % 4) * sb;

        encode(c, src, n, wire, decoded);
        const std::vector<uint8_t> want_wire = ref_encode(c, data.data(), n);
        ASSERT_EQ(std::vector<uint8_t>(wire, wire + wire_bytes), want_wire);
        const std::vector<uint8_t> want_decoded = ref_decode(c, want_wire.data(), n);
        ASSERT_EQ(std::vector<uint8_t>(decoded, decoded + data.size()), want_decoded);

        std::vector<uint8_t> dst_store(data.size() + 8 * sb);
        uint8_t* dst = dst_store.data() + ((offset + 2) % 4) * sb;
        decode(c, wire, n, dst);
        ASSERT_EQ(std::vector<uint8_t>(dst, dst + data.size()), want_decoded);

        // In place: `decoded` is the source itself.
        std::vector<uint8_t> wire2(wire_bytes);
        encode(c, src, n, wire2.data(), src);
        ASSERT_EQ(wire2, want_wire);
        ASSERT_EQ(std::vector<uint8_t>(src, src + data.size()), want_decoded);
      }
    }
  }
}

TEST(QuantizeTest, DecodeOfArbitraryWireBytesMatchesReference) {
  // What a decoder does with bytes no encoder wrote (a corrupt or hostile peer) must still be
  // deterministic: same in both kernel builds, NaN always canonical, no UB (zero points that are
  // NaN, huge or fractional are read as floats, never converted to integers).
  std::mt19937_64 rng(99);
  for (const WireCodec& c : all_codecs()) {
    SCOPED_TRACE(describe(c));
    const size_t n = kQuantBlockElems + 300;
    std::vector<uint8_t> wire(encoded_bytes(c, n));
    for (uint8_t& b : wire) b = static_cast<uint8_t>(rng());
    std::vector<uint8_t> outs[2];
    for (bool portable : kIsaModes) {
      IsaGuard isa(portable);
      outs[portable].resize(n * ssize(c.source));
      decode(c, wire.data(), n, outs[portable].data());
    }
    EXPECT_EQ(outs[0], outs[1]);
    for (size_t i = 0; i < n; ++i) {
      if (std::isnan(get(c.source, outs[0].data(), i))) {
        ASSERT_EQ(get_bits(c.source, outs[0].data(), i), canonical_nan_bits(c.source));
      }
    }
  }
}

// ---- decode_reduce ----------------------------------------------------------------------------

TEST(QuantizeTest, DecodeReduceEqualsDecodeThenReduce) {
  struct OpCase {
    ReduceOp op;
    uint32_t divisor;
  };
  const OpCase ops[] = {{ReduceOp::kSum, 1}, {ReduceOp::kAvg, 3}, {ReduceOp::kAvg, 1},
                        {ReduceOp::kMin, 1}, {ReduceOp::kMax, 1}, {ReduceOp::kProd, 1}};
  const size_t n = 2 * kQuantBlockElems + 333;
  uint32_t seed = 1000;
  for (bool portable : kIsaModes) {
    IsaGuard isa(portable);
    SCOPED_TRACE(isa_name(portable));
    for (const WireCodec& c : all_codecs()) {
      SCOPED_TRACE(describe(c));
      const std::vector<uint8_t> src = mixed_data(c.source, n, seed++);
      const std::vector<uint8_t> own = mixed_data(c.source, n, seed++);
      std::vector<uint8_t> wire_store(encoded_bytes(c, n) + 3);
      uint8_t* wire = wire_store.data() + 3;  // unaligned on purpose
      encode(c, src.data(), n, wire, nullptr);
      std::vector<uint8_t> tmp(src.size());
      decode(c, wire, n, tmp.data());
      for (const OpCase& o : ops) {
        SCOPED_TRACE(std::string(reduce_op_name(o.op)) + " / " + std::to_string(o.divisor));
        std::vector<uint8_t> want(src.size());
        if (o.divisor > 1) {
          reduce_and_divide(c.source, want.data(), own.data(), tmp.data(), n, o.divisor);
        } else {
          reduce(c.source, o.op, want.data(), own.data(), tmp.data(), n);
        }
        std::vector<uint8_t> got(src.size());
        decode_reduce(c, o.op, got.data(), own.data(), wire, n, o.divisor);
        ASSERT_EQ(got, want);
        std::vector<uint8_t> in_place = own;  // dst == own
        decode_reduce(c, o.op, in_place.data(), in_place.data(), wire, n, o.divisor);
        ASSERT_EQ(in_place, want);
      }
    }
  }
}

}  // namespace
}  // namespace qccl::quant
