// qccl all-reduce benchmark: the parent runs a master in-process and re-executes itself as N
// peer processes (--role peer), for each N of --peers. Per (N, size, wire setting) it reports
// median / min / max op time and algbw / busbw as nccl-tests define them:
//   algbw = size / time,  busbw = algbw * 2(N-1)/N   (GB/s = 1e9 bytes/s, median time),
// where size is the source buffer (--dtype), whatever travels on the wire. An iteration's time
// is the slowest peer's: each peer times its own op after an untimed barrier and a max-reduce
// gathers the times.
//
// Wire settings (--quant, one row each): `none` sends the source type; `minmax:T` and `zps:T`
// quantize to T (uint8/int8/uint16/int16) with qcclQuantMinMax / qcclQuantZeroPointScale;
// `cast:T` is qcclQuantNone with quantized_dtype T (a plain down-cast, e.g. fp32 sent as bf16).
// Per row the bench also reports the bytes each peer sent per op (qcclReduceInfo_t.tx_bytes,
// max over peers), the speed-up and the tx ratio against the `none` row of the same (N, size),
// the max abs error against the exact sum, and bit parity: every peer hashes its recvbuf after
// every op and reports a digest of those hashes; the parent checks that all are equal.
//
// Input data is gradient-like: peer i's element k is a deterministic, roughly normal value
// (sigma 1, |x| < 3.5, an Irwin-Hall sum of four uniforms from a hash of (i, k)), rounded to
// the source type, so peer 0 can recompute every peer's contribution and the exact sum (in
// long double) after the last iteration. Rows without quantization (`none`, and `cast` as a
// looser check) must be within N * 2 eps(type) * sum|x| of it, or the run fails.
//
// Loopback by default. --netns PREFIX --master-host IP runs peer i under
// `ip netns exec PREFIX-p<i+1>` and the master on IP (the parent must run where IP is
// reachable, e.g. inside the master's namespace): peers' data listeners bind 0.0.0.0 and the
// master hands out the address it sees, i.e. the peer's namespace address, so the ring's
// traffic stays on the namespace subnet. benchmarks/allreduce_netns.sh sets that up.
//
// --optimize-topology (benchmarks/topology_netns.sh): the parent starts peer i+1 only after
// peer i was admitted, so the default ring is the index order; every row runs twice, first on
// that ring (phase `default`), then after a qcclOptimizeTopology between two barriers (phase
// `optimized`; the call's time is the slowest peer's: the probe + solve + rewiring cost). The
// rings (peer indices in ring order, from QCCL_ATTR_RING_RANK) and the speed-up of each row
// over its default row are printed and in the JSON. --probe-ms sets the master's probe_ms.
//
// --op allreduce,allgather,reducescatter,broadcast (default allreduce) runs those collectives,
// one row per (N, size, op), for benchmarks/compare.py --ops. Size is the op's total data:
// all-gather's output (each peer sends size/N), reduce-scatter's input (each peer gets size/N),
// broadcast's buffer (from the peer with index 0, named by its QCCL_ATTR_PEER_ID); size/N is
// rounded down to whole float32s. busbw as nccl-tests: all-gather and reduce-scatter
// algbw * (N-1)/N, broadcast algbw. These ops run float32 with --quant none only, on the exact
// data (index+1) * (k % 1024 + 1) of bench_common.hpp, and every peer checks every element of
// every iteration exactly (all-gather's blocks in the ring order qcclOpInfo_t.peer_ids reports;
// reduce-scatter's block of this peer's ring rank there); a wrong element fails the row.
//
// --auth-token-file F gives the master and every peer the shared secret in F, so that every
// connection is authenticated and (the library's default) encrypted; --encryption off keeps
// the secret but sends in clear (QCCL_ENCRYPTION_OFF), --encryption on encrypts whatever
// $QCCL_ENCRYPTION says (QCCL_ENCRYPTION_ON). Without a file nothing is authenticated
// (compare.py's and wan.py's qccl-auth and qccl-enc rows; issue 23). The JSON's "security"
// says which: none, auth (secret, no encryption), encrypted, or default ($QCCL_ENCRYPTION).
//
// Exit status: 0 when every row ran, was correct and bit-identical on all peers; 1 otherwise
// (a row the library refused, e.g. an unsupported quantization, prints its error and the run
// continues with the next row).
#include "bench_common.hpp"
#include "op_profile.hpp"
#include "topology_phase.hpp"

#include <cmath>
#include <map>

using namespace qccl_bench;

namespace {

// ---- source types and wire settings --------------------------------------------------------

struct TypeName {
  const char* name;
  qcclDataType_t type;
  size_t bytes;
  int mantissa_bits;  // for the rounding bound of unquantized rows; 0 = integer
};
constexpr TypeName kTypes[] = {
    {"fp32", qcclFloat32, 4, 23}, {"fp64", qcclFloat64, 8, 52}, {"fp16", qcclFloat16, 2, 10},
    {"bf16", qcclBFloat16, 2, 7}, {"uint8", qcclUint8, 1, 0},   {"int8", qcclInt8, 1, 0},
    {"uint16", qcclUint16, 2, 0}, {"int16", qcclInt16, 2, 0}};

const TypeName* find_type(const std::string& s) {
  for (const auto& t : kTypes) {
    if (s == t.name) return &t;
  }
  return nullptr;
}
const TypeName& type_of(qcclDataType_t d) {
  for (const auto& t : kTypes) {
    if (t.type == d) return t;
  }
  throw std::logic_error("type without a name");
}

struct Wire {
  std::string name;  // as given: none, minmax:uint8, zps:int8, cast:bf16, ...
  qcclQuantization_t q;
  bool lossless() const { return name == "none"; }
  bool cast() const { return q.algorithm == qcclQuantNone && name != "none"; }
};

std::vector<Wire> parse_wires(const std::string& list, qcclDataType_t source) {
  std::vector<Wire> out;
  std::stringstream ss(list);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item.empty()) continue;
    if (item == "none") {
      out.push_back({item, {qcclQuantNone, source}});
      continue;
    }
    size_t colon = item.find(':');
    std::string algo = item.substr(0, colon);
    const TypeName* t = colon == std::string::npos ? nullptr : find_type(item.substr(colon + 1));
    if (!t) throw std::invalid_argument("bad --quant entry '" + item + "'");
    if (algo == "minmax") out.push_back({item, {qcclQuantMinMax, t->type}});
    else if (algo == "zps") out.push_back({item, {qcclQuantZeroPointScale, t->type}});
    else if (algo == "cast") out.push_back({item, {qcclQuantNone, t->type}});
    else throw std::invalid_argument("bad --quant entry '" + item + "'");
  }
  if (out.empty()) throw std::invalid_argument("empty --quant list");
  return out;
}

