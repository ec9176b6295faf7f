// Record cipher microbenchmark: the single-thread CPU cost of sealing and opening the AEAD
// records of src/net/record_cipher.hpp (issue 23, docs/security.md), next to a memcpy of
// the same bytes (the data plane copies each byte about once anyway).
//
// Per suite (AES-256-GCM, ChaCha20-Poly1305) and record payload (4, 16, 64 KiB), one trial
// pushes --mib MiB of plaintext through a buffer of at most 64 MiB, record by record:
//   seal    RecordSealer::seal of each payload into a sealed buffer (header | ct | tag)
//   open    RecordOpener::open of each sealed record, in place (a fresh copy of the sealed
//           buffer and a fresh opener per pass, both outside the timed loop; the first pass
//           checks that the plaintext comes back)
//   memcpy  memcpy of each payload to the sealed buffer's layout (one row per record size)
// Reported per row, over --trials trials: GB/s (1e9 bytes of plaintext per second of wall
// time) as median [min-max]; seconds per GB of wall time (1 / median) and of this thread's
// CPU time (CLOCK_THREAD_CPUTIME_ID, median), and CPU / wall (about 1.00 when CPU-bound and
// not preempted; lower on a busy machine).
//
// The machine's raw AEAD speed, to set beside these rows:
//   openssl speed -evp aes-256-gcm -seconds 2 [-bytes 16384]
//   openssl speed -evp chacha20-poly1305 -seconds 2 [-bytes 16384]
//   (add -aead for a TLS-like sequence: nonce, AAD and tag per buffer, as a record has)
//
// Links the internal qccl_net target: it measures the cipher, not the API.
//
// Usage: qccl_record_cipher_bench [--trials N] [--mib M] [--suite aes|chacha|both]
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "net/record_cipher.hpp"

namespace {

namespace net = qccl::net;
using net::CipherSuite;

struct Options {
  int trials = 5;
  size_t mib = 256;
  bool aes = true;
  bool chacha = true;
};

constexpr size_t kBufferMib = 64;
constexpr size_t kRecordSizes[] = {4 * 1024, 16 * 1024, 64 * 1024};

double wall_now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

double cpu_now() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

// Wall and thread-CPU seconds of the timed parts of one trial.
struct Timing {
  double wall = 0;
  double cpu = 0;
};

// Times `fn` into `t` (accumulates, so a trial may time several pieces).
template <typename Fn>
void timed(Timing* t, Fn&& fn) {
  const double w0 = wall_now();
  const double c0 = cpu_now();
  fn();
  t->cpu += cpu_now() - c0;
  t->wall += wall_now() - w0;
}

struct Buffers {
  size_t record = 0;     // payload bytes per record
  size_t per_pass = 0;   // records in the buffer
  size_t total = 0;      // records per trial
  std::vector<uint8_t> plain;
  std::vector<uint8_t> sealed;
  std::vector<uint8_t> pristine;  // one pass sealed from sequence number 0, for the opener
  size_t stride() const { return record + net::kRecordOverhead; }
};

// The records of the pass starting at record `done` of a trial.
size_t pass_records(const Buffers& b, size_t done) { return std::min(b.per_pass, b.total - done); }

bool seal_pass(net::RecordSealer* sealer, Buffers* b, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    const std::span<const uint8_t> part(b->plain.data() + i * b->record, b->record);
    if (!sealer->seal({&part, 1}, b->sealed.data() + i * b->stride()).is_ok()) return false;
  }
  return true;
}

bool open_pass(net::RecordOpener* opener, Buffers* b, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    uint8_t* r = b->sealed.data() + i * b->stride();
    const std::span<const uint8_t, net::kRecordHeaderSize> header(r, net::kRecordHeaderSize);
    const std::span<uint8_t> data(r + net::kRecordHeaderSize, b->record);
    const std::span<const uint8_t, net::kTagSize> tag(r + net::kRecordHeaderSize + b->record,
                                                     net::kTagSize);
    if (!opener->open(header, data, tag).is_ok()) return false;
  }
  return true;
}

void copy_pass(Buffers* b, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    std::memcpy(b->sealed.data() + i * b->stride() + net::kRecordHeaderSize,
                b->plain.data() + i * b->record, b->record);
  }
}

