// Where an operation's time goes, for qccl_allreduce_bench (docs/performance.md, "Where the
// time goes"). Each peer measures every timed op: the process's CPU time (user + system, all
// threads: CLOCK_PROCESS_CPUTIME_ID) and the spans of qcclGetStats (waiting for the ring, the
// data exchange, of which the frame work, the commit round, and the I/O thread's CPU). After
// the row, peer 0 gathers every peer's totals and reports one PROFILE line:
//
//   PROFILE <key> <cpu_ms> <wait_ring_ms> <data_ms> <frame_work_ms> <commit_ms> <io_cpu_ms>
//
// cpu_ms is summed over the peers (what the op costs the machine), the others are means over
// the peers; all per op. compare.py reads them from the JSON and sets them beside Gloo's and
// Open MPI's CPU time from the same invocation.
#pragma once

#include <time.h>

#include <cstdio>
#include <string>
#include <vector>

#include "bench_common.hpp"

namespace qccl_bench {

inline double process_cpu_ms() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return double(t.tv_sec) * 1e3 + double(t.tv_nsec) / 1e6;
}

// Per-op figures (ms); the fields' order is the PROFILE line's.
struct OpProfile {
  static constexpr size_t kFields = 6;
  double v[kFields] = {};  // cpu, wait_ring, data, frame_work, commit, io_cpu
  bool have = false;
};

// One peer's totals over a row's timed ops.
class ProfileMeter {
 public:
  explicit ProfileMeter(qcclComm_t* comm) : comm_(comm) {}
  // Around one op; only timed ops are added.
  void before() {
    qcclGetStats(comm_, &s0_);
    cpu0_ = process_cpu_ms();
  }
  void after(bool timed) {
    double cpu = process_cpu_ms() - cpu0_;
    qcclStats_t s1{};
    qcclGetStats(comm_, &s1);
    if (!timed) return;
    ++ops_;
    auto ms = [](uint64_t a, uint64_t b) { return double(b - a) / 1e6; };
    double d[OpProfile::kFields] = {cpu,
                                    ms(s0_.wait_ring_ns, s1.wait_ring_ns),
                                    ms(s0_.data_ns, s1.data_ns),
                                    ms(s0_.frame_work_ns, s1.frame_work_ns),
                                    ms(s0_.commit_ns, s1.commit_ns),
                                    ms(s0_.thread_cpu_ns, s1.thread_cpu_ns)};
    for (size_t k = 0; k < OpProfile::kFields; ++k) total_[k] += d[k];
  }
  // Collective: every peer calls it. Peer 0 gets the PROFILE line's values.
  OpProfile gather(PeerCtx& ctx, int index, int nranks) {
    std::vector<double> table(size_t(nranks) * OpProfile::kFields, 0.0);
    for (size_t k = 0; k < OpProfile::kFields; ++k) {
      table[size_t(index) * OpProfile::kFields + k] = total_[k] / std::max(ops_, 1);
    }
    allreduce_max(ctx, table.data(), table.size());  // each slot has one non-zero writer
    OpProfile p;
    p.have = ops_ > 0;
    for (int i = 0; i < nranks; ++i) {
      for (size_t k = 0; k < OpProfile::kFields; ++k) {
        p.v[k] += table[size_t(i) * OpProfile::kFields + k] / (k == 0 ? 1.0 : double(nranks));
      }
    }
    return p;
  }

 private:
  qcclComm_t* comm_;
  qcclStats_t s0_{};
  double cpu0_ = 0;
  double total_[OpProfile::kFields] = {};
  int ops_ = 0;
};

inline std::string profile_line(const std::string& key, const OpProfile& p) {
  char buf[256];
  std::snprintf(buf, sizeof buf, "PROFILE %s %.4f %.4f %.4f %.4f %.4f %.4f", key.c_str(), p.v[0],
                p.v[1], p.v[2], p.v[3], p.v[4], p.v[5]);
  return buf;
}

inline void print_profile(const OpProfile& p, double op_ms) {
  if (!p.have) return;
  double wait = p.v[2] - p.v[5] > 0 ? p.v[2] - p.v[5] : 0.0;
  std::printf("    where the time goes (per op, mean of peers): ring %.3f ms, data %.3f ms "
              "(frame work %.3f, I/O thread CPU %.3f, off-CPU %.3f), commit %.3f ms; "
              "op %.3f ms; CPU %.3f ms (all peers)\n",
              p.v[1], p.v[2], p.v[3], p.v[5], wait, p.v[4], op_ms, p.v[0]);
}

inline void json_profile(FILE* f, const OpProfile& p) {
  if (!p.have) return;
  std::fprintf(f, "\"cpu_ms\": %.4f, \"wait_ring_ms\": %.4f, \"data_ms\": %.4f, "
               "\"frame_work_ms\": %.4f, \"commit_ms\": %.4f, \"io_cpu_ms\": %.4f, ",
               p.v[0], p.v[1], p.v[2], p.v[3], p.v[4], p.v[5]);
}

}  // namespace qccl_bench