struct Options {
  std::vector<int64_t> peers = {2, 3, 4};
  std::vector<int64_t> sizes_mib = {1, 16, 64, 256};
  int iters = 10;
  int warmup = 3;
  uint32_t connections = 0;  // 0 = the library's default
  bool inplace = false;
  int timeout_s = 1800;      // whole run; each N gets what is left
  std::string json;
  std::string quant = "none";
  std::string dtype = "fp32";
  std::string op = "allreduce";  // comma-separated list of allreduce, allgather, reducescatter, broadcast
  std::string netns;         // "" = loopback; else peer i runs in PREFIX-p<i+1>
  std::string master_host = "127.0.0.1";
  std::string label;         // for the title and the JSON; default loopback / netns PREFIX
  bool optimize = false;     // --optimize-topology: default ring, qcclOptimizeTopology, again
  uint32_t probe_ms = 0;     // the master's probe_ms (0 = the library's default)
  Secret secret;             // --auth-token-file, --encryption
  // derived
  qcclDataType_t source = qcclFloat32;
  std::vector<Wire> wires;
  std::vector<std::string> ops;
  // peer role only
  bool peer = false;
  std::string master;
  int index = 0;
  int nranks = 0;
  int result_fd = -1;
};

[[noreturn]] void usage(const char* msg) {
  std::fprintf(stderr,
               "%s\nusage: qccl_allreduce_bench [--peers 2,3,4] [--sizes-mib 1,16,64,256]\n"
               "  [--iters 10] [--warmup 3] [--connections C (0 = default)] [--inplace]\n"
               "  [--dtype fp32|fp64|fp16|bf16] [--quant none,minmax:uint8,zps:int8,cast:bf16,...]\n"
               "  [--netns PREFIX --master-host IP] [--label TEXT] [--timeout-s 1800] [--json FILE]\n"
               "  [--optimize-topology] [--probe-ms MS (0 = default)]\n"
               "  [--op allreduce,allgather,reducescatter,broadcast (default allreduce)]\n"
               "  [--auth-token-file FILE [--encryption on|off (default: the library's)]]\n"
               "quant entries: none | minmax:T | zps:T (T = uint8, int8, uint16, int16) |\n"
               "  cast:T (T = fp16, bf16, fp32: qcclQuantNone with quantized_dtype T)\n",
               msg);
  std::exit(2);
}

Options parse(int argc, char** argv) {
  Options o;
  parse_flags(argc, argv, usage, [&](const std::string& a, auto& val) {
    if (a == "--peers") o.peers = parse_int_list(val());
    else if (a == "--sizes-mib") o.sizes_mib = parse_int_list(val());
    else if (a == "--iters") o.iters = std::stoi(val());
    else if (a == "--warmup") o.warmup = std::stoi(val());
    else if (a == "--connections") o.connections = uint32_t(std::stoul(val()));
    else if (a == "--inplace") o.inplace = true;
    else if (a == "--timeout-s") o.timeout_s = std::stoi(val());
    else if (a == "--json") o.json = val();
    else if (a == "--quant") o.quant = val();
    else if (a == "--dtype") o.dtype = val();
    else if (a == "--op") o.op = val();
    else if (a == "--netns") o.netns = val();
    else if (a == "--master-host") o.master_host = val();
    else if (a == "--label") o.label = val();
    else if (a == "--optimize-topology") o.optimize = true;
    else if (a == "--probe-ms") o.probe_ms = uint32_t(std::stoul(val()));
    else if (a == "--auth-token-file") o.secret.token_file = val();
    else if (a == "--encryption") {
      const std::string v = val();
      if (v != "on" && v != "off") usage("--encryption takes on or off");
      o.secret.encryption = v == "on" ? QCCL_ENCRYPTION_ON : QCCL_ENCRYPTION_OFF;
    }
    else if (a == "--role") o.peer = val() == "peer";
    else if (a == "--master") o.master = val();
    else if (a == "--index") o.index = std::stoi(val());
    else if (a == "--nranks") o.nranks = std::stoi(val());
    else if (a == "--result-fd") o.result_fd = std::stoi(val());
    else if (a == "--help" || a == "-h") usage("");
    else return false;
    return true;
  });
  if (o.iters < 1 || o.warmup < 0) usage("--iters must be >= 1 and --warmup >= 0");
  for (auto n : o.peers) if (n < 2) usage("--peers values must be >= 2");
  for (auto s : o.sizes_mib) if (s < 1) usage("--sizes-mib values must be >= 1");
  const TypeName* t = find_type(o.dtype);
  if (!t || t->mantissa_bits == 0) usage("--dtype must be fp32, fp64, fp16 or bf16");
  o.source = t->type;
  try {
    o.wires = parse_wires(o.quant, o.source);
  } catch (const std::invalid_argument& e) {
    usage(e.what());
  }
  {
    std::stringstream ss(o.op);
    for (std::string item; std::getline(ss, item, ',');) {
      if (item.empty()) continue;
      if (item != "allreduce" && item != "allgather" && item != "reducescatter" &&
          item != "broadcast") {
        usage(("unknown --op entry '" + item + "'").c_str());
      }
      if (item != "allreduce" && (o.quant != "none" || o.source != qcclFloat32)) {
        usage("--op allgather, reducescatter and broadcast run with --dtype fp32 --quant none only");
      }
      o.ops.push_back(item);
    }
    if (o.ops.empty()) usage("empty --op list");
  }
  if (o.secret.encryption != QCCL_ENCRYPTION_DEFAULT && o.secret.token_file.empty()) {
    usage("--encryption needs --auth-token-file (without a secret nothing is encrypted)");
  }
  if (o.label.empty()) o.label = o.netns.empty() ? "loopback" : "netns " + o.netns;
  return o;
}

// ---- data ----------------------------------------------------------------------------------