// One trial of `op` ("seal", "open", "memcpy"); false if a record failed.
bool run_trial(const char* op, CipherSuite suite, const net::DirectionKeys& keys, Buffers* b,
               Timing* t) {
  const std::string o = op;
  net::RecordSealer sealer(suite, keys);  // one per trial: its sequence runs across the passes
  for (size_t done = 0; done < b->total;) {
    const size_t n = pass_records(*b, done);
    bool ok = true;
    if (o == "seal") {
      timed(t, [&] { ok = seal_pass(&sealer, b, n); });
    } else if (o == "open") {
      std::memcpy(b->sealed.data(), b->pristine.data(), n * b->stride());
      net::RecordOpener opener(suite, keys);
      timed(t, [&] { ok = open_pass(&opener, b, n); });
      ok = ok && (done > 0 || std::memcmp(b->sealed.data() + net::kRecordHeaderSize,
                                          b->plain.data(), b->record) == 0);
    } else {
      timed(t, [&] { copy_pass(b, n); });
    }
    if (!ok) return false;
    done += n;
  }
  return true;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 == 1 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

// Runs `op` for --trials trials (after one untimed warm-up) and prints its table row.
bool measure_row(const Options& o, const char* label, const char* op, CipherSuite suite,
                 const net::DirectionKeys& keys, Buffers* b) {
  Timing warm;
  if (!run_trial(op, suite, keys, b, &warm)) {
    std::fprintf(stderr, "%s %s: a record failed\n", label, op);
    return false;
  }
  const double gb = static_cast<double>(b->total * b->record) / 1e9;
  std::vector<double> rate, cpu_per_gb, ratio;
  for (int r = 0; r < o.trials; ++r) {
    Timing t;
    if (!run_trial(op, suite, keys, b, &t)) return false;
    rate.push_back(gb / t.wall);
    cpu_per_gb.push_back(t.cpu / gb);
    ratio.push_back(t.cpu / t.wall);
  }
  const double med = median(rate);
  std::printf("| %s | %zu KiB | %s | %.2f [%.2f-%.2f] | %.3f | %.3f | %.2f |\n", label,
              b->record / 1024, op, med, *std::min_element(rate.begin(), rate.end()),
              *std::max_element(rate.begin(), rate.end()), 1.0 / med, median(cpu_per_gb),
              median(ratio));
  std::fflush(stdout);
  return true;
}

bool parse(int argc, char** argv, Options* o) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const char* v = i + 1 < argc ? argv[i + 1] : nullptr;
    if (a == "--trials" && v != nullptr && std::atoi(v) > 0) {
      o->trials = std::atoi(argv[++i]);
    } else if (a == "--mib" && v != nullptr && std::atoi(v) > 0) {
      o->mib = static_cast<size_t>(std::atoi(argv[++i]));
    } else if (a == "--suite" && v != nullptr &&
               (std::strcmp(v, "aes") == 0 || std::strcmp(v, "chacha") == 0 ||
                std::strcmp(v, "both") == 0)) {
      o->aes = std::strcmp(v, "chacha") != 0;
      o->chacha = std::strcmp(v, "aes") != 0;
      ++i;
    } else {
      std::fprintf(stderr, "usage: %s [--trials N] [--mib M] [--suite aes|chacha|both]\n",
                   argv[0]);
      return false;
    }
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  if (!parse(argc, argv, &o)) return 2;

  net::DirectionKeys keys;
  std::mt19937_64 rng(23);
  for (auto& k : keys.key) k = static_cast<uint8_t>(rng());
  for (auto& k : keys.iv) k = static_cast<uint8_t>(rng());
  const size_t buffer_bytes = std::min(o.mib, kBufferMib) << 20;
  std::vector<uint8_t> plain(buffer_bytes);
  for (auto& x : plain) x = static_cast<uint8_t>(rng());

  std::printf("qccl record cipher: single thread, %zu MiB of plaintext per trial through a "
              "%zu MiB buffer, %d trials (+1 warm-up); preferred suite here: %s\n\n",
              o.mib, buffer_bytes >> 20, o.trials,
              std::string(net::suite_name(net::preferred_suite())).c_str());
  std::printf("| suite | record | op | GB/s median [min-max] | wall s/GB | CPU s/GB | "
              "CPU/wall |\n|---|---|---|---|---|---|---|\n");
  std::vector<CipherSuite> suites;
  if (o.aes) suites.push_back(CipherSuite::kAes256Gcm);
  if (o.chacha) suites.push_back(CipherSuite::kChaCha20Poly1305);
  for (const size_t record : kRecordSizes) {
    Buffers b;
    b.record = record;
    b.per_pass = buffer_bytes / record;
    b.total = (o.mib << 20) / record;
    b.plain = plain;
    b.sealed.resize(b.per_pass * b.stride());
    b.pristine.resize(b.sealed.size());
    for (const CipherSuite suite : suites) {
      const std::string label(net::suite_name(suite));
      net::RecordSealer sealer(suite, keys);
      if (!seal_pass(&sealer, &b, b.per_pass)) return 1;
      b.pristine = b.sealed;
      if (!measure_row(o, label.c_str(), "seal", suite, keys, &b) ||
          !measure_row(o, label.c_str(), "open", suite, keys, &b)) {
        return 1;
      }
    }
    if (!measure_row(o, "(none)", "memcpy", CipherSuite::kNone, keys, &b)) return 1;
  }
  return 0;
}
