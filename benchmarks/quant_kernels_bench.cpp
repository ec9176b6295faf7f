// Quantization kernel microbenchmark: single-thread throughput of the wire codecs
// (src/quant/quantize.hpp) on segment-sized runs, next to the plain reduction they feed.
//
// Unlike the other benchmarks this one links the internal qccl_quant target instead of the
// public C API: it measures the kernels themselves, with no ring, sockets or threads around
// them, so a regression in a codec shows up here before it drowns in network time.
//
// Per codec (source -> wire) it times, over one run of --elems elements repeated until about
// --total-mib MiB of source bytes have gone through (the ring encodes and decodes one segment
// at a time, and a segment just received is cache-warm, as here):
//   encode        encode(c, src, n, out, nullptr)
//   enc+decoded   encode(c, src, n, out, decoded): also writes what receivers will decode
//   decode        decode(c, in, n, dst)
//   dec+reduce    decode_reduce(c, Sum, dst, dst, in, n, 1): a reduce-scatter hop, in place
//   reduce        reduce(source, Sum, dst, dst, b, n) on the same count: the unquantized hop
// Each figure is the median of --reps timings, in GB/s (1e9 bytes/s) of SOURCE bytes, i.e.
// bytes of the user's buffer processed per second, whatever the wire type.
//
// --portable forces the baseline (SSE2) kernels instead of the run-time choice (AVX2 + F16C
// where the CPU has them).
//
// Usage: qccl_quant_kernels_bench [--elems N] [--total-mib M] [--reps R] [--portable]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "quant/half.hpp"
#include "quant/quantize.hpp"
#include "quant/quantize_isa.hpp"
#include "quant/reduce_kernels.hpp"

namespace {

using qccl::DataType;
using qccl::QuantAlgorithm;
using qccl::ReduceOp;
namespace quant = qccl::quant;

struct Options {
  size_t elems = 128 * 1024;
  size_t total_mib = 256;
  int reps = 5;
  bool portable = false;
};

struct Case {
  const char* name;
  quant::WireCodec codec;
};

double seconds_now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Median over `reps` of the GB/s of running `fn` (one segment) `iters` times.
double median_gbps(const Options& o, size_t iters, size_t bytes_per_iter,
                   const std::function<void()>& fn) {
  fn();  // warm caches and page in the buffers
  std::vector<double> rates;
  for (int r = 0; r < o.reps; ++r) {
    const double t0 = seconds_now();
    for (size_t i = 0; i < iters; ++i) fn();
    const double dt = seconds_now() - t0;
    rates.push_back(static_cast<double>(iters * bytes_per_iter) / dt / 1e9);
  }
  std::sort(rates.begin(), rates.end());
  return rates[rates.size() / 2];
}

// Gradient-like data: normal, sigma 1, stored as the source type.
std::vector<uint8_t> make_source(DataType t, size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.f, 1.f);
  std::vector<uint8_t> buf(n * qccl::dtype_size(t));
  for (size_t i = 0; i < n; ++i) {
    const float v = normal(rng);
    uint8_t* p = buf.data() + i * qccl::dtype_size(t);
    if (t == DataType::kFloat32) {
      std::memcpy(p, &v, 4);
    } else if (t == DataType::kFloat64) {
      const double d = v;
      std::memcpy(p, &d, 8);
    } else if (t == DataType::kFloat16) {
      const uint16_t h = quant::float_to_fp16(v);
      std::memcpy(p, &h, 2);
    } else {
      const uint16_t h = quant::float_to_bf16(v);
      std::memcpy(p, &h, 2);
    }
  }
  return buf;
}