// Round to nearest even, as the library's down-casts do (only the bench's own data uses these).
uint16_t to_fp16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  uint16_t sign = uint16_t((x >> 16) & 0x8000);
  uint32_t ax = x & 0x7fffffff;
  if (ax > 0x7f800000) return uint16_t(sign | 0x7e00);
  if (ax >= 0x477ff000) return uint16_t(sign | 0x7c00);  // >= 65520 rounds to infinity
  if (ax < 0x38800000) {                                   // below 2^-14: a subnormal half
    float a;
    std::memcpy(&a, &ax, 4);
    return uint16_t(sign | uint16_t(std::nearbyint(a * 16777216.0f)));  // units of 2^-24
  }
  uint32_t r = ax + 0xfff + ((ax >> 13) & 1);
  return uint16_t(sign | ((r - 0x38000000) >> 13));
}
float from_fp16(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000) << 16, e = (h >> 10) & 0x1f, m = h & 0x3ff, bits;
  if (e == 0) {
    float v = std::ldexp(float(m), -24);
    return sign ? -v : v;
  }
  bits = sign | (e == 31 ? 0x7f800000 | (m << 13) : ((e + 112) << 23) | (m << 13));
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}
uint16_t to_bf16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  if ((x & 0x7fffffff) > 0x7f800000) return uint16_t((x >> 16) | 0x40);
  return uint16_t((x + 0x7fff + ((x >> 16) & 1)) >> 16);
}
float from_bf16(uint16_t h) {
  uint32_t bits = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// Element k of buffer p as a double, and the value x stored in the source type.
double load(qcclDataType_t t, const uint8_t* p, size_t k) {
  switch (t) {
    case qcclFloat64: { double v; std::memcpy(&v, p + 8 * k, 8); return v; }
    case qcclFloat16: { uint16_t v; std::memcpy(&v, p + 2 * k, 2); return from_fp16(v); }
    case qcclBFloat16: { uint16_t v; std::memcpy(&v, p + 2 * k, 2); return from_bf16(v); }
    default: { float v; std::memcpy(&v, p + 4 * k, 4); return v; }
  }
}
void store(qcclDataType_t t, uint8_t* p, size_t k, double x) {
  switch (t) {
    case qcclFloat64: std::memcpy(p + 8 * k, &x, 8); break;
    case qcclFloat16: { uint16_t v = to_fp16(float(x)); std::memcpy(p + 2 * k, &v, 2); break; }
    case qcclBFloat16: { uint16_t v = to_bf16(float(x)); std::memcpy(p + 2 * k, &v, 2); break; }
    default: { float v = float(x); std::memcpy(p + 4 * k, &v, 4); break; }
  }
}
// The value `store` keeps, without a buffer.
double rounded(qcclDataType_t t, double x) {
  switch (t) {
    case qcclFloat64: return x;
    case qcclFloat16: return from_fp16(to_fp16(float(x)));
    case qcclBFloat16: return from_bf16(to_bf16(float(x)));
    default: return double(float(x));
  }
}

// Peer `peer`'s gradient-like value at element k: sigma 1, within +-3.47, symmetric.
double gradient(int peer, size_t k) {
  uint64_t z = (uint64_t(peer) + 1) * 0xd1b54a32d192ed03ULL + (uint64_t(k) + 1) * 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  z ^= z >> 31;
  double s = double((z & 0xffff) + ((z >> 16) & 0xffff) + ((z >> 32) & 0xffff) + (z >> 48));
  return (s - 131070.0) * (1.7320508075688772 / 65536.0);
}

struct ErrorStats {
  double max_abs = 0, rms = 0, max_exact = 0;
  int64_t non_finite = 0, over_bound = 0;  // elements; over_bound only when a bound applies
};

// Compares recv against the exact sum of every peer's contribution. `eps_bits` > 0 also counts
// elements outside N * 2 * 2^-eps_bits * sum|x| (the rounding of N-1 hops plus the last one).
ErrorStats measure_error(qcclDataType_t t, const uint8_t* recv, size_t count, int n, int eps_bits) {
  ErrorStats e;
  const double eps = eps_bits > 0 ? std::ldexp(1.0, -eps_bits) : 0.0;
  long double sq = 0;
  for (size_t k = 0; k < count; ++k) {
    long double exact = 0, abs_sum = 0;
    for (int j = 0; j < n; ++j) {
      double x = rounded(t, gradient(j, k));
      exact += x;
      abs_sum += std::fabs(x);
    }
    double got = load(t, recv, k);
    if (!std::isfinite(got)) {
      ++e.non_finite;
      continue;
    }
    double err = double(std::fabs((long double)got - exact));
    e.max_abs = std::max(e.max_abs, err);
    e.max_exact = std::max(e.max_exact, double(std::fabs(exact)));
    sq += (long double)err * err;
    if (eps_bits > 0 && err > 2.0 * n * eps * double(abs_sum)) ++e.over_bound;
  }
  e.rms = count ? double(std::sqrt(sq / (long double)count)) : 0.0;
  return e;
}

// ---- peer process ------------------------------------------------------------------------

// One (size, wire) row on a peer. Peer 0 reports the times and the error; every peer reports
// the digest of its recvbuf hashes (HASH) before the final barrier, so that the parent has all
// of them when peer 0's RESULT arrives. A refused op (the same on every peer, e.g. an
// unsupported quantization) ends the row with ROWERR and RESULT ... FAILED; the group goes on.
// `phase` (one word) is `-` for a plain run, else `default` / `optimized`.
void run_row(const Options& o, PeerCtx& ctx, const Wire& w, size_t count, uint8_t* send,
             uint8_t* recv, const std::string& phase) {
  const TypeName& src = type_of(o.source);
  const size_t bytes = count * src.bytes;
  const std::string key = std::to_string(bytes) + " allreduce " + w.name + " " + phase;
  std::string times;
  double tx_max = 0, tx_min = 0, rx_max = 0;
  uint64_t digest = 0xcbf29ce484222325ULL, first = 0;
  bool all_same = true;
  ProfileMeter meter(ctx.comm);
  for (int it = 0; it < o.warmup + o.iters; ++it) {
    // Out of place: poison recv (all-ones bytes are NaN in every float type) so a stale
    // correct result cannot pass. In place: restore the input the previous op overwrote.
    if (o.inplace) std::memcpy(recv, send, bytes);
    else std::memset(recv, 0xff, bytes);
    const void* in = o.inplace ? static_cast<const void*>(recv) : send;
    qcclReduceDesc_t d = {count, o.source, qcclSum, 0, w.q};
    qcclReduceInfo_t info{};
    allreduce_max(ctx, 0.0);  // barrier
    d.tag = ctx.next_tag++;
    meter.before();
    int64_t t0 = now_ns();
    qcclResult_t r = qcclAllReduce(in, recv, &d, ctx.comm, &info);
    int64_t t1 = now_ns();
    meter.after(it >= o.warmup);
    if (r != qcclSuccess) {
      std::string why = std::string(qcclGetErrorString(r)) + ": " + qcclGetLastError();
      send_line(o.result_fd, "ROWERR " + key + " " + std::to_string(o.index) + " " + why);
    }
    uint64_t h = r == qcclSuccess ? hash_bytes(recv, bytes) : 0;
    if (it == 0) first = h;
    all_same = all_same && h == first;
    digest = (digest ^ h) * 0x100000001b3ULL;
    // One reduce gathers the slowest time, any peer's failure and the tx/rx extremes.
    double v[5] = {ns_to_ms(t1 - t0), r != qcclSuccess ? 1.0 : 0.0, double(info.tx_bytes),
                   -double(info.tx_bytes), double(info.rx_bytes)};
    allreduce_max(ctx, v, 5);
    if (v[1] != 0.0) {  // the failing peers wrote ROWERR before this reduce: they come first
      if (o.index == 0) send_line(o.result_fd, "RESULT " + key + " FAILED");
      return;
    }
    if (it >= o.warmup) {
      char buf[32];
      std::snprintf(buf, sizeof buf, " %.4f", v[0]);
      times += buf;
      tx_max = std::max(tx_max, v[2]);
      tx_min = it == o.warmup ? -v[3] : std::min(tx_min, -v[3]);
      rx_max = std::max(rx_max, v[4]);
    }
  }
  char buf[256];
  std::snprintf(buf, sizeof buf, "HASH %s %d %016llx %d", key.c_str(), o.index,
                (unsigned long long)digest, all_same ? 1 : 0);
  send_line(o.result_fd, buf);
  ErrorStats e;
  if (o.index == 0) {  // the others are identical (parity), so one peer's CPU is enough
    int bound_bits = w.lossless() ? src.mantissa_bits
                     : w.cast()   ? std::min(src.mantissa_bits, type_of(w.q.quantized_dtype).mantissa_bits)
                                  : 0;
    e = measure_error(o.source, recv, count, o.nranks, bound_bits);
  }
  OpProfile profile = meter.gather(ctx, o.index, o.nranks);
  if (o.index == 0) send_line(o.result_fd, profile_line(key, profile));
  allreduce_max(ctx, 0.0);  // every HASH line is in the pipe before the RESULT line
  if (o.index == 0) {
    std::snprintf(buf, sizeof buf, "RESULT %s OK %.0f %.0f %.0f %.9g %.9g %.9g %lld %lld",
                  key.c_str(), tx_max, tx_min, rx_max, e.max_abs, e.rms, e.max_exact,
                  (long long)e.non_finite, (long long)e.over_bound);
    send_line(o.result_fd, buf + times);
  }
}

// Busbw factor of an op as nccl-tests define it.
double busbw_factor(const std::string& op, int n) {
  if (op == "allreduce") return 2.0 * (n - 1) / n;
  if (op == "broadcast") return 1.0;
  return double(n - 1) / n;  // allgather, reducescatter
}

// Elements of recv[0..count) that differ from expect(k); 0 when all are exact.
template <typename Expect>
int64_t count_wrong(const float* recv, size_t count, Expect expect) {
  int64_t bad = 0;
  for (size_t k = 0; k < count; ++k) bad += recv[k] != expect(k) ? 1 : 0;
  return bad;
}

// One (size, op) row of all-gather, reduce-scatter or broadcast on a peer: like run_row, but
// float32 on the exact data of bench_common.hpp, checked element by element on every peer
// after every iteration. `ids` maps peer index -> QCCL_ATTR_PEER_ID. Reports go out as in
// run_row (the digest too; reduce-scatter's blocks differ per peer, so the parent skips parity
// there) with the count of wrong elements (max over peers, summed over iterations) in the
// over_bound field.
void run_coll_row(const Options& o, PeerCtx& ctx, const std::string& op, size_t total_bytes,
                  float* send, float* recv, const std::vector<uint64_t>& ids,
                  const std::string& phase) {
  const int n = o.nranks;
  const size_t total = total_bytes / 4, block = total / size_t(n);
  const std::string key = std::to_string(total_bytes) + " " + op + " none " + phase;
  const float weight = float(n) * float(n + 1) / 2.0f;
  std::vector<uint64_t> ring(static_cast<size_t>(n));
  std::string times;
  double tx_max = 0, tx_min = 0, rx_max = 0, wrong = 0;
  uint64_t digest = 0xcbf29ce484222325ULL, first = 0;
  bool all_same = true;
  // Inputs: all-gather sends its block, reduce-scatter its whole input, broadcast's root its
  // buffer (kept in recv, which is the one in-place buffer).
  const size_t send_count = op == "allgather" ? block : op == "reducescatter" ? block * size_t(n) : 0;
  for (size_t k = 0; k < send_count; ++k) send[k] = contribution(o.index, k);
  ProfileMeter meter(ctx.comm);
  for (int it = 0; it < o.warmup + o.iters; ++it) {
    const size_t out_count = op == "reducescatter" ? block : op == "allgather" ? block * size_t(n) : total;
    if (op == "broadcast" && o.index == 0) {
      for (size_t k = 0; k < total; ++k) recv[k] = contribution(0, k);
    } else {
      std::memset(recv, 0xff, out_count * 4);  // NaN: a stale result cannot pass
    }
    qcclOpInfo_t info{};
    info.peer_ids = ring.data();
    info.peer_ids_capacity = ring.size();
    allreduce_max(ctx, 0.0);  // barrier
    const uint64_t tag = ctx.next_tag++;
    qcclResult_t r;
    meter.before();
    int64_t t0 = now_ns();
    if (op == "allgather") {
      r = qcclAllGather(send, recv, block, block * size_t(n), qcclFloat32, tag, ctx.comm, &info);
    } else if (op == "reducescatter") {
      qcclReduceDesc_t d = {block * size_t(n), qcclFloat32, qcclSum, tag, {qcclQuantNone, qcclFloat32}};
      r = qcclReduceScatter(send, recv, block, &d, ctx.comm, &info);
    } else {
      r = qcclBroadcast(recv, total, qcclFloat32, ids[0], tag, ctx.comm, &info);
    }
    int64_t t1 = now_ns();
    meter.after(it >= o.warmup);
    if (r != qcclSuccess) {
      std::string why = std::string(qcclGetErrorString(r)) + ": " + qcclGetLastError();
      send_line(o.result_fd, "ROWERR " + key + " " + std::to_string(o.index) + " " + why);
    }
    int64_t bad = 0;
    if (r == qcclSuccess && info.world_size != uint32_t(n)) bad = 1;
    if (r == qcclSuccess && bad == 0) {
      if (op == "allgather") {  // block b comes from the peer at ring position b
        for (int b = 0; b < n; ++b) {
          auto at = std::find(ids.begin(), ids.end(), ring[size_t(b)]);
          if (at == ids.end()) { bad += int64_t(block); continue; }
          const int idx = int(at - ids.begin());
          bad += count_wrong(recv + size_t(b) * block, block,
                             [&](size_t k) { return contribution(idx, k); });
        }
      } else if (op == "reducescatter") {  // this peer's ring position's block of the sum
        auto at = std::find(ring.begin(), ring.end(), ids[size_t(o.index)]);
        const size_t base = size_t(at - ring.begin()) * block;
        bad = at == ring.end() ? int64_t(block)
                               : count_wrong(recv, block, [&](size_t k) {
                                   return weight * float((base + k) % 1024 + 1);
                                 });
      } else {
        bad = count_wrong(recv, total, [&](size_t k) { return contribution(0, k); });
      }
    }
    uint64_t h = r == qcclSuccess ? hash_bytes(recv, out_count * 4) : 0;
    if (it == 0) first = h;
    all_same = all_same && h == first;
    digest = (digest ^ h) * 0x100000001b3ULL;
    double v[6] = {ns_to_ms(t1 - t0), r != qcclSuccess ? 1.0 : 0.0, double(info.tx_bytes),
                   -double(info.tx_bytes), double(info.rx_bytes), double(bad)};
    allreduce_max(ctx, v, 6);
    if (v[1] != 0.0) {
      if (o.index == 0) send_line(o.result_fd, "RESULT " + key + " FAILED");
      return;
    }
    wrong += v[5];
    if (it >= o.warmup) {
      char buf[32];
      std::snprintf(buf, sizeof buf, " %.4f", v[0]);
      times += buf;
      tx_max = std::max(tx_max, v[2]);
      tx_min = it == o.warmup ? -v[3] : std::min(tx_min, -v[3]);
      rx_max = std::max(rx_max, v[4]);
    }
  }
  char buf[256];
  std::snprintf(buf, sizeof buf, "HASH %s %d %016llx %d", key.c_str(), o.index,
                (unsigned long long)digest, all_same ? 1 : 0);
  send_line(o.result_fd, buf);
  OpProfile profile = meter.gather(ctx, o.index, o.nranks);
  if (o.index == 0) send_line(o.result_fd, profile_line(key, profile));
  allreduce_max(ctx, 0.0);  // every HASH line is in the pipe before the RESULT line
  if (o.index == 0) {
    std::snprintf(buf, sizeof buf, "RESULT %s OK %.0f %.0f %.0f 0 0 0 0 %.0f", key.c_str(),
                  tx_max, tx_min, rx_max, wrong);
    send_line(o.result_fd, buf + times);
  }
}

// QCCL_ATTR_PEER_ID of every peer index (a max-reduce of a table each peer fills its slot of).
std::vector<uint64_t> peer_ids(const Options& o, PeerCtx& ctx) {
  int64_t mine = 0;
  check(qcclGetAttribute(ctx.comm, QCCL_ATTR_PEER_ID, &mine), "qcclGetAttribute(PEER_ID)");
  if (mine < 0 || mine >= (int64_t(1) << 53)) throw std::runtime_error("peer id not exact in a double");
  std::vector<double> t(size_t(o.nranks), -1.0);
  t[size_t(o.index)] = double(mine);
  allreduce_max(ctx, t.data(), t.size());
  std::vector<uint64_t> ids;
  for (double x : t) ids.push_back(uint64_t(x));
  return ids;
}

int run_peer(const Options& o) {
  const int64_t deadline = now_ns() + int64_t(o.timeout_s) * 1000000000;
  PeerCtx ctx;
  try {
    join_group(
        ctx, o.master, o.nranks, o.connections, deadline,
        [&] {
          if (o.optimize) send_line(o.result_fd, "JOINED " + std::to_string(o.index));
        },
        o.secret);
    const size_t esize = type_of(o.source).bytes;
    size_t max_bytes = size_t(*std::max_element(o.sizes_mib.begin(), o.sizes_mib.end())) << 20;
    std::vector<uint64_t> send_words(max_bytes / 8), recv_words(max_bytes / 8);
    auto* send = reinterpret_cast<uint8_t*>(send_words.data());
    auto* recv = reinterpret_cast<uint8_t*>(recv_words.data());
    const std::vector<uint64_t> ids = peer_ids(o, ctx);
    auto run_rows = [&](const std::string& phase) {
      for (int64_t mib : o.sizes_mib) {
        const size_t count = (size_t(mib) << 20) / esize;
        for (const std::string& op : o.ops) {
          if (op != "allreduce") {
            run_coll_row(o, ctx, op, size_t(mib) << 20, reinterpret_cast<float*>(send),
                         reinterpret_cast<float*>(recv), ids, phase);
            continue;
          }
          for (size_t k = 0; k < count; ++k) store(o.source, send, k, gradient(o.index, k));
          for (const Wire& w : o.wires) run_row(o, ctx, w, count, send, recv, phase);
        }
      }
    };
    if (!o.optimize) {
      run_rows("-");
    } else {
      report_ring(o.result_fd, o.index, ctx, "default");
      run_rows("default");
      optimize_topology(o.result_fd, o.index, ctx);
      report_ring(o.result_fd, o.index, ctx, "optimized");
      run_rows("optimized");
    }
    // Nobody leaves while another still counts on it. All results are in by now, so a peer
    // lost here (one that returned from this barrier first and left) costs nothing.
    try {
      allreduce_max(ctx, 0.0);
    } catch (const QcclError& e) {
      if (e.code != qcclPeerLost) throw;
      std::fprintf(stderr, "peer %d: final barrier: %s\n", o.index, e.what());
    }
    check(qcclCommDestroy(ctx.comm), "qcclCommDestroy");
    send_line(o.result_fd, "DONE " + std::to_string(o.index));
    return 0;
  } catch (const std::exception& e) {
    return peer_failed(ctx, o.result_fd, o.index, e);
  }
}

// ---- parent ------------------------------------------------------------------------------

struct Row {
  int n = 0;
  int64_t size_bytes = 0;
  std::string op = "allreduce";
  std::string quant;
  bool ok = false;
  std::string error;  // why the library refused the row
  std::vector<double> times_ms;
  double med = 0, mn = 0, mx = 0, algbw = 0, busbw = 0;
  double tx = 0, tx_min = 0, rx = 0;  // bytes per peer per op (max / min over peers)
  double speedup = 0, tx_ratio = 0;   // against the `none` row; 0 = no such row
  double max_err = 0, rms_err = 0, max_exact = 0;
  int64_t non_finite = 0, over_bound = 0;
  bool parity = false, deterministic = false;
  // --optimize-topology only: the phase, its ring (peer indices, data flows ring[k] ->
  // ring[k+1]), qcclOptimizeTopology's time, and this row's speed-up over its default row.
  std::string phase;
  std::vector<int> ring;
  double optimize_ms = 0, vs_default = 0;
  OpProfile profile;  // where the time went (op_profile.hpp)
  bool correct() const { return ok && parity && non_finite == 0 && over_bound == 0; }
  std::string wire() const {
    std::string w = op == "allreduce" ? quant : op;
    return phase.empty() ? w : w + "/" + phase;
  }
};

void print_row(const Row& r, const Options& o) {
  std::printf("%3d %10.0f %6u ", r.n, double(r.size_bytes) / (1 << 20), o.connections);
  if (!r.ok) {
    std::printf("%6s %11s  %-13s FAILED: %s\n", "-", "-", r.wire().c_str(), r.error.c_str());
    std::fflush(stdout);
    return;
  }
  char speed[16] = "-", txr[16] = "-";
  if (r.speedup > 0) std::snprintf(speed, sizeof speed, "%.2fx", r.speedup);
  if (r.tx_ratio > 0) std::snprintf(txr, sizeof txr, "%.3f", r.tx_ratio);
  std::string parity = r.parity ? "parity ok" : "parity FAILS";
  if (r.parity && !r.deterministic) parity += " (iterations differ)";
  if (r.quant != "none" && r.tx_ratio >= 0.999) parity += " (tx not reduced)";
  if (r.non_finite) parity += " NON-FINITE " + std::to_string(r.non_finite);
  if (r.over_bound) parity += " WRONG " + std::to_string(r.over_bound);
  std::printf("%6zu %11.3f %9.3f %9.3f %12.3f %12.3f  %-13s %9.2f %7s %8s %10.3g  %s\n",
              r.times_ms.size(), r.med, r.mn, r.mx, r.algbw, r.busbw, r.wire().c_str(),
              r.tx / double(1 << 20), txr, speed, r.max_err, parity.c_str());
  std::fflush(stdout);
}

// Fills the ratios against the `none` row of the same (N, size), if there is one.
void relate_to_none(std::vector<Row>& rows) {
  for (Row& r : rows) {
    for (const Row& b : rows) {
      if (b.ok && r.ok && b.op == r.op && b.quant == "none" && b.n == r.n && b.size_bytes == r.size_bytes &&
          b.phase == r.phase) {
        r.speedup = r.med > 0 ? b.med / r.med : 0;
        r.tx_ratio = b.tx > 0 ? r.tx / b.tx : 0;
      }
      if (b.ok && r.ok && r.phase == "optimized" && b.phase == "default" && b.n == r.n &&
          b.size_bytes == r.size_bytes && b.op == r.op && b.quant == r.quant) {
        r.vs_default = r.med > 0 ? b.med / r.med : 0;
      }
    }
  }
}

struct RowHashes {
  std::map<int, std::pair<std::string, bool>> by_peer;  // index -> (digest, all iterations same)
  std::string error;
};

// Runs one group size: a fresh master, n peers, and the rows they report.
bool run_group(const Options& o, int n, int64_t deadline, std::vector<Row>& rows) {
  qcclMaster_t* master = nullptr;
  qcclMasterConfig_t mc = QCCL_MASTER_CONFIG_INIT;
  const std::string listen = o.master_host + ":0";
  mc.listen_address = listen.c_str();
  mc.probe_ms = o.probe_ms;
  mc.encryption = o.secret.encryption;
  std::vector<pid_t> pids;
  int fds[2] = {-1, -1};
  bool ok = false;
  try {
    const std::string token = o.secret.token_file.empty() ? "" : o.secret.read_token();
    if (!token.empty()) mc.auth_token = token.c_str();
    check(qcclMasterCreate(&mc, &master), "qcclMasterCreate");
    check(qcclMasterStart(master), "qcclMasterStart");
    uint16_t port = 0;
    check(qcclMasterGetPort(master, &port), "qcclMasterGetPort");
    if (pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe failed");
    std::string exe = self_exe(), sizes;
    for (auto s : o.sizes_mib) {
      if (!sizes.empty()) sizes += ',';
      sizes += std::to_string(s);
    }
    int64_t left_s = std::max<int64_t>((deadline - now_ns()) / 1000000000, 1);
    LineReader reader(fds[0]);
    for (int i = 0; i < n; ++i) {
      std::vector<std::string> argv = {exe, "--role", "peer", "--master",
                                       o.master_host + ":" + std::to_string(port), "--index",
                                       std::to_string(i), "--nranks", std::to_string(n),
                                       "--sizes-mib", sizes, "--iters", std::to_string(o.iters),
                                       "--warmup", std::to_string(o.warmup), "--connections",
                                       std::to_string(o.connections), "--timeout-s",
                                       std::to_string(left_s), "--result-fd",
                                       std::to_string(fds[1]), "--dtype", o.dtype, "--quant",
                                       o.quant, "--op", o.op};
      if (o.inplace) argv.push_back("--inplace");
      if (o.optimize) argv.push_back("--optimize-topology");
      if (!o.secret.token_file.empty()) {
        argv.insert(argv.end(), {"--auth-token-file", o.secret.token_file});
      }
      if (o.secret.encryption != QCCL_ENCRYPTION_DEFAULT) {
        argv.insert(argv.end(), {"--encryption", o.secret.encryption == QCCL_ENCRYPTION_ON ? "on" : "off"});
      }
      const std::string ns = o.netns.empty() ? "" : o.netns + "-p" + std::to_string(i + 1);
      // The write end must survive exec in the child only: clear CLOEXEC around the fork.
      fcntl(fds[1], F_SETFD, 0);
      pids.push_back(spawn_child(in_netns(ns, argv)));
      fcntl(fds[1], F_SETFD, FD_CLOEXEC);
      if (o.optimize && !wait_joined(reader, i, deadline)) throw std::runtime_error("join failed");
    }
    close(fds[1]);
    fds[1] = -1;
    // One row per op other than all-reduce, one per wire for all-reduce (the list need not
    // hold all-reduce: --op allgather alone is one row per size).
    const size_t n_allreduce = size_t(std::count(o.ops.begin(), o.ops.end(), "allreduce"));
    const size_t per_size = o.ops.size() - n_allreduce + o.wires.size() * n_allreduce;
    const size_t want_rows = o.sizes_mib.size() * per_size * (o.optimize ? 2 : 1);
    size_t got_rows = 0;
    std::map<std::string, RowHashes> hashes;  // "bytes quant phase" -> what the peers reported
    std::map<std::string, OpProfile> profiles;  // the same key -> peer 0's PROFILE
    std::map<std::string, std::vector<int64_t>> ranks;  // phase -> rank of each peer index
    std::string last_phase;
    double optimize_ms = 0;
    int done = 0;
    std::string line;
    while (done < n) {
      if (!reader.next(line, deadline)) {
        std::fprintf(stderr, "N=%d: %s\n", n, reader.error().c_str());
        break;
      }
      std::istringstream in(line);
      std::string kind, op, quant, phase;
      int64_t bytes = 0;
      in >> kind;
      if (kind == "HASH" || kind == "ROWERR" || kind == "RESULT" || kind == "PROFILE") {
        in >> bytes >> op >> quant >> phase;
      }
      const std::string key = std::to_string(bytes) + " " + op + " " + quant + " " + phase;
      if (kind == "HASH") {
        int idx = 0, same = 0;
        std::string hex;
        in >> idx >> hex >> same;
        hashes[key].by_peer[idx] = {hex, same != 0};
      } else if (kind == "PROFILE") {
        OpProfile& p = profiles[key];
        p.have = true;
        for (double& x : p.v) in >> x;
      } else if (kind == "ROWERR") {
        int idx = 0;
        in >> idx;
        std::string why;
        std::getline(in >> std::ws, why);
        if (hashes[key].error.empty()) hashes[key].error = "peer " + std::to_string(idx) + ": " + why;
      } else if (kind == "RING") {
        int idx = 0;
        int64_t rank = -1;
        in >> phase >> idx >> rank;
        auto& v = ranks[phase];
        v.resize(size_t(n), -1);
        if (idx >= 0 && idx < n) v[size_t(idx)] = rank;
      } else if (kind == "OPTIMIZED") {
        in >> optimize_ms;
      } else if (kind == "RESULT" && got_rows < want_rows) {
        Row r;
        r.n = n;
        r.size_bytes = bytes;
        r.op = op;
        r.quant = quant;
        if (phase != "-") {
          r.phase = phase;
          r.ring = ring_of(ranks[phase]);
          if (phase == "optimized") r.optimize_ms = optimize_ms;
          if (phase != last_phase) {
            if (phase == "optimized") {
              std::printf("-- qcclOptimizeTopology: %.1f ms (slowest peer)\n", optimize_ms);
            }
            std::printf("-- %s ring: %s\n", phase.c_str(), ring_string(r.ring).c_str());
            last_phase = phase;
          }
        }
        std::string status;
        in >> status;
        r.ok = status == "OK";
        if (r.ok) {
          in >> r.tx >> r.tx_min >> r.rx >> r.max_err >> r.rms_err >> r.max_exact >>
              r.non_finite >> r.over_bound;
          for (double x; in >> x;) r.times_ms.push_back(x);
          r.med = median(r.times_ms);
          r.mn = *std::min_element(r.times_ms.begin(), r.times_ms.end());
          r.mx = *std::max_element(r.times_ms.begin(), r.times_ms.end());
          r.algbw = double(bytes) / (r.med / 1e3) / 1e9;
          r.busbw = r.algbw * busbw_factor(op, n);
          r.profile = profiles[key];
          const RowHashes& h = hashes[key];
          r.parity = int(h.by_peer.size()) == n;
          r.deterministic = true;
          for (const auto& [idx, dh] : h.by_peer) {
            // reduce-scatter: every peer holds another block (each one checked exactly)
            r.parity = r.parity && (op == "reducescatter" || dh.first == h.by_peer.begin()->second.first);
            r.deterministic = r.deterministic && dh.second;
          }
        } else {
          r.error = hashes[key].error.empty() ? "failed (no reason reported)" : hashes[key].error;
        }
        rows.push_back(r);
        relate_to_none(rows);
        print_row(rows.back(), o);
        print_profile(rows.back().profile, rows.back().med);
        if (rows.back().vs_default > 0) {
          std::printf("-- optimized vs default ring: %.2fx faster\n", rows.back().vs_default);
        }
        ++got_rows;
      } else if (kind == "DONE") {
        ++done;
      } else if (kind == "ERROR") {
        std::fprintf(stderr, "N=%d: %s\n", n, line.c_str());
        break;
      }
    }
    ok = done == n && got_rows == want_rows;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "N=%d: %s\n", n, e.what());
  }
  // Peers that finished exit on their own; give them a moment, then end any that did not.
  end_children(pids, ok ? 5000000000LL : 200000000LL);
  if (fds[0] >= 0) close(fds[0]);
  if (fds[1] >= 0) close(fds[1]);
  if (master) qcclMasterDestroy(master);
  return ok;
}

std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    if (uint8_t(c) < 0x20) c = ' ';
    out += c;
  }
  return out + "\"";
}

// What protects the connections: none, auth (a secret, in clear), encrypted, or default (a
// secret; encrypted unless $QCCL_ENCRYPTION is off).
const char* security_name(const Secret& s) {
  if (s.token_file.empty()) return "none";
  return s.encryption == QCCL_ENCRYPTION_OFF  ? "auth"
         : s.encryption == QCCL_ENCRYPTION_ON ? "encrypted"
                                              : "default";
}

// "results" holds the rows that ran (compare.py reads n, size_bytes and median_ms from it);
// rows the library refused are under "failed".
void write_json(const Options& o, const std::vector<Row>& rows) {
  FILE* f = std::fopen(o.json.c_str(), "w");
  if (!f) {
    std::fprintf(stderr, "cannot write %s\n", o.json.c_str());
    return;
  }
  std::fprintf(f, "{\"system\": \"qccl\", \"connections\": %u, \"inplace\": %s, \"iters\": %d, "
               "\"warmup\": %d, \"dtype\": \"%s\", \"label\": %s, \"security\": \"%s\", "
               "\"results\": [",
               o.connections, o.inplace ? "true" : "false", o.iters, o.warmup, o.dtype.c_str(),
               json_string(o.label).c_str(), security_name(o.secret));
  bool first = true;
  for (const Row& r : rows) {
    if (!r.ok) continue;
    std::fprintf(f, "%s\n  {\"n\": %d, \"op\": \"%s\", \"size_bytes\": %lld, \"quant\": \"%s\", ",
                 first ? "" : ",", r.n, r.op.c_str(), (long long)r.size_bytes, r.quant.c_str());
    first = false;
    if (!r.phase.empty()) {
      std::string ring;
      for (int i : r.ring) ring += (ring.empty() ? "" : ", ") + std::to_string(i);
      std::fprintf(f, "\"phase\": \"%s\", \"ring\": [%s], \"optimize_ms\": %.3f, "
                   "\"speedup_vs_default\": %.4f, ",
                   r.phase.c_str(), ring.c_str(), r.optimize_ms, r.vs_default);
    }
    json_profile(f, r.profile);
    std::fprintf(f, "\"times_ms\": [");
    for (size_t k = 0; k < r.times_ms.size(); ++k) {
      std::fprintf(f, "%s%.4f", k ? ", " : "", r.times_ms[k]);
    }
    std::fprintf(f, "], \"median_ms\": %.4f, \"min_ms\": %.4f, \"max_ms\": %.4f, "
                 "\"algbw_gbs\": %.4f, \"busbw_gbs\": %.4f, \"tx_bytes\": %.0f, "
                 "\"tx_bytes_min\": %.0f, \"rx_bytes\": %.0f, \"speedup_vs_none\": %.4f, "
                 "\"tx_ratio_vs_none\": %.4f, \"max_abs_err\": %.6g, \"rms_err\": %.6g, "
                 "\"max_abs_exact\": %.6g, \"non_finite\": %lld, \"over_bound\": %lld, "
                 "\"parity\": %s, \"iterations_identical\": %s}",
                 r.med, r.mn, r.mx, r.algbw, r.busbw, r.tx, r.tx_min, r.rx, r.speedup, r.tx_ratio,
                 r.max_err, r.rms_err, r.max_exact, (long long)r.non_finite,
                 (long long)r.over_bound, r.parity ? "true" : "false",
                 r.deterministic ? "true" : "false");
  }
  std::fprintf(f, "\n], \"failed\": [");
  first = true;
  for (const Row& r : rows) {
    if (r.ok) continue;
    std::fprintf(f, "%s\n  {\"n\": %d, \"op\": \"%s\", \"size_bytes\": %lld, \"quant\": \"%s\", \"error\": %s}",
                 first ? "" : ",", r.n, r.op.c_str(), (long long)r.size_bytes, r.quant.c_str(),
                 json_string(r.error).c_str());
    first = false;
  }
  std::fprintf(f, "\n]}\n");
  std::fclose(f);
}