bool parse(int argc, char** argv, Options* o) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> long long {
      if (i + 1 >= argc) return -1;
      return std::atoll(argv[++i]);
    };
    if (a == "--elems") {
      o->elems = static_cast<size_t>(std::max(1LL, value()));
    } else if (a == "--total-mib") {
      o->total_mib = static_cast<size_t>(std::max(1LL, value()));
    } else if (a == "--reps") {
      o->reps = static_cast<int>(std::max(1LL, value()));
    } else if (a == "--portable") {
      o->portable = true;
    } else {
      std::fprintf(stderr,
                   "usage: %s [--elems N] [--total-mib M] [--reps R] [--portable]\n", argv[0]);
      return false;
    }
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  if (!parse(argc, argv, &o)) return 2;
  quant::force_portable_quant_kernels(o.portable);

  const Case cases[] = {
      {"fp32->uint8  MinMax", {DataType::kFloat32, QuantAlgorithm::kMinMax, DataType::kUint8}},
      {"fp32->int8   ZPS", {DataType::kFloat32, QuantAlgorithm::kZeroPointScale, DataType::kInt8}},
      {"fp32->bf16   cast", {DataType::kFloat32, QuantAlgorithm::kNone, DataType::kBFloat16}},
      {"fp32->fp16   cast", {DataType::kFloat32, QuantAlgorithm::kNone, DataType::kFloat16}},
      {"fp16->uint8  MinMax", {DataType::kFloat16, QuantAlgorithm::kMinMax, DataType::kUint8}},
      {"bf16->uint8  MinMax", {DataType::kBFloat16, QuantAlgorithm::kMinMax, DataType::kUint8}},
      {"fp64->uint16 MinMax", {DataType::kFloat64, QuantAlgorithm::kMinMax, DataType::kUint16}},
  };

  std::printf("qccl quant kernels: %s path, %zu elements per run, ~%zu MiB of source per "
              "timing, median of %d, GB/s of source bytes\n",
              quant::active_quant_isa() == quant::QuantIsa::kAvx2 ? "AVX2+F16C" : "portable",
              o.elems, o.total_mib, o.reps);
  std::printf("%-20s %9s %12s %9s %11s %9s\n", "codec", "encode", "enc+decoded", "decode",
              "dec+reduce", "reduce");
  int failures = 0;
  for (const Case& k : cases) {
    const quant::WireCodec& c = k.codec;
    if (!quant::check_codec(c).is_ok()) {
      std::printf("%-20s rejected: %s\n", k.name, quant::check_codec(c).message().c_str());
      ++failures;
      continue;
    }
    const size_t n = o.elems;
    const size_t src_bytes = n * qccl::dtype_size(c.source);
    const size_t iters = std::max<size_t>(1, (o.total_mib << 20) / src_bytes);
    const std::vector<uint8_t> src = make_source(c.source, n, 1);
    std::vector<uint8_t> own = make_source(c.source, n, 2);
    std::vector<uint8_t> decoded(src_bytes);
    std::vector<uint8_t> dst(src_bytes);
    std::vector<uint8_t> wire(quant::encoded_bytes(c, n));
    quant::encode(c, src.data(), n, wire.data(), nullptr);

    const double enc = median_gbps(o, iters, src_bytes, [&] {
      quant::encode(c, src.data(), n, wire.data(), nullptr);
    });
    const double enc_dec = median_gbps(o, iters, src_bytes, [&] {
      quant::encode(c, src.data(), n, wire.data(), decoded.data());
    });
    const double dec = median_gbps(o, iters, src_bytes, [&] {
      quant::decode(c, wire.data(), n, dst.data());
    });
    // In place on `own`; values drift but stay finite over the run (adding decoded N(0,1)
    // data a few thousand times), which is all the timing needs.
    const double dec_red = median_gbps(o, iters, src_bytes, [&] {
      quant::decode_reduce(c, ReduceOp::kSum, own.data(), own.data(), wire.data(), n, 1);
    });
    const double red = median_gbps(o, iters, src_bytes, [&] {
      quant::reduce(c.source, ReduceOp::kSum, dst.data(), dst.data(), decoded.data(), n);
    });
    std::printf("%-20s %9.2f %12.2f %9.2f %11.2f %9.2f\n", k.name, enc, enc_dec, dec, dec_red,
                red);
  }
  return failures == 0 ? 0 : 1;
}