// A markdown table of every row, for docs/performance.md.
void print_summary(const Options& o, const std::vector<Row>& rows) {
  std::printf("\n| link | N | MiB %s | wire | median s | min s | speed-up vs none | "
              "tx MiB/peer/op | tx vs none | max abs err | parity |\n",
              o.dtype.c_str());
  std::printf("|---|---|---|---|---|---|---|---|---|---|---|\n");
  for (const Row& r : rows) {
    if (!r.ok) {
      std::printf("| %s | %d | %lld | %s | failed: %s | | | | | | |\n", o.label.c_str(), r.n,
                  (long long)(r.size_bytes >> 20), r.wire().c_str(), r.error.c_str());
      continue;
    }
    char speed[16] = "-", txr[16] = "-";
    if (r.speedup > 0) std::snprintf(speed, sizeof speed, "%.2fx", r.speedup);
    if (r.tx_ratio > 0) std::snprintf(txr, sizeof txr, "%.3f", r.tx_ratio);
    std::printf("| %s | %d | %lld | %s | %.3f | %.3f | %s | %.2f | %s | %.3g | %s |\n",
                o.label.c_str(), r.n, (long long)(r.size_bytes >> 20), r.wire().c_str(),
                r.med / 1e3, r.mn / 1e3, speed, r.tx / double(1 << 20), txr, r.max_err,
                r.correct() ? "ok" : "FAILS");
  }
}

}  // namespace

int main(int argc, char** argv) {
  Options o = parse(argc, argv);
  if (o.peer) return run_peer(o);
  signal(SIGPIPE, SIG_IGN);
  const int64_t deadline = now_ns() + int64_t(o.timeout_s) * 1000000000;
  if (o.op == "allreduce") {
    std::printf("qccl all-reduce, %s sum, %s, %s; busbw = size/time * 2(N-1)/N; tx = bytes sent "
                "per peer per op\n",
                o.dtype == "fp32" ? "float32" : o.dtype.c_str(), o.label.c_str(),
                o.inplace ? "in place" : "out of place");
  } else {
    std::printf("qccl %s, %s, %s; busbw = size/time * 2(N-1)/N (all-reduce), (N-1)/N (all-gather,\n"
                "reduce-scatter), 1 (broadcast); size = the op's total data; tx = bytes sent per "
                "peer per op\n",
                o.op.c_str(), o.label.c_str(), o.inplace ? "all-reduce in place" : "out of place");
  }
  if (!o.secret.token_file.empty()) {
    std::printf("shared secret from %s; connections: %s\n", o.secret.token_file.c_str(),
                security_name(o.secret));
  }
  std::printf("%3s %10s %6s %6s %11s %9s %9s %12s %12s  %-13s %9s %7s %8s %10s  %s\n", "N",
              "size(MiB)", "conns", "iters", "median(ms)", "min(ms)", "max(ms)", "algbw(GB/s)",
              "busbw(GB/s)", "wire", "tx(MiB)", "tx/none", "speedup", "max_err", "check");
  std::fflush(stdout);
  std::vector<Row> rows;
  bool ok = true;
  for (int64_t n : o.peers) ok = run_group(o, int(n), deadline, rows) && ok;
  relate_to_none(rows);
  int bad = 0;
  for (const Row& r : rows) bad += r.correct() ? 0 : 1;
  if (o.wires.size() > 1 || o.wires[0].name != "none" || !o.netns.empty()) print_summary(o, rows);
  if (!o.json.empty()) write_json(o, rows);
  if (bad) std::fprintf(stderr, "%d row(s) failed, were refused, or broke parity\n", bad);
  return ok && bad == 0 ? 0 : 1;
}
